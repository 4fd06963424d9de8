"""Benchmark of the CUDA WKV kernel against the PyTorch chunked path and flash-linear-attention.

Times forward and forward+backward (median of CUDA-event timed calls after warm-up) on
time-series shapes (many short sequences) and long sequences, next to the memory floor of the same
run (fewest bytes moved over a measured device-to-device copy bandwidth).

Usage (on a GPU machine; fla optional)::

    python benchmarks/wkv_kernel.py --out-dir benchmarks/results

``--split-sweep`` also times our forward at each split (threads per state column: 1, 2, 4, and the
automatic choice) on every shape, for setting the rule in ``fwd_split``
(``kernels/wkv6.cu``) from measurements. ``--time-split-sweep`` times ours on the long shapes with
the sequence cut into 1 (the sequential kernel), 4, 8, ... 256 time chunks and at the automatic
count, plus a few shapes at the rule's edges, for the rule in ``rwkv_ts/ops/timesplit.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rwkv_ts.ops import cuda as wkv_cuda_mod  # noqa: E402
from rwkv_ts.ops.chunked import wkv_chunked, wkv_recurrent  # noqa: E402
from rwkv_ts.ops.reference import wkv_reference  # noqa: E402
from rwkv_ts.ops.timesplit import time_split_chunks  # noqa: E402

# (label, B, T, H, N)
TS_SHAPES = [
    ("ts", 1792, 42, 2, 64),  # ETTh1 training: batch 256 x 7 channels x 2 heads, 42 patches
    ("ts", 256, 96, 2, 32),  # B*H = 512, T = 96, N = 32
    ("ts", 128, 336, 2, 64),  # B*H = 256, T = 336
    ("ts", 512, 256, 2, 64),  # B*H = 1024, T = 256
    ("ts", 2048, 720, 2, 32),  # B*H = 4096, T = 720
    ("ts", 8192, 32, 2, 32),  # B*H = 16384, T = 32
]
LONG_SHAPES = [
    ("long", 4, 65536, 2, 64),  # B*H = 8
    ("long", 8, 16384, 2, 64),  # B*H = 16
    ("long", 32, 4096, 2, 64),  # B*H = 64
]


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    a = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = time_fn(lambda: b.copy_(a), warmup=2, reps=reps)
    return 2 * nbytes / (statistics.median(times) * 1e-3)


def warm_up_gpu(seconds: float = 2.0) -> None:
    """Keep the GPU busy for ``seconds`` so that its clocks are up before anything is timed (the
    first shapes of a run on an idle H100 measured up to 4x slower without it)."""
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t0 = time.time()
    while time.time() - t0 < seconds:
        for _ in range(20):
            x @ x
        torch.cuda.synchronize()


def time_fn(
    fn: Callable[[], object], warmup: int = 10, reps: int = 50, queued: bool = True
) -> list[float]:
    """Milliseconds of each of ``reps`` calls, timed with CUDA events after ``warmup`` calls.

    ``queued``: the calls are launched back to back and the host waits once, at the end, so
    each pair of events times the GPU's work of one call (what a training loop sees, where the
    host runs ahead). Otherwise the host waits after every call: the GPU then sits idle from the
    first event until the host has launched the call's kernels, so the time includes the
    host's launch latency (Python, dispatch, the launch itself) and whatever an idle GPU costs
    the next call.
    """
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        if not queued:
            e1.synchronize()
        events.append((e0, e1))
    torch.cuda.synchronize()
    return [e0.elapsed_time(e1) for e0, e1 in events]


def make_inputs(B, T, H, N, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, device="cuda", generator=g)

    r, k, v = (rnd(B, T, H, N).to(dtype) for _ in range(3))
    w = (-6.0 + 5.0 * torch.rand(B, T, H, N, device="cuda", generator=g)).to(dtype)
    u = rnd(H, N)
    return r, k, v, w, u


def floors(B, T, H, N, dtype, bw):
    """Minimum bytes (forward, forward+backward) and their times in ms at bandwidth ``bw``."""
    e = B * T * H * N * torch.finfo(dtype).bits // 8
    state = B * H * N * N * 4
    fwd = 5 * e + state  # r, k, v, w read; y written; final state written
    # backward: r, k, v, w, dy read; dr, dk, dv, dw written (the forward's bytes come first)
    fwdbwd = fwd + 9 * e
    return fwd, fwdbwd, fwd / bw * 1e3, fwdbwd / bw * 1e3


def load_fla():
    try:
        from fla.ops.rwkv6 import chunk_rwkv6, fused_recurrent_rwkv6
    except Exception as exc:  # noqa: BLE001
        print(f"fla unavailable: {type(exc).__name__}: {exc}", flush=True)
        return None
    return {"fla_chunk": chunk_rwkv6, "fla_fused_recurrent": fused_recurrent_rwkv6}


def paths(fla):
    """name -> fn(r, k, v, w, u, w_log) -> (y, state)."""
    out = {
        "ours": lambda r, k, v, w, u, wl: wkv_cuda_mod.wkv_cuda(r, k, v, w, u, None),
        # the sequential kernels (what "ours" ran before the chunked tensor-core kernels)
        "ours_sequential": lambda r, k, v, w, u, wl: wkv_cuda_mod.wkv_cuda(
            r, k, v, w, u, None, form="sequential"
        ),
        "torch_chunked": lambda r, k, v, w, u, wl: wkv_chunked(r, k, v, w, u, None),
    }
    if fla is not None:
        for name, f in fla.items():
            out[name] = lambda r, k, v, w, u, wl, f=f: f(
                r, k, v, wl, u, scale=1.0, initial_state=None, output_final_state=True
            )
    return out


def bench_shape(label, B, T, H, N, dtype, fns, bw, reps, skip):
    res = {"label": label, "B": B, "T": T, "H": H, "N": N, "BH": B * H, "dtype": str(dtype)}
    fb, fbb, ft, fbt = floors(B, T, H, N, dtype, bw)
    res.update(floor_fwd_bytes=fb, floor_fwdbwd_bytes=fbb, floor_fwd_ms=ft, floor_fwdbwd_ms=fbt)
    sets = []
    total = 4 * B * T * H * N * torch.finfo(dtype).bits // 8
    nsets = 1 if total > (256 << 20) else 3  # rotate input sets when they could sit in L2
    for s in range(nsets):
        r, k, v, w, u = make_inputs(B, T, H, N, dtype, seed=s)
        wl = -torch.exp(w.float()).to(dtype)  # fla's log decay
        sets.append((r, k, v, w, u, wl))
    gy = torch.randn(B, T, H, N, device="cuda").to(dtype)
    for name, fn in fns.items():
        if name in skip(label, B, T, H, N):
            continue
        it = [0]

        def fwd(fn=fn, it=it):
            x = sets[it[0] % nsets]
            it[0] += 1
            with torch.no_grad():
                return fn(*x)

        leaf_sets = [tuple(t.clone().requires_grad_(True) for t in x) for x in sets]

        def fwdbwd(fn=fn, it=it, leaf_sets=leaf_sets):
            leaves = leaf_sets[it[0] % nsets]
            it[0] += 1
            y, _ = fn(*leaves)
            # gradients returned, not accumulated into .grad (no extra adds in the timing)
            torch.autograd.grad(y, leaves, gy, allow_unused=True)

        try:
            t0 = time.time()
            warm = 3 if T >= 4096 else 10
            nrep = max(5, reps // 5) if T >= 4096 else reps
            tf = statistics.median(time_fn(fwd, warmup=warm, reps=nrep))
            tb = statistics.median(time_fn(fwdbwd, warmup=warm, reps=nrep))
            t_one = statistics.median(time_fn(fwd, warmup=warm, reps=nrep, queued=False))
            res[name] = {
                "fwd_ms": tf,
                "fwdbwd_ms": tb,
                "fwd_one_call_ms": t_one,
                "fwd_frac_of_floor": ft / tf,
                "fwdbwd_frac_of_floor": fbt / tb,
                "wall_s": time.time() - t0,
            }
        except Exception as exc:  # noqa: BLE001
            res[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        print(f"  {label} BH={B * H} T={T} N={N} {name}: {res[name]}", flush=True)
        torch.cuda.empty_cache()
    for name in fns:
        if name.startswith("fla") or name in ("torch_chunked", "ours_sequential"):
            if "fwd_ms" in res.get(name, {}) and "fwd_ms" in res.get("ours", {}):
                res["ours"][f"fwd_speedup_vs_{name}"] = res[name]["fwd_ms"] / res["ours"]["fwd_ms"]
                res["ours"][f"fwdbwd_speedup_vs_{name}"] = (
                    res[name]["fwdbwd_ms"] / res["ours"]["fwdbwd_ms"]
                )
    return res


SPLITS = (1, 2, 4)


def auto_split(B, H, N, sm_count):
    """The split that ``fwd_split`` in kernels/wkv6.cu chooses for split 0 (its rule, repeated)."""
    return 2 if B * H * N < sm_count * 64 and N >= 16 else 1


def split_sweep(B, T, H, N, dtype, reps):
    """Forward ms (median, CUDA events, no grad) of our kernel at each split and at auto (0)."""
    ext = wkv_cuda_mod.extension()
    total = 4 * B * T * H * N * torch.finfo(dtype).bits // 8
    nsets = 1 if total > (256 << 20) else 3
    sets = [make_inputs(B, T, H, N, dtype, seed=s) for s in range(nsets)]
    out = {}
    for split in (*SPLITS, 0):
        it = [0]

        def fwd(split=split, it=it):
            r, k, v, w, u = sets[it[0] % nsets]
            it[0] += 1
            return ext.forward(r, k, v, w, u, None, split)

        out["auto" if split == 0 else str(split)] = statistics.median(time_fn(fwd, reps=reps))
    sm = torch.cuda.get_device_properties(0).multi_processor_count
    out["auto_split"] = auto_split(B, H, N, sm)
    out["best_split"] = min(SPLITS, key=lambda s: out[str(s)])
    print(f"  split sweep BH={B * H} T={T} N={N}: {out}", flush=True)
    return out


TIME_CHUNKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Shapes between the two regimes, swept (ours only) with --time-split-sweep to place the rule's
#: edges (``SPLIT_MAX_SEQUENCES`` and ``SPLIT_MIN_T`` in rwkv_ts/ops/timesplit.py).
TIME_SPLIT_EDGE_SHAPES = [
    ("edge", 128, 1024, 2, 64),  # B*H = 256, T = 1024
    ("edge", 64, 2048, 2, 64),  # B*H = 128, T = 2048
    ("edge", 16, 1024, 2, 64),  # B*H = 32, T = 1024
    ("edge", 512, 4096, 2, 32),  # B*H = 1024, T = 4096: above the rule's B*H edge
]


def time_split_sweep(B, T, H, N, dtype, reps):
    """Forward and forward+backward ms (medians, CUDA events) of ``wkv_cuda`` with the sequence
    cut into each count of time chunks (1: no split, one call of the kernels ``kernel_form``
    picks) and at the automatic count of ``rwkv_ts.ops.timesplit.time_split_chunks``."""
    inputs = make_inputs(B, T, H, N, dtype, seed=0)
    leaves = tuple(t.clone().requires_grad_(True) for t in inputs)
    gy = torch.randn(B, T, H, N, device="cuda").to(dtype)
    warm, nrep = (3, max(5, reps // 5)) if T >= 4096 else (10, reps)
    out = {"auto_chunks": time_split_chunks(B, T, H, N)}
    for chunks in (*TIME_CHUNKS, None):
        if chunks is not None and (T // chunks < 16 or chunks * B * H > 16384):
            continue

        def fwd(chunks=chunks):
            with torch.no_grad():
                return wkv_cuda_mod.wkv_cuda(*inputs, None, time_chunks=chunks)

        def fwdbwd(chunks=chunks):
            y, _ = wkv_cuda_mod.wkv_cuda(*leaves, None, time_chunks=chunks)
            torch.autograd.grad(y, leaves, gy)

        out["auto" if chunks is None else str(chunks)] = {
            "fwd_ms": statistics.median(time_fn(fwd, warmup=warm, reps=nrep)),
            "fwdbwd_ms": statistics.median(time_fn(fwdbwd, warmup=warm, reps=nrep)),
        }
        torch.cuda.empty_cache()
    print(f"  time-split sweep BH={B * H} T={T} N={N}: {out}", flush=True)
    return out


def check_against(fla, dtype):
    """Sanity: ours vs the reference vs fla on one small shape (relative max error)."""
    B, T, H, N = 4, 70, 2, 64
    r, k, v, w, u = make_inputs(B, T, H, N, dtype, seed=123)
    y_ref, s_ref = wkv_reference(r, k, v, w, u)
    y, s = wkv_cuda_mod.wkv_cuda(r, k, v, w, u)

    def rel(a, b):
        return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()

    out = {"ours_vs_ref_y": rel(y, y_ref), "ours_vs_ref_state": rel(s, s_ref)}
    ys, ss = wkv_cuda_mod.wkv_cuda(r, k, v, w, u, form="sequential")
    out |= {
        "ours_sequential_vs_ref_y": rel(ys, y_ref),
        "ours_sequential_vs_ref_state": rel(ss, s_ref),
    }
    if dtype == torch.bfloat16:  # the tensor-core kernels (the rule gives this shape the others)
        yc, sc = wkv_cuda_mod.wkv_cuda(r, k, v, w, u, form="chunked")
        out["ours_chunked_vs_ref_y"] = rel(yc, y_ref)
        out["ours_chunked_vs_ref_state"] = rel(sc, s_ref)
    if fla is not None:
        wl = -torch.exp(w.float()).to(dtype)
        yf, sf = fla["fla_chunk"](r, k, v, wl, u, scale=1.0, output_final_state=True)
        out["fla_chunk_vs_ref_y"] = rel(yf, y_ref)
        out["fla_chunk_vs_ref_state"] = rel(sf, s_ref)
    return out


def streaming(bw, reps):
    """T = 1 steps with a state (B*H = 3584, N = 64, float32, no grad): kernel vs torch step."""
    out = {}
    for N in (32, 64):
        B, H = 1792, 2
        r, k, v, w, u = make_inputs(B, 1, H, N, torch.float32)
        s0 = torch.randn(B, H, N, N, device="cuda")
        with torch.no_grad():
            a = (r, k, v, w, u, s0)
            t_k = statistics.median(time_fn(lambda a=a: wkv_cuda_mod.wkv_cuda(*a), reps=reps))
            t_t = statistics.median(time_fn(lambda a=a: wkv_recurrent(*a), reps=reps))
        floor = (5 * r.numel() * 4 + 2 * s0.numel() * 4) / bw * 1e3
        out[f"N{N}"] = {"kernel_ms": t_k, "torch_recurrent_ms": t_t, "floor_ms": floor}
        print(f"  streaming T=1 BH={B * H} N={N}: {out[f'N{N}']}", flush=True)
    return out


def render_md(data: dict) -> str:
    lines = [
        "# WKV kernel benchmark",
        "",
        f"- command: `{data['command']}`",
        f"- machine: {data['machine']}",
        f"- date: {data['date']}",
        f"- measured device-to-device copy bandwidth (read + write): "
        f"{data['copy_bandwidth_GBps']:.0f} GB/s",
        "- times: median of CUDA-event timed calls after warm-up; inputs bf16 unless noted; "
        "floor = fewest bytes (inputs read once, outputs written once) / copy bandwidth; "
        "`x floor` = time / floor time (1.0 = at the memory floor).",
        "",
        "| shape (B·H, T, N) | path | fwd ms | fwd x floor | fwd+bwd ms | fwd+bwd x floor |"
        " ours fwd speed-up | ours fwd+bwd speed-up | fwd ms, one call at a time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        shape = f"{r['label']} ({r['BH']}, {r['T']}, {r['N']}) {r['dtype'].split('.')[-1]}"
        ours = r.get("ours", {})
        known = ("ours", "ours_sequential", "fla_chunk", "fla_fused_recurrent", "torch_chunked")
        # plus paths carried over from an earlier run by a merge, e.g. "fla_chunk (run of DATE)"
        extra = [
            k for k, v in r.items() if k not in known and isinstance(v, dict) and "fwd_ms" in v
        ]
        for name in (*known, *extra):
            m = r.get(name)
            if m is None:
                continue
            if "error" in m:
                lines.append(f"| {shape} | {name} | error: {m['error'][:60]} | | | | | | |")
                continue
            su_f = su_b = ""
            if name != "ours" and "fwd_ms" in ours:
                su_f = f"{m['fwd_ms'] / ours['fwd_ms']:.2f}x"
                su_b = f"{m['fwdbwd_ms'] / ours['fwdbwd_ms']:.2f}x"
            one = f"{m['fwd_one_call_ms']:.4f}" if "fwd_one_call_ms" in m else ""
            lines.append(
                f"| {shape} | {name} | {m['fwd_ms']:.4f} | {m['fwd_ms'] / r['floor_fwd_ms']:.1f} | "
                f"{m['fwdbwd_ms']:.4f} | {m['fwdbwd_ms'] / r['floor_fwdbwd_ms']:.1f} | {su_f} | "
                f"{su_b} | {one} |"
            )
            shape = ""
    lines += [
        "",
        "Speed-up columns: that path's time / ours (> 1: ours is faster). Timed calls are"
        " launched back to back (the host runs ahead, as in training), so each time is the GPU's"
        " work of one call. The last column times the forward with the host waiting after every"
        " call: the GPU idles from the first event until the host has launched the call, so it"
        " adds the host's launch latency and whatever an idle GPU costs the next call.",
        "",
    ]
    sweeps = [r for r in data["results"] if r.get("split_sweep")]
    if sweeps:
        lines += [
            "## Forward ms by split (ours, threads per state column)",
            "",
            "| shape (B·H, T, N) | B·H·N | split 1 | split 2 | split 4 | auto (its split) | best |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sweeps:
            m = r["split_sweep"]
            cells = " | ".join(f"{m[str(s)]:.4f}" for s in SPLITS)
            lines.append(
                f"| ({r['BH']}, {r['T']}, {r['N']}) | {r['BH'] * r['N']} | {cells} | "
                f"{m['auto']:.4f} ({m['auto_split']}) | {m['best_split']} |"
            )
        lines.append("")
    time_sweeps = [r for r in data["results"] if r.get("time_split_sweep")]
    if time_sweeps:
        counts = [*map(str, TIME_CHUNKS), "auto"]
        lines += [
            "## Ours by count of time chunks (fwd ms / fwd+bwd ms; 1 = no split: one call of the "
            "form `kernel_form` picks)",
            "",
            "| shape (B·H, T, N) | " + " | ".join(counts) + " | auto's count |",
            "|---|" + "---|" * (len(counts) + 1),
        ]
        for r in time_sweeps:
            m = r["time_split_sweep"]
            cells = [
                f"{m[c]['fwd_ms']:.3f} / {m[c]['fwdbwd_ms']:.3f}" if c in m else "" for c in counts
            ]
            lines.append(
                f"| ({r['BH']}, {r['T']}, {r['N']}) | "
                + " | ".join(cells)
                + f" | {m['auto_chunks']} |"
            )
        lines.append("")
    if data.get("streaming"):
        lines += ["## Streaming (T = 1 with a state, float32, no grad)", ""]
        lines += ["| B·H, N | kernel ms | torch step ms | floor ms |", "|---|---|---|---|"]
        for key, m in data["streaming"].items():
            lines.append(
                f"| 3584, {key[1:]} | {m['kernel_ms']:.4f} | {m['torch_recurrent_ms']:.4f} | "
                f"{m['floor_ms']:.4f} |"
            )
        lines.append("")
    if data.get("check"):
        lines += ["## Sanity check (relative max error vs the float64 reference)", ""]
        lines += [f"- {k}: {v:.2e}" for k, v in data["check"].items()]
        lines.append("")
    if data.get("notes"):
        lines += ["## Notes", "", data["notes"], ""]
    return "\n".join(lines)


def merge(paths: list[Path], out: Path) -> None:
    """Combine the JSON of several runs (one machine) into ``out`` and its ``.md``."""
    runs = [json.loads(p.read_text()) for p in paths]
    data = dict(runs[0])
    data["command"] = " ; ".join(r["command"] for r in runs)
    data["date"] = ", ".join(r["date"] for r in runs)
    data["copy_bandwidth_GBps"] = min(r["copy_bandwidth_GBps"] for r in runs)
    data["runs"] = [
        {k: r[k] for k in ("command", "date", "copy_bandwidth_GBps", "machine")} for r in runs
    ]
    order = {(s[1] * s[3], s[2], s[4]): i for i, s in enumerate(TS_SHAPES + LONG_SHAPES)}
    data["results"] = sorted(
        (x for r in runs for x in r["results"]),
        key=lambda x: order.get((x["BH"], x["T"], x["N"]), 99),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_md(data))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--no-fla", action="store_true")
    p.add_argument("--no-long", action="store_true")
    p.add_argument("--long-only", action="store_true", help="the long-sequence shapes only")
    p.add_argument("--quick", action="store_true", help="first two time-series shapes only")
    p.add_argument("--head-size", type=int, default=0, help="only shapes of this N (0: all)")
    p.add_argument("--split-sweep", action="store_true", help="time our forward at split 1, 2, 4")
    p.add_argument(
        "--time-split-sweep",
        action="store_true",
        help="on the long shapes, time ours at each count of time chunks (1: sequential kernel)",
    )
    p.add_argument(
        "--paths", nargs="+", help="time only these paths (e.g. ours ours_sequential fla_chunk)"
    )
    p.add_argument("--name", default="wkv_kernel", help="base name of the result files")
    p.add_argument(
        "--merge", nargs="+", type=Path, help="merge result JSON files of earlier runs and exit"
    )
    args = p.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out_dir / f"{args.name}.json")
        return
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    if wkv_cuda_mod.extension() is None:
        raise SystemExit("the CUDA WKV extension did not build")
    fla = None if args.no_fla else load_fla()
    fns = paths(fla)
    if args.paths:
        unknown = sorted(set(args.paths) - set(fns))
        if unknown:
            raise SystemExit(f"unknown or unavailable paths {unknown}; have {sorted(fns)}")
        fns = {name: fn for name, fn in fns.items() if name in args.paths}
    warm_up_gpu()
    bw = copy_bandwidth()
    print(f"copy bandwidth {bw / 1e9:.0f} GB/s", flush=True)
    dtype = torch.bfloat16
    check = check_against(fla, dtype)
    print("check:", check, flush=True)

    def skip(label, B, T, H, N):
        out = set()
        if label == "long" and T > 16384:
            out.add("torch_chunked")  # minutes per call in its chunk loop; not informative
        return out

    shapes = TS_SHAPES[:2] if args.quick else TS_SHAPES + ([] if args.no_long else LONG_SHAPES)
    if args.long_only:
        shapes = list(LONG_SHAPES)
    if args.head_size:
        shapes = [s for s in shapes if s[4] == args.head_size]
    argv0 = [os.path.relpath(sys.argv[0])] + sys.argv[1:]
    cmd = "python " + " ".join(shlex.quote(a) for a in argv0)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stream = streaming(bw, args.reps)
    edges = []
    if args.time_split_sweep:
        for label, B, T, H, N in TIME_SPLIT_EDGE_SHAPES:
            sweep = time_split_sweep(B, T, H, N, dtype, args.reps)
            shape = {"label": label, "B": B, "T": T, "H": H, "N": N, "BH": B * H}
            edges.append({**shape, "dtype": str(dtype), "time_split_sweep": sweep})
    results = []
    for label, B, T, H, N in shapes:
        results.append(bench_shape(label, B, T, H, N, dtype, fns, bw, args.reps, skip))
        if args.split_sweep:
            results[-1]["split_sweep"] = split_sweep(B, T, H, N, dtype, args.reps)
        if args.time_split_sweep and label == "long":
            results[-1]["time_split_sweep"] = time_split_sweep(B, T, H, N, dtype, args.reps)
        partial = {"command": cmd, "check": check, "results": results, "streaming": stream}
        (args.out_dir / f"{args.name}.partial.json").write_text(json.dumps(partial, indent=2))
    argv0 = [os.path.relpath(sys.argv[0])] + sys.argv[1:]
    cmd = "python " + " ".join(shlex.quote(a) for a in argv0)
    data = {
        "command": cmd,
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "sm_count": torch.cuda.get_device_properties(0).multi_processor_count,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "copy_bandwidth_GBps": bw / 1e9,
        "check": check,
        "results": results + edges,
        "streaming": stream,
    }
    try:
        import fla as fla_pkg

        data["machine"]["fla"] = getattr(fla_pkg, "__version__", "?")
    except Exception:  # noqa: BLE001
        pass
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(data, indent=2) + "\n")
    md = render_md(data)
    (args.out_dir / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
