"""Voice-activity detection: train on speech clips mixed into real noise, score frame AUC per SNR
band on test streams, then stream one test recording in 32-ms chunks and plot it.

    python examples/vad_stream.py [--quick]

The clips are read from the data home ($RWKV_TS_DATA, else the user cache): Speech Commands and
FSDD, see datasets/speech_commands.md.
"""

from __future__ import annotations

import os

import numpy as np
from _quick import parse
from sklearn.metrics import roc_auc_score

from rwkv_ts.audio import RWKVVoiceActivityDetector
from rwkv_ts.datasets import frame_labels, make_vad_streams
from rwkv_ts.plot import plot_speech_activity

args = parse(__doc__)
n_train, n_test = (30, 10) if args.quick else (400, 100)
train = make_vad_streams("train", n_train, duration_s=4.0 if args.quick else 8.0, random_state=0)
val = make_vad_streams("val", 10 if args.quick else 40, random_state=1)
test = make_vad_streams("test", n_test, random_state=2)

vad = RWKVVoiceActivityDetector(
    d_model=16 if args.quick else 64,
    max_epochs=1 if args.quick else 14,
    random_state=0,
).fit(train, validation=val)
print(f"{vad.n_parameters_:,} parameters, {vad.state_size_:,} floats of state per stream")

cfg = vad.frontend_config_
by_band: dict[float, tuple[list, list]] = {}
for ex in test:
    scores, truth = by_band.setdefault(ex.snr_db, ([], []))
    scores.append(vad.predict_proba(ex.audio))
    truth.append(frame_labels(ex.speech, cfg))
for snr in sorted(by_band):
    scores, truth = (np.concatenate(part) for part in by_band[snr])
    print(f"SNR {snr:+5.0f} dB: frame AUC {roc_auc_score(truth, scores):.3f}")

# the same recording as a live stream of 32-ms chunks: probabilities and segments as they close
ex = test[0]
stream = vad.stream()
chunk = int(0.032 * ex.sample_rate)
pushed = []
for start in range(0, len(ex.audio), chunk):
    result = stream.push(ex.audio[start : start + chunk])
    pushed.append(result.probabilities)
    for seg_start, seg_end in result.segments:
        print(f"  speech {seg_start:5.2f}-{seg_end:5.2f} s (closed at {result.times[-1]:.2f} s)")
stream.flush()
probabilities = np.concatenate(pushed)
assert np.allclose(probabilities, vad.predict_proba(ex.audio), atol=1e-5)
path = os.path.join(args.out, "vad_stream.png")
plot_speech_activity(
    ex.audio,
    ex.sample_rate,
    probabilities,
    vad.frame_times(len(probabilities)),
    segments=stream.segments,
    labels=frame_labels(ex.speech, cfg),
    threshold=vad.onset,
    title=f"test stream at {ex.snr_db:+.0f} dB SNR ({ex.noise})",
    path=path,
)
print(f"stream == offline; plot written to {path}")
