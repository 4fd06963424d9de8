"""Streaming benchmark: per-new-sample latency and memory of our stream against re-running models.

Measured in one run, same model shape (lookback 512, horizon 96, patch 16 / stride 8, d_model 128,
2 layers; the streamable configuration: causal normalisation, head on the last token), each variant
in its own worker process (so that its resident memory is its own):

(a) ``torch``   our torch stream, ``ForecastStream.update_array`` (one token step per sample);
(a') ``stream_numba`` the same ``ForecastStream`` API on the numba backend
    (``est.stream(backend="numba")``);
(b) ``runtime`` the torch-free numpy/numba runtime (``rwkv_ts.runtime``);
(c) ``onnx``    the exported ONNX step graph under onnxruntime;
(d) ``rerun``   re-running our batch model over the 512-sample window for every new sample;
(e) ``neuralforecast`` PatchTST (lookback 512, horizon 96) ``NeuralForecast.predict`` on the history
    for every new sample, from a separate virtualenv (``--nf-python``) that shares our torch.

Then throughput (samples per second) with 1, 100 and 10,000 concurrent series (one new sample for
every series per call), and the state memory per series after 1e3, 1e5 and 1e6 samples.

Run on one core: ``taskset -c 1 python benchmarks/streaming.py`` (torch uses one thread). Weights
are random (timings do not depend on them). Results: ``benchmarks/results/streaming.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, command_line, default_data_home, now, write_json  # noqa: E402

SHAPE = dict(lookback=512, horizon=96, patch_len=16, stride=8, d_model=128, n_layers=2)


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, MiB."""
    cur = peak = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


_VALUES: Path | None = None


def make_values(folder: Path, n: int) -> None:
    """ETTh1's oil temperature, tiled with noise to length ``n`` (a real-looking stream), written
    once for the workers (which must not import the data layer: it imports torch)."""
    global _VALUES
    from rwkv_ts.datasets import load_ett

    ot = load_ett("ETTh1", data_home=default_data_home(), download=False).frame["OT"].to_numpy()
    reps = -(-n // len(ot))
    rng = np.random.default_rng(0)
    values = (np.tile(ot, reps)[:n] + 0.01 * rng.normal(size=n)).astype(np.float64)
    np.save(folder / "values.npy", values)
    _VALUES = folder / "values.npy"


def series_values(n: int) -> np.ndarray:
    values = np.load(_VALUES, mmap_mode="r")
    if n > len(values):
        raise ValueError(f"{n} values asked, {len(values)} prepared")
    return np.array(values[:n])


def percentiles(seconds: list[float]) -> dict:
    us = np.asarray(seconds) * 1e6
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "n": len(us),
    }


# ---------------------------------------------------------------------------------------------
# the model under test
# ---------------------------------------------------------------------------------------------


def build_model(folder: Path) -> Path:
    """A streamable forecaster of the benchmark shape with random weights, saved to ``folder``."""
    import torch

    from rwkv_ts import RWKVForecaster
    from rwkv_ts.data import to_panel
    from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel

    torch.manual_seed(0)
    config = RWKVTSConfig(**SHAPE, norm="causal", head_tokens=1, dropout=0.0)
    model = RWKVTSModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape))
    history = series_values(SHAPE["lookback"])
    est = RWKVForecaster(**SHAPE, norm="causal", head="last", verbose=False)
    est.model_, est.config_, est.channels_ = model, config, ["0"]
    values = history[:, None]
    est.scale_mean_, est.scale_std_ = values.mean(axis=0), values.std(axis=0)
    est.history_, est.best_epoch_, est.n_epochs_ = [], None, 0
    est.last_panel_ = to_panel(values)
    path = folder / "model.rwkvts"
    est.save(path)
    from rwkv_ts.export import export_onnx

    export_onnx(path, folder / "step.onnx")
    return path


# ---------------------------------------------------------------------------------------------
# workers (one process each)
# ---------------------------------------------------------------------------------------------


def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


