"""RWKVClassifier: real-data fit, every input layout, label types, errors, exact streaming,
save/load and scikit-learn's estimator checks."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.utils.estimator_checks import parametrize_with_checks

import rwkv_ts
from rwkv_ts import RWKVClassifier
from rwkv_ts.data import DataValidationError

TINY = dict(
    patch_len=4,
    stride=2,
    d_model=16,
    head_size=8,
    n_layers=1,
    max_epochs=2,
    random_state=0,
)


@pytest.fixture(scope="module")
def synthetic_control(shared_data_home):
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("SyntheticControl", "train", data_home=shared_data_home)
    Xt, yt = load_classification("SyntheticControl", "test", data_home=shared_data_home)
    return X, y, Xt, yt


def _long_frame(X: np.ndarray, ids: list) -> pd.DataFrame:
    rows = []
    for key, inst in zip(ids, X, strict=True):
        frame = pd.DataFrame(inst.T, columns=[f"ch{c}" for c in range(inst.shape[0])])
        frame.insert(0, "t", np.arange(inst.shape[1]))
        frame.insert(0, "rec", key)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def test_learns_synthetic_control(synthetic_control):
    """A small model trained briefly on 120 real training series beats chance (1/6) by far."""
    X, y, Xt, yt = synthetic_control
    pick = np.concatenate([np.flatnonzero(y == c)[:20] for c in np.unique(y)])
    clf = RWKVClassifier(**{**TINY, "max_epochs": 15, "learning_rate": 3e-3}).fit(X[pick], y[pick])
    assert list(clf.classes_) == [1, 2, 3, 4, 5, 6]
    proba = clf.predict_proba(Xt[:150])
    assert proba.shape == (150, 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.score(Xt[:150], yt[:150]) > 0.6
    assert np.array_equal(clf.predict(Xt[:150]), clf.classes_[proba.argmax(axis=1)])


def test_input_layouts_agree(synthetic_control):
    """3-D array, 2-D array, list of arrays and long pandas/polars frames are the same data."""
    X, y, _, _ = synthetic_control
    X, y = X[::10], y[::10]
    ids = [f"r{i}" for i in range(len(X))]
    frame = _long_frame(X, ids)
    ref = RWKVClassifier(**TINY).fit(X, y)
    p = ref.predict_proba(X)
    np.testing.assert_allclose(ref.predict_proba(X[:, 0, :]), p, atol=1e-6)
    np.testing.assert_allclose(ref.predict_proba(list(X)), p, atol=1e-6)
    framed = RWKVClassifier(**TINY, id_col="rec", time_col="t")
    framed.fit(frame, pd.Series(y, index=ids))  # labels matched by id
    np.testing.assert_allclose(framed.predict_proba(frame), p, atol=1e-6)
    polars_frame = pl.DataFrame({c: frame[c].tolist() for c in frame.columns})
    np.testing.assert_allclose(framed.predict_proba(polars_frame), p, atol=1e-6)
    shuffled = frame.sample(frac=1.0, random_state=0).sort_values(["rec", "t"], kind="stable")
    order = [ids.index(k) for k in shuffled["rec"].unique()]
    np.testing.assert_allclose(framed.predict_proba(shuffled), p[order], atol=1e-6)


@pytest.mark.parametrize(
    "labels",
    [np.array(["walk", "run"] * 6), np.array([-1, 1] * 6), np.array([3, 10] * 6)],
    ids=["strings", "minus-one-one", "ints"],
)
def test_label_types_and_unequal_lengths(labels):
    rng = np.random.default_rng(1)
    X = [rng.normal(size=(2, int(n))) for n in rng.integers(8, 40, size=12)]
    clf = RWKVClassifier(**TINY).fit(X, labels)
    assert clf.classes_.dtype == np.unique(labels).dtype
    pred = clf.predict(X)
    assert set(pred) <= set(labels) and pred.dtype == labels.dtype


def test_bad_input_is_named():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 2, 20))
    y = np.array([0, 1] * 5)
    bad = X.copy()
    bad[3, 1, 7] = np.nan
    with pytest.raises(DataValidationError, match="instance 3 .* time point 7 of channel 1"):
        RWKVClassifier(**TINY).fit(bad, y)
    with pytest.raises(DataValidationError, match="instance 1 has 3 time points"):
        RWKVClassifier(**TINY).fit([X[0], X[1][:, :3]], [0, 1])
    with pytest.raises(DataValidationError, match="8 entries but X has 10 instances"):
        RWKVClassifier(**TINY).fit(X, y[:8])
    with pytest.raises(DataValidationError, match="1 class"):
        RWKVClassifier(**TINY).fit(X, np.zeros(10))
    clf = RWKVClassifier(**TINY).fit(X, y)
    with pytest.raises(DataValidationError, match="3 channel.* where 2 are expected"):
        clf.predict(rng.normal(size=(2, 3, 20)))
    with pytest.raises(DataValidationError, match=r"20 channel.*\(instances, channels, time\)"):
        clf.predict(X.transpose(0, 2, 1))
    with pytest.raises(ValueError, match="pooling part 'median'"):
        RWKVClassifier(**{**TINY, "pooling": "mean+median"}).fit(X, y)


def test_frames_must_carry_the_fitted_channels_by_name():
    """A frame fitted on named columns is read by name: other, extra or reordered columns are
    refused at predict and in a stream (they used to be taken by position); arrays still match
    by position."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 2, 20))
    y = np.array([0, 1] * 5)
    frame = _long_frame(X, list(range(10)))
    clf = RWKVClassifier(**{**TINY, "id_col": "rec", "time_col": "t"}).fit(frame, y)
    assert clf.channels_ == ["ch0", "ch1"]
    swapped = frame[["rec", "t", "ch1", "ch0"]]
    renamed = frame.rename(columns={"ch1": "other"})
    extra = frame.assign(ch2=0.0)
    for bad, message in [
        (swapped, r"different order: expected \['ch0', 'ch1'\], got \['ch1', 'ch0'\]"),
        (renamed, r"missing channel\(s\) \['ch1'\] and unexpected channel\(s\) \['other'\]"),
        (extra, r"unexpected channel\(s\) \['ch2'\]"),
    ]:
        with pytest.raises(DataValidationError, match=message):
            clf.predict_proba(bad)
        with pytest.raises(DataValidationError, match=message):
            clf.stream().update(bad)
    np.testing.assert_allclose(
        clf.predict_proba(frame),
        clf.set_params(id_col=None, time_col=None).predict_proba(X),
        atol=1e-6,
    )


