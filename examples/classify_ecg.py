"""Classification: ECG200 heartbeats (UCR archive), train on the TRAIN part, score on TEST, and
show how the class probability of one test beat evolves as its samples arrive.

    python examples/classify_ecg.py [--quick] [--out DIR]

Writes ``early_classification.png`` (the beat over its class probabilities) into ``--out``.

The files are read from the data home ($RWKV_TS_DATA, else the user cache).
"""

from __future__ import annotations

import os

import numpy as np
from _quick import parse

from rwkv_ts import RWKVClassifier
from rwkv_ts.datasets import load_classification
from rwkv_ts.plot import decision_sample, plot_class_probabilities

args = parse(__doc__)
X_train, y_train = load_classification("ECG200", "train")
X_test, y_test = load_classification("ECG200", "test")
if args.quick:
    X_test, y_test = X_test[:30], y_test[:30]

clf = RWKVClassifier(
    d_model=16 if args.quick else 128,
    n_layers=1 if args.quick else 2,
    max_epochs=3 if args.quick else 60,
    random_state=0,
).fit(X_train, y_train)
accuracy = clf.score(X_test, y_test)
classes = clf.classes_.tolist()
print(f"ECG200 test accuracy {accuracy:.3f} on {len(y_test)} beats (classes {classes})")

# after every sample of the first test beat; the last row is predict_proba on the whole beat
proba = clf.predict_proba_steps(X_test[:1])[0]
decided = decision_sample(proba)
print(
    f"first test beat ({proba.shape[0]} samples): P = {np.round(proba[-1], 3).tolist()}, "
    f"label {y_test[0]}; the decision holds from sample {decided}"
)
plot_class_probabilities(
    X_test[0], proba, classes, true_class=y_test[0], title="ECG200, first test beat",
    path=os.path.join(args.out, "early_classification.png"),
)  # fmt: skip
