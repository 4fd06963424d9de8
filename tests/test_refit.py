"""``refit``: after early stopping, the sequence estimators train a fresh model on all instances
(the validation ones included) for a multiple of the kept epochs, on real C-MAPSS engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_settings import TINY_SEQUENCE

import rwkv_ts
from rwkv_ts import RWKVClassifier, RWKVRegressor
from rwkv_ts import sequence_estimator as seq

FAST = {**TINY_SEQUENCE, "max_epochs": 6, "patience": 2, "learning_rate": 2e-2, "batch_size": 4}


@pytest.fixture(scope="module")
def engines(shared_data_home):
    """The first 16 FD001 engines cut to their last 60 cycles, with per-cycle RUL targets."""
    from rwkv_ts.datasets import load_cmapss

    prep = load_cmapss("FD001", data_home=shared_data_home).prepare(rul_cap=125)
    X = [x[:, -60:] for x in prep.X_train[:16]]
    y = [t[-60:] for t in prep.y_train[:16]]
    return X, y, prep.groups_train[:16]


def _runs(monkeypatch) -> list[tuple[int, int, int]]:
    """Record (training instances, validation instances, max_epochs) of every training run."""
    runs = []
    original = seq.train_model

    def recording(model, train_data, val_data, options):
        runs.append((len(train_data), 0 if val_data is None else len(val_data), options.max_epochs))
        return original(model, train_data, val_data, options)

    monkeypatch.setattr(seq, "train_model", recording)
    return runs


def _same_weights(a, b) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.model_.state_dict().values(), b.model_.state_dict().values(), strict=True)
    )


def test_refit_trains_on_every_instance_for_the_scaled_epochs(monkeypatch, engines):
    X, y, groups = engines
    runs = _runs(monkeypatch)
    reg = RWKVRegressor(**FAST, val_fraction=0.25, refit=1.5).fit(X, y, groups=groups)
    plain = RWKVRegressor(**FAST, val_fraction=0.25).fit(X, y, groups=groups)
    assert runs[0] == (12, 4, 6) and runs[2] == (12, 4, 6)  # the early-stopped runs
    assert reg.refit_epochs_ == seq.refit_epochs(1.5, reg.best_epoch_)
    assert runs[1] == (16, 0, reg.refit_epochs_)  # then all 16 engines, no validation
    assert len(runs) == 3 and plain.refit_epochs_ is None
    # the early-stopped run's account stays: its history, its kept epoch
    assert plain.best_epoch_ == reg.best_epoch_
    assert [h["val_loss"] for h in plain.history_] == [h["val_loss"] for h in reg.history_]
    assert (reg.n_train_instances_, reg.n_val_instances_) == (16, 4)
    assert (plain.n_train_instances_, plain.n_val_instances_) == (12, 4)
    assert not _same_weights(reg, plain)
    again = RWKVRegressor(**FAST, val_fraction=0.25, refit=1.5).fit(X, y, groups=groups)
    assert _same_weights(reg, again)


def test_refit_of_every_ensemble_member(monkeypatch, engines, tmp_path):
    X, y, groups = engines
    runs = _runs(monkeypatch)
    params = dict(FAST, val_fraction=0.25, refit=1.0, ensemble_size=2)
    reg = RWKVRegressor(**params, checkpoint_dir=str(tmp_path)).fit(X, y, groups=groups)
    assert [r[:2] for r in runs] == [(12, 4), (16, 0)] * 2
    assert reg.refit_epochs_ == runs[1][2]
    assert list(tmp_path.iterdir()) == []  # nothing of the fit is left behind
    path = tmp_path / "rul.safetensors"
    reg.save(path)
    loaded = rwkv_ts.load(path)
    assert loaded.refit_epochs_ == reg.refit_epochs_
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


def test_without_a_validation_split_there_is_nothing_to_refit(monkeypatch, engines):
    X, y, _ = engines
    runs = _runs(monkeypatch)
    # two instances cannot be split: the one run trains on both
    reg = RWKVRegressor(**FAST, val_fraction=0.25, refit=2.0).fit(X[:2], y[:2])
    assert runs == [(2, 0, 6)] and reg.refit_epochs_ is None


@pytest.mark.parametrize("refit", [0, -1.0, float("nan"), float("inf"), True, "1.5"])
def test_bad_refit_is_refused_by_name(engines, refit):
    X, y, _ = engines
    reg = RWKVRegressor(**FAST, refit=refit)
    with pytest.raises(ValueError, match=r"refit must be None or a positive"):
        reg.fit(X, y)
    assert reg.refit is refit  # the parameter stays as given


def test_refit_needs_validation_instances():
    X = np.random.default_rng(0).normal(size=(12, 1, 16))
    with pytest.raises(ValueError, match=r"refit=1\.5 .* val_fraction=0"):
        RWKVClassifier(**FAST, refit=1.5).fit(X, ["a", "b"] * 6)  # the classifier holds out none
    clf = RWKVClassifier(**FAST, refit=1.5, val_fraction=0.25).fit(X, ["a", "b"] * 6)
    assert clf.refit_epochs_ == seq.refit_epochs(1.5, clf.best_epoch_)
