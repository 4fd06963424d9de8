"""One training epoch of RWKVForecaster on ETTh1 with the CUDA WKV kernel and with the PyTorch path.

The end-to-end number of the kernels issue: the same estimator, data, seed and settings (lookback
336, horizon 96, the estimator's defaults otherwise) trained for ``--epochs`` epochs on one GPU,
once with ``RWKV_TS_KERNEL=cuda`` and once with ``RWKV_TS_KERNEL=torch``, each with the training
step captured as a CUDA graph and without (``RWKV_TS_CUDA_GRAPH``; ``--cuda-graph``), at each of
``--batch-sizes``. The reported time is the wall time of the training steps of the last epoch
(validation excluded; the first epoch carries the kernel load, the graph capture and allocator
warm-up), from the estimator's ``history_``.

    RWKV_TS_DATA=<data home> python benchmarks/train_epoch.py            # on a CUDA machine

``--profile`` then trains once more (one epoch, the ``--profile-backend``, default ``cuda``) with
the torch profiler (CPU and CUDA activity) over ``--profile-steps`` training steps after
``--profile-skip`` warm-up steps, and adds the top operators by self CUDA time and by CPU time and
the per-step CPU vs GPU totals to the JSON and the Markdown: where an epoch's time goes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402

from rwkv_ts import RWKVForecaster  # noqa: E402
from rwkv_ts.datasets import load_ett  # noqa: E402
from rwkv_ts.training import training_callbacks  # noqa: E402


def make_estimator(args, epochs: int, batch_size: int | None = None) -> RWKVForecaster:
    return RWKVForecaster(
        horizon=args.horizon,
        lookback=args.lookback,
        max_epochs=epochs,
        patience=epochs,
        batch_size=batch_size or args.batch_sizes[0],
        random_state=0,
        accelerator=args.accelerator,
        verbose=False,
    )


def run(backend: str, graph: str, batch_size: int, frame, args) -> dict:
    os.environ["RWKV_TS_KERNEL"] = backend
    os.environ["RWKV_TS_CUDA_GRAPH"] = "1" if graph == "on" else "0"
    est = make_estimator(args, args.epochs, batch_size)
    est.fit(frame)
    last = est.history_[-1]
    return {
        "backend": backend,
        "cuda_graph": graph,
        "batch_size": batch_size,
        "epoch_seconds": [h["train_seconds"] for h in est.history_],
        "last_epoch_seconds": last["train_seconds"],
        "train_loss": [h["train_loss"] for h in est.history_],
        "val_loss": [h.get("val_loss") for h in est.history_],
        "n_parameters": est.n_parameters_,
    }


class StepProfiler(Callback):
    """Runs the torch profiler over training steps ``[skip, skip + steps)`` of the first epoch.

    The profiler starts in ``on_train_batch_start`` of step ``skip`` (that step's batch is already
    loaded) and stops after ``on_train_batch_end`` of the last step, after a device sync; the
    wall time in between is kept with the profiler's averages.
    """

    def __init__(self, skip: int, steps: int) -> None:
        self.skip, self.steps = skip, steps
        self.prof = None
        self.averages = None
        self.wall_s = None
        self.n_steps = 0
        self._t0 = 0.0

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == self.skip and self.averages is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._sync()
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.start()
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.prof is None:
            return
        self.n_steps += 1
        if self.n_steps == self.steps:
            self._finish()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.prof is not None:  # the epoch had fewer steps than asked
            self._finish()

    def _finish(self) -> None:
        self._sync()
        self.wall_s = time.perf_counter() - self._t0
        self.prof.stop()
        self.averages = self.prof.key_averages()
        self.prof = None


def _ms(evt, n: int, *names: str) -> float:
    """The first of the attributes ``names`` (microseconds) that the event has, in ms per step."""
    for name in names:
        value = getattr(evt, name, None)
        if value is not None:
            return float(value) / 1e3 / n
    return 0.0


def summarize_profile(prof: StepProfiler, top: int) -> dict:
    """Per-step totals and the top rows of a :class:`StepProfiler`'s averages (ms per step)."""
    n = max(prof.n_steps, 1)
    rows = []
    for evt in prof.averages:
        on_device = str(getattr(evt, "device_type", "")).split(".")[-1] != "CPU"
        rows.append(
            {
                "name": evt.key,
                "kind": "gpu" if on_device else "cpu",
                "calls_per_step": evt.count / n,
                "self_cpu_ms": _ms(evt, n, "self_cpu_time_total"),
                "cpu_total_ms": _ms(evt, n, "cpu_time_total"),
                "self_cuda_ms": _ms(evt, n, "self_device_time_total", "self_cuda_time_total"),
                "cuda_total_ms": _ms(evt, n, "device_time_total", "cuda_time_total"),
            }
        )
    gpu_rows = [r for r in rows if r["kind"] == "gpu"]
    cpu_rows = [r for r in rows if r["kind"] == "cpu"]
    wkv = [r for r in gpu_rows if "wkv6" in r["name"]]
    totals = {
        "steps": prof.n_steps,
        "wall_ms_per_step": prof.wall_s * 1e3 / n,
        # time the GPU spent in kernels and copies (the profiler's "Self CUDA time total")
        "gpu_busy_ms_per_step": sum(r["self_cuda_ms"] for r in gpu_rows),
        # host time inside profiled operators (Python between them is not counted)
        "cpu_ops_ms_per_step": sum(r["self_cpu_ms"] for r in cpu_rows),
        "gpu_kernels_per_step": sum(r["calls_per_step"] for r in gpu_rows),
        "wkv_kernel_ms_per_step": sum(r["self_cuda_ms"] for r in wkv),
    }
    totals["gpu_busy_fraction_of_wall"] = totals["gpu_busy_ms_per_step"] / max(
        totals["wall_ms_per_step"], 1e-9
    )

    def best(key: str, pool: list[dict]) -> list[dict]:
        return sorted(pool, key=lambda r: r[key], reverse=True)[:top]

    return {
        "totals": totals,
        # as torch's table sorted by self_cuda_time_total: operators (the kernels they launch
        # themselves) and the kernels, side by side
        "top_self_cuda": best("self_cuda_ms", rows),
        "top_self_cpu": best("self_cpu_ms", cpu_rows),
        "top_cpu_total": best("cpu_total_ms", cpu_rows),
    }


