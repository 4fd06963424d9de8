"""The removed seasonal cycle (``cycle=``): phases, the profile, and every path agreeing on it
(predict, forecast_windows, the stream, save/load, backtest) on an ETTh1 slice."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_settings import TINY_FORECASTER

from rwkv_ts import RWKVForecaster, load
from rwkv_ts.backtest import backtest
from rwkv_ts.data import chronological_split
from rwkv_ts.data.cycle import (
    fit_profile,
    phases_after,
    phases_ending,
    resolve_cycle,
    step_index,
    step_indices,
)

offset = pd.tseries.frequencies.to_offset


@pytest.mark.parametrize(
    ("freq", "period"), [("h", 24), ("15min", 96), ("10min", 144), ("D", 7), ("7min", None)]
)
def test_auto_period_follows_the_step(freq, period):
    assert resolve_cycle("auto", offset(freq)) == period


def test_auto_without_a_time_unit_is_no_cycle():
    assert resolve_cycle("auto", 1) is None
    assert resolve_cycle("auto", offset("MS")) is None
    assert resolve_cycle(None, offset("h")) is None


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "daily"])
def test_bad_cycle_values_are_named(bad):
    with pytest.raises(ValueError, match="cycle must be None, 'auto' or an integer >= 2"):
        resolve_cycle(bad, offset("h"))


def test_calendar_step_with_a_cycle_is_refused():
    with pytest.raises(ValueError, match="MonthBegin"):
        resolve_cycle(12, offset("MS"))


def test_phase_is_the_hour_of_the_day_in_wall_clock_time():
    hourly = offset("h")
    assert step_index(pd.Timestamp("2024-03-05 07:00"), hourly) % 24 == 7
    tz = pd.Timestamp("2024-03-05 07:00", tz="Europe/Berlin")
    assert step_index(tz, hourly) % 24 == 7
    assert phases_ending(pd.Timestamp("2024-01-01 02:00"), hourly, 4, 24).tolist() == [
        23,
        0,
        1,
        2,
    ]
    assert phases_after(pd.Timestamp("2024-01-01 22:00"), hourly, 3, 24).tolist() == [23, 0, 1]
    assert phases_ending(9, 1, 3, 4).tolist() == [3, 0, 1]


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
def test_step_indices_equal_step_index_of_each(tz):
    times = list(pd.date_range("2024-03-30 20:00", periods=40, freq="h", tz=tz))  # a DST change
    hourly = offset("h")
    assert step_indices(times, hourly).tolist() == [step_index(t, hourly) for t in times]
    assert step_indices([3, 10, -4], 2).tolist() == [step_index(t, 2) for t in (3, 10, -4)]


@settings(max_examples=30, deadline=None)
@given(
    period=st.integers(2, 9),
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_profile_is_the_mean_of_each_phase(period, lengths, seed):
    rng = np.random.default_rng(seed)
    series = [rng.normal(size=(n, 2)) for n in lengths]
    phases = [rng.integers(0, period, size=n) for n in lengths]
    profile = fit_profile(series, phases, period)
    values, phase = np.concatenate(series), np.concatenate(phases)
    for q in range(period):
        expected = values[phase == q].mean(axis=0) if (phase == q).any() else np.zeros(2)
        np.testing.assert_allclose(profile[q], expected, atol=1e-12)


@pytest.fixture(scope="module", params=["windowed", "streamable"])
def fitted(request, etth1):
    frame = etth1.frame[["date", "HUFL", "OT"]].iloc[:700].copy()
    extra = {} if request.param == "windowed" else dict(norm="causal", head="last")
    original = frame.copy()
    est = RWKVForecaster(cycle="auto", **TINY_FORECASTER, **extra).fit(frame)
    pd.testing.assert_frame_equal(frame, original)  # the caller's frame is left as it was
    return est, frame


def test_profile_is_the_hourly_mean_of_the_training_part(fitted):
    est, frame = fitted
    assert est.cycle_ == 24 and est.cycle_profile_.shape == (24, 2)
    values = frame[["HUFL", "OT"]].to_numpy()
    window = est.lookback
    if est.config_.streamable:  # its split holds out whole training segments
        from rwkv_ts.stream.training import segment_length

        window = segment_length(est.lookback, est.horizon, [len(values)], est.val_fraction)
    (train,), _ = chronological_split([values], est.val_fraction, window, est.horizon)
    scaled = (train - est.scale_mean_) / est.scale_std_
    hours = frame["date"].dt.hour.to_numpy()[: len(train)]
    expected = np.stack([scaled[hours == h].mean(axis=0) for h in range(24)])
    np.testing.assert_allclose(est.cycle_profile_, expected, atol=1e-5)


def test_every_path_gives_predicts_forecast(fitted, tmp_path):
    est, frame = fitted
    history = frame.iloc[:650]
    expected = est.predict(history)[["HUFL", "OT"]].to_numpy()
    lookback = est.lookback
    if not est.config_.streamable:
        window = history[["HUFL", "OT"]].to_numpy()[None, -lookback:]
        phases = est.cycle_phases(history["date"].iloc[-lookback:].iloc[:1])
        np.testing.assert_allclose(
            est.forecast_windows(window, phases=phases)[0], expected, atol=1e-5
        )
    stream = est.stream(history.iloc[:600])
    stream.update(history.iloc[600:640])
    stream.update_array(history[["HUFL", "OT"]].to_numpy()[None, 640:650])
    np.testing.assert_allclose(stream.forecast()[["HUFL", "OT"]].to_numpy(), expected, atol=1e-5)
    restored = est.stream(None).load_state(stream.save_state())
    np.testing.assert_allclose(restored.forecast()[["HUFL", "OT"]].to_numpy(), expected, atol=1e-5)
    est.save(tmp_path / "m.rwkvts")
    loaded = load(tmp_path / "m.rwkvts")
    assert loaded.cycle_ == 24
    np.testing.assert_array_equal(loaded.cycle_profile_, est.cycle_profile_)
    np.testing.assert_allclose(loaded.predict(history)[["HUFL", "OT"]].to_numpy(), expected)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(again.predict(history)[["HUFL", "OT"]].to_numpy(), expected)
    result = backtest(est, frame, start=650, step=5)
    np.testing.assert_allclose(result.forecasts["RWKV-TS"][0], expected, atol=1e-5)


def test_phases_follow_the_timestamps_not_the_positions(fitted):
    """The same values at other hours get another profile added."""
    est, frame = fitted
    history = frame.iloc[:600]
    shifted = history.assign(date=history["date"] + pd.Timedelta(hours=5))
    a = est.predict(history)[["HUFL", "OT"]].to_numpy()
    b = est.predict(shifted)[["HUFL", "OT"]].to_numpy()
    assert np.abs(a - b).max() > 1e-3


def test_pandas_and_polars_agree(etth1):
    frame = etth1.frame[["date", "HUFL", "OT"]].iloc[:500].copy()
    a = RWKVForecaster(cycle=24, **TINY_FORECASTER).fit(frame).predict()
    b = RWKVForecaster(cycle=24, **TINY_FORECASTER).fit(pl.from_pandas(frame)).predict()
    np.testing.assert_allclose(b.select(["HUFL", "OT"]).to_numpy(), a[["HUFL", "OT"]].to_numpy())


def test_arrays_count_phases_from_their_start():
    t = np.arange(400)
    y = np.sin(2 * np.pi * t / 12) + 0.01 * np.random.default_rng(0).normal(size=400)
    est = RWKVForecaster(cycle=12, **TINY_FORECASTER).fit(y)
    assert est.cycle_phases([0, 5, 13]).tolist() == [0, 5, 1]
    # a pure season is the profile: the forecast is close to it whatever the encoder learned
    truth = np.sin(2 * np.pi * np.arange(400, 412) / 12)
    assert np.abs(est.predict().ravel() - truth).max() < 0.1


def test_forecast_windows_needs_phases_with_a_cycle(fitted):
    est, frame = fitted
    if est.config_.streamable:
        pytest.skip("forecast_windows serves the windowed configuration")
    windows = frame[["HUFL", "OT"]].to_numpy()[None, : est.lookback]
    with pytest.raises(ValueError, match="removes a cycle of 24 steps: pass phases"):
        est.forecast_windows(windows)
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        est.forecast_windows(windows, phases=np.array([0, 1]))


def test_phases_without_a_cycle_are_refused(etth1):
    frame = etth1.frame[["date", "HUFL"]].iloc[:300]
    est = RWKVForecaster(**TINY_FORECASTER).fit(frame)
    assert est.cycle_ is None
    with pytest.raises(ValueError, match="cycle_ is None"):
        est.forecast_windows(np.zeros((1, est.lookback, 1)), phases=np.array([3]))
    with pytest.raises(ValueError, match="removes no cycle"):
        est.cycle_phases(frame["date"].iloc[:2])


def test_bad_cycle_fails_before_training(etth1):
    frame = etth1.frame[["date", "HUFL"]].iloc[:300]
    with pytest.raises(ValueError, match="got 'daily'"):
        RWKVForecaster(cycle="daily", **TINY_FORECASTER).fit(frame)


def _streamable(fitted):
    est, frame = fitted
    if not est.config_.streamable:
        pytest.skip("the torch-free runtime and ONNX serve the streamable configuration")
    return est, frame


def test_runtime_applies_the_cycle(fitted, tmp_path):
    """The torch-free runtime, started at the phase of the first sample, gives predict's forecast,
    through samples in chunks and one at a time, and after a saved state is restored."""
    from rwkv_ts.runtime import RuntimeModel

    est, frame = _streamable(fitted)
    history = frame.iloc[:650]
    expected = est.predict(history)[["HUFL", "OT"]].to_numpy()
    values = history[["HUFL", "OT"]].to_numpy()
    est.save(tmp_path / "m.rwkvts")
    model = RuntimeModel.load(tmp_path / "m.rwkvts")
    assert model.cycle == 24
    np.testing.assert_array_equal(model.cycle_profile, est.cycle_profile_)
    first = model.cycle_phases(history["date"].iloc[:1])
    assert first.tolist() == [history["date"].iloc[0].hour]
    stream = model.stream(1, phase=first)
    stream.update(values[None, :600])
    for t in range(600, 640):
        stream.update(values[None, t])
    out = stream.update(values[None, 640:650])
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    next_hour = history["date"].iloc[-1] + pd.Timedelta(hours=1)
    assert stream.phases.tolist() == model.cycle_phases(next_hour).tolist()
    restored = model.stream().load_state(stream.save_state())
    np.testing.assert_allclose(restored.forecast()[0], expected, atol=1e-5)
    # the phase is what places the profile: a stream started an hour off answers otherwise
    off = model.stream(1, phase=first + 1)
    assert np.abs(off.update(values[None])[0] - expected).max() > 1e-3


_NO_TORCH = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "lightning"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTorch())
import numpy as np
from rwkv_ts.runtime import RuntimeModel

model = RuntimeModel.load(sys.argv[1])
stream = model.stream(1, phase=model.cycle_phases(sys.argv[2]))
print(json.dumps(stream.update(np.load(sys.argv[3])[None])[0].tolist()))
"""


