"""Rolling-origin backtests on real data."""

from __future__ import annotations

import numpy as np
import pytest

from rwkv_ts import RWKVForecaster
from rwkv_ts.backtest import backtest, season_of
from rwkv_ts.metrics import mae, mse, seasonal_naive_forecast

torch = pytest.importorskip("torch")
SMALL = dict(
    horizon=6, patch_len=8, stride=4, d_model=8, head_size=8, n_layers=1, max_epochs=2,
    verbose=False, random_state=0, accelerator="cpu",
)  # fmt: skip


@pytest.fixture(scope="module")
def etth1_ot(shared_data_home):
    from rwkv_ts.datasets import load_ett

    return load_ett("ETTh1", data_home=shared_data_home, download=False).frame[["date", "OT"]]


@pytest.fixture(scope="module")
def fitted(etth1_ot):
    return RWKVForecaster(lookback=48, **SMALL).fit(etth1_ot.iloc[:600])


def test_backtest_matches_per_origin_forecasts(fitted, etth1_ot):
    result = backtest(fitted, etth1_ot, start=600, end=700, step=5, season=24)
    values = etth1_ot["OT"].to_numpy()
    assert list(result.origins) == list(range(600, 700 - 6 + 1, 5))
    for i, o in enumerate(result.origins):
        window = etth1_ot.iloc[o - 48 : o]
        expected = fitted.predict(window)["OT"].to_numpy()
        np.testing.assert_allclose(result.forecasts["RWKV-TS"][i, :, 0], expected, rtol=1e-5)
        np.testing.assert_array_equal(result.actual[i, :, 0], values[o : o + 6])
        np.testing.assert_array_equal(
            result.forecasts["seasonal naive"][i],
            seasonal_naive_forecast(values[:o, None], 6, 24),
        )
    m = result.metrics()
    assert m["naive"]["mse"] == pytest.approx(mse(result.actual, result.forecasts["naive"]))
    assert m["RWKV-TS"]["mae"] == pytest.approx(mae(result.actual, result.forecasts["RWKV-TS"]))
    by_step = result.errors_by_horizon("mae")
    assert np.mean(by_step["RWKV-TS"]) == pytest.approx(m["RWKV-TS"]["mae"])
    scaled = result.metrics(scaled=True)["naive"]["mse"]
    assert scaled == pytest.approx(m["naive"]["mse"] / fitted.scale_std_[0] ** 2)


def test_backtest_never_reads_at_or_after_an_origin(fitted, etth1_ot):
    a = backtest(fitted, etth1_ot, start=600, end=700, step=10)
    corrupted = etth1_ot.copy()
    corrupted.loc[650:, "OT"] = 1e6  # rows from 650 on
    b = backtest(fitted, corrupted, start=600, end=700, step=10)
    before = a.origins + 6 <= 650  # forecasts whose origin and targets precede the change
    np.testing.assert_array_equal(
        a.forecasts["RWKV-TS"][a.origins <= 650], b.forecasts["RWKV-TS"][b.origins <= 650]
    )
    np.testing.assert_array_equal(a.actual[before], b.actual[before])


def test_streamable_backtest_reads_the_whole_history(etth1_ot):
    est = RWKVForecaster(lookback=48, norm="causal", head="last", **SMALL).fit(etth1_ot.iloc[:500])
    result = backtest(est, etth1_ot, start=500, end=540, step=10, baselines=False)
    for i, o in enumerate(result.origins):
        expected = est.predict(etth1_ot.iloc[:o])["OT"].to_numpy()
        np.testing.assert_allclose(result.forecasts["RWKV-TS"][i, :, 0], expected, atol=1e-4)


def test_backtest_errors_name_the_problem(fitted, etth1_ot):
    with pytest.raises(ValueError, match="lookback=48"):
        backtest(fitted, etth1_ot, start=10)
    with pytest.raises(ValueError, match="no column"):
        backtest(fitted, etth1_ot.rename(columns={"OT": "x"}), start=600)
    with pytest.raises(ValueError, match="step"):
        backtest(fitted, etth1_ot, start=600, step=0)


def test_season_of():
    assert season_of("h") == 24 and season_of("15min") == 96 and season_of("W-SAT") == 52
    assert season_of("D") == 7 and season_of("unknown") is None
