"""Connected-digit speech recognition: word error rate, streaming latency, real-time factor, size.

``RWKVSpeechRecognizer`` (digits vocabulary, 8 kHz, 40 log-mel bands every 10 ms, CTC) is trained
on connected-digit utterances built from FSDD training takes 10-49
(``rwkv_ts.datasets.make_digit_utterances("train", ...)``), early-stopped on utterances of takes
5-9 ("val"), and scored once on utterances of takes 0-4 ("test"; nothing is tuned on them).

Measured on one CPU core (run it under ``taskset -c N``; torch uses one thread):

* word error rate (greedy CTC) on the val and test utterances, and the share of test utterances
  transcribed exactly;
* the stream: latency of each ``push`` of 10 ms of audio (front end + model tokens + decoding),
  p50 / p99 / max, and the real-time factor (process CPU seconds / audio seconds) when a
  recording is pushed in 10 ms chunks; also offline ``transcribe_batch``'s real-time factor;
* streaming == offline: the stream's text equals ``transcribe`` and its per-token logits equal
  ``token_logits`` (largest absolute difference reported) on the latency utterances;
* the model's parameters (and float32 bytes) and the stream's state bytes.

Results: ``benchmarks/results/asr.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # this checkout, whatever rwkv_ts is installed
from _common import (  # noqa: E402
    RESULTS,
    command_line,
    default_data_home,
    machine,
    now,
    write_json,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--max-epochs", type=int, default=24)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--d-model", type=int, default=160)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--head-size", type=int, default=32)
    p.add_argument("--patch-len", type=int, default=8)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=26.0,
        help="stop training after this many minutes (the best epoch is kept)",
    )
    p.add_argument("--latency-utterances", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--save-model", default=None, help="also save the fitted model there")
    p.add_argument("--out", default="asr")
    p.add_argument(
        "--note",
        default=None,
        help="with --remeasure: what changed since the full run (printed with the results)",
    )
    p.add_argument(
        "--remeasure",
        default=None,
        metavar="MODEL",
        help="load a model saved by --save-model, measure the stream again (latency, real-time "
        "factor) on the same test utterances and add that to the existing results",
    )
    return p.parse_args(argv)


class _Progress:
    """Lightning callback: one line per epoch, and a wall-clock budget for training."""

    def __new__(cls, budget_s: float):
        from lightning.pytorch.callbacks import Callback

        class Progress(Callback):
            def __init__(self) -> None:
                self.started = time.perf_counter()
                self.stopped_by_budget = False

            def on_validation_end(self, trainer, pl_module) -> None:
                if trainer.sanity_checking:
                    return
                m = trainer.callback_metrics
                elapsed = time.perf_counter() - self.started
                loss = float(m.get("val_loss", np.nan))
                print(
                    f"epoch {trainer.current_epoch}: val_loss {loss:.4f}  ({elapsed / 60:.1f} min)",
                    flush=True,
                )
                if elapsed > budget_s:
                    self.stopped_by_budget = True
                    trainer.should_stop = True

        return Progress()


def stream_measure(asr, utterances, chunk: int) -> dict:
    """Push each utterance in chunks of ``chunk`` samples: per-push latency, CPU real-time
    factor, agreement with the offline path."""
    latencies = []
    cpu = 0.0
    audio_s = 0.0
    max_diff = 0.0
    same_text = 0
    stream = asr.stream()
    state_bytes = 0
    for u in utterances:
        stream.reset()
        parts = []
        c0 = time.process_time()
        for i in range(0, u.audio.size, chunk):
            piece = u.audio[i : i + chunk]
            t0 = time.perf_counter()
            parts.append(stream.push_logits(piece))
            latencies.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
        audio_s += u.audio.size / u.sample_rate
        state_bytes = max(state_bytes, stream.state_nbytes)
        logits = np.concatenate(parts)
        offline = asr.token_logits(u.audio)
        max_diff = max(max_diff, float(np.abs(logits - offline).max()) if offline.size else 0.0)
        same_text += stream.finish() == asr.transcribe(u.audio)
    lat = np.asarray(latencies) * 1e6
    return {
        "chunk_samples": chunk,
        "chunk_ms": 1000.0 * chunk / utterances[0].sample_rate,
        "n_utterances": len(utterances),
        "n_pushes": int(lat.size),
        "latency_us_p50": float(np.percentile(lat, 50)),
        "latency_us_p99": float(np.percentile(lat, 99)),
        "latency_us_max": float(lat.max()),
        "latency_us_mean": float(lat.mean()),
        "real_time_factor": cpu / audio_s,
        "audio_seconds": audio_s,
        "stream_equals_offline_text": f"{same_text}/{len(utterances)}",
        "max_abs_logit_diff_vs_offline": max_diff,
        "stream_state_bytes_max": int(state_bytes),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from rwkv_ts.audio.asr import RWKVSpeechRecognizer
    from rwkv_ts.audio.ctc import word_error_rate
    from rwkv_ts.datasets import make_digit_utterances
    from rwkv_ts.training import training_callbacks

    data_home = args.data_home or default_data_home()
    if args.remeasure:
        return remeasure(args, data_home)
    started = time.perf_counter()
    home, seed = data_home, args.seed
    train = make_digit_utterances("train", args.n_train, random_state=seed, data_home=home)
    val = make_digit_utterances("val", args.n_val, random_state=seed + 1, data_home=home)
    test = make_digit_utterances("test", args.n_test, random_state=seed + 2, data_home=home)
    data_s = time.perf_counter() - started
    print(f"data: {len(train)} train, {len(val)} val, {len(test)} test ({data_s:.0f} s)")

    asr = RWKVSpeechRecognizer(
        vocabulary="digits",
        sample_rate=8000,
        patch_len=args.patch_len,
        stride=args.stride,
        d_model=args.d_model,
        n_layers=args.n_layers,
        head_size=args.head_size,
        dropout=args.dropout,
        augment=not args.no_augment,
        max_epochs=args.max_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        accelerator="cpu",
        random_state=args.seed,
    )
    progress = _Progress(args.time_budget_min * 60)
    t0 = time.perf_counter()
    with training_callbacks(progress):
        asr.fit(train, validation=val)
    train_s = time.perf_counter() - t0
    if args.save_model:
        asr.save(args.save_model)

    val_hyp = asr.transcribe_batch(val)
    c0 = time.process_time()
    test_hyp = asr.transcribe_batch(test)
    batch_cpu = time.process_time() - c0
    refs = [u.transcript for u in test]
    test_audio_s = sum(u.audio.size / u.sample_rate for u in test)
    wer_test = word_error_rate(refs, test_hyp)
    wer_val = word_error_rate([u.transcript for u in val], val_hyp)
    print(f"WER val {wer_val:.4f}  test {wer_test:.4f}", flush=True)

    subset = test[: args.latency_utterances]
    stream_10ms = stream_measure(asr, subset, chunk=80)
    print(
        f"stream 10 ms: p50 {stream_10ms['latency_us_p50']:.0f} us, "
        f"RTF {stream_10ms['real_time_factor']:.4f}",
        flush=True,
    )
    stream_100ms = stream_measure(asr, subset, chunk=800)

    model_state = sum(
        v.nbytes for k, v in asr.stream().get_state().items() if k.startswith("model.")
    )
    n_params = asr.n_parameters_
    examples = [
        {"reference": r, "hypothesis": h} for r, h in zip(refs[:10], test_hyp[:10], strict=True)
    ]
    result = {
        "benchmark": "asr",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "versions": _versions(),
        "device": "CPU only (no GPU in this session): trained and measured on one core",
        "data": {
            "train": f"{len(train)} utterances from FSDD takes 10-49 (seed {args.seed})",
            "val": f"{len(val)} utterances from FSDD takes 5-9 (early stopping)",
            "test": f"{len(test)} utterances from FSDD takes 0-4 (scored once)",
            "digits_per_utterance": "2-7",
            "test_words": int(sum(len(r.split()) for r in refs)),
            "test_audio_seconds": test_audio_s,
        },
        "params": asr.get_params(),
        "training": {
            "seconds": train_s,
            "n_epochs": asr.n_epochs_,
            "best_epoch": asr.best_epoch_,
            "stopped_by_time_budget": bool(progress.stopped_by_budget),
            "history": asr.history_,
        },
        "wer_val": wer_val,
        "wer_test": wer_test,
        "test_utterances_exact": float(
            np.mean([r == h for r, h in zip(refs, test_hyp, strict=True)])
        ),
        "targets": {"wer_test": 0.05, "real_time_factor": 0.05},
        "stream_10ms": stream_10ms,
        "stream_100ms": stream_100ms,
        "offline_batch_real_time_factor": batch_cpu / test_audio_s,
        "model": {
            "n_parameters": int(n_params),
            "weights_bytes_float32": int(4 * n_params),
            "recurrent_state_bytes": int(model_state),
            "ms_per_token": asr.stride * asr.hop_ms,
        },
        "examples": examples,
        "total_seconds": time.perf_counter() - started,
    }
    write_json(RESULTS / f"{args.out}.json", result)
    (RESULTS / f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))
    return result


def remeasure(args, data_home) -> dict:
    """Stream measurements again with a saved model (e.g. on an idle core); added to the results
    under ``remeasured``."""
    import json

    import rwkv_ts
    from rwkv_ts.datasets import make_digit_utterances

    path = RESULTS / f"{args.out}.json"
    result = json.loads(path.read_text())
    asr = rwkv_ts.load(args.remeasure)
    test = make_digit_utterances(
        "test", args.n_test, random_state=args.seed + 2, data_home=data_home
    )
    subset = test[: args.latency_utterances]
    result["remeasured"] = {
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "stream_10ms": stream_measure(asr, subset, chunk=80),
        "stream_100ms": stream_measure(asr, subset, chunk=800),
        "note": args.note,
    }
    write_json(path, result)
    (RESULTS / f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))
    return result


def _versions() -> dict:
    import lightning
    import numpy
    import scipy
    import torch

    import rwkv_ts

    return {
        "rwkv_ts": rwkv_ts.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def markdown(r: dict) -> str:
    m = r["machine"]
    p = r["params"]
    s10, s100 = r["stream_10ms"], r["stream_100ms"]
    wer_ok = "met" if r["wer_test"] <= r["targets"]["wer_test"] else "**missed**"
    rtf_ok = "met" if s10["real_time_factor"] <= r["targets"]["real_time_factor"] else "**missed**"
    lines = [
        "# Speech recognition: connected digits (FSDD), streaming greedy CTC",
        "",
        f"- command: `taskset -c 1 {r['command']}`",
        f"- date: {r['date']}",
        f"- machine: {m['platform']}, {m['cpu']}, {m['cpu_count']} cores (one pinned), "
        f"torch {m['torch']} with {m['torch_threads']} thread; {r['device']}",
        f"- data: train {r['data']['train']}; val {r['data']['val']}; test {r['data']['test']}; "
        f"{r['data']['test_words']} test words",
        f"- model: RWKVSpeechRecognizer(d_model={p['d_model']}, n_layers={p['n_layers']}, "
        f"head_size={p['head_size']}, patch_len={p['patch_len']}, stride={p['stride']}, "
        f"tcn_dilations={tuple(p['tcn_dilations'])}, augment={p['augment']}), 40 log-mel bands "
        f"every 10 ms at 8 kHz, one token per {r['model']['ms_per_token']:.0f} ms",
        f"- training: {r['training']['n_epochs']} epochs in {r['training']['seconds'] / 60:.1f} "
        f"min on one CPU core, best epoch {r['training']['best_epoch']}"
        + (" (stopped by the time budget)" if r["training"]["stopped_by_time_budget"] else ""),
        "",
        "| metric | value | target |",
        "|---|---:|---:|",
        f"| word error rate, test (takes 0-4) | {100 * r['wer_test']:.2f} % | <= 5 % ({wer_ok}) |",
        f"| word error rate, val (takes 5-9) | {100 * r['wer_val']:.2f} % | |",
        f"| test utterances transcribed exactly | {100 * r['test_utterances_exact']:.1f} % | |",
        f"| stream push of 10 ms: latency p50 / p99 / max (µs) | {s10['latency_us_p50']:.0f} / "
        f"{s10['latency_us_p99']:.0f} / {s10['latency_us_max']:.0f} | |",
        f"| real-time factor, stream in 10 ms chunks (CPU s / audio s) | "
        f"{s10['real_time_factor']:.4f} | <= 0.05 ({rtf_ok}) |",
        f"| real-time factor, stream in 100 ms chunks | {s100['real_time_factor']:.4f} | |",
        f"| real-time factor, offline transcribe_batch | "
        f"{r['offline_batch_real_time_factor']:.4f} | |",
        f"| stream text == offline text | {s10['stream_equals_offline_text']} | all |",
        f"| max abs logit difference stream vs offline | "
        f"{s10['max_abs_logit_diff_vs_offline']:.2e} | <= 1e-5 |",
        f"| parameters (float32 bytes) | {r['model']['n_parameters']:,} "
        f"({r['model']['weights_bytes_float32']:,}) | |",
        f"| model recurrent state (bytes) | {r['model']['recurrent_state_bytes']:,} | |",
        f"| whole stream state, max (bytes) | {s10['stream_state_bytes_max']:,} | |",
        "",
        f"Latency and real-time factor: {s10['n_utterances']} test utterances "
        f"({s10['audio_seconds']:.1f} s of audio) pushed in chunks of 80 samples (10 ms); a push "
        "runs the log-mel front end, the RWKV blocks on the tokens it completes and the greedy "
        "decoder. Real-time factor = process CPU time / audio duration.",
        "",
        "Examples (test):",
        "",
        "| reference | hypothesis |",
        "|---|---|",
    ]
    lines += [f"| {e['reference']} | {e['hypothesis']} |" for e in r["examples"]]
    if "remeasured" in r:
        q = r["remeasured"]
        a, b = q["stream_10ms"], q["stream_100ms"]
        ok = "met" if a["real_time_factor"] <= r["targets"]["real_time_factor"] else "**missed**"
        lines += [
            "",
            "## Stream measured again on an idle core",
            "",
            "During the run above other jobs shared the pinned core, which inflates the timings. "
            "The saved model was measured again with "
            f"`taskset -c 1 {q['command'].split(' --note')[0]}` on "
            f"{q['date']} with the core otherwise idle (same test utterances)"
            + (f". {q['note']}" if q.get("note") else "")
            + ":",
            "",
            "| metric | value | target |",
            "|---|---:|---:|",
            f"| stream push of 10 ms: latency p50 / p99 / max (µs) | "
            f"{a['latency_us_p50']:.0f} / {a['latency_us_p99']:.0f} / "
            f"{a['latency_us_max']:.0f} | |",
            f"| real-time factor, stream in 10 ms chunks | {a['real_time_factor']:.4f} | "
            f"<= 0.05 ({ok}) |",
            f"| real-time factor, stream in 100 ms chunks | {b['real_time_factor']:.4f} | |",
            f"| stream text == offline text | {a['stream_equals_offline_text']} | all |",
            f"| max abs logit difference stream vs offline | "
            f"{a['max_abs_logit_diff_vs_offline']:.2e} | <= 1e-5 |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