def test_runtime_places_timestamps_without_torch(fitted, tmp_path):
    import json
    import subprocess
    import sys

    est, frame = _streamable(fitted)
    history = frame.iloc[:650]
    est.save(tmp_path / "m.rwkvts")
    np.save(tmp_path / "x.npy", history[["HUFL", "OT"]].to_numpy())
    (tmp_path / "run.py").write_text(_NO_TORCH)
    first = str(history["date"].iloc[0])
    args = [str(tmp_path / "run.py"), str(tmp_path / "m.rwkvts"), first, str(tmp_path / "x.npy")]
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(out, est.predict(history)[["HUFL", "OT"]].to_numpy(), atol=1e-5)


def test_runtime_phase_arguments_are_checked(fitted, tmp_path):
    from rwkv_ts.runtime import RuntimeModel

    est, _ = _streamable(fitted)
    est.save(tmp_path / "m.rwkvts")
    model = RuntimeModel.load(tmp_path / "m.rwkvts")
    stream = model.stream(2, phase=[3, 25])
    assert stream.phases.tolist() == [3, 1]
    stream.set_phases(7, series=[1])
    assert stream.phases.tolist() == [3, 7]
    with pytest.raises(ValueError, match=r"shape \(2,\), one per series"):
        stream.set_phases([1, 2, 3])
    with pytest.raises(ValueError, match="integer"):
        stream.add_series(1, phase=0.5)
    with pytest.raises(ValueError, match=r"series positions must lie in \[0, 2\)"):
        stream.set_phases(1, series=[2])
    assert stream.phases.tolist() == [3, 7]  # a refused call changes nothing


