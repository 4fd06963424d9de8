"""Choose the estimator's training defaults on ETT *validation* parts (test parts never read).

Each configuration is fitted on the train part of each dataset with early stopping on the standard
validation windows (the protocol of ``forecast_ett.py``); the score is the best validation MSE
(scaled data), averaged over the datasets. Test windows are not loaded by this script: the chosen
defaults are then measured on the test parts by ``forecast_ett.py``.

    python benchmarks/ett_validation_sweep.py --datasets ETTh1 ETTh2 --budget-s 420
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402
from forecast_ett import patching  # noqa: E402

from rwkv_ts import RWKVForecaster  # noqa: E402
from rwkv_ts.datasets import load_ett  # noqa: E402

#: round 7 (windowed) and round 8 (streamable): the recipes of forecast_ett.py
CANDIDATES_R7 = {
    "d16_auto_b896_lr3e-4_cycle": dict(
        linear_skip="auto",
        d_model=16,
        head_size=16,
        batch_size=896,
        learning_rate=3e-4,
        cycle="auto",
    ),
    "stream_d16_b128_cycle": dict(
        norm="causal", head="last", d_model=16, head_size=16, batch_size=128, cycle="auto"
    ),
}
CANDIDATES = {
    "lr1e-3_do0.1": dict(learning_rate=1e-3, dropout=0.1),
    "lr3e-4_do0.1": dict(learning_rate=3e-4, dropout=0.1),
    "lr1e-4_do0.1": dict(learning_rate=1e-4, dropout=0.1),
    "lr3e-4_do0.3": dict(learning_rate=3e-4, dropout=0.3),
    "lr1e-4_do0.3": dict(learning_rate=1e-4, dropout=0.3),
    "lr3e-4_do0.3_d64": dict(learning_rate=3e-4, dropout=0.3, d_model=64, head_size=16),
    # with the linear branch fitted by least squares before training (the estimator's default)
    "lr1e-4_do0.3_skip": dict(learning_rate=1e-4, dropout=0.3, linear_skip=True),
    "lr1e-4_do0.3_skip_d64": dict(learning_rate=1e-4, dropout=0.3, linear_skip=True, d_model=64),
    "lr1e-4_do0.3_skip_d32": dict(
        learning_rate=1e-4, dropout=0.3, linear_skip=True, d_model=32, head_size=16
    ),
    "lr1e-4_do0.3_skip_d16": dict(
        learning_rate=1e-4, dropout=0.3, linear_skip=True, d_model=16, head_size=16
    ),
    # round 4: the linear branch on the raw window (DLinear) instead of the normalised one
    "lr1e-4_do0.3_skipraw_d16": dict(
        learning_rate=1e-4, dropout=0.3, linear_skip="raw", d_model=16, head_size=16
    ),
    # round 5: the batch. It counts univariate windows: 128 is 7x fewer sequences a step than
    # PatchTST's 128 multivariate ETT windows, and ETTm's epochs take 1,862 steps at 128.
    "d16_auto_b128": dict(linear_skip="auto", d_model=16, head_size=16, batch_size=128),
    "d16_auto_b896": dict(linear_skip="auto", d_model=16, head_size=16, batch_size=896),
    "d16_auto_b896_lr3e-4": dict(
        linear_skip="auto", d_model=16, head_size=16, batch_size=896, learning_rate=3e-4
    ),
    # round 7: the daily cycle removed (residual cycle forecasting, cycle="auto")
    **CANDIDATES_R7,
    # round 9: an exponential moving average of the weights (ema_epochs: its time constant in
    # epochs) on both configurations of round 7/8
    **{
        f"{name}_ema{epochs:g}": CANDIDATES_R7[name] | {"ema_epochs": epochs}
        for name in CANDIDATES_R7
        for epochs in (0.5, 2.0)
    },
    # round 10: a robust training loss (absolute error, Huber) on both configurations of round
    # 7/8, validated and early-stopped by the squared error
    **{
        f"{name}_{loss}": CANDIDATES_R7[name] | {"loss": loss, "val_loss": "mse"}
        for name in CANDIDATES_R7
        for loss in ("mae", "huber")
    },
    # round 11: the streamable configuration's encoder reach and size (its TCN branch and
    # multi-scale shift are what its ETTh1 ablations credit): one more dilation / shift distance,
    # a third layer, a wider model
    **{
        f"stream_d16_b128_cycle_{tag}": CANDIDATES_R7["stream_d16_b128_cycle"] | change
        for tag, change in {
            "tcn8": dict(tcn_dilations=(1, 2, 4, 8)),
            "shift8": dict(shift_distances=(1, 2, 4, 8)),
            "tcn8_shift8": dict(tcn_dilations=(1, 2, 4, 8), shift_distances=(1, 2, 4, 8)),
            "layers3": dict(n_layers=3),
            "d32": dict(d_model=32),
        }.items()
    },
    # round 12: FreDF's frequency-domain term in the training loss (frequency_loss_weight) on
    # both configurations of forecast_ett.py (the windowed one with Huber's loss, round 10)
    **{
        f"{name}_freq{weight:g}": base | {"frequency_loss_weight": weight}
        for name, base in {
            "d16_auto_b896_lr3e-4_cycle_huber": CANDIDATES_R7["d16_auto_b896_lr3e-4_cycle"]
            | {"loss": "huber", "val_loss": "mse"},
            "stream_d16_b128_cycle": CANDIDATES_R7["stream_d16_b128_cycle"],
        }.items()
        for weight in (0.5, 0.8, 1.0)
    },
    # the streamable configuration (its batch counts lookback windows of its segments)
    "stream_d16_b128": dict(norm="causal", head="last", d_model=16, head_size=16, batch_size=128),
    "stream_d16_b896": dict(norm="causal", head="last", d_model=16, head_size=16, batch_size=896),
    "stream_d16_b896_lr3e-4": dict(
        norm="causal", head="last", d_model=16, head_size=16, batch_size=896, learning_rate=3e-4
    ),
}


def fit_frame(dataset: str, lookback: int, data_home) -> tuple[pd.DataFrame, float]:
    """Train + validation parts, z-scored by train statistics; the validation fraction that makes
    the estimator's chronological split hold exactly the standard validation windows."""
    data = load_ett(dataset, data_home=data_home, download=False)
    values = data.frame[data.channels].to_numpy(np.float64)
    (tr0, tr1), (_, va1) = data.borders["train"], data.borders["val"]
    mean, std = values[tr0:tr1].mean(axis=0), values[tr0:tr1].std(axis=0)
    frame = pd.DataFrame((values[tr0:va1] - mean) / std, columns=data.channels)
    frame.insert(0, "date", data.frame[data.time_column].iloc[tr0:va1].to_numpy())
    return frame, (va1 - tr1) / ((va1 - tr0) - lookback)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTh2"])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting runs")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="merge the JSON files of parallel runs into one table"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    runs = []
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge if p.is_file()]
        runs = [run for part in parts for run in part["runs"]]
        args.candidates = list(dict.fromkeys(r["candidate"] for r in runs))
        args.datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    frames = (
        {}
        if args.merge
        else {d: fit_frame(d, args.lookback, default_data_home()) for d in args.datasets}
    )
    for name in [] if args.merge else args.candidates:
        for dataset, (frame, val_fraction) in frames.items():
            if time.perf_counter() - started > args.budget_s:
                break
            patch_len, stride = patching(dataset)
            params = (
                dict(
                    horizon=args.horizon,
                    lookback=args.lookback,
                    patch_len=patch_len,
                    stride=stride,
                    max_epochs=args.max_epochs,
                    batch_size=args.batch_size,
                    val_fraction=val_fraction,
                    random_state=0,
                    verbose=False,
                )
                | CANDIDATES[name]
            )
            t0 = time.perf_counter()
            est = RWKVForecaster(**params).fit(frame)
            vals = [h["val_loss"] for h in est.history_]
            run = {
                "candidate": name,
                "dataset": dataset,
                # the weights kept: an epoch's, or the fitted linear branch's (best_epoch -1)
                "best_val_mse": float(est.best_val_loss_),
                "best_epoch": est.best_epoch_,
                "epochs": est.n_epochs_,
                "val_curve": vals,
                "fit_seconds": time.perf_counter() - t0,
                "params": CANDIDATES[name],
            }
            runs.append(run)
            print(
                json.dumps(
                    {
                        k: run[k]
                        for k in (
                            "candidate",
                            "dataset",
                            "best_val_mse",
                            "best_epoch",
                            "fit_seconds",
                        )
                    }
                ),
                flush=True,
            )
    table = {}
    for run in runs:
        table.setdefault(run["candidate"], {})[run["dataset"]] = run["best_val_mse"]
    summary = {
        "title": "ETT validation sweep of training defaults (test parts not read)",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out_dir", "merge")},
        "runs": runs,
        "mean_best_val_mse": {
            c: float(np.mean(list(d.values())))
            for c, d in table.items()
            if len(d) == len(args.datasets)
        },
    }
    stem = (
        "ett_validation_sweep"
        if len(runs) != 1
        else f"sweep_{runs[0]['candidate']}_{runs[0]['dataset']}"
    )
    write_json(args.out_dir / f"{stem}.json", summary)
    lines = [
        f"# {summary['title']}",
        "",
        f"- command: `{summary['command']}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine'].get('gpu', summary['machine']['cpu'])}",
        f"- lookback {args.lookback}, horizon {args.horizon}, batch {args.batch_size}, "
        f"max {args.max_epochs} epochs, early stopping on the standard validation windows",
        "",
        "| candidate | " + " | ".join(args.datasets) + " | mean |",
        "|---|" + "---|" * (len(args.datasets) + 1),
    ]
    for cand, scores in table.items():
        cells = [f"{scores[d]:.4f}" if d in scores else "-" for d in args.datasets]
        mean = summary["mean_best_val_mse"].get(cand)
        mean_cell = "-" if mean is None else f"{mean:.4f}"
        lines.append(f"| {cand} | " + " | ".join(cells) + f" | {mean_cell} |")
    (args.out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
