"""Plots: forecasts with intervals, backtest errors by horizon, training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from rwkv_ts.plot import plot_backtest_errors, plot_forecast, plot_training_curves  # noqa: E402


@pytest.fixture
def co2():
    from rwkv_ts.datasets import load_co2

    data = load_co2()
    return data.frame["date"], data.frame["co2"].to_numpy()


def test_forecast_with_history_actual_and_intervals(co2, tmp_path):
    times, values = co2
    hist, fut = slice(2000, 2100), slice(2100, 2152)
    model = values[fut] + 0.5
    path = tmp_path / "f.png"
    fig = plot_forecast(
        times[hist],
        values[hist],
        times[fut],
        {"model": model, "naive": np.full(52, values[2099])},
        actual=values[fut],
        intervals={"80%": (model - 1.0, model + 1.0), "95%": (model - 2.0, model + 2.0)},
    )
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:4] == ["history", "actual", "model", "naive"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [b.get_label() for b in bands] == ["80%", "95%"]
    # the 80% band spans exactly lower..upper of the forecast
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx((model - 1.0).min())
    assert ys.max() == pytest.approx((model + 1.0).max())
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 10_000


def test_forecast_without_intervals_has_no_band(co2, tmp_path):
    times, values = co2
    path = tmp_path / "f.png"
    plot_forecast(times[:50], values[:50], times[50:60], {"m": values[50:60]}, path=path)
    assert path.stat().st_size > 5_000


def test_backtest_errors_by_horizon_draws_each_method(tmp_path):
    errors = {"RWKV-TS": np.linspace(1.0, 2.0, 12), "naive": np.linspace(0.5, 4.0, 12)}
    path = tmp_path / "e.png"
    fig = plot_backtest_errors(errors, metric="MAE")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["RWKV-TS", "naive"]
    np.testing.assert_array_equal(lines[1].get_xdata(), np.arange(1, 13))
    np.testing.assert_allclose(lines[1].get_ydata(), errors["naive"])
    assert fig.axes[0].get_xlabel() == "horizon step"
    plt.close(fig)
    plot_backtest_errors(errors, path=path)
    assert path.stat().st_size > 5_000


def test_training_curves_from_a_real_fit(tmp_path):
    from rwkv_ts import RWKVForecaster
    from rwkv_ts.datasets import load_co2

    est = RWKVForecaster(
        horizon=8, lookback=32, patch_len=8, stride=4, d_model=8, head_size=8, n_layers=1,
        max_epochs=3, verbose=False, random_state=0, accelerator="cpu",
    ).fit(load_co2().frame.iloc[:400])  # fmt: skip
    fig = plot_training_curves(est.history_, best_epoch=est.best_epoch_)
    ax = fig.axes[0]
    train, val = ax.get_lines()[:2]
    assert train.get_label() == "training" and val.get_label() == "validation"
    np.testing.assert_allclose(train.get_ydata(), [h["train_loss"] for h in est.history_])
    np.testing.assert_allclose(val.get_ydata(), [h["val_loss"] for h in est.history_])
    assert ax.get_lines()[2].get_xdata()[0] == est.best_epoch_
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([])
