"""The sktime adapter: sktime's own conformance suite, plus behaviour on real data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sktime", reason="the sktime extra is not installed")
torch = pytest.importorskip("torch")

from rwkv_ts.sktime import (  # noqa: E402
    RWKVSktimeClassifier,
    RWKVSktimeForecaster,
    RWKVSktimeRegressor,
)

TINY = RWKVSktimeForecaster.get_test_params()[0]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models train ~30x faster on one thread than on two contended ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("adapter", "at_least"),
    [(RWKVSktimeForecaster, 700), (RWKVSktimeClassifier, 250), (RWKVSktimeRegressor, 140)],
    ids=["forecaster", "classifier", "regressor"],
)
def test_sktime_check_estimator_passes_everything(adapter, at_least):
    from sktime.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(adapter, raise_exceptions=False, verbose=False)
    failed = {name: result for name, result in results.items() if result != "PASSED"}
    assert len(results) >= at_least  # the whole suite ran, no test excluded
    assert failed == {}


@pytest.fixture(scope="module")
def etth1_panel(shared_data_home):
    """Two ETTh1 channels as a panel of three series (three consecutive 500-hour blocks)."""
    from rwkv_ts.datasets import load_ett

    frame = load_ett("ETTh1", data_home=shared_data_home, download=False).frame
    blocks = []
    for i, name in enumerate(["a", "b", "c"]):
        part = frame.iloc[i * 500 : (i + 1) * 500]
        index = pd.MultiIndex.from_arrays(
            [[name] * 500, pd.PeriodIndex(part["date"], freq="h")], names=["block", "time"]
        )
        blocks.append(
            pd.DataFrame(part[["HUFL", "OT"]].to_numpy(), index=index, columns=["HUFL", "OT"])
        )
    return pd.concat(blocks)


def _fit(y, **params):
    kw = {**TINY, "lookback": 48, "patch_len": 8, "stride": 4, "max_epochs": 2}
    kw.update(params)
    return RWKVSktimeForecaster(**kw).fit(y, fh=[1, 2, 3, 4])


def test_panel_is_one_global_model_and_matches_the_core_estimator(etth1_panel):
    f = _fit(etth1_panel)
    pred = f.predict()
    assert list(pred.columns) == ["HUFL", "OT"]
    assert pred.index.names == ["block", "time"]
    assert pred.shape == (12, 2)
    # one network for the panel: the forecasts are the core estimator's on each block's window
    core = f.forecaster_
    windows = np.stack([etth1_panel.loc[b].to_numpy()[-48:] for b in "abc"])
    expected = core.forecast_windows(windows).reshape(-1, 2)
    np.testing.assert_allclose(pred.to_numpy(), expected, rtol=1e-5, atol=1e-5)
    first = pred.loc["a"].index
    assert first[0] == etth1_panel.loc["a"].index[-1] + 1


def test_update_advances_the_history_without_retraining(etth1_panel):
    train = etth1_panel.groupby(level=0).head(450)
    new = etth1_panel.groupby(level=0).tail(50)
    f = _fit(train)
    weights = {k: v.clone() for k, v in f.forecaster_.model_.state_dict().items()}
    f.update(new)
    after = f.predict()
    for k, v in f.forecaster_.model_.state_dict().items():
        assert torch.equal(v, weights[k]), k
    # the forecast now continues the full 500 hours and equals a fresh forecast from them
    windows = np.stack([etth1_panel.loc[b].to_numpy()[-48:] for b in "abc"])
    expected = f.forecaster_.forecast_windows(windows).reshape(-1, 2)
    np.testing.assert_allclose(after.to_numpy(), expected, rtol=1e-5, atol=1e-5)
    assert after.loc["b"].index[0] == etth1_panel.loc["b"].index[-1] + 1


def test_recursive_forecast_beyond_the_trained_horizon(etth1_panel):
    y = etth1_panel.loc["a"]
    f = RWKVSktimeForecaster(**{**TINY, "lookback": 48, "patch_len": 8, "stride": 4, "horizon": 4})
    f.fit(y)
    long = f.predict(fh=list(range(1, 11)))
    assert long.shape == (10, 2)
    # the first `horizon` steps are the direct forecast; the next ones continue from them
    core = f.forecaster_
    direct = core.forecast_windows(y.to_numpy()[None, -48:])[0]
    np.testing.assert_allclose(long.to_numpy()[:4], direct, rtol=1e-5, atol=1e-5)
    extended = np.concatenate([y.to_numpy()[-48:], direct])[-48:]
    np.testing.assert_allclose(
        long.to_numpy()[4:8], core.forecast_windows(extended[None])[0], rtol=1e-5, atol=1e-5
    )


def test_too_short_series_names_the_instance(etth1_panel):
    short = pd.concat([etth1_panel.loc[["a"]], etth1_panel.loc[["b"]].iloc[:20]])
    with pytest.raises(ValueError, match="'b'"):
        _fit(short)


def test_in_sample_fh_is_refused(etth1_panel):
    with pytest.raises(NotImplementedError, match="in-sample"):
        RWKVSktimeForecaster(**TINY).fit(etth1_panel.loc["a"], fh=[-1, 1])


def test_classifier_adapter_on_ecg200_equals_the_core_classifier(shared_data_home):
    from rwkv_ts import RWKVClassifier
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("ECG200", "train", data_home=shared_data_home)
    X_test, _ = load_classification("ECG200", "test", data_home=shared_data_home)
    core = RWKVClassifier(d_model=8, head_size=4, n_layers=1, max_epochs=3, random_state=0)
    clf = RWKVSktimeClassifier(core).fit(X, y)
    assert list(clf.classes_) == [-1, 1]
    direct = RWKVClassifier(**core.get_params()).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X_test[:20]), direct.predict_proba(X_test[:20]))
    assert clf.get_params()["estimator__d_model"] == 8


def test_regressor_adapter_on_unequal_cmapss_units(shared_data_home):
    from rwkv_ts import RWKVRegressor
    from rwkv_ts.datasets import load_cmapss

    train = load_cmapss("FD001", data_home=shared_data_home).train
    units = train[train["unit"] <= 12]
    sensors = ["sensor_2", "sensor_7", "sensor_11"]
    X = units.set_index(["unit", "cycle"])[sensors]  # pd-multiindex, units of unequal length
    lengths = units.groupby("unit").size()
    assert lengths.nunique() > 1
    y = np.minimum(lengths.to_numpy() - 150.0, 125.0)  # an RUL-like target per unit
    core = RWKVRegressor(patch_len=4, stride=4, d_model=8, head_size=4, n_layers=1,
                         max_epochs=2, val_fraction=0.0, random_state=0)  # fmt: skip
    reg = RWKVSktimeRegressor(core).fit(X, y)
    arrays = [g[sensors].to_numpy().T for _, g in units.groupby("unit")]
    direct = RWKVRegressor(**core.get_params()).fit(arrays, y)
    np.testing.assert_allclose(reg.predict(X), direct.predict(arrays), rtol=1e-5)
