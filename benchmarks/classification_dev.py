"""Choosing RWKVClassifier's defaults on development data sets that the benchmark does not use.

The classification benchmark (``classification.py``) scores the data sets in
``ts_classification``; defaults chosen on their test splits would be tuned on the test. This
script scores candidate settings on other UCR/UEA data sets, those that sktime ships
(GunPoint, ArrowHead, ItalyPowerDemand, OSULeaf, BasicMotions: train/test splits as published),
with MiniRocket beside them, and reports each candidate's mean accuracy over those data sets for
single models and for the mean of the seeds' class probabilities (an ensemble).

With ``--train-size N`` every seed draws its own stratified subsample of N training series (the
seed draws it and seeds the model) and scores it on the whole test split: the regime of the
benchmark's smallest sets (20-24 training series), with a test split large enough to tell
candidates apart (cross-validation inside a 23-series training split predicts 23 series).

Usage::

    python benchmarks/classification_dev.py --configs default lr3e-4 --seeds 0 1 2 --out dev_a
    python benchmarks/classification_dev.py --merge dev_*.rows.json --out classification_dev
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine, now, read_rows, write_json, write_rows  # noqa: E402
from classification import _set_threads  # noqa: E402

DATASETS = ["GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "BasicMotions"]

#: candidate settings: overrides of RWKVClassifier's defaults
CONFIGS: dict[str, dict] = {
    "default": {},
    "lr3e-4": {"learning_rate": 3e-4},
    "lr3e-3": {"learning_rate": 3e-3},
    "d32": {"d_model": 32},
    "d128": {"d_model": 128},
    "dropout0.4": {"dropout": 0.4},
    "wd0.1": {"weight_decay": 0.1},
    "patch8s4": {"patch_len": 8, "stride": 4},
    "patch2s1": {"patch_len": 2, "stride": 1},
    "pool-mean": {"pooling": "mean"},
    "tcn-wide": {"tcn_dilations": (1, 2, 4, 8, 16)},
    "layers1": {"n_layers": 1},
    "layers3": {"n_layers": 3},
    "epochs300": {"max_epochs": 300, "patience": 60},
    # round 2: the two best single changes of round 1 together
    "p8s4-d128": {"patch_len": 8, "stride": 4, "d_model": 128},
    # round 3: around it
    "p16s8-d128": {"patch_len": 16, "stride": 8, "d_model": 128},
    "p8s4-d256": {"patch_len": 8, "stride": 4, "d_model": 256},
    "p8s4-d128-tcn-wide": {
        "patch_len": 8,
        "stride": 4,
        "d_model": 128,
        "tcn_dilations": (1, 2, 4, 8, 16),
    },
    "p8s4-d128-lr3e-3": {"patch_len": 8, "stride": 4, "d_model": 128, "learning_rate": 3e-3},
    # round 5 (around the defaults of round 3): how long and in what batches tiny sets train
    "ep30": {"max_epochs": 30},
    "ep50": {"max_epochs": 50},
    "bs16": {"batch_size": 16},
    "bs16-ep200": {"batch_size": 16, "max_epochs": 200},
    # round 6: the trend of round 5 (30 < 50 < 100 epochs) continued
    "ep200": {"max_epochs": 200},
    "ep300": {"max_epochs": 300},
    # round 7: an exponential moving average of the weights (time constant in epochs): the
    # tiny sets train at batch 2-6, whose last steps are noisy
    "ema5": {"ema_epochs": 5.0},
    "ema20": {"ema_epochs": 20.0},
    # round 9: FCN's convolutions (Wang et al. 2017) as a branch beside the encoder, their
    # running mean concatenated with the pooled tokens (LSTM-FCN's layout, Karim et al. 2018)
    "fcn": {"conv_channels": (128, 256, 128)},
    "fcn64": {"conv_channels": (64, 128, 64)},
    # round 9c: settings for 24 training series (--train-size 24)
    "d64": {"d_model": 64},
    "lr1e-3": {"learning_rate": 1e-3},
    "d256": {"d_model": 256},
    # round 10: data augmentation (rwkv_ts.data.augment; Iwana & Uchida 2021's survey)
    "aug-slice": {"augment": "slice"},
    "aug-warp": {"augment": "warp"},
    "aug-slice+warp": {"augment": "slice+warp"},
    "aug-scale+jitter": {"augment": "scale+jitter"},
    "aug-all": {"augment": "slice+warp+scale+jitter"},
    # round 11 (24-series subsamples): the batch, 2 by default for 24 series (n // 10)
    "bs1": {"batch_size": 1},
    "bs4": {"batch_size": 4},
    # round 12: each instance normalised by its trailing statistics (the streamable
    # normalisation; the default only standardises channels with training statistics)
    "norm-causal": {"norm": "causal"},
    "norm-causal16": {"norm": "causal", "norm_window": 16},
}


def _load(name: str):
    from sktime.datasets import load_UCR_UEA_dataset

    out = []
    for split in ("train", "test"):
        X, y = load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="numpy3D")
        out += [np.asarray(X, dtype=np.float64), np.asarray(y).astype(str)]
    return out


def subsample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a stratified subsample of ``size`` series (every class at least once)."""
    from sklearn.model_selection import train_test_split

    if size >= len(y):
        return np.arange(len(y))
    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(idx)


