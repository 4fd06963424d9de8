"""Forecasting: train on Mauna Loa weekly CO2 (embedded, no download), backtest the test part
against naive baselines, plot the forecast and the errors by horizon, save and reload the model.

    python examples/forecast_co2.py            # about two minutes on two CPU cores
    python examples/forecast_co2.py --quick    # a few seconds
"""

from __future__ import annotations

import os

import numpy as np
from _quick import parse

from rwkv_ts import RWKVForecaster, load
from rwkv_ts.backtest import backtest
from rwkv_ts.datasets import load_co2
from rwkv_ts.plot import plot_backtest_errors, plot_forecast, plot_training_curves

args = parse(__doc__)
data = load_co2()
frame = data.frame
fit_end = data.borders["val"][1]
test_start, test_end = data.borders["test"]
if args.quick:
    frame = frame.iloc[: fit_end + 200]
    test_end = len(frame)

est = RWKVForecaster(
    horizon=52,
    lookback=208,
    d_model=16 if args.quick else 64,
    head_size=8 if args.quick else 16,
    n_layers=1 if args.quick else 2,
    max_epochs=2 if args.quick else 30,
    patience=5,
    random_state=0,
    verbose=not args.quick,
)
est.fit(frame.iloc[:fit_end])  # training and validation part only
plot_training_curves(
    est.history_, best_epoch=est.best_epoch_, path=os.path.join(args.out, "co2_training.png")
)

result = backtest(est, frame, start=test_start, end=test_end, step=4, season=52)
for name, m in result.metrics().items():
    print(f"{name:<16} MSE {m['mse']:8.3f}  MAE {m['mae']:6.3f} ppm")
plot_backtest_errors(
    result.errors_by_horizon("mae"),
    metric="MAE (ppm)",
    path=os.path.join(args.out, "co2_errors.png"),
)

last = int(result.origins[-1])
times = frame["date"]
plot_forecast(
    times.iloc[last - 156 : last],
    frame["co2"].to_numpy()[last - 156 : last],
    times.iloc[last : last + 52],
    {name: f[-1, :, 0] for name, f in result.forecasts.items()},
    actual=result.actual[-1, :, 0],
    ylabel="CO2 (ppm)",
    path=os.path.join(args.out, "co2_forecast.png"),
)

path = os.path.join(args.out, "co2.rwkvts")
est.save(path)
assert np.allclose(load(path).predict()["co2"], est.predict()["co2"])
print(f"saved {path}; plots in {args.out}")