def profile_run(backend: str, frame, args) -> dict:
    """One more epoch on ``backend`` with :class:`StepProfiler` joined to the training."""
    os.environ["RWKV_TS_KERNEL"] = backend
    os.environ["RWKV_TS_CUDA_GRAPH"] = "1" if args.profile_graph == "on" else "0"
    prof = StepProfiler(args.profile_skip, args.profile_steps)
    with training_callbacks(prof):
        make_estimator(args, 1).fit(frame)
    if prof.averages is None:
        return {"backend": backend, "error": f"fewer than {args.profile_skip + 1} training steps"}
    out = summarize_profile(prof, args.profile_top)
    out["backend"] = backend
    out["cuda_graph"] = args.profile_graph
    out["skip_steps"] = args.profile_skip
    return out


def profile_markdown(p: dict) -> list[str]:
    if "error" in p:
        return ["", f"## Profile ({p['backend']} back-end)", "", f"error: {p['error']}"]
    t = p["totals"]
    lines = [
        "",
        f"## Profile ({p['backend']} back-end, CUDA graph {p.get('cuda_graph', 'off')}, "
        f"{t['steps']} training steps after "
        f"{p['skip_steps']} warm-up steps, torch.profiler)",
        "",
        f"- per step: wall {t['wall_ms_per_step']:.2f} ms (under the profiler), GPU busy "
        f"{t['gpu_busy_ms_per_step']:.2f} ms ({100 * t['gpu_busy_fraction_of_wall']:.0f}% of "
        f"wall) in {t['gpu_kernels_per_step']:.0f} kernels/copies, host time inside operators "
        f"{t['cpu_ops_ms_per_step']:.2f} ms, WKV kernels {t['wkv_kernel_ms_per_step']:.3f} ms",
        "- times in ms per training step; `self` excludes the operators called inside; "
        + (
            "with the CUDA graph a step is one `cudaGraphLaunch` and its kernels"
            if p.get("cuda_graph") == "on"
            else "Lightning runs the forward and backward inside the optimiser's step closure, "
            "so `Optimizer.step#...` includes them"
        ),
    ]

    def table(title: str, rows: list[dict]) -> list[str]:
        out = [
            "",
            f"### {title}",
            "",
            "| name | kind | calls/step | self CUDA | CUDA total | self CPU | CPU total |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            name = r["name"].replace("|", "/")
            name = name if len(name) <= 90 else name[:87] + "..."
            out.append(
                f"| `{name}` | {r['kind']} | {r['calls_per_step']:.1f} | {r['self_cuda_ms']:.3f} | "
                f"{r['cuda_total_ms']:.3f} | {r['self_cpu_ms']:.3f} | {r['cpu_total_ms']:.3f} |"
            )
        return out

    lines += table("Top by self CUDA time", p["top_self_cuda"])
    lines += table("Top operators by self CPU time", p["top_self_cpu"])
    lines += table("Top operators by CPU time (inclusive)", p["top_cpu_total"])
    return lines


def _label(r: dict) -> str:
    return f"{r['backend']}, graph {r['cuda_graph']}, batch {r['batch_size']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[128], help="the first one is profiled"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--backends", nargs="+", default=["cuda", "torch"])
    parser.add_argument(
        "--cuda-graph",
        nargs="+",
        choices=["on", "off"],
        default=["on", "off"],
        help="train with the step captured as a CUDA graph (RWKV_TS_CUDA_GRAPH), without, or both",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", action="store_true", help="profile training steps after the timed epochs"
    )
    parser.add_argument("--profile-backend", default="cuda")
    parser.add_argument("--profile-graph", choices=["on", "off"], default="on")
    parser.add_argument("--profile-skip", type=int, default=50, help="warm-up steps first")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--profile-top", type=int, default=25, help="rows per table")
    args = parser.parse_args(argv)

    data = load_ett("ETTh1", data_home=default_data_home(), download=False)
    frame = data.frame.iloc[: data.borders["val"][1]]  # train + validation parts
    runs = []
    for batch_size in args.batch_sizes:
        for graph in args.cuda_graph:
            for backend in args.backends:
                runs.append(run(backend, graph, batch_size, frame, args))
                print(_label(runs[-1]), runs[-1]["epoch_seconds"], flush=True)

    def find(backend: str, graph: str, batch_size: int) -> dict | None:
        key = (backend, graph, batch_size)
        return next(
            (r for r in runs if (r["backend"], r["cuda_graph"], r["batch_size"]) == key), None
        )

    for r in runs:
        torch_run = find("torch", r["cuda_graph"], r["batch_size"])
        eager = find(r["backend"], "off", r["batch_size"])
        r["vs_torch_path"] = torch_run and torch_run["last_epoch_seconds"] / r["last_epoch_seconds"]
        r["vs_no_graph"] = eager and eager["last_epoch_seconds"] / r["last_epoch_seconds"]
    result = {
        "title": "One training epoch of RWKVForecaster on ETTh1 (lookback 336, horizon 96)",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "settings": vars(args) | {"out_dir": None},
        "runs": runs,
    }
    if args.profile:
        result["profile"] = profile_run(args.profile_backend, frame, args)
        print("profile:", result["profile"].get("totals", result["profile"]), flush=True)
    write_json(args.out_dir / "train_epoch.json", result)
    lines = [
        f"# {result['title']}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}",
        f"- machine: {result['machine'].get('gpu', result['machine']['cpu'])}, "
        f"torch {result['machine']['torch']}",
        f"- settings: {args.epochs} epochs, estimator defaults otherwise "
        f"({runs[0]['n_parameters']:,} parameters); time = the last epoch's training steps",
        "- ratios: the PyTorch path's time (same CUDA-graph setting and batch) / this row's; the "
        "same back-end without the CUDA graph / this row's",
        "",
        "| WKV back-end | CUDA graph | batch | epoch seconds (each epoch) | vs PyTorch path "
        "| vs no graph |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        secs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        ratios = [f"{x:.2f}x" if x else "-" for x in (r["vs_torch_path"], r["vs_no_graph"])]
        lines.append(
            f"| {r['backend']} | {r['cuda_graph']} | {r['batch_size']} | {secs} | "
            f"{ratios[0]} | {ratios[1]} |"
        )
    if "profile" in result:
        lines += profile_markdown(result["profile"])
    (args.out_dir / "train_epoch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
