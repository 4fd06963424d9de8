"""Does the streamable configuration forecast well? ETTh1 validation MSE, streamable vs windowed.

Both configurations are fitted on ETTh1's training part (its first 12 months; the estimator keeps
the last 20% of that for early stopping) and scored on ETTh1's validation part (the next 4 months):
every forecast origin whose horizon lies in it, MSE and MAE in the scaled space (z-score fitted on
the training part, as Time-Series-Library reports). The test part is never read.

- windowed: ``norm="instance"``, flatten head, the last ``lookback`` samples (RevIN + flatten,
  the PatchTST / RWKV-TS recipe);
- streamable: ``norm="causal"``, ``head="last"``, the whole history from the first sample (what
  ``predict`` and a stream give), trained on segments with a loss at every token;
- streamable read on the last ``lookback`` samples only (zero state at the window start), for
  reference: the regime it is *not* deployed in.

Run: ``python benchmarks/streaming_accuracy.py`` (about 20-30 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402


def evaluate(est, scaled: np.ndarray, start: int, stop: int, mode: str) -> tuple[float, float]:
    """MSE, MAE over every origin t (forecast after sample t) with start - 1 <= t and the horizon
    inside [start, stop)."""
    from rwkv_ts.stream.training import rolling_forecasts

    horizon, lookback = est.horizon, est.lookback
    origins = np.arange(start - 1, stop - horizon)
    sq, ab, n = 0.0, 0.0, 0
    for c in range(scaled.shape[1]):
        series = scaled[:, c]
        target = np.lib.stride_tricks.sliding_window_view(series, horizon)[origins + 1]
        if mode == "history":
            pred = rolling_forecasts(est.model_, series[: stop - 1], start - 1)[: len(origins)]
        else:
            windows = np.lib.stride_tricks.sliding_window_view(series, lookback)[
                origins - lookback + 1
            ]
            with torch.inference_mode():
                pred = np.concatenate(
                    [
                        est.model_(torch.from_numpy(np.ascontiguousarray(w))[:, :, None])[
                            :, :, 0
                        ].numpy()
                        for w in np.array_split(windows, max(1, len(windows) // 512))
                    ]
                )
        err = pred.astype(np.float64) - target
        sq += float((err**2).sum())
        ab += float(np.abs(err).sum())
        n += err.size
    return sq / n, ab / n


def markdown(report: dict) -> str:
    res = report["results"]
    win = res["windowed"]["val_mse_window"]
    lines = [
        "# Streamable vs windowed configuration: ETTh1 validation error",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores (shared)",
        f"- data: {report['dataset']}",
        "- settings: " + ", ".join(f"{k}={v}" for k, v in report["settings"].items()),
        "",
        "| configuration | scored on | val MSE | val MAE | MSE / windowed | epochs (best) "
        "| fit (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    where = {
        "history": "whole history (as deployed)",
        "window": "last lookback samples",
    }
    for name, entry in res.items():
        for mode in ("history", "window"):
            if f"val_mse_{mode}" not in entry:
                continue
            mse = entry[f"val_mse_{mode}"]
            lines.append(
                f"| {name} | {where[mode]} | {mse:.4f} | {entry[f'val_mae_{mode}']:.4f} | "
                f"{mse / win:.3f} | {entry['epochs']} ({entry['best_epoch']}) | "
                f"{entry['fit_seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-start", type=int, default=4320, help="first row of the training slice"
    )
    parser.add_argument("--out", default=str(RESULTS / "streaming_accuracy.json"))
    parser.add_argument(
        "--markdown-only", action="store_true", help="rewrite the .md of an existing --out"
    )
    args = parser.parse_args()
    if args.markdown_only:
        import json

        report = json.loads(Path(args.out).read_text())
        Path(args.out).with_suffix(".md").write_text(markdown(report))
        return
    torch.set_num_threads(args.threads)

    from rwkv_ts import RWKVForecaster
    from rwkv_ts.datasets import load_ett

    data = load_ett("ETTh1", data_home=default_data_home(), download=False)
    train_end = data.borders["train"][1]
    val_start, val_end = data.borders["val"]
    frame = data.frame.iloc[:val_end]
    common = dict(
        horizon=args.horizon,
        lookback=args.lookback,
        patch_len=16,
        stride=8,
        d_model=args.d_model,
        n_layers=2,
        head_size=min(32, args.d_model),
        max_epochs=args.max_epochs,
        patience=2,
        batch_size=128,
        random_state=0,
        verbose=False,
        linear_skip=True,
    )
    configs = {
        "windowed": dict(norm="instance", head="flatten"),
        "streamable": dict(norm="causal", head="last"),
        "streamable_head4": dict(norm="causal", head=4),
    }
    results = {}
    for name, extra in configs.items():
        t0 = time.perf_counter()
        est = RWKVForecaster(**common, **extra).fit(frame.iloc[args.train_start : train_end])
        fit_seconds = time.perf_counter() - t0
        values = frame[est.channels_].iloc[args.train_start :].to_numpy(np.float64)
        scaled = ((values.astype(np.float32) - est.scale_mean_) / est.scale_std_).astype(np.float32)
        entry = {"fit_seconds": fit_seconds, "epochs": est.n_epochs_, "best_epoch": est.best_epoch_}
        modes = ["history", "window"] if name.startswith("streamable") else ["window"]
        for mode in modes:
            mse, mae = evaluate(
                est, scaled, val_start - args.train_start, val_end - args.train_start, mode
            )
            entry[f"val_mse_{mode}"] = mse
            entry[f"val_mae_{mode}"] = mae
        entry["history"] = est.history_
        results[name] = entry
        print(name, {k: v for k, v in entry.items() if k != "history"}, flush=True)

    report = {
        "benchmark": "streaming_accuracy",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "dataset": "ETTh1: rows [train_start, 8640) of the training part fitted, the validation "
        "part (rows 8640-11520) scored, the history starting at train_start; test never read",
        "train_start": args.train_start,
        "settings": common,
        "results": results,
        "ratio_streamable_to_windowed_mse": results["streamable"]["val_mse_history"]
        / results["windowed"]["val_mse_window"],
        "ratio_streamable_head4_to_windowed_mse": results["streamable_head4"]["val_mse_history"]
        / results["windowed"]["val_mse_window"],
    }
    write_json(Path(args.out), report)
    Path(args.out).with_suffix(".md").write_text(markdown(report))
    print(f"ratio streamable/windowed val MSE: {report['ratio_streamable_to_windowed_mse']:.3f}")


if __name__ == "__main__":
    main()
