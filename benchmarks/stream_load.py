"""Load benchmark: many series through ONE stream, in random interleavings and random chunk sizes.

10,000 series x 1,000 steps (by default) are fed to a single ``ForecastStream`` in random update
calls: each call takes a random subset of the open series and gives each a random number of its
next samples (``stream.update({id: samples})``; now and then ``update_array`` with one chunk size
for the whole subset). The series join in waves while the others run. Then:

- every series' final forecast is checked against a stream that saw only that series (its whole
  history in one update), and for a random sample of 50 series every forecast after each of their
  updates against a single-series stream fed the same chunks;
- resident memory (``VmRSS`` of ``/proc/self/status``) is read at 10 points of the run, with the
  stream's state bytes, to show whether memory grows with the history (it should not: the state
  is a fixed size per series);
- samples per second of the whole run (update calls only).

Run on one core: ``taskset -c 1 python benchmarks/stream_load.py`` (numba backend; ``--backend
torch`` for the torch modules' step, far slower at this scale). Weights are random: the checks and
timings do not depend on them. Results: ``benchmarks/results/stream_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, command_line, machine, now, write_json  # noqa: E402

SHAPE = dict(lookback=64, horizon=16, patch_len=8, stride=4, d_model=32, n_layers=2, head_size=8)


def rss_mb() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_estimator(n_channels: int, seed: int):
    """A fitted-looking streamable ``RWKVForecaster`` of the benchmark shape, random weights."""
    import torch

    from rwkv_ts import RWKVForecaster
    from rwkv_ts.data import to_panel
    from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel

    torch.manual_seed(seed)
    config = RWKVTSConfig(**SHAPE, norm="causal", head_tokens=1, dropout=0.0)
    model = RWKVTSModel(config).eval()
    with torch.no_grad():
        # the output projections start at zero; move every weight so that every path computes
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    est = RWKVForecaster(**SHAPE, norm="causal", head="last", verbose=False)
    est.model_, est.config_ = model, config
    est.channels_ = [str(c) for c in range(n_channels)]
    est.scale_mean_, est.scale_std_ = np.zeros(n_channels), np.ones(n_channels)
    est.history_, est.best_epoch_, est.n_epochs_ = [], None, 0
    est.last_panel_ = to_panel(np.zeros((SHAPE["lookback"], n_channels)))
    return est


def make_data(n_series: int, n_steps: int, n_channels: int, seed: int) -> np.ndarray:
    """Random walks with a level and a daily-like season per series, float32 (S, T, C)."""
    rng = np.random.default_rng(seed)
    data = np.empty((n_series, n_steps, n_channels), dtype=np.float32)
    t = np.arange(n_steps)
    for lo in range(0, n_series, 1000):
        hi = min(lo + 1000, n_series)
        walk = np.cumsum(rng.normal(size=(hi - lo, n_steps, n_channels)), axis=1) * 0.2
        phase = rng.uniform(0, 2 * np.pi, size=(hi - lo, 1, n_channels))
        season = np.sin(2 * np.pi * t[None, :, None] / 24 + phase)
        data[lo:hi] = walk + season + rng.normal(size=(hi - lo, 1, n_channels)) * 5
    return data


def schedule(
    rng: np.random.Generator,
    n_series: int,
    n_steps: int,
    max_chunk: int,
    max_batch: int,
    n_waves: int,
):
    """Random update calls: ``(kind, {series: (start, stop)})``.

    A wave of series joins once the open series have had 10% of their samples; ``kind`` is
    ``"dict"`` (any chunk size per series) or, one call in five, ``"array"`` (one size for all).
    """
    waves = np.array_split(rng.permutation(n_series), n_waves)
    is_open = np.zeros(n_series, dtype=bool)
    is_open[waves[0]] = True
    n_open = 1
    fed = np.zeros(n_series, dtype=np.int64)
    while True:
        if n_open < n_waves and fed[is_open].sum() >= 0.1 * n_steps * is_open.sum():
            is_open[waves[n_open]] = True
            n_open += 1
        open_ = np.flatnonzero(is_open & (fed < n_steps))
        if not len(open_):
            return
        size = min(len(open_), int(rng.integers(1, max_batch + 1)))
        chosen = open_[rng.permutation(len(open_))[:size]]
        room = n_steps - fed[chosen]
        if rng.random() < 0.2:
            sizes = np.full(size, int(rng.integers(1, min(int(room.min()), max_chunk) + 1)))
            kind = "array"
        else:
            sizes = np.minimum(rng.integers(1, max_chunk + 1, size), room)
            kind = "dict"
        spans = {}
        for s, k in zip(chosen.tolist(), sizes.tolist(), strict=True):
            spans[s] = (int(fed[s]), int(fed[s] + k))
        fed[chosen] += sizes
        yield kind, spans


def feed(stream, data: np.ndarray, kind: str, spans: dict) -> dict:
    """One update call; ``{series: forecast (horizon, C), or None while not ready}``."""
    if kind == "array":
        ids = list(spans)
        block = np.stack([data[s, a:b] for s, (a, b) in spans.items()])
        out = stream.update_array(block, series=ids)
        return {s: None if np.isnan(f).all() else f for s, f in zip(ids, out, strict=True)}
    got = stream.update({s: data[s, a:b] for s, (a, b) in spans.items()})
    return {s: got.get(s) for s in spans}


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    est = build_estimator(args.channels, args.seed)
    data = make_data(args.series, args.steps, args.channels, args.seed)
    tracked = set(rng.choice(args.series, size=min(args.tracked, args.series), replace=False))
    tracked = {int(s) for s in tracked}
    chunks: dict[int, list] = {s: [] for s in tracked}
    seen: dict[int, list] = {s: [] for s in tracked}

    stream = est.stream(history=None, backend=args.backend)
    total = args.series * args.steps
    marks = [round(total * (i + 1) / 10) for i in range(10)]
    checkpoints = []
    fed = n_calls = 0
    busy = 0.0
    rss_start = rss_mb()
    wall = time.perf_counter()
    for kind, spans in schedule(
        rng, args.series, args.steps, args.max_chunk, args.max_batch, args.waves
    ):
        t0 = time.perf_counter()
        out = feed(stream, data, kind, spans)
        busy += time.perf_counter() - t0
        n_calls += 1
        fed += sum(b - a for a, b in spans.values())
        for s in tracked & spans.keys():
            chunks[s].append(spans[s])
            # a copy: the forecast is a view of the whole call's output, which would stay alive
            seen[s].append(None if out[s] is None else out[s].copy())
        while marks and fed >= marks[0]:
            marks.pop(0)
            checkpoints.append(
                {
                    "samples": fed,
                    "samples_per_series_mean": fed / args.series,
                    "n_series": stream.n_series,
                    "state_bytes": stream.state_nbytes(),
                    "state_bytes_per_series": stream.state_nbytes() / stream.n_series,
                    "rss_mb": rss_mb(),
                    "elapsed_s": time.perf_counter() - wall,
                }
            )
            print(checkpoints[-1], flush=True)
    wall = time.perf_counter() - wall
    assert fed == total
    counts = stream.n_samples()
    assert len(counts) == args.series and set(counts.values()) == {args.steps}

    # checks against streams that saw only one series
    t0 = time.perf_counter()
    ids = list(range(args.series))
    final = stream.forecast_array(ids)
    final_err = 0.0
    final_exact = True
    for s in ids:
        alone = est.stream(history=None, backend=args.backend)
        ref = alone.update({s: data[s]})[s]
        final_err = max(final_err, float(np.max(np.abs(final[s] - ref))))
        final_exact &= bool(np.array_equal(final[s], ref))
    every_err = 0.0
    every_exact = True
    n_compared = 0
    for s in sorted(tracked):
        alone = est.stream(history=None, backend=args.backend)
        for (a, b), got in zip(chunks[s], seen[s], strict=True):
            ref = alone.update({s: data[s, a:b]}).get(s)
            if (got is None) != (ref is None):
                raise AssertionError(f"series {s}: ready in one stream and not the other at {b}")
            if ref is None:
                continue
            n_compared += 1
            every_err = max(every_err, float(np.max(np.abs(got - ref))))
            every_exact &= bool(np.array_equal(got, ref))
    check_s = time.perf_counter() - t0

    joined = next(i for i, cp in enumerate(checkpoints) if cp["n_series"] == args.series)
    after_join = checkpoints[joined:]
    growth = after_join[-1]["rss_mb"] - after_join[0]["rss_mb"]
    state_mb = stream.state_nbytes() / 2**20
    per_series = {cp["state_bytes_per_series"] for cp in checkpoints}
    return {
        "backend": args.backend,
        "kind": stream.kind,
        "n_series": args.series,
        "n_steps": args.steps,
        "n_channels": args.channels,
        "samples": total,
        "update_calls": n_calls,
        "max_chunk": args.max_chunk,
        "max_series_per_call": args.max_batch,
        "waves": args.waves,
        "seed": args.seed,
        "wall_s": wall,
        "update_s": busy,
        "samples_per_second": total / busy,
        "samples_per_second_wall": total / wall,
        "state_bytes": stream.state_nbytes(),
        "state_bytes_per_series": stream.state_nbytes() / stream.n_series,
        "state_bytes_per_series_constant": len(per_series) == 1,
        "rss_start_mb": rss_start,
        "checkpoints": checkpoints,
        "rss_growth_after_all_joined_mb": growth,
        "samples_per_series_when_all_joined": after_join[0]["samples_per_series_mean"],
        "state_mb": state_mb,
        "final": {"series": args.series, "max_abs_diff": final_err, "bit_exact": final_exact},
        "every": {
            "series": len(tracked),
            "forecasts": n_compared,
            "max_abs_diff": every_err,
            "bit_exact": every_exact,
        },
        "check_s": check_s,
    }


def markdown(report: dict) -> str:
    r = report["result"]
    m = report["machine"]
    flat = (
        f"Memory stayed flat: once all {r['n_series']:,} series had joined (after "
        f"{r['samples_per_series_when_all_joined']:.0f} samples per series on average), resident "
        f"memory changed by {r['rss_growth_after_all_joined_mb']:+.1f} MiB over the remaining "
        f"history, against {r['state_mb']:.1f} MiB of stream state "
        f"({r['state_bytes_per_series']:,.0f} bytes per series, the same at every checkpoint)."
        if abs(r["rss_growth_after_all_joined_mb"]) < 0.1 * r["state_mb"]
        and r["state_bytes_per_series_constant"]
        else f"Memory did NOT stay flat: resident memory grew by "
        f"{r['rss_growth_after_all_joined_mb']:+.1f} MiB after all series had joined, against "
        f"{r['state_mb']:.1f} MiB of stream state."
    )
    lines = [
        "# Stream load: many series, random interleaving and chunk sizes, one stream",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cpu_count']} cores ({m.get('note', '')}); "
        f"torch {m['torch']}, one thread; python {m['python']}",
        f"- model: {report['model']}",
        f"- backend: {r['backend']} (engine kind `{r['kind']}`)",
        f"- scale: {r['n_series']:,} series x {r['n_steps']:,} steps x {r['n_channels']} "
        f"channel(s) = {r['samples']:,} samples in {r['update_calls']:,} update calls (1 to "
        f"{r['max_series_per_call']} series per call, 1 to {r['max_chunk']} samples per series "
        f"per call, series joining in {r['waves']} waves; seed {r['seed']})",
        "",
        "## Exactness against streams that saw only one series",
        "",
        "| check | series | forecasts compared | max abs difference | bit-exact |",
        "|---|---:|---:|---:|---|",
        f"| final forecast | {r['final']['series']:,} | {r['final']['series']:,} | "
        f"{r['final']['max_abs_diff']:.3g} | {'yes' if r['final']['bit_exact'] else 'no'} |",
        f"| every forecast (after each of the series' updates) | {r['every']['series']} | "
        f"{r['every']['forecasts']:,} | {r['every']['max_abs_diff']:.3g} | "
        f"{'yes' if r['every']['bit_exact'] else 'no'} |",
        "",
        "## Throughput",
        "",
        f"{r['samples_per_second']:,.0f} samples per second in the update calls "
        f"({r['update_s']:.1f} s; {r['samples_per_second_wall']:,.0f} per second of wall time "
        f"including the random schedule, {r['wall_s']:.1f} s).",
        "",
        "## Memory during the run",
        "",
        "| samples fed | mean per series | series joined | state bytes | state bytes per series "
        "| RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for cp in r["checkpoints"]:
        lines.append(
            f"| {cp['samples']:,} | {cp['samples_per_series_mean']:.0f} | {cp['n_series']:,} | "
            f"{cp['state_bytes']:,} | {cp['state_bytes_per_series']:,.0f} | {cp['rss_mb']:.1f} |"
        )
    lines += ["", f"RSS before the first update: {r['rss_start_mb']:.1f} MiB.", "", flat]
    if report.get("scale_note"):
        lines += ["", report["scale_note"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["numba", "torch"], default="numba")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--max-chunk", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=500, help="most series in one call")
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--tracked", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="a sentence for the results (e.g. on scale)")
    parser.add_argument("--out", default=str(RESULTS / "stream_load.json"))
    args = parser.parse_args()

    result = run(args)
    info = machine()
    info["note"] = "shared with other jobs; one core pinned with taskset"
    info["affinity"] = sorted(os.sched_getaffinity(0))
    report = {
        "benchmark": "stream_load",
        "command": command_line(),
        "date": now(),
        "machine": info,
        "model": ", ".join(f"{k}={v}" for k, v in SHAPE.items())
        + ", norm=causal, head=last, random weights",
        "scale_note": args.note,
        "result": result,
    }
    out = Path(args.out)
    write_json(out, report)
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    ok = result["final"]["max_abs_diff"] < 1e-5 and result["every"]["max_abs_diff"] < 1e-5
    if not ok:
        raise SystemExit("a series' forecasts differ from its single-series stream's")


if __name__ == "__main__":
    main()
