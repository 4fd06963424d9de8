"""Classification: ECG200 heartbeats (UCR archive), train on the TRAIN part, score on TEST, and
show how the class probability of one test beat evolves as its samples arrive.

    python examples/classify_ecg.py [--quick]

The files are read from the data home ($RWKV_TS_DATA, else the user cache).
"""

from __future__ import annotations

import numpy as np
from _quick import parse

from rwkv_ts import RWKVClassifier
from rwkv_ts.datasets import load_classification

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

proba = clf.predict_proba(X_test[:1])[0]
print(f"first test beat: P = {np.round(proba, 3).tolist()}, label {y_test[0]}")
