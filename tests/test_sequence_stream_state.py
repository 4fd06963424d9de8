"""Saving and restoring the streams of RWKVClassifier and RWKVRegressor: a restored stream continues
exactly where the saved one was, on real engine histories; anything foreign or damaged is refused
and leaves the stream as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load

import rwkv_ts
from rwkv_ts import RWKVClassifier, RWKVRegressor
from rwkv_ts.stream import StreamStateError

TINY = dict(d_model=16, head_size=8, n_layers=1, max_epochs=2, random_state=0, accelerator="cpu")


@pytest.fixture(scope="module")
def engines(shared_data_home, tmp_path_factory):
    """A regressor (an ensemble of two, causal normalisation) fitted on 8 FD001 engines, its
    reloaded copy from a file, and four test engines' cycles as a long frame."""
    from rwkv_ts.datasets import load_cmapss

    data = load_cmapss("FD001", data_home=shared_data_home)
    prep = data.prepare(rul_cap=125)
    columns = ["unit", "cycle", *prep.channels]
    reg = RWKVRegressor(
        **TINY, ensemble_size=2, norm="causal", norm_window=16, id_col="unit", time_col="cycle"
    )
    reg.fit(data.train[data.train["unit"] <= 8][columns], list(prep.y_train[:8]))
    with torch.no_grad():  # random weights on top, so that every part of the state matters
        gen = torch.Generator().manual_seed(0)
        for p in reg.model_.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    path = tmp_path_factory.mktemp("model") / "reg.rwkvts"
    reg.save(path)
    frame = data.test[data.test["unit"] <= 4][columns]
    return reg, rwkv_ts.load(path), frame


def _by_cycle(frame: pd.DataFrame, cycles: range) -> list[pd.DataFrame]:
    return [frame[frame["cycle"] == c] for c in cycles if (frame["cycle"] == c).any()]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=1, max_value=60), as_file=st.booleans())
def test_restored_stream_continues_exactly(engines, tmp_path, cut, as_file):
    """Cycles 1..cut go to one stream, its state is saved; a stream of the estimator loaded from
    its file restores it and takes the remaining cycles: every answer equals the uninterrupted
    stream's, bit for bit, and the latest answers and sample counts carry over."""
    reg, loaded, frame = engines
    last = int(frame["cycle"].max())
    whole = reg.stream()
    expected = pd.concat([whole.update(rows) for rows in _by_cycle(frame, range(1, last + 1))])

    first = reg.stream()
    for rows in _by_cycle(frame, range(1, cut + 1)):
        first.update(rows)
    target = tmp_path / f"state_{cut}.safetensors"
    blob = first.save_state(target if as_file else None)
    resumed = loaded.stream().load_state(target if as_file else blob)
    assert resumed.ids == first.ids
    for unit in first.ids:
        assert resumed.n_seen(unit) == first.n_seen(unit)
        np.testing.assert_array_equal(resumed.current(unit), first.current(unit))
    rest = [resumed.update(rows) for rows in _by_cycle(frame, range(cut + 1, last + 1))]
    got = pd.concat([f for f in rest if len(f)])
    tail = expected.merge(got, on=["unit", "n_seen"], suffixes=("", "_resumed"))
    assert len(tail) == len(got) == int((frame["cycle"] > cut).sum())
    np.testing.assert_array_equal(tail["prediction_resumed"], tail["prediction"])


def test_state_size_is_constant_per_instance(engines):
    reg, _, frame = engines
    stream = reg.stream()
    sizes = []
    for rows in _by_cycle(frame, range(1, 40)):
        stream.update(rows)
        sizes.append(stream.state_nbytes)
    assert sizes[0] > 0 and len(set(sizes)) == 1  # four engines from the first cycle on


def test_classifier_stream_state_with_labels_of_any_id_type():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 2, 20))
    clf = RWKVClassifier(**TINY, patch_len=4, stride=2).fit(X, ["a", "b", "c"] * 8)
    stream = clf.stream()
    ids = ["rec-1", 7, (3, "x"), None, pd.Timestamp("2026-01-01")]
    for k, key in enumerate(ids):
        stream.update(X[k].T[:9], id=key)
    restored = clf.stream().load_state(stream.save_state())
    assert restored.ids == ids
    for k, key in enumerate(ids):
        np.testing.assert_array_equal(
            restored.update(X[k].T[9:], id=key), stream.update(X[k].T[9:], id=key)
        )
    with pytest.raises(TypeError, match=r"instance id .* cannot be saved"):
        bad = clf.stream()
        bad.update(X[0].T[:5], id=frozenset({1}))
        bad.save_state()


def test_foreign_or_damaged_states_are_refused_and_change_nothing(engines, tmp_path):
    reg, _, frame = engines
    stream = reg.stream()
    for rows in _by_cycle(frame, range(1, 11)):
        stream.update(rows)
    blob = stream.save_state()
    target = reg.stream()
    target.update(frame[frame["cycle"] == 1])
    before = (target.ids, st_load(target.save_state()))

    other = RWKVRegressor(**{**TINY, "random_state": 1}, id_col="unit", time_col="cycle")
    other.fit(frame, {u: 50.0 for u in range(1, 5)})
    with pytest.raises(StreamStateError, match="different model"):
        other.stream().load_state(blob)
    flipped = bytearray(blob)
    flipped[-5] ^= 0xFF
    with pytest.raises(StreamStateError, match="corrupt|checksum"):
        target.load_state(bytes(flipped))
    with pytest.raises(StreamStateError):
        target.load_state(blob[: len(blob) // 2])
    reg.save(tmp_path / "model.rwkvts")
    with pytest.raises(StreamStateError, match="not an rwkv-ts sequence-stream state"):
        target.load_state(tmp_path / "model.rwkvts")
    with pytest.raises(FileNotFoundError, match="no stream state file"):
        target.load_state(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="bytes or a path"):
        target.load_state(123)
    after = st_load(target.save_state())
    assert target.ids == before[0] and after.keys() == before[1].keys()
    for name, tensor in before[1].items():
        assert torch.equal(after[name], tensor), name
