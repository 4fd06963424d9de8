"""Tuning: an Optuna search on ETTh1's training and validation part (never its test part), with
pruning on the per-epoch validation loss and a journal file that several processes can share:
start this script twice at once and both work on one study.

    python examples/tune_optuna.py [--quick]
"""

from __future__ import annotations

import os

from _quick import parse
from optuna.distributions import FloatDistribution

from rwkv_ts import RWKVForecaster
from rwkv_ts.datasets import load_ett
from rwkv_ts.tune import default_search_space, tune

args = parse(__doc__)
data = load_ett("ETTh1")
fit_part = data.frame.iloc[: data.borders["val"][1]][["date", "OT"]]
if args.quick:
    fit_part = fit_part.iloc[:1500]

est = RWKVForecaster(
    horizon=24, lookback=96, max_epochs=2 if args.quick else 10, random_state=0, verbose=False
)
space = default_search_space(est)
if args.quick:  # small models only
    space = {
        "d_model": [8, 16],
        "head_size": [8],
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    }
best, study = tune(
    est,
    fit_part,
    n_trials=3 if args.quick else 40,
    search_space=space,
    storage=os.path.join(args.out, "etth1_study.log"),
    study_name="etth1-ot-h24-quick" if args.quick else "etth1-ot-h24",
)
print(
    f"{len(study.trials)} trials; best validation MSE {study.best_value:.4f}: {study.best_params}"
)
best.save(os.path.join(args.out, "etth1_best.rwkvts"))
