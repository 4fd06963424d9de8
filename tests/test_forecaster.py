"""RWKVForecaster: the scikit-learn contract, every input kind, reproducibility, no litter, clear
errors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from tiny_settings import TINY_FORECASTER

from rwkv_ts import RWKVForecaster
from rwkv_ts.data import DataValidationError

TINY = TINY_FORECASTER


def tiny(**overrides) -> RWKVForecaster:
    return RWKVForecaster(**(TINY | overrides))


@pytest.fixture(scope="module")
def fitted_pandas(etth1):
    frame = etth1.frame[["date", "HUFL", "MUFL", "OT"]].iloc[:800].copy()
    return tiny().fit(frame), frame


def test_init_only_stores_parameters():
    est = tiny(shift_distances=(1, 3))
    assert est.get_params()["shift_distances"] == (1, 3)
    assert not [k for k in vars(est) if k.endswith("_")]
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    est.set_params(d_model=32)
    assert est.d_model == 32


def test_not_fitted_errors():
    with pytest.raises(NotFittedError):
        tiny().predict()


def test_pandas_wide_forecast_continues_timestamps(fitted_pandas):
    est, frame = fitted_pandas
    out = est.predict()
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["date", "HUFL", "MUFL", "OT"]
    assert len(out) == 12
    expected = pd.date_range(frame["date"].iloc[-1], periods=13, freq="h")[1:]
    assert (out["date"].to_numpy() == expected.to_numpy()).all()
    assert np.isfinite(out[["HUFL", "MUFL", "OT"]].to_numpy()).all()
    assert est.n_epochs_ >= 1 and est.history_[0]["val_loss"] > 0
    assert est.channels_ == ["HUFL", "MUFL", "OT"]


def test_predict_from_given_history(fitted_pandas):
    est, frame = fitted_pandas
    history = frame.iloc[100:400]
    out = est.predict(history)
    assert out["date"].iloc[0] == frame["date"].iloc[400]
    # Equal to the fast path on the last window.
    window = history[["HUFL", "MUFL", "OT"]].to_numpy()[-48:][None]
    np.testing.assert_allclose(
        out[["HUFL", "MUFL", "OT"]].to_numpy(),
        est.forecast_windows(window)[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_polars_in_polars_out_equals_pandas(etth1_slice):
    pandas_out = tiny().fit(etth1_slice).predict()
    polars_frame = pl.from_pandas(etth1_slice)
    polars_out = tiny().fit(polars_frame).predict()
    assert isinstance(polars_out, pl.DataFrame)
    assert polars_out.columns == ["date", "HUFL", "MUFL", "OT"]
    np.testing.assert_allclose(
        polars_out.select(["HUFL", "MUFL", "OT"]).to_numpy(),
        pandas_out[["HUFL", "MUFL", "OT"]].to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_long_frame_panel(etth1_slice):
    long = pd.concat(
        [
            pd.DataFrame({"unique_id": ch, "ds": etth1_slice["date"], "y": etth1_slice[ch]})
            for ch in ["HUFL", "OT"]
        ],
        ignore_index=True,
    )
    est = tiny().fit(long)
    out = est.predict()
    assert list(out.columns) == ["unique_id", "ds", "y"]
    assert out.groupby("unique_id").size().to_dict() == {"HUFL": 12, "OT": 12}


def test_series_and_numpy_inputs(etth1_slice):
    series = etth1_slice.set_index("date")["OT"]
    out = tiny().fit(series).predict()
    assert isinstance(out, pd.Series) and out.name == "OT" and len(out) == 12
    array = etth1_slice[["HUFL", "OT"]].to_numpy()
    out = tiny().fit(array).predict()
    assert isinstance(out, np.ndarray) and out.shape == (12, 2)


def test_reproducible_with_random_state(etth1_slice):
    a = tiny().fit(etth1_slice).predict()
    b = tiny().fit(etth1_slice).predict()
    pd.testing.assert_frame_equal(a, b)
    c = tiny(random_state=1).fit(etth1_slice).predict()
    assert not np.allclose(a["OT"], c["OT"])


def test_quiet_and_no_litter(etth1_slice, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    tiny(max_epochs=1).fit(etth1_slice)
    captured = capfd.readouterr()
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_caller_frame_unchanged(etth1_slice):
    before = etth1_slice.copy(deep=True)
    est = tiny(max_epochs=1).fit(etth1_slice)
    est.predict(etth1_slice)
    pd.testing.assert_frame_equal(etth1_slice, before)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f.assign(OT=f["OT"].where(f.index != 10)), "NaN|missing"),
        (lambda f: f.iloc[:50], "length|short|observations"),
        (lambda f: f.iloc[::-1], "sort"),
        (lambda f: pd.concat([f.iloc[:5], f.iloc[4:]]), "duplicat"),
        (lambda f: f.drop(index=[100, 101]), "irregular|frequency|step"),
        (lambda f: f.assign(OT=f["OT"].astype(str)), "OT"),
        (lambda f: f.iloc[:0], "empty"),
    ],
)
def test_bad_input_raises_named_error(etth1_slice, mutate, match):
    bad = mutate(etth1_slice)
    before = bad.copy(deep=True)
    with pytest.raises((ValueError, TypeError), match=match):
        tiny().fit(bad)
    pd.testing.assert_frame_equal(bad, before)


def test_unknown_column_and_channel_mismatch(fitted_pandas):
    est, frame = fitted_pandas
    with pytest.raises(ValueError, match="nope"):
        tiny(value_cols=["nope"]).fit(frame)
    with pytest.raises(ValueError, match="MUFL"):
        est.predict(frame.drop(columns=["MUFL"]))


def test_impute_option_fills_missing(etth1_slice):
    bad = etth1_slice.assign(OT=etth1_slice["OT"].where(etth1_slice.index % 97 != 5))
    out = tiny(impute="linear", max_epochs=1).fit(bad).predict()
    assert np.isfinite(out["OT"]).all()


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="norm"):
        tiny(norm="batch").fit(np.zeros((200, 1)))
    with pytest.raises(ValueError, match="head"):
        tiny(head="middle").fit(np.random.default_rng(0).normal(size=(200, 1)))
    with pytest.raises(ValueError, match="horizon"):
        tiny(horizon=0).fit(np.zeros((200, 1)))


def test_shift_distances_forms():
    series = np.random.default_rng(0).normal(size=(200, 1))
    assert tiny(shift_distances=1, max_epochs=1).fit(series).config_.shift_distances == (1,)
    for bad in ((), (0, 1), "periodic", (1.5, "x")):
        with pytest.raises(ValueError, match="shift_distances"):
            tiny(shift_distances=bad).fit(series)


def test_scaler_sees_only_the_training_part():
    # A level shift confined to the validation part must not move the scaling statistics.
    base = np.random.default_rng(1).normal(size=(400, 1))
    shifted = base.copy()
    shifted[-40:] += 1000.0
    a = tiny(max_epochs=1, val_fraction=0.2).fit(base)
    b = tiny(max_epochs=1, val_fraction=0.2).fit(shifted)
    np.testing.assert_allclose(a.scale_mean_, b.scale_mean_)
    np.testing.assert_allclose(a.scale_std_, b.scale_std_)


def test_streamable_configuration_and_auto_distances(etth1_slice):
    est = tiny(norm="causal", head="last", shift_distances="auto", max_epochs=1).fit(etth1_slice)
    assert est.config_.streamable
    assert 1 in est.config_.shift_distances
    assert np.isfinite(est.predict()[["OT"]].to_numpy()).all()


def test_pickle_and_deepcopy_keep_predictions(fitted_pandas):
    est, _ = fitted_pandas
    expected = est.predict()
    for other in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        pd.testing.assert_frame_equal(other.predict(), expected)


def test_forecast_windows_checks_shape(fitted_pandas):
    est, _ = fitted_pandas
    with pytest.raises(ValueError, match=r"\(S, 48, 3\)"):
        est.forecast_windows(np.zeros((2, 10, 3)))
    with pytest.raises(DataValidationError):
        est.predict(np.zeros((10, 3)))


# ---------------------------------------------------------------- the linear branch
def _windows(values: np.ndarray, lookback: int, horizon: int):
    import torch

    from rwkv_ts.data import WindowDataset

    return WindowDataset([values.astype(np.float32)], lookback, horizon), torch


@pytest.mark.parametrize("skip_input", ["normalised", "raw"])
def test_linear_branch_is_the_least_squares_fit(etth1_slice, skip_input):
    # Before training the model's forecast is the ridge least-squares linear forecast of the
    # chosen input, fitted in the space the loss is measured in: a normalised window's forecast
    # is denormalised (times its std) before the loss, so its row counts with weight std**2.
    from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel

    values = etth1_slice[["HUFL", "OT"]].to_numpy()
    values = (values - values.mean(0)) / values.std(0)
    lookback, horizon = 24, 6
    data, torch = _windows(values, lookback, horizon)
    config = RWKVTSConfig(
        lookback=lookback, horizon=horizon, patch_len=8, stride=4, d_model=8, head_size=8,
        n_layers=1, linear_skip=True, skip_input=skip_input,
    )  # fmt: skip
    model = RWKVTSModel(config).eval()
    model.fit_skip_least_squares(torch.utils.data.DataLoader(data, batch_size=100), ridge=1e-6)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.stack([data[i][1] for i in range(len(data))])
    with torch.no_grad():
        forecast = model(x)
        assert torch.allclose(forecast, model.linear_forecast(x), atol=1e-6)
    xs = x.permute(0, 2, 1).reshape(-1, lookback).double().numpy()
    ys = y.permute(0, 2, 1).reshape(-1, horizon).double().numpy()
    mean = xs.mean(1, keepdims=True)
    std = np.sqrt(xs.var(1, keepdims=True) + 1e-5)
    if skip_input == "raw":
        design, target, row_scale = xs, ys - mean, np.ones_like(mean)
    else:
        design, target, row_scale = (xs - mean) / std, (ys - mean) / std, std
    design = np.hstack([design, np.ones((len(design), 1))])
    coef = np.linalg.lstsq(design * row_scale, target * row_scale, rcond=None)[0]
    expected = design @ coef
    expected = expected + mean if skip_input == "raw" else expected * std + mean
    got = forecast.permute(0, 2, 1).reshape(-1, horizon).double().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_linear_skip_forms_and_errors(etth1_slice):
    series = etth1_slice[["OT"]].to_numpy()
    assert tiny(linear_skip=True, max_epochs=1).fit(series).config_.skip_input == "normalised"
    assert tiny(linear_skip="raw", max_epochs=1).fit(series).config_.skip_input == "raw"
    assert not tiny(linear_skip=False, max_epochs=1).fit(series).config_.linear_skip
    with pytest.raises(ValueError, match="linear_skip"):
        tiny(linear_skip="both").fit(series)
    with pytest.raises(ValueError, match="linear_skip='raw' needs norm='instance'"):
        tiny(linear_skip="raw", norm="causal", head="last").fit(series)


def _ar1(n: int = 800) -> np.ndarray:
    # reverts to a fixed level: only the raw branch can see how far the window is from it
    rng = np.random.default_rng(0)
    values = np.zeros(n)
    for t in range(1, n):
        values[t] = 0.9 * values[t - 1] + rng.normal()
    return values[:, None]


@pytest.mark.parametrize("case, expected", [("ar1", "raw"), ("etth1_ot", "normalised")])
def test_auto_linear_skip_keeps_the_branch_that_validates_better(etth1, case, expected):
    from dataclasses import replace

    import torch

    from rwkv_ts.data import WindowDataset, chronological_split
    from rwkv_ts.forecaster import choose_skip_input
    from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel

    values = _ar1() if case == "ar1" else etth1.frame[["OT"]].to_numpy()[:3000]
    values = ((values - values.mean(0)) / values.std(0)).astype(np.float32)
    lookback, horizon = 48, 12
    train, val = chronological_split([values], 0.25, lookback, horizon)
    train, val = WindowDataset(train, lookback, horizon), WindowDataset(val, lookback, horizon)
    config = RWKVTSConfig(
        lookback=lookback, horizon=horizon, patch_len=8, stride=4, d_model=8, head_size=8,
        n_layers=1, linear_skip=True,
    )  # fmt: skip
    errors = {}
    for skip_input in ("normalised", "raw"):
        model = RWKVTSModel(replace(config, skip_input=skip_input)).eval()
        model.fit_skip_least_squares(torch.utils.data.DataLoader(train, batch_size=256))
        x, y = next(iter(torch.utils.data.DataLoader(val, batch_size=len(val))))
        with torch.no_grad():
            errors[skip_input] = float(((model.linear_forecast(x) - y) ** 2).mean())
    assert min(errors, key=errors.get) == expected, errors
    state = torch.random.get_rng_state()
    assert choose_skip_input(config, train, val).skip_input == expected
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator untouched
    assert choose_skip_input(config, train, None).skip_input == "normalised"


def test_auto_linear_skip_in_fit(etth1_slice):
    ar1 = _ar1()
    assert RWKVForecaster().linear_skip == "auto"
    assert tiny(max_epochs=1).fit(ar1).config_.skip_input == "raw"
    assert tiny(max_epochs=1, val_fraction=0.0).fit(ar1).config_.skip_input == "normalised"
    streaming = tiny(max_epochs=1, norm="causal", head="last").fit(ar1)
    assert streaming.config_.skip_input == "normalised" and streaming.config_.linear_skip
    # a fixed seed gives the same model whichever branch was chosen
    first, second = tiny(max_epochs=1).fit(ar1), tiny(max_epochs=1).fit(ar1)
    pd.testing.assert_frame_equal(pd.DataFrame(first.predict()), pd.DataFrame(second.predict()))


def test_raw_linear_branch_survives_save_and_load(etth1_slice, tmp_path):
    from rwkv_ts.persistence import load

    est = tiny(linear_skip="raw").fit(etth1_slice)
    est.save(tmp_path / "m.rwkvts")
    loaded = load(tmp_path / "m.rwkvts")
    assert loaded.config_.skip_input == "raw"
    assert loaded.best_val_loss_ == est.best_val_loss_ > 0
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())


@pytest.mark.parametrize("keep_initial", [True, False])
def test_training_keeps_the_start_when_no_epoch_beats_it(keep_initial):
    # A model that starts at the exact solution, trained with a step size that throws it off:
    # with keep_initial the start wins on validation and is restored (best epoch -1).
    import torch

    from rwkv_ts.training import TrainingOptions, train_model

    torch.manual_seed(0)
    x = torch.randn(256, 1)
    data = torch.utils.data.TensorDataset(x, 2 * x)
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(0.0)
    options = TrainingOptions(
        max_epochs=3, batch_size=16, learning_rate=0.5, patience=2, accelerator="cpu",
        verbose=False, random_state=0, keep_initial=keep_initial, gradient_clip=0.0,
    )  # fmt: skip
    result = train_model(model, data, torch.utils.data.TensorDataset(x[:64], 2 * x[:64]), options)
    if keep_initial:
        assert result.best_epoch == -1 and result.best_val_loss == 0.0
        assert model.weight.item() == 2.0 and model.bias.item() == 0.0
    else:
        assert result.best_epoch >= 0 and model.weight.item() != 2.0


@pytest.mark.parametrize("name", ["accurate", "streaming", "fast"])
def test_presets_set_their_parameters_and_yield_to_explicit_ones(name):
    from rwkv_ts.forecaster import PRESETS

    est = RWKVForecaster.from_preset(name, horizon=24, random_state=3)
    params = est.get_params()
    assert {key: params[key] for key in PRESETS[name]} == dict(PRESETS[name])
    assert params["horizon"] == 24 and params["random_state"] == 3
    # an explicit parameter wins over the preset's
    assert RWKVForecaster.from_preset(name, d_model=48).d_model == 48
    # an ordinary estimator: clone keeps every setting
    assert clone(est).get_params() == params


def test_preset_errors_are_named():
    with pytest.raises(ValueError, match="'fastest'"):
        RWKVForecaster.from_preset("fastest")
    with pytest.raises(TypeError, match="horizn"):
        RWKVForecaster.from_preset("fast", horizn=12)


def test_streaming_preset_gives_the_streamable_configuration(etth1_slice):
    est = RWKVForecaster.from_preset("streaming", **(TINY | {"max_epochs": 1})).fit(etth1_slice)
    assert est.config_.streamable and est.config_.head_tokens == 1
    forecast = est.predict()
    assert len(forecast) == TINY["horizon"] and np.isfinite(forecast[est.channels_]).all().all()
