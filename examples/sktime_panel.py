"""sktime: one global RWKV-TS model over a panel of series (four ETTh1 channels as four series),
evaluated with sktime's own expanding-window backtest, then updated with new data without
retraining.

    python examples/sktime_panel.py [--quick]
"""

from __future__ import annotations

import pandas as pd
from _quick import parse
from sktime.forecasting.model_evaluation import evaluate
from sktime.performance_metrics.forecasting import MeanAbsoluteError
from sktime.split import ExpandingWindowSplitter

from rwkv_ts.datasets import load_ett
from rwkv_ts.sktime import RWKVSktimeForecaster

args = parse(__doc__)
data = load_ett("ETTh1")
n = 1200 if args.quick else data.borders["val"][1]
frame = data.frame.iloc[:n]
time = pd.PeriodIndex(frame["date"], freq="h")
panel = pd.concat(
    {
        c: pd.DataFrame({"load": frame[c].to_numpy()}, index=time)
        for c in ["HUFL", "MUFL", "LUFL", "OT"]
    },
    names=["channel", "time"],
)

f = RWKVSktimeForecaster(
    lookback=96,
    d_model=16 if args.quick else 64,
    head_size=8 if args.quick else 16,
    n_layers=1 if args.quick else 2,
    max_epochs=1 if args.quick else 10,
    random_state=0,
)
cv = ExpandingWindowSplitter(fh=list(range(1, 25)), initial_window=n - 48, step_length=24)
scores = evaluate(f, cv, panel, scoring=MeanAbsoluteError(), return_data=False)
print(scores[["test_MeanAbsoluteError", "fit_time"]])

train = panel.groupby(level=0).head(n - 24)
f.fit(train, fh=list(range(1, 25)))
f.update(panel.groupby(level=0).tail(24))  # the last day arrives: no retraining
print(f.predict().groupby(level=0).head(2))
