"""Does averaging several seeds' forecasts help on ETT? Measured on the *validation* parts only.

For each (dataset, horizon) the ETT recipe of ``forecast_ett.py`` (one configuration) is fitted
once per seed on the train part, with early stopping on the validation part as there; each
fitted forecaster then forecasts every validation window, and the script scores each seed and
the mean of the seeds' forecasts (an ensemble of that many members). The test parts are not
read. Both scores sit on the windows early stopping also looked at, so both are a little
optimistic; the comparison between them is what this measures.

    python benchmarks/ett_seed_ensemble_dev.py --datasets ETTh1 --horizons 96 336 \
        --config streaming --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    command_line,
    default_data_home,
    machine,
    now,
    sliding_windows,
    write_json,
)
from forecast_ett import CONFIGS, fit_on_train, prepare  # noqa: E402


def validation_forecasts(
    dataset: str, lookback: int, horizon: int, config: str, seed: int, prep: dict, accelerator: str
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One seed: the fitted forecaster's forecasts of every validation window, the truths, and
    facts of the fit."""
    est, fit_seconds = fit_on_train(prep, config, dataset, lookback, horizon, seed, accelerator)
    scaled = prep["scaled"]
    times = prep["data"].frame[prep["data"].time_column]
    va0, va1 = prep["val"]
    x_val, y_val = sliding_windows(scaled[va0:va1], lookback, horizon)
    phases = None if est.cycle_ is None else est.cycle_phases(times.iloc[va0 : va0 + len(x_val)])
    pred = est.forecast_windows(x_val, phases=phases)
    facts = {
        "seed": seed,
        "fit_seconds": fit_seconds,
        "epochs": est.n_epochs_,
        "best_epoch": est.best_epoch_,
        "best_val_loss": float(est.best_val_loss_),
    }
    return pred, y_val, facts


def markdown(summary: dict) -> str:
    lines = [
        f"# {summary['title']}",
        "",
        f"- command: `{summary['command']}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine']}",
        f"- configuration: {summary['config']} (the ETT recipe of `forecast_ett.py`), lookback "
        f"{summary['lookback']}, seeds {summary['seeds']}",
        "- cells: MSE on every validation window (scaled data); test parts not read",
        "",
        "| dataset | horizon | each seed | mean of the seeds | ensemble (mean forecast) | "
        "ensemble / mean of the seeds |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        each = ", ".join(f"{m:.4f}" for m in row["seed_mse"])
        mean = float(np.mean(row["seed_mse"]))
        lines.append(
            f"| {row['dataset']} | {row['horizon']} | {each} | {mean:.4f} | "
            f"{row['ensemble_mse']:.4f} | {row['ensemble_mse'] / mean:.4f} |"
        )
    if summary.get("notes"):
        lines += ["", "## Notes", "", summary["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["ETTh1"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[96, 336])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--config", default="streaming", choices=sorted(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--name", default="ett_seed_ensemble_dev")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("an ensemble needs at least two seeds")
    data_home = default_data_home()
    rows = []
    for dataset in args.datasets:
        prep = prepare(dataset, args.lookback, data_home)
        for horizon in args.horizons:
            preds, fits, truth = [], [], None
            for seed in args.seeds:
                pred, truth, facts = validation_forecasts(
                    dataset, args.lookback, horizon, args.config, seed, prep, args.accelerator
                )
                facts["val_mse"] = float(np.mean((pred - truth) ** 2))
                preds.append(pred)
                fits.append(facts)
                print(f"{dataset} H={horizon} {facts}", flush=True)
            ensemble = np.mean(preds, axis=0)
            rows.append(
                {
                    "dataset": dataset,
                    "horizon": horizon,
                    "seed_mse": [f["val_mse"] for f in fits],
                    "ensemble_mse": float(np.mean((ensemble - truth) ** 2)),
                    "fits": fits,
                }
            )
            print(f"{dataset} H={horizon}: ensemble {rows[-1]['ensemble_mse']:.4f}", flush=True)
    summary = {
        "title": "ETT: seed ensemble against single seeds, validation parts",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "config": args.config,
        "lookback": args.lookback,
        "seeds": args.seeds,
        "rows": rows,
    }
    write_json(RESULTS / f"{args.name}.json", summary)
    (RESULTS / f"{args.name}.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