def worker_latency(kind: str, folder: Path, n: int, warm: int) -> dict:
    values = series_values(warm + n)
    times: list[float] = []
    if kind == "runtime":
        from rwkv_ts.runtime import RuntimeModel

        stream = RuntimeModel.load(folder / "model.rwkvts").stream(1)
        stream.update(values[None, :warm, None])
        for t in range(warm, warm + n):
            x = values[t : t + 1].reshape(1, 1)
            t0 = time.perf_counter()
            stream.update(x)
            times.append(time.perf_counter() - t0)
        assert "torch" not in sys.modules
    elif kind == "onnx":
        from rwkv_ts.export import OnnxStream

        stream = OnnxStream(folder / "step.onnx", n_series=1)
        stream.update(values[None, :warm, None])
        for t in range(warm, warm + n):
            x = values[t : t + 1].reshape(1, 1)
            t0 = time.perf_counter()
            stream.update(x)
            times.append(time.perf_counter() - t0)
    elif kind in ("torch", "stream_numba", "rerun"):
        _torch_threads()
        import torch

        import rwkv_ts

        est = rwkv_ts.load(folder / "model.rwkvts")
        if kind != "rerun":
            backend = "numba" if kind == "stream_numba" else "torch"
            stream = est.stream(history=None, backend=backend)
            stream.update(values[:warm])
            for t in range(warm, warm + n):
                x = values[t : t + 1].reshape(1, 1)
                t0 = time.perf_counter()
                stream.update_array(x, series=[None])
                times.append(time.perf_counter() - t0)
        else:
            model = est.model_.eval()
            lookback = SHAPE["lookback"]
            mean, std = est.scale_mean_, est.scale_std_
            with torch.inference_mode():
                for t in range(warm, warm + n):
                    t0 = time.perf_counter()
                    window = ((values[t + 1 - lookback : t + 1] - mean) / std).astype(np.float32)
                    model(torch.from_numpy(window)[None, :, None])
                    times.append(time.perf_counter() - t0)
    else:
        raise ValueError(kind)
    return {**percentiles(times), "rss_mb": rss_mb()[0], "peak_rss_mb": rss_mb()[1]}


