"""The main job on the embedded default: train on Mauna Loa weekly CO2, forecast, score, plot.

Run with ``rwkv-ts demo`` (or ``python -m rwkv_ts demo``). Needs no download: the data ships with
the package.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rwkv_ts.datasets import load_co2
from rwkv_ts.forecaster import RWKVForecaster
from rwkv_ts.metrics import mae, mse, naive_forecast, seasonal_naive_forecast
from rwkv_ts.plot import plot_forecast

HORIZON = 52
LOOKBACK = 208
SEASON = 52


def run_demo(
    out: str | Path = "forecast.png", *, max_epochs: int = 30, verbose: bool = True
) -> dict:
    """Fit on the train and validation part of the CO2 series, backtest on its test part, write a
    plot.

    Forecasts are made from every 4th week of the test part (each a full 52-week horizon inside the
    test part) and compared with the naive and seasonal-naive (52-week) forecasts from the same
    origins.

    Returns
    -------
    dict
        The metrics per method, the number of origins, the training time and the plot's path.
    """
    data = load_co2()
    frame = data.frame
    target = data.target
    fit_end = data.borders["val"][1]
    test_start, test_end = data.borders["test"]

    est = RWKVForecaster(
        horizon=HORIZON,
        lookback=LOOKBACK,
        patch_len=16,
        stride=8,
        d_model=64,
        n_layers=2,
        head_size=16,
        max_epochs=max_epochs,
        batch_size=64,
        learning_rate=1e-3,
        patience=5,
        random_state=0,
        verbose=verbose,
    )
    started = time.perf_counter()
    est.fit(frame.iloc[:fit_end])
    fit_seconds = time.perf_counter() - started

    values = frame[target].to_numpy()
    origins = list(range(test_start, test_end - HORIZON + 1, 4))
    truth, predictions = [], {"RWKV-TS": [], "seasonal naive": [], "naive": []}
    for origin in origins:
        history = frame.iloc[origin - LOOKBACK : origin]
        predictions["RWKV-TS"].append(est.predict(history)[target].to_numpy())
        past = values[:origin, None]
        predictions["seasonal naive"].append(seasonal_naive_forecast(past, HORIZON, SEASON)[:, 0])
        predictions["naive"].append(naive_forecast(past, HORIZON)[:, 0])
        truth.append(values[origin : origin + HORIZON])
    truth_arr = np.stack(truth)
    metrics = {
        name: {"mse": mse(truth_arr, np.stack(p)), "mae": mae(truth_arr, np.stack(p))}
        for name, p in predictions.items()
    }

    last = origins[-1]
    times = frame[data.time_column]
    shown = slice(last - 3 * SEASON, last)
    plot_forecast(
        times.iloc[shown],
        values[shown],
        times.iloc[last : last + HORIZON],
        {name: p[-1] for name, p in predictions.items()},
        actual=truth_arr[-1],
        title=f"Mauna Loa weekly CO2: {HORIZON}-week forecast from {times.iloc[last]:%Y-%m-%d}",
        ylabel="CO2 (ppm)",
        path=out,
    )
    return {
        "metrics": metrics,
        "n_origins": len(origins),
        "fit_seconds": fit_seconds,
        "n_epochs": est.n_epochs_,
        "n_parameters": est.n_parameters_,
        "plot": str(Path(out).resolve()),
    }


def format_report(result: dict) -> str:
    """A plain-text table of :func:`run_demo`'s result."""
    base = result["metrics"]["seasonal naive"]["mse"]
    lines = [
        f"Mauna Loa weekly CO2, test part, {result['n_origins']} forecast origins, "
        f"horizon {HORIZON} weeks",
        f"{'method':<16}{'MSE (ppm^2)':>13}{'MAE (ppm)':>11}{'MSE vs seasonal naive':>24}",
    ]
    for name, m in result["metrics"].items():
        lines.append(f"{name:<16}{m['mse']:>13.3f}{m['mae']:>11.3f}{m['mse'] / base:>24.2f}")
    lines.append(
        f"trained {result['n_epochs']} epochs in {result['fit_seconds']:.0f} s "
        f"({result['n_parameters']:,} parameters); plot: {result['plot']}"
    )
    return "\n".join(lines)
