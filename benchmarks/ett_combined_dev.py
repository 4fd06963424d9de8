"""Is the mean of the two ETT configurations' forecasts better than either? Chosen on validation.

The windowed configuration of ``forecast_ett.py`` ("accurate": instance normalisation, flatten
head, least-squares linear branch) and the streamable one ("streaming": causal normalisation,
last-state head) make different errors: on ETTh1 the windowed one keeps its linear start and the
streamable one forecasts with its encoder, and the validation parts rank them differently from the
test parts (``ett_validation_sweep*.md``). Averaging two forecasts whose errors are not perfectly
correlated lowers the squared error below their mean; whether it goes below the better one is
what this script measures, on the validation windows (the decision) and the test windows (the
report), from the same two fitted models per (dataset, horizon, seed).

Decision rule, fixed before the first run: the average becomes a configuration of the benchmark
if its validation MSE, averaged over the (dataset, horizon) pairs run, is lower than each
configuration's alone and it is lower than both on most pairs.

Usage::

    python benchmarks/ett_combined_dev.py --datasets ETTh1 --horizons 96 --seeds 0 --out a
    python benchmarks/ett_combined_dev.py --merge a.rows.json b.rows.json --out ett_combined_dev
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
    read_rows,
    sliding_windows,
    write_json,
    write_rows,
)
from forecast_ett import FULL_HORIZONS, fit_on_train, prepare  # noqa: E402

CONFIGS = ("accurate", "streaming")


def _windows(prep: dict, part: str, lookback: int, horizon: int, est) -> tuple:
    start, end = prep[part]
    x, y = sliding_windows(prep["scaled"][start:end], lookback, horizon)
    times = prep["data"].frame[prep["data"].time_column]
    phases = None if est.cycle_ is None else est.cycle_phases(times.iloc[start : start + len(x)])
    return x, y, phases


def run(args) -> list[dict]:
    rows: list[dict] = []
    out = Path(args.out_dir) / f"{args.out}.rows.json"
    home = default_data_home()
    for dataset in args.datasets:
        prep = prepare(dataset, args.lookback, home)
        for horizon in args.horizons:
            for seed in args.seeds:
                forecasts: dict[str, dict[str, np.ndarray]] = {}
                truth: dict[str, np.ndarray] = {}
                fit_seconds = {}
                for config in CONFIGS:
                    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
                    est, fit_seconds[config] = fit_on_train(
                        prep, config, dataset, args.lookback, horizon, seed, overrides=overrides
                    )
                    forecasts[config] = {}
                    for part in ("val", "test"):
                        x, y, phases = _windows(prep, part, args.lookback, horizon, est)
                        forecasts[config][part] = est.forecast_windows(x, phases=phases)
                        truth[part] = y
                row = {
                    "dataset": dataset,
                    "lookback": args.lookback,
                    "horizon": horizon,
                    "seed": seed,
                    "fit_seconds": fit_seconds,
                }
                for part in ("val", "test"):
                    preds = {c: forecasts[c][part] for c in CONFIGS}
                    preds["average"] = 0.5 * (preds["accurate"] + preds["streaming"])
                    for name, pred in preds.items():
                        row[f"{part}_mse_{name}"] = float(np.mean((pred - truth[part]) ** 2))
                        row[f"{part}_mae_{name}"] = float(np.mean(np.abs(pred - truth[part])))
                    errors = [(preds[c] - truth[part]).ravel() for c in CONFIGS]
                    row[f"{part}_error_correlation"] = float(np.corrcoef(*errors)[0, 1])
                rows.append(row)
                print(
                    f"{dataset} H{horizon} s{seed}: val "
                    + " ".join(f"{c} {row[f'val_mse_{c}']:.4f}" for c in (*CONFIGS, "average")),
                    flush=True,
                )
                write_rows(out, rows)
    return rows


NAMES = (*CONFIGS, "average")


def summarise(rows: list[dict]) -> tuple[dict, str]:
    pairs = sorted({(r["dataset"], r["horizon"]) for r in rows})
    cells = {}
    for part in ("val", "test"):
        for dataset, horizon in pairs:
            rs = [r for r in rows if r["dataset"] == dataset and r["horizon"] == horizon]
            cells[(part, dataset, horizon)] = {
                **{n: float(np.mean([r[f"{part}_mse_{n}"] for r in rs])) for n in NAMES},
                "correlation": float(np.mean([r[f"{part}_error_correlation"] for r in rs])),
                "seeds": len(rs),
            }
    val = [cells[("val", d, h)] for d, h in pairs]
    mean_val = {n: float(np.mean([c[n] for c in val])) for n in NAMES}
    wins = sum(c["average"] < min(c["accurate"], c["streaming"]) for c in val)
    adopted = mean_val["average"] < min(mean_val["accurate"], mean_val["streaming"]) and (
        wins > len(val) / 2
    )
    lines = []
    for part, title in (("val", "Validation windows"), ("test", "Test windows")):
        lines += [
            f"### {title} (MSE, mean over seeds)",
            "",
            "| dataset | horizon | seeds | windowed | streamable | average | error correlation |",
            "|---|---|---|---|---|---|---|",
        ]
        for dataset, horizon in pairs:
            c = cells[(part, dataset, horizon)]
            lines.append(
                f"| {dataset} | {horizon} | {c['seeds']} | {c['accurate']:.4f} | "
                f"{c['streaming']:.4f} | {c['average']:.4f} | {c['correlation']:.3f} |"
            )
        for dataset in sorted({d for d, _ in pairs}):
            hs = [h for d, h in pairs if d == dataset]
            if tuple(hs) == FULL_HORIZONS:
                avg = {n: np.mean([cells[(part, dataset, h)][n] for h in hs]) for n in NAMES}
                lines.append(
                    f"| **{dataset}** | **4-horizon mean** | | {avg['accurate']:.4f} | "
                    f"{avg['streaming']:.4f} | {avg['average']:.4f} | |"
                )
        lines.append("")
    lines.append(
        f"Decision (validation): mean MSE windowed {mean_val['accurate']:.4f}, streamable "
        f"{mean_val['streaming']:.4f}, average {mean_val['average']:.4f}; the average is below "
        f"both on {wins} of {len(val)} pairs: **{'adopted' if adopted else 'not adopted'}**."
    )
    summary = {
        "pairs": [list(p) for p in pairs],
        "cells": {f"{p}|{d}|{h}": c for (p, d, h), c in cells.items()},
        "mean_validation_mse": mean_val,
        "validation_wins": wins,
        "adopted": adopted,
    }
    return summary, "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTh2"])
    p.add_argument("--horizons", nargs="+", type=int, default=list(FULL_HORIZONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--lookback", type=int, default=336)
    p.add_argument("--max-epochs", type=int, default=0, help="override (smoke runs)")
    p.add_argument("--merge", nargs="+", help="merge the .rows.json files of earlier runs")
    p.add_argument("--out", default="ett_combined_dev")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    rows = read_rows(args.merge) if args.merge else run(args)
    summary, md = summarise(rows)
    print(md)
    write_json(
        Path(args.out_dir) / f"{args.out}.json",
        {
            "benchmark": "ett_combined_dev",
            "command": command_line(),
            "date": now(),
            "machine": machine(),
            "summary": summary,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
