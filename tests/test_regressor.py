"""RWKVRegressor: per-instance and per-sample targets, grouped validation, exact streaming of real
engine histories, save/load and scikit-learn's estimator checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

import rwkv_ts
from rwkv_ts import RWKVRegressor
from rwkv_ts.data import DataValidationError

TINY = dict(d_model=16, head_size=8, n_layers=1, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def fd001(shared_data_home):
    from rwkv_ts.datasets import load_cmapss

    data = load_cmapss("FD001", data_home=shared_data_home)
    return data, data.prepare(rul_cap=125)


def test_per_instance_targets_single_and_multi_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, 16)).cumsum(axis=2)
    y = X[:, 0, -1] - X[:, 1, -1]
    reg = RWKVRegressor(**TINY).fit(X, y)
    assert reg.predict(X).shape == (40,)
    Y = np.stack([y, 2 * y], axis=1)
    reg2 = RWKVRegressor(**TINY).fit(X, Y)
    assert reg2.predict(X).shape == (40, 2)
    np.testing.assert_allclose(reg2.target_mean_, Y.mean(axis=0))


def test_learns_rul_from_real_engines(fd001):
    """Trained on every prefix of 30 real FD001 engines, the estimate at the end of held-out
    engines' histories is far better than predicting the training mean."""
    _, prep = fd001
    reg = RWKVRegressor(**{**TINY, "max_epochs": 12, "learning_rate": 5e-3, "val_fraction": 0})
    reg.fit(prep.X_train[:30], prep.y_train[:30])
    held_out = prep.X_train[30:50]
    # truncate each held-out engine 40 cycles before failure: true capped RUL 40
    truncated = [x[:, :-40] for x in held_out]
    pred = reg.predict(truncated)
    assert pred.shape == (20,)
    mean_rmse = np.sqrt(np.mean((np.mean(np.concatenate(prep.y_train[:30])) - 40.0) ** 2))
    assert np.sqrt(np.mean((pred - 40.0) ** 2)) < 0.6 * mean_rmse


def test_per_sample_targets_and_prefix_consistency(fd001):
    _, prep = fd001
    X, y = prep.X_train[:6], prep.y_train[:6]
    reg = RWKVRegressor(**{**TINY, "patch_len": 3, "stride": 2}).fit(X, y)
    steps = reg.predict_steps(X)
    assert [len(s) for s in steps] == [x.shape[1] for x in X]
    assert np.isnan(steps[0][:2]).all() and np.isfinite(steps[0][2:]).all()
    # predict on a prefix equals the per-step answer after that prefix
    for t in (3, 4, 50, X[0].shape[1]):
        np.testing.assert_allclose(reg.predict([X[0][:, :t]])[0], steps[0][t - 1], atol=1e-4)
    with pytest.raises(DataValidationError, match="instance 1 have shape"):
        reg.fit(X[:2], [y[0], y[1][:-1]])


def test_groups_hold_out_whole_units(fd001):
    _, prep = fd001
    windows = prep.X_train[:10]
    groups = np.repeat(np.arange(5), 2)
    reg = RWKVRegressor(**{**TINY, "val_fraction": 0.4})
    train, val = reg._split(10, groups=groups)
    assert len(val) == 4 and not set(groups[train]) & set(groups[val])
    reg.fit(windows, [v[-1] for v in prep.y_train[:10]], groups=groups)
    assert reg.n_val_instances_ == 4


def test_stream_follows_every_cycle_of_every_unit(fd001):
    """Rows of several engines arrive one cycle at a time; after each cycle the stream's RUL
    equals batch predict on that engine's history so far."""
    data, prep = fd001
    reg = RWKVRegressor(**{**TINY, "n_layers": 2}, id_col="unit", time_col="cycle")
    units = data.test[data.test["unit"] <= 4]
    frame = units[["unit", "cycle", *prep.channels]]
    reg.fit(frame, {u: 100.0 + u for u in range(1, 5)})
    with torch.no_grad():  # random weights so that the recurrence matters
        gen = torch.Generator().manual_seed(0)
        for p in reg.model_.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    stream = reg.stream()
    got = pd.concat(
        [stream.update(frame[frame["cycle"] == c]) for c in range(1, frame["cycle"].max() + 1)]
    ).sort_values(["unit", "n_seen"])
    expected = np.concatenate(reg.predict_steps(frame))
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, atol=1e-5, rtol=0)
    last = got.groupby("unit")["prediction"].last().to_numpy()
    np.testing.assert_allclose(last, reg.predict(frame), atol=1e-5, rtol=0)
    assert sorted(stream.ids) == [1, 2, 3, 4]


def test_save_load_round_trip(tmp_path, fd001):
    _, prep = fd001
    reg = RWKVRegressor(**TINY).fit(prep.X_train[:5], prep.y_train[:5])
    reg.save(tmp_path / "reg.rwkvts")
    loaded = rwkv_ts.load(tmp_path / "reg.rwkvts")
    assert isinstance(loaded, RWKVRegressor)
    np.testing.assert_allclose(loaded.predict(prep.X_test[:5]), reg.predict(prep.X_test[:5]))
    np.testing.assert_allclose(loaded.target_std_, reg.target_std_)


SKLEARN_TINY = dict(
    patch_len=1,
    stride=1,
    d_model=16,
    head_size=8,
    n_layers=1,
    tcn_dilations=(),
    shift_distances=(1,),
    max_epochs=50,
    batch_size=64,
    learning_rate=1e-2,
    dropout=0.0,
    val_fraction=0.0,
    random_state=0,
)

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
    "check_regressor_data_not_an_array": (
        "it also passes X as a wide pandas frame; frames are read as long instance panels "
        "(instance id, time, channel columns) and need id_col"
    ),
}


@parametrize_with_checks(
    [RWKVRegressor(**SKLEARN_TINY)],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