@pytest.mark.parametrize("class_weight", [None, "balanced", {"rare": 3.0}])
def test_class_weight_reweights_the_class_prior(shared_data_home, class_weight):
    """With labels unrelated to the series (ECG200's 100 training heartbeats, 10 labelled
    "rare" at random), a small model briefly trained learns the class prior, and the class
    weights reweight it: the mean predicted probability of "rare" on the 100 test heartbeats is
    0.1 unweighted, 0.5 balanced and 3 * 0.1 / (3 * 0.1 + 0.9) = 0.25 with weight 3. (A model
    that memorises part of the random labels drifts from these values: on SyntheticControl's
    more distinct series the balanced one gave 0.39.)"""
    from rwkv_ts.datasets import load_classification

    X, _ = load_classification("ECG200", "train", data_home=shared_data_home)
    Xt, _ = load_classification("ECG200", "test", data_home=shared_data_home)
    rng = np.random.default_rng(0)
    labels = np.where(rng.permutation(len(X)) < len(X) // 10, "rare", "common")
    clf = RWKVClassifier(**{**TINY, "max_epochs": 10}, class_weight=class_weight).fit(X, labels)
    expected_weights = {
        None: [1.0, 1.0],
        "balanced": [100 / (2 * 90), 100 / (2 * 10)],
        "dict": [1.0, 3.0],
    }[class_weight if not isinstance(class_weight, dict) else "dict"]
    np.testing.assert_allclose(clf.class_weight_, expected_weights)
    w_rare, w_common = expected_weights[1], expected_weights[0]
    prior = w_rare * 0.1 / (w_rare * 0.1 + w_common * 0.9)
    p_rare = clf.predict_proba(Xt)[:, list(clf.classes_).index("rare")]
    assert abs(p_rare.mean() - prior) < 0.05, (p_rare.mean(), prior)


def test_class_weight_errors_name_the_value():
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(8, 1, 16)), np.array([-1, 1] * 4)
    for class_weight, message in [
        ({2: 1.0}, r"label\(s\) \[2\] that are not classes of y \[-1, 1\]"),
        ({1: -0.5}, r"class_weight\[1\] must be finite and >= 0, got -0.5"),
        ({1: "high"}, r"class_weight\[1\] must be a number, got 'high'"),
        ({-1: 0.0, 1: 0.0}, "gives every class weight 0"),
        ("balance", "must be a dict, 'balanced' or None, got 'balance'"),
        ([1.0, 2.0], "must be a dict, 'balanced' or None, got list"),
    ]:
        with pytest.raises(ValueError, match=message):
            RWKVClassifier(**TINY, class_weight=class_weight).fit(X, y)


