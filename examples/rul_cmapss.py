"""Remaining useful life: NASA C-MAPSS FD001, a target after every engine cycle (RUL capped at
125), scored on the last cycle of every test unit by RMSE and the PHM08 score.

    python examples/rul_cmapss.py [--quick] [--out DIR]

Writes ``rul_unit.png`` (the estimate after every cycle of the first test unit) into ``--out``.

The files are read from the data home ($RWKV_TS_DATA, else the user cache).
"""

from __future__ import annotations

import os

import numpy as np
from _quick import parse

from rwkv_ts import RWKVRegressor
from rwkv_ts.datasets import load_cmapss
from rwkv_ts.metrics import phm08_score, rmse
from rwkv_ts.plot import plot_rul

args = parse(__doc__)
prepared = load_cmapss("FD001").prepare(rul_cap=125)
X, y, groups = prepared.X_train, prepared.y_train, prepared.groups_train
if args.quick:
    keep = np.isin(groups, np.unique(groups)[:20])
    X = [x for x, k in zip(X, keep, strict=True) if k]
    y = [t for t, k in zip(y, keep, strict=True) if k]
    groups = groups[keep]

# a TCN reaching 63 cycles back: chosen on held-out training units (benchmarks/results/rul_dev.md)
reg = RWKVRegressor(
    d_model=16 if args.quick else 64,
    n_layers=1 if args.quick else 2,
    tcn_dilations=(1, 2) if args.quick else (1, 2, 4, 8, 16, 32),
    max_epochs=2 if args.quick else 40,
    random_state=0,
).fit(X, y, groups=groups)
estimate = reg.predict(prepared.X_test)
truth = prepared.y_test
print(
    f"FD001 test, {len(truth)} units: RMSE {rmse(truth, estimate):.2f} cycles, "
    f"PHM08 score {phm08_score(truth, estimate):.0f}"
)

# the estimate after every cycle of the first test unit, its true RUL counted back from the last
per_cycle = reg.predict_steps(prepared.X_test[:1])[0]
plot_rul(
    per_cycle, true_rul=truth[0], cap=125, title=f"FD001 test unit {prepared.units_test[0]}",
    path=os.path.join(args.out, "rul_unit.png"),
)  # fmt: skip
