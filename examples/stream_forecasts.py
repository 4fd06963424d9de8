"""Streaming: train a forecaster in the streamable configuration (causal normalisation, a head on
the last state), then feed ETTh1 hour by hour as it would arrive and read each new forecast at once.
The stream's answers equal batch ``predict`` on the same history.

    python examples/stream_forecasts.py [--quick]

ETTh1 is read from the data home ($RWKV_TS_DATA, else the user cache; downloaded when missing).
"""

from __future__ import annotations

import time

import numpy as np
from _quick import parse

from rwkv_ts import RWKVForecaster
from rwkv_ts.datasets import load_ett

args = parse(__doc__)
data = load_ett("ETTh1")
frame = data.frame[["date", "OT"]]
n_fit = 1500 if args.quick else data.borders["val"][1]
est = RWKVForecaster(
    horizon=24,
    lookback=96,
    norm="causal",
    head="last",
    d_model=16 if args.quick else 64,
    head_size=8 if args.quick else 16,
    n_layers=1 if args.quick else 2,
    max_epochs=1 if args.quick else 10,
    random_state=0,
    verbose=not args.quick,
).fit(frame.iloc[:n_fit])

stream = est.stream()  # continues the training series
n_new = 48 if args.quick else 500
new = frame["OT"].to_numpy()[n_fit : n_fit + n_new]
started = time.perf_counter()
for value in new:
    forecast = stream.update(np.array([value]))  # (24, 1): the next 24 hours
elapsed = time.perf_counter() - started
print(f"{n_new} samples streamed, {1e3 * elapsed / n_new:.2f} ms per sample ({stream.kind})")

batch = est.predict(frame.iloc[: n_fit + n_new])["OT"].to_numpy()
print(f"max |stream - predict| = {np.abs(forecast[:, 0] - batch).max():.2e}")
assert np.allclose(forecast[:, 0], batch, atol=1e-4)