def test_class_weight_is_saved_and_loaded(tmp_path):
    """A dict of integer labels comes back with integer keys (JSON would make them strings),
    and ``class_weight_`` of a balanced fit comes back without the training labels."""
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(12, 2, 16)), np.array([-1, 1, 1] * 4)
    for class_weight in ({-1: 2.0}, "balanced"):
        clf = RWKVClassifier(**TINY, class_weight=class_weight).fit(X, y)
        clf.save(tmp_path / "clf.rwkvts")
        loaded = rwkv_ts.load(tmp_path / "clf.rwkvts")
        assert loaded.get_params() == clf.get_params()
        np.testing.assert_array_equal(loaded.class_weight_, clf.class_weight_)
        np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=0)
    np.testing.assert_allclose(loaded.class_weight_, [12 / (2 * 4), 12 / (2 * 8)])


def test_caller_data_untouched():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, 1, 16)).astype(np.float32)
    y = np.array(["a", "b"] * 4)
    frame = _long_frame(X, list(range(8)))
    X0, y0, f0 = X.copy(), y.copy(), frame.copy()
    RWKVClassifier(**TINY).fit(X, y).predict(X)
    RWKVClassifier(**TINY, id_col="rec", time_col="t").fit(frame, y).predict(frame)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    pd.testing.assert_frame_equal(frame, f0)


# ---------------------------------------------------------------------------- streaming

_STREAM_MODELS: dict = {}