def worker_neuralforecast(n: int, warm: int) -> dict:
    """PatchTST through neuralforecast: fit one step (weights do not change the timing), then
    ``predict`` on the history after every new sample."""
    import logging
    import warnings

    import pandas as pd

    _torch_threads()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "neuralforecast"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from neuralforecast import NeuralForecast
    from neuralforecast.models import PatchTST

    values = series_values(warm + n + SHAPE["lookback"] + SHAPE["horizon"])
    ds = pd.date_range("2020-01-01", periods=len(values), freq="h")
    df = pd.DataFrame({"unique_id": "OT", "ds": ds, "y": values})
    model = PatchTST(
        h=SHAPE["horizon"],
        input_size=SHAPE["lookback"],
        patch_len=SHAPE["patch_len"],
        stride=SHAPE["stride"],
        max_steps=1,
        enable_progress_bar=False,
        logger=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    nf = NeuralForecast(models=[model], freq="h")
    nf.fit(df.iloc[: warm + SHAPE["lookback"]])
    times = []
    for t in range(warm, warm + n):
        history = df.iloc[: t + 1]
        t0 = time.perf_counter()
        nf.predict(df=history)
        times.append(time.perf_counter() - t0)
    import neuralforecast

    return {
        **percentiles(times),
        "rss_mb": rss_mb()[0],
        "peak_rss_mb": rss_mb()[1],
        "neuralforecast": neuralforecast.__version__,
        "model": "PatchTST(h=96, input_size=512, patch_len=16, stride=8, defaults otherwise)",
    }


def worker_throughput(kind: str, folder: Path, n_series: int, rounds: int) -> dict:
    values = series_values(SHAPE["lookback"] + rounds)
    rng = np.random.default_rng(n_series)
    offsets = rng.normal(size=(n_series, 1))
    # streams: a few patches of warm-up (the per-sample work is the same from the first patch on;
    # forecasts are masked until lookback samples, not skipped); rerun: a full window
    warm = SHAPE["lookback"] if kind == "rerun" else 4 * SHAPE["patch_len"]
    warm_block = values[None, :warm, None] + offsets[:, :, None]
    if kind == "runtime":
        from rwkv_ts.runtime import RuntimeModel

        stream = RuntimeModel.load(folder / "model.rwkvts").stream(n_series)
        stream.update(warm_block)

        def one(x):
            stream.update(x)

        state = stream.nbytes_per_series()
    elif kind == "onnx":
        from rwkv_ts.export import OnnxStream

        stream = OnnxStream(folder / "step.onnx", n_series=n_series)
        stream.update(warm_block)

        def one(x):
            stream.update(x)

        state = sum(v.nbytes for v in stream.state.values()) // n_series
    else:
        _torch_threads()
        import torch

        import rwkv_ts

        est = rwkv_ts.load(folder / "model.rwkvts")
        if kind in ("torch", "stream_numba"):
            backend = "numba" if kind == "stream_numba" else "torch"
            stream = est.stream(history=None, backend=backend)
            stream.update_array(warm_block, series=list(range(n_series)))

            def one(x):
                stream.update_array(x)

            state = stream.state_nbytes() // n_series
        else:  # rerun: the batch model over every series' window
            model = est.model_.eval()
            windows = warm_block[:, :, 0].astype(np.float32)

            def one(x):
                nonlocal windows
                windows = np.concatenate([windows[:, 1:], x.astype(np.float32)], axis=1)
                with torch.inference_mode():
                    for start in range(0, n_series, 1024):
                        model(torch.from_numpy(windows[start : start + 1024])[:, :, None])

            state = SHAPE["lookback"] * 4
    times = []
    for r in range(rounds):
        x = values[warm + r] + offsets
        t0 = time.perf_counter()
        one(x)
        times.append(time.perf_counter() - t0)
    per_round = float(np.median(times))
    return {
        "n_series": n_series,
        "rounds": rounds,
        "round_seconds_median": per_round,
        "samples_per_second": n_series / per_round,
        "state_bytes_per_series": int(state),
        "peak_rss_mb": rss_mb()[1],
    }


def worker_memory(kind: str, folder: Path, checkpoints: list[int]) -> dict:
    """State bytes per series and process RSS after ``checkpoints`` samples of one series."""
    total = max(checkpoints)
    values = series_values(total)
    out = []
    if kind == "runtime":
        from rwkv_ts.runtime import RuntimeModel

        stream = RuntimeModel.load(folder / "model.rwkvts").stream(1)

        def feed(chunk):
            stream.update(chunk[None, :, None])

        def state():
            return stream.nbytes_per_series()
    else:
        _torch_threads()
        import rwkv_ts

        # the torch back-end by name: the default ("auto") is the numba kernel for this model
        stream = rwkv_ts.load(folder / "model.rwkvts").stream(history=None, backend="torch")
        stream.update_array(np.zeros((1, 0, 1)), series=["s"])

        def feed(chunk):
            stream.update_array(chunk[None, :, None])

        def state():
            return stream.state_nbytes()

    done = 0
    for mark in sorted(checkpoints):
        while done < mark:
            step = min(50_000, mark - done)
            feed(values[done : done + step])
            done += step
        out.append({"samples": mark, "state_bytes": int(state()), "rss_mb": rss_mb()[0]})
    return {"checkpoints": out}


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------


def run_worker(args: list[str], python: str = sys.executable, timeout: int = 1800) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    lat = report["latency"]
    torch_p50 = lat["torch"]["p50_us"]
    lines = [
        "# Streaming: latency per new sample, throughput, memory",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores "
        f"({report['machine']['note']}); torch {report['machine']['torch']}, one thread",
        f"- model: {report['model']}",
        "",
        "## Latency per new sample (one series)",
        "",
        "| variant | p50 (µs) | p99 (µs) | p50 vs torch stream | resident memory (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in report["labels"].items():
        entry = lat.get(key, {})
        if "p50_us" not in entry:
            lines.append(f"| {label} | — | — | — | {entry.get('error', 'not run')} |")
            continue
        lines.append(
            f"| {label} | {entry['p50_us']:.1f} | {entry['p99_us']:.1f} | "
            f"{entry['p50_us'] / torch_p50:.2f}x | {entry['rss_mb']:.0f} |"
        )
    rerun = lat["rerun"]["p50_us"]
    lines += [
        "",
        f"Re-encoding the 512-sample window costs {rerun / torch_p50:.1f}x the torch stream's "
        f"step, {rerun / lat['stream_numba']['p50_us']:.1f}x the same stream on the numba "
        f"backend and {rerun / lat['runtime']['p50_us']:.1f}x the runtime's (target: >= 50x).",
        "",
        "## Throughput (one new sample for every series per call)",
        "",
        "| variant | series | samples/s | state per series (bytes) |",
        "|---|---:|---:|---:|",
    ]
    for entry in report["throughput"]:
        if "samples_per_second" not in entry:
            lines.append(f"| {entry['kind']} | {entry['n_series']} | — | {entry.get('error')} |")
            continue
        lines.append(
            f"| {entry['kind']} | {entry['n_series']} | {entry['samples_per_second']:,.0f} | "
            f"{entry['state_bytes_per_series']:,} |"
        )
    lines += ["", "## Memory per series against history length", ""]
    lines += [
        "| variant | samples seen | state bytes | process RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for kind, entry in report["memory"].items():
        for cp in entry.get("checkpoints", []):
            lines.append(
                f"| {kind} | {cp['samples']:,} | {cp['state_bytes']:,} | {cp['rss_mb']:.0f} |"
            )
    lines += _notes_markdown(report)
    return "\n".join(lines) + "\n"


_RUN_KINDS = ("runtime", "stream_numba", "torch", "onnx", "rerun", "neuralforecast")


def _run_row(report: dict, code: str) -> dict:
    """One row of the table of runs: the date, what the code was, the p50 of every variant."""
    lat = report.get("latency", {})
    return {
        "date": report.get("date"),
        "code": code,
        "p50_us": {k: round(lat[k]["p50_us"], 1) for k in _RUN_KINDS if "p50_us" in lat.get(k, {})},
    }


def earlier_runs(previous: dict) -> list[dict]:
    """The runs before this one: those the previous results listed, then the previous run (the
    timings of this shared VM vary up to 2x between runs, so one run alone says little)."""
    if not previous:
        return []
    runs = list(previous.get("earlier_runs") or previous.get("earlier_runs_same_day") or [])
    return runs + [_run_row(previous, previous.get("code", "the previous run"))]


def _notes_markdown(report: dict) -> list[str]:
    """The Notes section: the hand-written notes (kept from run to run in the JSON's ``notes``;
    edit them there, or here, after a run) and the p50 of this run and the earlier ones."""
    runs = [*report.get("earlier_runs", []), _run_row(report, report.get("code", "this run"))]
    lines = ["", "## Notes", ""]
    if report.get("notes"):
        lines += [report["notes"], ""]
    lines += [
        "Runs of the same command (p50, µs):",
        "",
        "| run | runtime | numba stream | torch stream | ONNX | re-run | neuralforecast |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        cells = [f"{run['p50_us'][k]:.1f}" if k in run["p50_us"] else "—" for k in _RUN_KINDS]
        lines.append(f"| {run['date']} ({run['code']}) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=2000, help="latency samples (a, b, c)")
    parser.add_argument("--rerun-samples", type=int, default=300)
    parser.add_argument("--nf-samples", type=int, default=30)
    parser.add_argument(
        "--nf-python", default="/tmp/nf-venv/bin/python", help="python with neuralforecast"
    )
    parser.add_argument("--series", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--memory", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--out", default=str(RESULTS / "streaming.json"))
    parser.add_argument(
        "--code",
        default="current code",
        help="what the code of this run is, for the table of runs in the notes",
    )
    args = parser.parse_args()
    if args.worker:
        global _VALUES
        kind, *rest = args.worker
        folder = Path(rest[0])
        _VALUES = folder / "values.npy"
        if kind == "latency":
            out = worker_latency(rest[1], folder, int(rest[2]), int(rest[3]))
        elif kind == "nf":
            out = worker_neuralforecast(int(rest[1]), int(rest[2]))
        elif kind == "throughput":
            out = worker_throughput(rest[1], folder, int(rest[2]), int(rest[3]))
        else:
            out = worker_memory(rest[1], folder, [int(v) for v in rest[2:]])
        print(json.dumps(out))
        return

    import torch
    from _common import machine

    warm = 600
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_values(folder, max(args.memory + [warm + args.samples + 1000, 20_000]))
        build_model(folder)
        labels = {
            "torch": "(a) torch stream",
            "stream_numba": "(a') the same stream API, numba backend",
            "runtime": "(b) torch-free runtime (numba)",
            "onnx": "(c) ONNX step graph (onnxruntime)",
            "rerun": "(d) re-run batch model over the 512-sample window",
            "neuralforecast": "(e) neuralforecast PatchTST predict",
        }
        latency = {}
        for kind in ("runtime", "stream_numba", "torch", "onnx", "rerun"):
            n = args.rerun_samples if kind == "rerun" else args.samples
            latency[kind] = run_worker(["latency", str(folder), kind, str(n), str(warm)])
            print(kind, latency[kind], flush=True)
        if Path(args.nf_python).exists():
            latency["neuralforecast"] = run_worker(
                ["nf", str(folder), str(args.nf_samples), str(warm)], python=args.nf_python
            )
        else:
            latency["neuralforecast"] = {"error": f"no neuralforecast python at {args.nf_python}"}
        print("neuralforecast", latency["neuralforecast"], flush=True)
        throughput = []
        for n_series in args.series:
            for kind in ("runtime", "stream_numba", "torch", "onnx", "rerun"):
                if kind == "onnx" and n_series > 1000:
                    # the graph returns a new copy of every state tensor per sample (ScatterND):
                    # input, output and intermediates of 10,000 series' states exceed this machine
                    throughput.append(
                        {"kind": kind, "n_series": n_series, "error": "not run: see docs"}
                    )
                    continue
                rounds = 50 if n_series <= 100 else 5
                if kind == "rerun":
                    rounds = 20 if n_series <= 100 else 1
                entry = run_worker(["throughput", str(folder), kind, str(n_series), str(rounds)])
                entry.setdefault("n_series", n_series)
                entry["kind"] = kind
                throughput.append(entry)
                print(entry, flush=True)
        memory = {
            kind: run_worker(["memory", str(folder), kind, *map(str, args.memory)])
            for kind in ("runtime", "torch")
        }
        print(memory, flush=True)
    info = machine()
    info["note"] = "shared with other jobs; one core pinned with taskset"
    info["affinity"] = sorted(os.sched_getaffinity(0))
    report = {
        "benchmark": "streaming",
        "command": command_line(),
        "date": now(),
        "machine": info,
        "model": ", ".join(f"{k}={v}" for k, v in SHAPE.items())
        + ", norm=causal, head=last, random weights",
        "torch": torch.__version__,
        "labels": labels,
        "latency": latency,
        "ratios": {
            "rerun_over_torch_stream_p50": latency["rerun"]["p50_us"] / latency["torch"]["p50_us"],
            "rerun_over_runtime_p50": latency["rerun"]["p50_us"] / latency["runtime"]["p50_us"],
            "rerun_over_stream_numba_p50": latency["rerun"]["p50_us"]
            / latency["stream_numba"]["p50_us"],
        },
        "throughput": throughput,
        "memory": memory,
    }
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    report["code"] = args.code
    report["earlier_runs"] = earlier_runs(previous)
    report["notes"] = previous.get("notes", "")
    write_json(out, report)
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