def run(args) -> list[dict]:
    from rwkv_ts import RWKVClassifier

    rows: list[dict] = []
    out = Path(args.out_dir) / f"{args.out}.rows.json"
    for name in args.datasets:
        X_full, y_full, Xt, yt = _load(name)
        if args.minirocket:
            from sktime.classification.kernel_based import RocketClassifier

            for seed in args.seeds if args.train_size else [0]:
                idx = subsample(y_full, args.train_size, seed) if args.train_size else None
                X, y = (X_full, y_full) if idx is None else (X_full[idx], y_full[idx])
                m = RocketClassifier(rocket_transform="minirocket", random_state=seed).fit(X, y)
                rows.append(
                    {
                        "dataset": name,
                        "config": "MiniRocket",
                        "seed": seed,
                        "train_size": len(y),
                        "accuracy": float(np.mean(m.predict(Xt) == yt)),
                    }
                )
        for config in args.configs:
            for seed in args.seeds:
                idx = subsample(y_full, args.train_size, seed) if args.train_size else None
                X, y = (X_full, y_full) if idx is None else (X_full[idx], y_full[idx])
                # sktime's MiniRocket resets the thread counts; every fit gets the same
                _set_threads(args.threads)
                params = dict(CONFIGS[config])
                if args.max_epochs:
                    params["max_epochs"] = args.max_epochs
                est = RWKVClassifier(random_state=seed, **params)
                t0 = time.perf_counter()
                est.fit(X, y)
                fit_s = time.perf_counter() - t0
                proba = est.predict_proba(Xt)
                pred = est.classes_[proba.argmax(axis=1)]
                rows.append(
                    {
                        "dataset": name,
                        "config": config,
                        "seed": seed,
                        "train_size": len(y),
                        "accuracy": float(np.mean(pred == yt)),
                        "train_accuracy": float(np.mean(est.predict(X) == y)),
                        "fit_seconds": fit_s,
                        "epochs": len(est.history_),
                        "classes": [str(c) for c in est.classes_],
                        "proba": np.round(proba, 5).tolist(),
                        "truth": yt.tolist(),
                    }
                )
                print(
                    f"{name:18s} {config:12s} seed {seed}: acc {rows[-1]['accuracy']:.3f} "
                    f"fit {fit_s:.1f} s",
                    flush=True,
                )
                write_rows(out, rows)
    return rows


def summarise(rows: list[dict]) -> tuple[list[dict], str]:
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    table = []
    for config in configs:
        single, ens, n_seeds = {}, {}, set()
        for d in datasets:
            rs = [r for r in rows if r["dataset"] == d and r["config"] == config]
            if not rs:
                continue
            single[d] = float(np.mean([r["accuracy"] for r in rs]))
            n_seeds.add(len(rs))
            if "proba" in rs[0]:
                mean_p = np.mean([np.asarray(r["proba"]) for r in rs], axis=0)
                pred = np.asarray(rs[0]["classes"])[mean_p.argmax(axis=1)]
                ens[d] = float(np.mean(pred == np.asarray(rs[0]["truth"])))
        complete = len(single) == len(datasets)
        table.append(
            {
                "config": config,
                "overrides": CONFIGS.get(config),
                "seeds": sorted(n_seeds),
                "per_dataset": single,
                "per_dataset_ensemble": ens,
                "mean": float(np.mean(list(single.values()))) if complete else None,
                "mean_ensemble": float(np.mean(list(ens.values()))) if complete and ens else None,
            }
        )
    head = "| config | " + " | ".join(datasets) + " | mean | mean, ensemble of the seeds |"
    lines = [head, "|" + "---|" * (len(datasets) + 3)]
    for t in table:
        cells = [f"{t['per_dataset'].get(d, float('nan')):.3f}" for d in datasets]
        mean = "-" if t["mean"] is None else f"{t['mean']:.3f}"
        ens = "-" if t["mean_ensemble"] is None else f"{t['mean_ensemble']:.3f}"
        lines.append(f"| {t['config']} | " + " | ".join(cells) + f" | {mean} | {ens} |")
    return table, "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=0, help="override (smoke runs)")
    p.add_argument("--minirocket", action="store_true", help="score MiniRocket (seed 0) too")
    p.add_argument(
        "--train-size",
        type=int,
        default=0,
        help="train on a stratified subsample of this many series, drawn by each seed",
    )
    p.add_argument("--merge", nargs="+", help="merge the .rows.json files of earlier runs")
    p.add_argument("--out", default="classification_dev")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.merge:
        rows = read_rows(args.merge)
    else:
        rows = run(args)
    table, md = summarise(rows)
    print(md)
    result = {
        "benchmark": "classification_dev",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "summary": table,
        "rows": [{k: v for k, v in r.items() if k not in ("proba", "truth")} for r in rows],
    }
    write_json(Path(args.out_dir) / f"{args.out}.json", result)


if __name__ == "__main__":
    main()