def _stream_model(
    patch_len: int, stride: int, norm: str, pooling: str, conv_channels: tuple = ()
) -> RWKVClassifier:
    key = (patch_len, stride, norm, pooling, conv_channels)
    if key not in _STREAM_MODELS:
        rng = np.random.default_rng(4)
        X = [rng.normal(size=(2, int(n))) for n in rng.integers(patch_len, 30, size=12)]
        clf = RWKVClassifier(
            **{**TINY, "patch_len": patch_len, "stride": stride, "n_layers": 2},
            norm=norm,
            norm_window=6,
            pooling=pooling,
            conv_channels=conv_channels,
        ).fit(X, ["x", "y", "z"] * 4)
        # random weights: the zero-initialised output projections would leave blocks inert
        # a seed that is the same in every process (hash() of a str is not: the weights, and
        # with them the size of float32 rounding, changed from run to run). Scale 0.15, not
        # 0.3: at 0.3 the second block of the (3, 3, causal) model amplified a 1e-7 rounding
        # difference of the first block's output 500-fold, so about one random input in a
        # thousand exceeded 1e-5 (the worst of 300 inputs: 4.7e-6 at 0.3, 2.8e-7 at 0.15).
        gen = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))
        with torch.no_grad():
            for p in clf.model_.parameters():
                p.add_(0.15 * torch.randn(p.shape, generator=gen))
        _STREAM_MODELS[key] = clf
    return _STREAM_MODELS[key]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(
        [
            (1, 1, "none", "last"),
            (4, 2, "none", "mean+max"),
            (3, 3, "causal", "mean+last"),
            (5, 2, "causal", "max"),
            (4, 2, "none", "mean+max", (6, 8, 5)),
            (3, 3, "causal", "last", (4, 4, 4)),
        ]
    ),
    length=st.integers(1, 40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_stream_equals_batch_on_every_prefix(config, length, cuts, seed):
    clf = _stream_model(*config)
    # the convolutional branch's batch normalisation reads running statistics in inference
    assert not config[4:] or clf.model_.conv.layers[0].bn.num_batches_tracked > 0
    x = np.random.default_rng(seed).normal(size=(length, 2)) * 3
    stream = clf.stream()
    bounds = sorted({0, length, *[c for c in cuts if c < length]})
    out = np.concatenate(
        [stream.update(x[a:b], id="rec") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    )
    patch_len = config[0]
    assert out.shape == (length, 3)
    assert np.isnan(out[: patch_len - 1]).all()
    steps = clf.predict_proba_steps([x.T])[0]
    np.testing.assert_allclose(out, steps, atol=1e-5, rtol=0)
    for t in range(patch_len, length + 1):
        np.testing.assert_allclose(out[t - 1], clf.predict_proba([x[:t].T])[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(stream.current("rec"), out[-1], atol=0)
    assert stream.n_seen("rec") == length


def test_stream_many_instances_from_frames():
    clf = _stream_model(4, 2, "none", "mean+max")
    rng = np.random.default_rng(5)
    X = [rng.normal(size=(2, int(n))) for n in (9, 14, 20)]
    frame = _long_frame(np.array([np.pad(x, ((0, 0), (0, 20 - x.shape[1]))) for x in X]), [7, 8, 9])
    frame = frame[frame["t"] < frame["rec"].map({7: 9, 8: 14, 9: 20})]
    clf.set_params(id_col="rec", time_col="t")
    stream = clf.stream()
    # rows arrive one time step at a time, all instances interleaved
    parts = [stream.update(frame[frame["t"] == t]) for t in range(20)]
    got = pd.concat(parts).sort_values(["rec", "n_seen"])
    expected = np.concatenate(clf.predict_proba_steps(frame))
    np.testing.assert_allclose(got[list(clf.classes_)].to_numpy(), expected, atol=1e-5)
    assert stream.ids == [7, 8, 9]
    clf.set_params(id_col=None, time_col=None)


# ---------------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(12, 2, 24))
    y = np.array(["run", "sit", "walk"] * 4)
    clf = RWKVClassifier(**TINY).fit(X, y)
    path = tmp_path / "clf.rwkvts"
    clf.save(path)
    loaded = rwkv_ts.load(path)
    assert isinstance(loaded, RWKVClassifier)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=0)


# ---------------------------------------------------------------------------- scikit-learn

SKLEARN_TINY = dict(
    patch_len=1,
    stride=1,
    d_model=16,
    head_size=8,
    n_layers=1,
    tcn_dilations=(),
    shift_distances=(1,),
    max_epochs=30,
    batch_size=64,
    learning_rate=1e-2,
    dropout=0.0,
    val_fraction=0.0,
    random_state=0,
)

#: Checks that do not apply to a sequence model, with the reason.
EXPECTED_FAILED = {
    "check_methods_subset_invariance": (
        "float32 matrix products round differently for different batch sizes (about 1e-7 "
        "relative), more than the check's rtol of 1e-7"
    ),
    "check_n_features_in": (
        "a 2-D X is read as (instances, time points): its columns are time points, not features, "
        "and instances of any length are accepted, so there is no n_features_in_"
    ),
    "check_n_features_in_after_fitting": (
        "instances of any length are accepted (the model is causal over time), so a different "
        "number of columns at predict is not an error"
    ),
    "check_classifiers_train": (
        "it ends by requiring an error when predict gets a different number of columns; for a "
        "sequence model that is a different series length, which is valid"
    ),
    "check_classifier_data_not_an_array": (
        "it also passes X as a wide pandas frame; frames are read as long instance panels "
        "(instance id, time, channel columns) and need id_col"
    ),
}


@parametrize_with_checks(
    [RWKVClassifier(**SKLEARN_TINY)],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_block_tuples_accept_an_int_and_name_bad_values():
    X = np.random.default_rng(0).normal(size=(12, 1, 16))
    y = np.arange(12) % 2
    params = {**SKLEARN_TINY, "max_epochs": 1}
    clf = RWKVClassifier(**{**params, "shift_distances": 2}).fit(X, y)
    assert clf.config_.shift_distances == (2,)
    for name, bad in (("shift_distances", ()), ("shift_distances", (0,)), ("tcn_dilations", "x")):
        with pytest.raises(ValueError, match=name):
            RWKVClassifier(**{**params, name: bad}).fit(X, y)


def test_auto_batch_size_gives_small_training_sets_steps(synthetic_control):
    # "auto" is min(16, n // 10): 23 instances train in batches of 2 (11 steps an epoch, the last
    # partial batch dropped), not one batch of 16 that leaves 7 instances out every epoch.
    from lightning.pytorch.callbacks import Callback

    from rwkv_ts.training import training_callbacks

    class Steps(Callback):
        def __init__(self):
            self.sizes = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 0:
                self.sizes.append(len(batch[-1]))

    X, y = synthetic_control[:2]
    X, y = X[::13][:23], y[::13][:23]  # 23 instances of every class
    counter = Steps()
    with training_callbacks(counter):
        RWKVClassifier(**(TINY | {"batch_size": "auto", "max_epochs": 1})).fit(X, y)
    assert counter.sizes == [2] * 11
    clf = RWKVClassifier()
    assert clf.batch_size == "auto"
    assert [clf._batch_size(n) for n in (5, 23, 100, 159, 160, 10_000)] == [1, 2, 10, 15, 16, 16]
    with pytest.raises(ValueError, match="batch_size"):
        RWKVClassifier(**(TINY | {"batch_size": "large"})).fit(X, y)