def test_runtime_without_a_cycle_has_no_phase(etth1, tmp_path):
    from rwkv_ts.runtime import RuntimeModel

    frame = etth1.frame[["date", "HUFL"]].iloc[:300]
    est = RWKVForecaster(norm="causal", head="last", **TINY_FORECASTER).fit(frame)
    est.save(tmp_path / "m.rwkvts")
    model = RuntimeModel.load(tmp_path / "m.rwkvts")
    stream = model.stream(1)
    assert model.cycle is None and stream.phases is None
    assert "phase" not in stream.state  # a saved state keeps its format
    with pytest.raises(ValueError, match="removes no cycle"):
        stream.set_phases(0)
    with pytest.raises(ValueError, match="removes no cycle"):
        model.cycle_phases(frame["date"].iloc[:1])


def test_onnx_host_applies_the_cycle(fitted, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rwkv_ts.export.onnx import OnnxStream, export_onnx
    from rwkv_ts.runtime import RuntimeModel

    est, frame = _streamable(fitted)
    history = frame.iloc[:650]
    expected = est.predict(history)[["HUFL", "OT"]].to_numpy()
    path = export_onnx(est, tmp_path / "m.onnx")
    est.save(tmp_path / "m.rwkvts")
    first = RuntimeModel.load(tmp_path / "m.rwkvts").cycle_phases(history["date"].iloc[:1])
    stream = OnnxStream(path, 1, phase=first)
    out = stream.update(history[["HUFL", "OT"]].to_numpy()[None])
    np.testing.assert_allclose(out[0], expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"shape \(1,\), one per series, got float64"):
        OnnxStream(path, 1, phase=0.5)


def test_runtime_refuses_a_profile_of_the_wrong_shape(fitted, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from rwkv_ts._safefile import CHECKSUM_KEY, seal
    from rwkv_ts.runtime import RuntimeModelError
    from rwkv_ts.runtime.weights import read_model_file

    est, _ = fitted
    est.save(tmp_path / "m.rwkvts")
    with safe_open(str(tmp_path / "m.rwkvts"), framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    metadata.pop(CHECKSUM_KEY)
    tensors["cycle.profile"] = tensors["cycle.profile"][:, :1].contiguous()
    (tmp_path / "bad.rwkvts").write_bytes(seal(lambda m: st_save(tensors, metadata=m), metadata))
    with pytest.raises(RuntimeModelError, match=r"'cycle.profile' has shape \(24, 1\)"):
        read_model_file(tmp_path / "bad.rwkvts")


def test_a_file_without_its_profile_fails_clearly(fitted, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from rwkv_ts._safefile import CHECKSUM_KEY, seal
    from rwkv_ts.persistence import ModelFileError

    est, _ = fitted
    est.save(tmp_path / "m.rwkvts")
    with safe_open(str(tmp_path / "m.rwkvts"), framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys() if k != "cycle.profile"}
    metadata.pop(CHECKSUM_KEY)
    # resealed, as a deliberate editor would: the check behind the checksum is exercised
    (tmp_path / "bad.rwkvts").write_bytes(seal(lambda m: st_save(tensors, metadata=m), metadata))
    with pytest.raises(ModelFileError, match=r"cycle profile of shape \(24, 2\)"):
        load(tmp_path / "bad.rwkvts")


def test_files_without_a_cycle_keep_the_older_format_version(etth1, tmp_path):
    """An older rwkv-ts still reads them; one with a cycle it would misread says it is newer."""
    import json

    from safetensors import safe_open

    frame = etth1.frame[["date", "HUFL"]].iloc[:300]
    for cycle, version in ((None, 2), (24, 3)):
        RWKVForecaster(cycle=cycle, **TINY_FORECASTER).fit(frame).save(tmp_path / "m.rwkvts")
        with safe_open(str(tmp_path / "m.rwkvts"), framework="pt") as fh:
            header = json.loads(fh.metadata()["rwkv_ts"])
        assert header["format_version"] == version
        # without a cycle, nothing of it is written: a reader without the parameter loads it
        assert ("cycle" in header["params"]) == (cycle is not None)
