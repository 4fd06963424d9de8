"""Choosing RWKVRegressor's RUL settings on C-MAPSS *training* units only.

``rul_cmapss.py`` scores the test units; settings chosen there would be tuned on the test. This
script holds out 20 % of each subset's training units (a fixed split, seed 2024), trains on the
rest (the regressor's own early-stopping split comes out of those) and scores the held-out units
the way the test protocol scores a test unit, but at every cycle instead of one: the prediction
after each cycle with at least ``--min-cycles`` of history and a true RUL of at most
``--max-rul``, against the true (uncapped) RUL and against the capped one. The mean of the seeds'
predictions (an ensemble) is scored too.

Usage::

    python benchmarks/rul_dev.py --subsets FD001 --configs default d32 --seeds 0 1 --out rul_dev_a
    python benchmarks/rul_dev.py --merge rul_dev_*.rows.json --out rul_dev
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

SUBSETS = ["FD001", "FD002", "FD003", "FD004"]

_R3 = {"tcn_dilations": (1, 2, 4, 8, 16, 32), "patience": 30, "max_epochs": 150}

#: candidate settings: (regressor overrides, ``prepare`` overrides)
CONFIGS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "d32": ({"d_model": 32}, {}),
    "d128": ({"d_model": 128}, {}),
    "lr5e-4": ({"learning_rate": 5e-4}, {}),
    "dropout0.3": ({"dropout": 0.3}, {}),
    "patience30": ({"patience": 30, "max_epochs": 150}, {}),
    "layers3": ({"n_layers": 3}, {}),
    "tcn-wide": ({"tcn_dilations": (1, 2, 4, 8, 16)}, {}),
    # round 2: tcn-wide (the best of round 1) combined with the next best
    "tcn-wide-p30": ({"tcn_dilations": (1, 2, 4, 8, 16), "patience": 30, "max_epochs": 150}, {}),
    "tcn-wide-d32": ({"tcn_dilations": (1, 2, 4, 8, 16), "d_model": 32}, {}),
    "tcn-wider": ({"tcn_dilations": (1, 2, 4, 8, 16, 32)}, {}),
    # round 3: around tcn-wider
    "tcn-64": ({"tcn_dilations": (1, 2, 4, 8, 16, 32, 64)}, {}),
    "tcn-wider-p30": (
        {"tcn_dilations": (1, 2, 4, 8, 16, 32), "patience": 30, "max_epochs": 150},
        {},
    ),
    "tcn-wider-d128": ({"tcn_dilations": (1, 2, 4, 8, 16, 32), "d_model": 128}, {}),
    # sliding windows: ~100x the instances of whole histories, so bigger batches, fewer epochs
    # round 4 (2026-11-24): around tcn-wider-p30 (the benchmark's recipe); a unit's whole
    # history is one instance, so batch 32 gives only 2-3 optimiser steps per epoch
    "r4-base": (_R3, {}),
    "r4-bs8": ({**_R3, "batch_size": 8}, {}),
    "r4-bs16": ({**_R3, "batch_size": 16}, {}),
    "r4-bs8-lr1e-3": ({**_R3, "batch_size": 8, "learning_rate": 1e-3}, {}),
    "r4-d128": ({**_R3, "d_model": 128}, {}),
    "r4-bs16-d128": ({**_R3, "batch_size": 16, "d_model": 128}, {}),
    "r4-layers3": ({**_R3, "n_layers": 3}, {}),
    "r4-dropout0.2": ({**_R3, "dropout": 0.2}, {}),
    # round 5 (2026-11-24): preprocessing around the recipe, causal both: exponential smoothing
    # of the sensors (common for C-MAPSS) and the cycle number as a channel
    "r5-smooth0.3": (_R3, {"smoothing": 0.3}),
    "r5-smooth0.1": (_R3, {"smoothing": 0.1}),
    "r5-cycle": (_R3, {"cycle_feature": True}),
    "r5-cycle-smooth0.3": (_R3, {"cycle_feature": True, "smoothing": 0.3}),
    # round 6: an exponential moving average of the weights (time constant in epochs)
    "r6-ema2": ({**_R3, "ema_epochs": 2.0}, {}),
    "r6-ema10": ({**_R3, "ema_epochs": 10.0}, {}),
    # round 7: each sensor's drift from the unit's own start (mean of its first k cycles), beside
    # the sensors: engines start with different initial wear
    "r7-drift10": (_R3, {"baseline_cycles": 10}),
    "r7-drift20": (_R3, {"baseline_cycles": 20}),
    "r7-drift30": (_R3, {"baseline_cycles": 30}),
    # round 8: a robust training loss, the kept epoch chosen by the validation MSE
    "r8-huber": ({**_R3, "loss": "huber", "val_loss": "mse"}, {}),
    "r8-mae": ({**_R3, "loss": "mae", "val_loss": "mse"}, {}),
    # round 9: magnitude augmentation of the training units (the per-cycle targets rule out
    # time warps): sensor noise and per-channel gain, drawn afresh every epoch
    "r9-jitter": ({**_R3, "augment": "jitter"}, {}),
    "r9-scale+jitter": ({**_R3, "augment": "scale+jitter"}, {}),
    # round 10: the recipe (r10-stage1), then a fresh model trained on *all* the units for the
    # epochs early stopping chose, times the factor in REFITS (the validation units, a fifth
    # of the data, otherwise only choose the epoch); one run scores all three
    "r10-stage1": (_R3, {}),
    # round 11: the same through the regressor's own ``refit`` (its scaler stays the early-stopped
    # run's; round 10 fitted a fresh regressor, scaler included, on all the units)
    "r11-refit1.5": ({**_R3, "refit": 1.5}, {}),
    "r11-refit2": ({**_R3, "refit": 2.0}, {}),
    "window30": ({"batch_size": 256, "max_epochs": 40, "patience": 8}, {"window": 30}),
    "conditions": ({}, {"condition_features": True}),
}

#: refits scored after a stage-1 config: name -> (stage-1 config, factor on its best epoch count)
REFITS: dict[str, tuple[str, float]] = {
    "r10-refit": ("r10-stage1", 1.0),
    "r10-refit1.5": ("r10-stage1", 1.5),
}


def _dev_split(units: np.ndarray, fraction: float = 0.2, seed: int = 2024) -> np.ndarray:
    rng = np.random.default_rng(seed)
    unique = np.unique(units)
    n_dev = max(1, int(round(fraction * len(unique))))
    return np.sort(rng.permutation(unique)[:n_dev])


def _eval_points(x: np.ndarray, true_rul: np.ndarray, min_cycles: int, max_rul: float):
    """Indices of the cycles scored for one held-out unit."""
    cycles = np.arange(1, x.shape[1] + 1)
    return np.flatnonzero((cycles >= min_cycles) & (true_rul <= max_rul))


def run(args) -> list[dict]:
    import torch

    from rwkv_ts import RWKVRegressor
    from rwkv_ts.datasets import load_cmapss

    if args.threads:
        torch.set_num_threads(args.threads)
    home = default_data_home()
    rows: list[dict] = []
    out = Path(args.out_dir) / f"{args.out}.rows.json"
    for subset in args.subsets:
        data = load_cmapss(subset, data_home=home)
        full = data.prepare(rul_cap=125)
        true_all = data.train_rul(None).to_numpy()
        unit_of_row = data.train["unit"].to_numpy()
        dev_units = _dev_split(full.groups_train)
        for config in args.configs:
            reg_params, prep_params = CONFIGS[config]
            prep = data.prepare(rul_cap=125, **prep_params) if prep_params else full
            keep = ~np.isin(prep.groups_train, dev_units)
            X_fit = [x for x, k in zip(prep.X_train, keep, strict=True) if k]
            if isinstance(prep.y_train, np.ndarray):
                y_fit = prep.y_train[keep]
            else:
                y_fit = [y for y, k in zip(prep.y_train, keep, strict=True) if k]
            window = prep.options["window"]
            # each held-out unit's whole history with the candidate's preprocessing
            whole = {k: v for k, v in prep_params.items() if k != "window"}
            history = data.prepare(rul_cap=125, **whole) if whole else full
            for seed in args.seeds:
                params = dict(reg_params)
                if args.max_epochs:
                    params["max_epochs"] = args.max_epochs
                reg = RWKVRegressor(random_state=seed, **params)
                t0 = time.perf_counter()
                reg.fit(X_fit, y_fit, groups=prep.groups_train[keep])
                fit_s = time.perf_counter() - t0
                fitted = [(config, reg, fit_s)]
                for name, (stage1, factor) in REFITS.items():
                    if stage1 != config:
                        continue
                    epochs = max(1, int(round((reg.best_epoch_ + 1) * factor)))
                    refit_params = {k: v for k, v in params.items() if k != "patience"}
                    refit = RWKVRegressor(
                        random_state=seed,
                        **{**refit_params, "max_epochs": epochs},
                        val_fraction=0.0,
                    )
                    t0 = time.perf_counter()
                    refit.fit(X_fit, y_fit, groups=prep.groups_train[keep])
                    fitted.append((name, refit, fit_s + time.perf_counter() - t0))
                for name, reg, fit_s in fitted:
                    rows.append(
                        _score(
                            name,
                            subset,
                            seed,
                            reg,
                            fit_s,
                            dev_units,
                            full,
                            history,
                            true_all,
                            unit_of_row,
                            window,
                            args,
                        )
                    )
                    write_rows(out, rows)
    return rows


def _score(
    config, subset, seed, reg, fit_s, dev_units, full, history, true_all, unit_of_row, window, args
) -> dict:
    preds, truths = [], []
    for unit in dev_units:
        i = int(np.flatnonzero(full.groups_train == unit)[0])
        x = history.X_train[i]
        true_rul = true_all[unit_of_row == unit]
        points = _eval_points(x, true_rul, args.min_cycles, args.max_rul)
        if window is None:
            steps = np.asarray(reg.predict_steps([x])[0], dtype=np.float64)
            preds.append(steps[points])
        else:
            wins = [x[:, max(0, p + 1 - window) : p + 1] for p in points]
            preds.append(np.asarray(reg.predict(wins), dtype=np.float64))
        truths.append(true_rul[points])
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    rmse_c = float(np.sqrt(np.mean((pred - np.minimum(truth, 125)) ** 2)))
    print(
        f"{subset} {config:12s} seed {seed}: dev RMSE {rmse:.2f} "
        f"(capped truth {rmse_c:.2f}) fit {fit_s:.0f} s",
        flush=True,
    )
    return {
        "subset": subset,
        "config": config,
        "seed": seed,
        "rmse": rmse,
        "rmse_capped_truth": rmse_c,
        "fit_seconds": fit_s,
        "epochs": len(reg.history_),
        "pred": np.round(pred, 3).tolist(),
        "truth": truth.tolist(),
    }


def _rmse(pred: np.ndarray, truth: np.ndarray, truth_cap: float | None, max_rul: float) -> float:
    keep = truth <= max_rul
    target = truth if truth_cap is None else np.minimum(truth, truth_cap)
    return float(np.sqrt(np.mean((pred[keep] - target[keep]) ** 2)))


def summarise(
    rows: list[dict], truth_cap: float | None = None, max_rul: float = np.inf
) -> tuple[list[dict], str]:
    """Mean dev RMSE per (config, subset) and of the seeds' mean prediction, against the true RUL
    capped at ``truth_cap`` (``None``: uncapped), over the scored cycles whose true RUL is at most
    ``max_rul`` (rows that carry their predictions; others keep the RMSE they were run with)."""
    key = "rmse" if truth_cap is None else "rmse_capped_truth"

    def score(r: dict) -> float:
        if "pred" not in r:
            return r[key]
        return _rmse(np.asarray(r["pred"]), np.asarray(r["truth"]), truth_cap, max_rul)

    subsets = [s for s in SUBSETS if any(r["subset"] == s for r in rows)]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    table = []
    for config in configs:
        single, ens, seeds = {}, {}, set()
        for s in subsets:
            rs = [r for r in rows if r["subset"] == s and r["config"] == config]
            if not rs:
                continue
            seeds.add(len(rs))
            single[s] = float(np.mean([score(r) for r in rs]))
            if "pred" in rs[0]:
                mean_pred = np.mean([np.asarray(r["pred"]) for r in rs], axis=0)
                ens[s] = _rmse(mean_pred, np.asarray(rs[0]["truth"]), truth_cap, max_rul)
        table.append(
            {
                "config": config,
                "overrides": [CONFIGS[config][0], CONFIGS[config][1]]
                if config in CONFIGS
                else None,
                "seeds": sorted(seeds),
                "dev_rmse": single,
                "dev_rmse_ensemble": ens,
                "mean": float(np.mean(list(single.values())))
                if len(single) == len(subsets)
                else None,
            }
        )
    lines = [
        "| config | "
        + " | ".join(subsets)
        + " | mean | "
        + " | ".join(f"{s} ens." for s in subsets)
        + " |",
        "|" + "---|" * (2 * len(subsets) + 2),
    ]
    for t in table:
        cells = [f"{t['dev_rmse'].get(s, float('nan')):.2f}" for s in subsets]
        ens = [f"{t['dev_rmse_ensemble'].get(s, float('nan')):.2f}" for s in subsets]
        mean = "-" if t["mean"] is None else f"{t['mean']:.2f}"
        lines.append(
            f"| {t['config']} | " + " | ".join(cells) + f" | {mean} | " + " | ".join(ens) + " |"
        )
    return table, "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--subsets", nargs="+", default=SUBSETS)
    p.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--min-cycles", type=int, default=31)
    p.add_argument("--max-rul", type=float, default=150.0)
    p.add_argument(
        "--capped-truth",
        action="store_true",
        help="summarise against the true RUL capped at 125 (the test protocol of the published "
        "FD002/FD004 numbers, see rul_cmapss.md) instead of the uncapped one",
    )
    p.add_argument(
        "--summary-max-rul",
        type=float,
        default=float("inf"),
        help="summarise only the scored cycles whose true RUL is at most this (e.g. 150: the "
        "range of the test units' last cycles, without the long healthy start)",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=0, help="override (smoke runs)")
    p.add_argument("--merge", nargs="+", help="merge the .rows.json files of earlier runs")
    p.add_argument("--out", default="rul_dev")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.merge:
        rows = read_rows(args.merge)
    else:
        rows = run(args)
    table, md = summarise(rows, 125.0 if args.capped_truth else None, args.summary_max_rul)
    print(md)
    result = {
        "benchmark": "rul_dev",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "truth": "capped at 125" if args.capped_truth else "uncapped",
        "summary_max_rul": None if np.isinf(args.summary_max_rul) else args.summary_max_rul,
        "summary": table,
        "rows": [{k: v for k, v in r.items() if k not in ("pred", "truth")} for r in rows],
    }
    write_json(Path(args.out_dir) / f"{args.out}.json", result)


if __name__ == "__main__":
    main()
