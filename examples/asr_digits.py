"""Streaming speech recognition of connected digits (FSDD): train a CTC recogniser, report the
word error rate on test takes, then stream one test utterance in 10-ms chunks and print the
digits as they are decided.

    python examples/asr_digits.py [--quick]

The recordings are read from the data home ($RWKV_TS_DATA, else the user cache), see
datasets/fsdd.md.
"""

from __future__ import annotations

from _quick import parse

from rwkv_ts.audio import RWKVSpeechRecognizer
from rwkv_ts.audio.ctc import word_error_rate
from rwkv_ts.datasets import make_digit_utterances

args = parse(__doc__)
train = make_digit_utterances("train", 60 if args.quick else 4000, random_state=0)
val = make_digit_utterances("val", 20 if args.quick else 300, random_state=1)
test = make_digit_utterances("test", 20 if args.quick else 500, random_state=2)

asr = RWKVSpeechRecognizer(
    d_model=32 if args.quick else 160,
    head_size=16 if args.quick else 32,
    max_epochs=1 if args.quick else 30,
    random_state=0,
).fit(train, validation=val)
hypotheses = asr.transcribe_batch([u.audio for u in test])
wer = word_error_rate([u.transcript for u in test], hypotheses)
print(f"{asr.n_parameters_:,} parameters; test word error rate {wer:.1%} on {len(test)} utterances")

utt = test[0]
stream = asr.stream()
chunk = utt.sample_rate // 100  # 10 ms
print(f"streaming {len(utt.audio) / utt.sample_rate:.2f} s, reference {utt.transcript!r}")
for start in range(0, len(utt.audio), chunk):
    text = stream.push(utt.audio[start : start + chunk])
    if text:
        print(f"  {(start + chunk) / utt.sample_rate:5.2f} s: {text!r}")
final = stream.finish()
assert final == asr.transcribe(utt.audio)
print(f"final {final!r} (== offline transcript)")
