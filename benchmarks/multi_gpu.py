"""Training throughput of RWKVForecaster on 1 and on N GPUs (Lightning DDP), side by side.

The same estimator, data (ETTh1 train + validation parts, lookback 336, horizon 96, the
estimator's defaults otherwise), seed and per-device batch size, trained for ``--epochs`` epochs
with ``devices=1`` and with ``devices=N``. Each configuration runs in its own process (Lightning's
DDP launcher re-runs that process once per extra GPU). Throughput is training windows per second
over the training steps of the last epoch (validation excluded; the first epoch carries the
kernel load and NCCL warm-up), read from the estimator's ``history_`` on rank 0. Under DDP every
rank trains on its shard of each epoch, so the global batch is N times the per-device batch and an
epoch has N times fewer optimiser steps; ``--same-global-batch`` adds, for each N > 1, a run with
the per-device batch divided by N (the same steps as on one GPU), which separates the gain of
more devices from the gain of fewer, larger steps.

    RWKV_TS_DATA=<data home> python benchmarks/multi_gpu.py --devices 1 2   # on a 2-GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402


def worker(args) -> int:
    """Fit once with ``devices=args.worker`` and write the timings (rank 0 only)."""
    from rwkv_ts import RWKVForecaster
    from rwkv_ts.data.windows import WindowDataset, chronological_split
    from rwkv_ts.datasets import load_ett

    data = load_ett("ETTh1", data_home=default_data_home(), download=False)
    frame = data.frame.iloc[: data.borders["val"][1]]
    est = RWKVForecaster(
        horizon=args.horizon,
        lookback=args.lookback,
        max_epochs=args.epochs,
        patience=args.epochs,
        batch_size=args.batch_size,
        random_state=0,
        accelerator="gpu",
        devices=args.worker,
        verbose=False,
    )
    est.fit(frame)
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return 0
    values = [frame.drop(columns="date").to_numpy(dtype="float32")]
    train_arrays, _ = chronological_split(values, est.val_fraction, args.lookback, args.horizon)
    n_windows = len(WindowDataset(train_arrays, args.lookback, args.horizon))
    seconds = [h["train_seconds"] for h in est.history_]
    result = {
        "devices": args.worker,
        "per_device_batch": args.batch_size,
        "global_batch": args.batch_size * args.worker,
        "train_windows_per_epoch": n_windows,
        "epoch_seconds": seconds,
        "windows_per_second": n_windows / seconds[-1],
        "val_loss": [h.get("val_loss") for h in est.history_],
        "n_parameters": est.n_parameters_,
    }
    Path(args.worker_out).write_text(json.dumps(result))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=128, help="per device")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--same-global-batch", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args)

    import torch

    if torch.cuda.device_count() < max(args.devices):
        parser.error(
            f"--devices {max(args.devices)} needs that many GPUs; "
            f"this machine has {torch.cuda.device_count()}"
        )
    plan = [(n, args.batch_size) for n in args.devices]
    if args.same_global_batch:
        plan += [(n, args.batch_size // n) for n in args.devices if n > 1]
    runs = []
    for n, batch in plan:
        out = args.out_dir / f".multi_gpu_{n}.json"
        cmd = [sys.executable, __file__, "--worker", str(n), "--worker-out", str(out)]
        cmd += ["--lookback", str(args.lookback), "--horizon", str(args.horizon)]
        cmd += ["--batch-size", str(batch), "--epochs", str(args.epochs)]
        subprocess.run(cmd, check=True)
        runs.append(json.loads(out.read_text()))
        out.unlink()
        print(runs[-1], flush=True)
    base = runs[0]["windows_per_second"]
    for r in runs:
        r["speedup_vs_first"] = r["windows_per_second"] / base
        r["scaling_efficiency"] = r["speedup_vs_first"] * runs[0]["devices"] / r["devices"]
    result = {
        "title": "RWKVForecaster training throughput on 1 and N GPUs (DDP), ETTh1",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")}
        | {"out_dir": None},
        "runs": runs,
    }
    write_json(args.out_dir / "multi_gpu.json", result)
    m = result["machine"]
    lines = [
        f"# {result['title']}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}",
        f"- machine: {m.get('gpu_count', 0)} x {m.get('gpu', '?')}, torch {m['torch']}",
        f"- settings: lookback {args.lookback}, horizon {args.horizon}, {args.epochs} epochs, "
        "estimator defaults otherwise "
        f"({runs[0]['n_parameters']:,} parameters); throughput over the last epoch's "
        "training steps",
        "",
        "| GPUs | batch per device | global batch | epoch seconds (each epoch) | windows / s "
        "| vs 1 GPU | scaling efficiency | best val loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        secs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        best = min(v for v in r["val_loss"] if v is not None)
        lines.append(
            f"| {r['devices']} | {r['per_device_batch']} | {r['global_batch']} | {secs} "
            f"| {r['windows_per_second']:.0f} | {r['speedup_vs_first']:.2f}x "
            f"| {r['scaling_efficiency']:.0%} | {best:.4f} |"
        )
    (args.out_dir / "multi_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
