"""Ensembles of the forecaster (``ensemble_size``): the module in both modes, member 0 as the single
model, forecasts as the mean of the members', exact streams (windowed, recurrent, numba) with saved
states, save/load, resuming a killed fit, and the clear refusals of the single-model runtimes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ensemble import _CountTrainings, _Crashed, _CrashInTraining
from tiny_settings import TINY_FORECASTER

import rwkv_ts
from rwkv_ts import RWKVForecaster
from rwkv_ts.nn import ForecastEnsemble, RWKVTSConfig, RWKVTSModel
from rwkv_ts.runtime.weights import RuntimeModelError, read_model_file
from rwkv_ts.training import training_callbacks

# linear_skip=False: the members differ from their first step (with the least-squares start a
# short fit may keep the start, the same for every member)
TINY = dict(TINY_FORECASTER, linear_skip=False, accelerator="cpu")
STREAMABLE = dict(TINY, norm="causal", head="last")


@pytest.fixture(scope="module")
def series(etth1):
    return etth1.frame[["date", "HUFL", "OT"]].iloc[:500].copy()


def _losses(history: list[dict]) -> list[tuple]:
    """A history without its wall times."""
    return [(e["epoch"], e["train_loss"], e.get("val_loss")) for e in history]


@settings(max_examples=10, deadline=None)
@given(
    n_members=st.integers(1, 3),
    causal=st.booleans(),
    n_samples=st.integers(0, 12),
    seed=st.integers(0, 2**16),
)
def test_module_is_the_mean_of_its_members_in_both_modes(n_members, causal, n_samples, seed):
    torch.manual_seed(seed)
    config = RWKVTSConfig(
        lookback=16,
        horizon=3,
        patch_len=4,
        stride=2,
        d_model=16,
        head_size=8,
        n_layers=1,
        norm="causal" if causal else "instance",
        head_tokens=1 if causal else None,
    )
    members = [RWKVTSModel(config).eval() for _ in range(n_members)]
    ensemble = ForecastEnsemble(members).eval()
    x = torch.randn(2, 16 + n_samples, 2)
    with torch.no_grad():
        expected = torch.stack([m(x[:, -16:] if not causal else x) for m in members]).mean(0)
        torch.testing.assert_close(ensemble(x[:, -16:] if not causal else x), expected)
        state, y = ensemble.init_state(2, 2), None
        for t in range(x.shape[1]):
            out, state = ensemble.step(x[:, t], state)
            y = out if out is not None else y
    # the recurrent mode answers when a patch completes; its last answer is the batch one over the
    # samples up to that patch
    last = 16 + n_samples - ((16 + n_samples - 4) % 2) if causal else 16 + n_samples
    with torch.no_grad():
        reference = ensemble(x[:, :last] if causal else x[:, last - 16 : last])
    torch.testing.assert_close(y, reference, atol=1e-5, rtol=1e-5)


def test_module_rejects_members_of_other_configurations():
    a = RWKVTSModel(
        RWKVTSConfig(lookback=16, horizon=3, patch_len=4, stride=2, d_model=16, head_size=8)
    )
    b = RWKVTSModel(
        RWKVTSConfig(lookback=16, horizon=4, patch_len=4, stride=2, d_model=16, head_size=8)
    )
    with pytest.raises(ValueError, match="member 1 has configuration"):
        ForecastEnsemble([a, b])
    with pytest.raises(ValueError, match="at least one member"):
        ForecastEnsemble([])


def test_member_zero_is_the_single_model_and_forecasts_average_the_members(series):
    single = RWKVForecaster(**TINY).fit(series)
    ens = RWKVForecaster(**TINY, ensemble_size=3).fit(series)
    assert isinstance(ens.model_, ForecastEnsemble) and len(ens.member_histories_) == 3
    assert _losses(ens.history_) == _losses(ens.member_histories_[0]) == _losses(single.history_)
    for a, b in zip(
        ens.model_.members[0].state_dict().values(),
        single.model_.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the members differ (own seeds), and the forecast is their mean
    w0, w1 = (m.head.linear.weight for m in list(ens.model_.members)[:2])
    assert not torch.equal(w0, w1)
    windows = series[["HUFL", "OT"]].to_numpy()[-TINY["lookback"] :][None]
    per_member = []
    for member in ens.model_.members:
        single.model_ = member
        per_member.append(single.forecast_windows(windows))
    np.testing.assert_allclose(
        ens.forecast_windows(windows), np.mean(per_member, axis=0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        ens.predict()[["HUFL", "OT"]].to_numpy(), ens.forecast_windows(windows)[0], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("params", "backend", "kind"),
    [(TINY, "torch", "window"), (STREAMABLE, "torch", "recurrent"), (STREAMABLE, "numba", "numba")],
)
def test_streams_of_an_ensemble_equal_predict_and_restore_their_state(
    series, params, backend, kind
):
    est = RWKVForecaster(**params, ensemble_size=2).fit(series.iloc[:450])
    stream = est.stream(backend=backend)
    assert stream.kind == kind
    new = series.iloc[450:460]
    stream.update(new)
    expected = est.predict(series.iloc[:460])[["HUFL", "OT"]].to_numpy()
    np.testing.assert_allclose(stream.forecast_array()[0], expected, rtol=1e-4, atol=1e-4)
    saved = stream.save_state()
    restored = est.stream(history=None, backend=backend).load_state(saved)
    restored.update(series.iloc[460:462])
    stream.update(series.iloc[460:462])
    np.testing.assert_array_equal(restored.forecast_array(), stream.forecast_array())


@pytest.fixture(scope="module")
def ensemble_of_two(series):
    """A streamable ensemble of two, fitted once for the tests that only read it."""
    return RWKVForecaster(**STREAMABLE, ensemble_size=2).fit(series)


def _assert_single_model_readers_refuse(est, path) -> None:
    """The torch-free runtime (reading ``path``, ``est`` saved) and the ONNX export refuse
    ``est``, an ensemble of two, by name."""
    with pytest.raises(RuntimeModelError, match="ensemble of 2 members.*read single models"):
        read_model_file(path)
    pytest.importorskip("onnx")
    from rwkv_ts.export import export_onnx

    with pytest.raises(ValueError, match="ensemble of 2 members"):
        export_onnx(est, path.with_suffix(".onnx"))


def test_saved_ensemble_loads_with_the_same_forecasts_and_members(ensemble_of_two, tmp_path):
    est = ensemble_of_two
    est.save(tmp_path / "ens.rwkvts")
    loaded = rwkv_ts.load(tmp_path / "ens.rwkvts")
    assert isinstance(loaded.model_, ForecastEnsemble) and loaded.ensemble_size == 2
    assert loaded.member_histories_ == est.member_histories_
    assert loaded.member_best_epochs_ == est.member_best_epochs_
    np.testing.assert_array_equal(loaded.predict().to_numpy(), est.predict().to_numpy())


def test_runtime_and_onnx_refuse_an_ensemble_by_name(ensemble_of_two, tmp_path):
    ensemble_of_two.save(tmp_path / "ens.rwkvts")
    _assert_single_model_readers_refuse(ensemble_of_two, tmp_path / "ens.rwkvts")


def test_files_and_refusals_go_by_the_members_fitted_not_a_later_ensemble_size(
    ensemble_of_two, tmp_path
):
    est = copy.deepcopy(ensemble_of_two)
    expected = est.predict().to_numpy()
    est.set_params(ensemble_size=1)  # after fit: the model is still an ensemble of two
    est.save(tmp_path / "ens.rwkvts")
    loaded = rwkv_ts.load(tmp_path / "ens.rwkvts")
    assert loaded.ensemble_size == 2 and len(loaded.model_.members) == 2
    np.testing.assert_array_equal(loaded.predict().to_numpy(), expected)
    _assert_single_model_readers_refuse(est, tmp_path / "ens.rwkvts")


def test_killed_ensemble_fit_resumes_with_the_member_it_was_training(series, tmp_path):
    params = {**TINY, "max_epochs": 3, "ensemble_size": 3}
    reference = RWKVForecaster(**params).fit(series)
    with training_callbacks(_CrashInTraining(1, epoch=1)), pytest.raises(_Crashed):
        RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(series)
    assert (tmp_path / "ensemble_member_0.safetensors").exists()  # member 0 finished
    counter = _CountTrainings()
    with training_callbacks(counter):
        resumed = RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(series)
    assert counter.count == 2  # member 0 was not trained again; member 1 resumed, member 2 new
    np.testing.assert_array_equal(resumed.predict().to_numpy(), reference.predict().to_numpy())
    assert [_losses(h) for h in resumed.member_histories_] == [
        _losses(h) for h in reference.member_histories_
    ]
    assert not list(tmp_path.iterdir())  # cleaned up once fit completes


def test_ensemble_size_is_validated_and_one_is_a_single_model(series, capsys):
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="ensemble_size must be a positive integer"):
            RWKVForecaster(**TINY, ensemble_size=bad).fit(series)
    one = RWKVForecaster(**TINY).fit(series)
    assert isinstance(one.model_, RWKVTSModel) and one.member_histories_ == [one.history_]
    RWKVForecaster(**{**TINY, "max_epochs": 1, "verbose": True}, ensemble_size=2).fit(series)
    err = capsys.readouterr().err
    assert "RWKVForecaster: ensemble member 2 of 2" in err
