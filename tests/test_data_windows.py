"""Tests of WindowDataset and chronological_split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from rwkv_ts.data import DataValidationError, WindowDataset, chronological_split


def brute_force(arrays, lookback, horizon, stride, channel_independent):
    """Materialise every window the slow, obvious way."""
    items = []
    for a in arrays:
        for t in range(0, len(a) - lookback - horizon + 1, stride):
            x, y = a[t : t + lookback], a[t + lookback : t + lookback + horizon]
            if channel_independent:
                items += [(x[:, [c]], y[:, [c]]) for c in range(a.shape[1])]
            else:
                items.append((x, y))
    return items


def make_arrays(lengths, channels, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, channels)).astype(np.float32) for n in lengths]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    channels=st.integers(1, 3),
    lookback=st.integers(1, 10),
    horizon=st.integers(1, 6),
    stride=st.integers(1, 4),
    channel_independent=st.booleans(),
)
def test_dataset_equals_brute_force(
    lengths, channels, lookback, horizon, stride, channel_independent
):
    arrays = make_arrays(lengths, channels)
    ds = WindowDataset(arrays, lookback, horizon, stride, channel_independent=channel_independent)
    expected = brute_force(arrays, lookback, horizon, stride, channel_independent)
    assert len(ds) == len(expected)
    for i, (x, y) in enumerate(expected):
        got_x, got_y = ds[i]
        assert isinstance(got_x, torch.Tensor) and got_x.dtype == torch.float32
        np.testing.assert_array_equal(got_x.numpy(), x)
        np.testing.assert_array_equal(got_y.numpy(), y)
    if len(ds):
        idx = np.arange(len(ds))[::-1]
        bx, by = ds.get_batch(idx)
        np.testing.assert_array_equal(bx.numpy(), np.stack([expected[i][0] for i in idx]))
        np.testing.assert_array_equal(by.numpy(), np.stack([expected[i][1] for i in idx]))


def test_items_are_views_not_copies():
    arrays = make_arrays([20, 15], 3)
    ds = WindowDataset(arrays, 5, 2)
    assert all(a is b for a, b in zip(ds.arrays, arrays, strict=True))
    for i in (0, 7, len(ds) - 1):
        s = ds.index[i, 0]
        x, y = ds[i]
        assert np.shares_memory(x.numpy(), arrays[s]) and np.shares_memory(y.numpy(), arrays[s])
        xv, yv = ds.window(i)
        assert np.shares_memory(xv, arrays[s]) and np.shares_memory(yv, arrays[s])
    # the index table is O(n_windows) integers, read-only
    assert ds.index.shape == (len(ds), 3) and ds.index.dtype == np.int32
    assert not ds.index.flags.writeable
    ds2 = WindowDataset(arrays, 5, 2, channel_independent=False)
    x, y = ds2[3]
    assert x.shape == (5, 3) and y.shape == (2, 3)
    assert np.shares_memory(x.numpy(), arrays[0])
    assert (ds2.index[:, 2] == -1).all()


def test_non_float32_or_readonly_arrays_are_converted_once():
    a = np.arange(10.0)  # float64, 1-D
    b = np.arange(10, dtype=np.float32)
    b.flags.writeable = False
    ds = WindowDataset([a, b], 3, 1)
    assert ds.arrays[0].dtype == np.float32 and ds.arrays[0].shape == (10, 1)
    assert ds.arrays[1].flags.writeable and not np.shares_memory(ds.arrays[1], b)
    x, y = ds[0]
    assert x.shape == (3, 1) and y.shape == (1, 1)


def test_dataloader_batches():
    ds = WindowDataset(make_arrays([30, 12], 2), lookback=6, horizon=3, stride=2)
    xb, yb = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert xb.shape == (4, 6, 1) and yb.shape == (4, 3, 1)


def test_dataset_errors():
    with pytest.raises(DataValidationError, match="same number of channels"):
        WindowDataset(make_arrays([10], 2) + make_arrays([10], 3), 3, 1, channel_independent=False)
    with pytest.raises(DataValidationError, match="lookback must be >= 1"):
        WindowDataset(make_arrays([10], 1), 0, 1)
    with pytest.raises(DataValidationError, match=r"series 0 has shape \(2, 2, 2\)"):
        WindowDataset([np.zeros((2, 2, 2), np.float32)], 1, 1)
    with pytest.raises(IndexError):
        WindowDataset(make_arrays([10], 1), 3, 1)[100]


# ----------------------------------------------------------------------------------------------
# chronological_split
# ----------------------------------------------------------------------------------------------


def target_positions(arrays, lookback, horizon):
    """Positions (time values) appearing as targets of any window."""
    ds = WindowDataset(arrays, lookback, horizon, channel_independent=False)
    return {int(v) for i in range(len(ds)) for v in ds.window(i)[1][:, 0]}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    length=st.integers(1, 80),
    lookback=st.integers(1, 12),
    horizon=st.integers(1, 6),
    val_fraction=st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.9]),
)
def test_split_targets_do_not_overlap(length, lookback, horizon, val_fraction):
    series = np.arange(length, dtype=np.float32)[:, None]  # value == time position
    other = np.arange(lookback + horizon, dtype=np.float32)[:, None]  # always gives a window
    train, val = chronological_split([series, other], val_fraction, lookback, horizon)
    assert np.shares_memory(train[0], series) or len(train[0]) == 0
    train_t = target_positions(train[:1], lookback, horizon)
    can_validate = val_fraction > 0 and length >= lookback + 2 * horizon
    if can_validate:
        v = val[0]
        assert np.shares_memory(v, series)
        val_t = target_positions([v], lookback, horizon)
        assert train_t and val_t
        assert not train_t & val_t  # no validation target is a training target
        assert max(train_t) < min(val_t)
        assert train_t | val_t == set(range(lookback, length))  # nothing lost
        assert int(v[0, 0]) == min(val_t) - lookback  # starts lookback earlier
        n_val = len(val_t)
        assert horizon <= n_val <= length - lookback - horizon
    else:
        assert len(val) == 0  # only `other` may validate, and it is too short
        assert train[0] is series
    assert train[1] is other


def test_split_fraction_and_short_series():
    a = np.arange(110, dtype=np.float32)[:, None]
    train, val = chronological_split([a, a[:15]], 0.2, lookback=10, horizon=5)
    # 100 target positions, the last 20 for validation
    assert len(train) == 2 and len(val) == 1
    assert len(train[0]) == 90 and len(val[0]) == 30 and val[0][0, 0] == 80
    assert train[1] is not None and len(train[1]) == 15  # too short to validate: training only


def test_split_errors():
    with pytest.raises(
        DataValidationError, match=r"no series can give a training window.*= 15.*has 12"
    ):
        chronological_split([np.zeros((12, 1)), np.zeros((3, 1))], 0.2, 10, 5)
    with pytest.raises(DataValidationError, match="val_fraction"):
        chronological_split([np.zeros((30, 1))], 1.0, 10, 5)
