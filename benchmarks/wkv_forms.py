"""Where each form of the CUDA WKV kernels is faster: sequential vs chunked (bfloat16).

For a grid of (B*H, T, N), times (median of CUDA-event timed calls, over interleaved rounds) the
forward and the backward kernels of each form called directly, and forward+backward through
autograd (``wkv_cuda(..., form=...)`` then ``torch.autograd.grad``), which adds the host work of
each form. ``rwkv_ts.ops.cuda.kernel_form``'s automatic rule is read off the autograd columns.

Usage::

    python benchmarks/wkv_forms.py --head-sizes 16 32 64 --rounds 3 --name wkv_kernel_forms
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, now  # noqa: E402
from wkv_kernel import make_inputs, time_fn  # noqa: E402

from rwkv_ts.ops import cuda as wkv_cuda_mod  # noqa: E402

GRID = {
    64: ((64, 256, 512, 1024, 3584), (42, 96, 336)),
    32: ((256, 512, 1024, 2048, 4096), (42, 96, 336)),
    16: ((256, 512, 1024, 2048, 4096, 8192), (42, 96, 336, 720)),
}
COLUMNS = ("fwd_seq", "fwd_chk", "bwd_seq", "bwd_chk", "ag_seq", "ag_chk")


def measure_shape(ext, shape, seed: int, reps: int) -> dict[str, float]:
    """One round at one shape: ms of each column of :data:`COLUMNS`."""
    B, T, H, N = shape
    r, k, v, w, u = make_inputs(B, T, H, N, torch.bfloat16, seed=seed)
    u32 = u.float().contiguous()
    dy = torch.randn_like(r)
    leaves = [x.clone().requires_grad_(True) for x in (r, k, v, w, u)]

    def t(fn) -> float:
        return statistics.median(time_fn(fn, 5, reps))

    def step(form: str) -> None:
        y, _ = wkv_cuda_mod.wkv_cuda(*leaves, None, form=form, time_chunks=1)
        torch.autograd.grad(y, leaves, dy)

    return {
        "fwd_seq": t(lambda: ext.forward(r, k, v, w, u32, None, 0)),
        "fwd_chk": t(lambda: ext.forward_chunked(r, k, v, w, u32, None)),
        "bwd_seq": t(lambda: ext.backward(r, k, v, w, u32, None, dy, None)),
        "bwd_chk": t(lambda: ext.backward_chunked(r, k, v, w, u32, None, dy, None)),
        "ag_seq": t(lambda: step("sequential")),
        "ag_chk": t(lambda: step("chunked")),
    }


def measure(shapes, rounds: int, reps: int = 30) -> dict:
    """Every shape in every round (rounds interleaved, so drifts of the GPU hit all alike)."""
    ext = wkv_cuda_mod.extension()
    raw = {str(s): {c: [] for c in COLUMNS} for s in shapes}
    for rnd in range(rounds):
        for s in shapes:
            for column, ms in measure_shape(ext, s, rnd, reps).items():
                raw[str(s)][column].append(ms)
        print(f"round {rnd} done", flush=True)
    return raw


def render(result: dict) -> str:
    lines = [
        "# WKV kernel forms: sequential vs chunked (bfloat16)",
        "",
        f"- Command: `{result['command']}`",
        f"- Date: {result['date']}",
        f"- Machine: {result['gpu']}, torch {result['torch']}",
        "- Cells: ms, median over the rounds of the median of 30 CUDA-event timed calls; "
        "kernels called directly (fwd, bwd) and forward+backward through autograd (ag); "
        "the last column is the form the automatic rule (`kernel_form`) now picks.",
        "",
        "| B·H | T | N | fwd seq | fwd chk | bwd seq | bwd chk | ag seq | ag chk | ag faster "
        "| rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["shapes"]:
        B, T, H, N = s
        m = {c: statistics.median(v) for c, v in result["raw"][str(tuple(s))].items()}
        faster = "chunked" if m["ag_chk"] < m["ag_seq"] else "sequential"
        # the rule as on the measured GPU (compute capability 9.0), also where this renders
        with mock.patch.object(torch.cuda, "get_device_capability", return_value=(9, 0)):
            rule = wkv_cuda_mod.kernel_form(torch.zeros(B, T, H, N, dtype=torch.bfloat16))
        cells = " | ".join(f"{m[c]:.4f}" for c in COLUMNS)
        lines.append(f"| {B * H} | {T} | {N} | {cells} | {faster} | {rule} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--head-sizes", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--name", default="wkv_kernel_forms")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--render", type=Path, help="only write the Markdown of this result JSON")
    args = p.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
    else:
        if not torch.cuda.is_available() or wkv_cuda_mod.extension() is None:
            raise SystemExit("needs a CUDA GPU and the WKV extension")
        shapes = [
            (bh // 2, T, 2, N) for N in args.head_sizes for bh in GRID[N][0] for T in GRID[N][1]
        ]
        result = {
            "command": command_line(),
            "date": now(),
            "gpu": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "shapes": [list(s) for s in shapes],
            "raw": measure(shapes, args.rounds),
        }
        (args.out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
