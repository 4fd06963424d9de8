"""Data augmentation of training instances (``rwkv_ts.data.augment``, the estimators' ``augment``):
every transformation keeps an instance's shape, time warps stay inside the instance's range and
keep its end points, draws are reproducible under a seed, only training instances are
transformed, and bad settings fail with messages that name them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny_settings import TINY_SEQUENCE as TINY

from rwkv_ts import RWKVClassifier, RWKVRegressor, sequence_estimator
from rwkv_ts.data.augment import (
    AUGMENTATIONS,
    PROBABILITY,
    AugmentedSequences,
    parse_augment,
    resample,
)
from rwkv_ts.data.sequences import SequenceDataset


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(AUGMENTATIONS)),
    length=st.integers(1, 120),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_every_transformation_keeps_the_shape(name, length, channels, seed):
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(length, channels))).float()
    torch.manual_seed(seed)
    out = AUGMENTATIONS[name](x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["slice", "warp"]),
    length=st.integers(2, 120),
    seed=st.integers(0, 2**16),
)
@example(name="warp", length=96, seed=0)  # torch's interpolate missed the last sample here
@example(name="warp", length=12, seed=6494)  # a 2-sample window at the end, halved to 1
def test_time_warps_interpolate_inside_the_instance(name, length, seed):
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(length, 2))).float()
    torch.manual_seed(seed)
    out = AUGMENTATIONS[name](x)
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    assert (out >= lo - 1e-6).all() and (out <= hi + 1e-6).all()
    if name == "warp":  # the warped window lies inside; the instance's ends stay where they are
        assert torch.equal(out[[0, -1]], x[[0, -1]])


def test_resample_is_exact_on_lines_and_keeps_end_points():
    line = torch.linspace(-1.0, 3.0, 9)[:, None].repeat(1, 2)
    torch.testing.assert_close(
        resample(line, 17), torch.linspace(-1.0, 3.0, 17)[:, None].repeat(1, 2)
    )
    torch.testing.assert_close(resample(line, 9), line)
    assert resample(line[:1], 4).tolist() == [[-1.0, -1.0]] * 4


def test_magnitude_transformations_have_their_documented_size():
    x = torch.ones(20000, 1)
    torch.manual_seed(0)
    noise = AUGMENTATIONS["jitter"](x) - x
    assert abs(float(noise.std()) - 0.03) < 0.002
    factors = torch.stack([AUGMENTATIONS["scale"](torch.ones(3, 2))[0] for _ in range(4000)])
    assert abs(float(factors.std()) - 0.1) < 0.01
    scaled = AUGMENTATIONS["scale"](torch.ones(5, 2))  # one factor per channel, for every sample
    assert scaled[:, 0].unique().numel() == 1 and scaled[:, 1].unique().numel() == 1


def test_augmented_items_are_seeded_and_each_transformation_is_applied_half_the_time():
    values = [np.random.default_rng(i).normal(size=(30, 2)).astype(np.float32) for i in range(4)]
    data = SequenceDataset(values, np.arange(4))
    augmented = AugmentedSequences(data, ("slice",))
    torch.manual_seed(5)
    first = [augmented[i][0] for i in range(4)]
    torch.manual_seed(5)
    again = [augmented[i][0] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    torch.manual_seed(0)
    changed = [not torch.equal(augmented[1][0], data[1][0]) for _ in range(2000)]
    assert abs(np.mean(changed) - PROBABILITY) < 0.05
    x, y = AugmentedSequences(data, ())[2]
    assert torch.equal(x, data[2][0]) and int(y) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("slce", "unknown transformation 'slce'"),
        ("", "augment must be None"),
        ("slice+slice", "twice"),
        (3, "got 3"),
    ],
)
def test_bad_augment_settings_are_named(value, message):
    X = np.random.default_rng(0).normal(size=(12, 1, 16))
    with pytest.raises(ValueError, match=message):
        RWKVClassifier(**TINY, augment=value).fit(X, ["a", "b"] * 6)
    assert parse_augment("warp+jitter") == ("warp", "jitter")


def test_time_warps_are_refused_for_per_sample_targets():
    X = [np.random.default_rng(i).normal(size=(2, 20)) for i in range(6)]  # (channels, time)
    y = [np.arange(20.0)[::-1] for _ in range(6)]
    with pytest.raises(ValueError, match="slice and warp move samples in time"):
        RWKVRegressor(**TINY, augment="warp+slice").fit(X, y)
    RWKVRegressor(**TINY, augment="scale+jitter").fit(X, y)  # magnitudes keep targets aligned


def test_only_training_instances_are_transformed(monkeypatch):
    seen = {}
    train_model = sequence_estimator.train_model

    def spy(model, train_data, val_data, options):
        seen["train"], seen["val"] = train_data, val_data
        return train_model(model, train_data, val_data, options)

    monkeypatch.setattr(sequence_estimator, "train_model", spy)
    X = np.random.default_rng(0).normal(size=(20, 1, 16))
    RWKVClassifier(**TINY, augment="slice", val_fraction=0.25).fit(X, ["a", "b"] * 10)
    assert isinstance(seen["train"], AugmentedSequences)
    assert isinstance(seen["val"], SequenceDataset)


def test_augmented_fit_is_reproducible_and_differs_from_plain():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 2, 24))
    y = np.where(X[:, 0, :12].mean(axis=1) > 0, "up", "down")
    a = RWKVClassifier(**TINY, augment="slice+warp").fit(X, y).predict_proba(X)
    b = RWKVClassifier(**TINY, augment="slice+warp").fit(X, y).predict_proba(X)
    plain = RWKVClassifier(**TINY).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)


def test_saved_model_keeps_the_setting(tmp_path):
    from rwkv_ts import load

    X = np.random.default_rng(0).normal(size=(16, 1, 16))
    clf = RWKVClassifier(**TINY, augment="warp+scale").fit(X, ["a", "b"] * 8)
    clf.save(tmp_path / "clf.rwkvts")
    loaded = load(tmp_path / "clf.rwkvts")
    assert loaded.augment == "warp+scale"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
