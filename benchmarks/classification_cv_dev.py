"""Candidate classifier settings scored by cross-validation on *training* splits only.

The benchmark's largest gaps to MiniRocket are on its smallest training sets (ECGFiveDays 23
series, SonyAIBORobotSurface1 20, MoteStrain 20, TwoLeadECG 23), a regime the development data
sets of ``classification_dev.py`` (36 to 200 training series) do not represent. This script
scores candidates on those sets without reading their test splits: repeated stratified k-fold
cross-validation inside each TRAIN split (every training series predicted once per repeat by a
model that did not see it).

Usage::

    python benchmarks/classification_cv_dev.py --datasets ECGFiveDays --configs default diff \
        --out cv_a
    python benchmarks/classification_cv_dev.py --merge cv_*.rows.json --out classification_cv_dev
"""

from __future__ import annotations

import argparse
import sys
import time
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
    write_json,
    write_rows,
)
from classification import _set_threads  # noqa: E402

DATASETS = ["ECGFiveDays", "SonyAIBORobotSurface1", "MoteStrain", "TwoLeadECG", "FaceFour"]


def first_difference(X: np.ndarray) -> np.ndarray:
    """Each channel's first difference appended as a channel (0 at the first sample): a causal
    transform, as MultiRocket's second representation."""
    d = np.diff(X, axis=2, prepend=X[:, :, :1])
    return np.concatenate([X, d], axis=1)


#: candidates: (overrides of RWKVClassifier's defaults, transform of the series or None)
CONFIGS: dict[str, tuple[dict, object]] = {
    "default": ({}, None),
    "diff": ({}, first_difference),
    "bs16": ({"batch_size": 16}, None),
    "p4s2": ({"patch_len": 4, "stride": 2}, None),
    "layers1": ({"n_layers": 1}, None),
    # round 9: FCN's convolutions as a branch beside the encoder (LSTM-FCN's layout)
    "fcn": ({"conv_channels": (128, 256, 128)}, None),
    "fcn64": ({"conv_channels": (64, 128, 64)}, None),
}


def run(args) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold

    from rwkv_ts import RWKVClassifier
    from rwkv_ts.datasets import load_classification

    rows: list[dict] = []
    out = Path(args.out_dir) / f"{args.out}.rows.json"
    home = default_data_home()
    for name in args.datasets:
        X, y = load_classification(name, "train", data_home=home)
        X = np.asarray(X, dtype=np.float64)
        for config in args.configs:
            params, transform = CONFIGS[config]
            Xc = X if transform is None else transform(X)
            for repeat in range(args.repeats):
                folds = StratifiedKFold(args.folds, shuffle=True, random_state=repeat)
                pred = np.empty(len(y), dtype=object)
                t0 = time.perf_counter()
                for fit_idx, held_idx in folds.split(Xc[:, 0], y):
                    _set_threads(args.threads)
                    extra = {"max_epochs": args.max_epochs} if args.max_epochs else {}
                    est = RWKVClassifier(random_state=repeat, **params, **extra)
                    est.fit(Xc[fit_idx], y[fit_idx])
                    pred[held_idx] = est.predict(Xc[held_idx])
                rows.append(
                    {
                        "dataset": name,
                        "config": config,
                        "repeat": repeat,
                        "n_train": int(len(y)),
                        "cv_accuracy": float(np.mean(pred == y)),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(
                    f"{name:22s} {config:10s} repeat {repeat}: cv acc "
                    f"{rows[-1]['cv_accuracy']:.3f} ({rows[-1]['seconds']:.0f} s)",
                    flush=True,
                )
                write_rows(out, rows)
    return rows


def summarise(rows: list[dict]) -> tuple[list[dict], str]:
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    table = []
    for config in configs:
        cells = {}
        for d in datasets:
            accs = [r["cv_accuracy"] for r in rows if r["dataset"] == d and r["config"] == config]
            if accs:
                cells[d] = {"mean": float(np.mean(accs)), "repeats": len(accs)}
        complete = len(cells) == len(datasets)
        table.append(
            {
                "config": config,
                "overrides": {k: str(v) for k, v in CONFIGS[config][0].items()}
                if config in CONFIGS
                else None,
                "transform": None
                if config not in CONFIGS or CONFIGS[config][1] is None
                else CONFIGS[config][1].__name__,
                "per_dataset": cells,
                "mean": float(np.mean([c["mean"] for c in cells.values()])) if complete else None,
            }
        )
    lines = [
        "| config | " + " | ".join(datasets) + " | mean |",
        "|" + "---|" * (len(datasets) + 2),
    ]
    for t in table:
        cells = [
            f"{t['per_dataset'][d]['mean']:.3f}" if d in t["per_dataset"] else "-" for d in datasets
        ]
        mean = "-" if t["mean"] is None else f"{t['mean']:.3f}"
        lines.append(f"| {t['config']} | " + " | ".join(cells) + f" | {mean} |")
    return table, "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=0, help="override (smoke runs)")
    p.add_argument("--merge", nargs="+", help="merge the .rows.json files of earlier runs")
    p.add_argument("--out", default="classification_cv_dev")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.merge:
        rows = read_rows(args.merge)
    else:
        rows = run(args)
    table, md = summarise(rows)
    print(md)
    write_json(
        Path(args.out_dir) / f"{args.out}.json",
        {
            "benchmark": "classification_cv_dev",
            "command": command_line(),
            "date": now(),
            "machine": machine(),
            "protocol": "repeated stratified k-fold cross-validation inside the TRAIN split; "
            "test splits not read",
            "summary": table,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
