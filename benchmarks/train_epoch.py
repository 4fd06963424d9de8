"""One training epoch of RWKVForecaster on ETTh1 with the CUDA WKV kernel and with the PyTorch path.

The end-to-end number of the kernels issue: the same estimator, data, seed and settings (lookback
336, horizon 96, the estimator's defaults otherwise) trained for ``--epochs`` epochs on one GPU,
once with ``RWKV_TS_KERNEL=cuda`` and once with ``RWKV_TS_KERNEL=torch``. The reported time is
the wall time of the training steps of the last epoch (validation excluded; the first epoch
carries the kernel load and allocator warm-up), from the estimator's ``history_``.

    RWKV_TS_DATA=<data home> python benchmarks/train_epoch.py            # on a CUDA machine
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402

from rwkv_ts import RWKVForecaster  # noqa: E402
from rwkv_ts.datasets import load_ett  # noqa: E402


def run(backend: str, frame, args) -> dict:
    os.environ["RWKV_TS_KERNEL"] = backend
    est = RWKVForecaster(
        horizon=args.horizon,
        lookback=args.lookback,
        max_epochs=args.epochs,
        patience=args.epochs,
        batch_size=args.batch_size,
        random_state=0,
        accelerator=args.accelerator,
        verbose=False,
    )
    est.fit(frame)
    last = est.history_[-1]
    return {
        "backend": backend,
        "epoch_seconds": [h["train_seconds"] for h in est.history_],
        "last_epoch_seconds": last["train_seconds"],
        "train_loss": [h["train_loss"] for h in est.history_],
        "val_loss": [h.get("val_loss") for h in est.history_],
        "n_parameters": est.n_parameters_,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--backends", nargs="+", default=["cuda", "torch"])
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    data = load_ett("ETTh1", data_home=default_data_home(), download=False)
    frame = data.frame.iloc[: data.borders["val"][1]]  # train + validation parts
    runs = {}
    for backend in args.backends:
        runs[backend] = run(backend, frame, args)
        print(backend, runs[backend]["epoch_seconds"], flush=True)
    result = {
        "title": "One training epoch of RWKVForecaster on ETTh1 (lookback 336, horizon 96)",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "settings": vars(args) | {"out_dir": None},
        "runs": runs,
    }
    if {"cuda", "torch"} <= runs.keys():
        result["speedup_cuda_vs_torch"] = (
            runs["torch"]["last_epoch_seconds"] / runs["cuda"]["last_epoch_seconds"]
        )
    write_json(args.out_dir / "train_epoch.json", result)
    lines = [
        f"# {result['title']}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}",
        f"- machine: {result['machine'].get('gpu', result['machine']['cpu'])}, "
        f"torch {result['machine']['torch']}",
        f"- settings: batch {args.batch_size}, {args.epochs} epochs, estimator defaults otherwise "
        f"({next(iter(runs.values()))['n_parameters']:,} parameters)",
        "",
        "| WKV back-end | epoch seconds (each epoch) | last epoch vs PyTorch path |",
        "|---|---|---|",
    ]
    base = runs.get("torch", {}).get("last_epoch_seconds")
    for name, r in runs.items():
        ratio = f"{base / r['last_epoch_seconds']:.2f}x faster" if base else "-"
        secs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        lines.append(f"| {name} | {secs} | {ratio} |")
    (args.out_dir / "train_epoch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
