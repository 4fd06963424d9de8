"""Ensembles of the sequence estimators (``ensemble_size``): members, combination, exact streams of
real engine histories, save/load, resuming a killed fit, scikit-learn's checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import test_classifier
import test_regressor
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.utils.estimator_checks import parametrize_with_checks

import rwkv_ts
from rwkv_ts import RWKVClassifier, RWKVRegressor
from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig, SequenceEnsemble
from rwkv_ts.training import training_callbacks

TINY = dict(
    patch_len=4,
    stride=2,
    d_model=16,
    head_size=8,
    n_layers=1,
    max_epochs=3,
    random_state=0,
    accelerator="cpu",
)


def _waves() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.linspace(0, 6, 24)
    X = np.stack([np.sin(t * (1 + k % 3)) + 0.3 * rng.normal(size=24) for k in range(48)])
    return X[:, None, :], np.array(["slow", "mid", "fast"] * 16)


@pytest.fixture(scope="module")
def fd001(shared_data_home):
    from rwkv_ts.datasets import load_cmapss

    data = load_cmapss("FD001", data_home=shared_data_home)
    return data, data.prepare(rul_cap=125)


def _scaled(est, X: np.ndarray) -> torch.Tensor:
    """``X`` (n, C, T) as the estimator feeds its model (instances are held in float32)."""
    values = X.transpose(0, 2, 1).astype(np.float32)
    return torch.from_numpy(((values - est.scale_mean_) / est.scale_std_).astype(np.float32))


def test_module_combines_means_and_probabilities_in_both_modes():
    config = SequenceConfig(
        n_channels=2, n_outputs=3, patch_len=3, stride=2, d_model=16, head_size=8, n_layers=1
    )
    torch.manual_seed(0)
    members = [RWKVSequenceModel(config).eval() for _ in range(3)]
    x = torch.randn(4, 17, 2)
    for combine in ("mean", "probability"):
        ensemble = SequenceEnsemble(members, combine=combine).eval()
        with torch.no_grad():
            outs = torch.stack([m.token_outputs(x) for m in members])
            got = ensemble.token_outputs(x)
            if combine == "mean":
                torch.testing.assert_close(got, outs.mean(0))
            else:
                torch.testing.assert_close(got.softmax(-1), outs.softmax(-1).mean(0))
            # the recurrent mode: one sample at a time equals the parallel output
            state = ensemble.init_state(4)
            for t in range(x.shape[1]):
                (out, seen), state = ensemble.step(x[:, t], state)
                if t >= 2 and (t - 2) % 2 == 0:
                    torch.testing.assert_close(out, got[:, (t - 2) // 2], atol=1e-5, rtol=0)
            assert bool(seen.all())
    with pytest.raises(ValueError, match="combine must be one of"):
        SequenceEnsemble(members, combine="median")
    other = RWKVSequenceModel(SequenceConfig(**{**config.to_dict(), "d_model": 8}))
    with pytest.raises(ValueError, match="member 1 has configuration"):
        SequenceEnsemble([members[0], other])


def test_classifier_ensemble_averages_its_members_probabilities(tmp_path):
    X, y = _waves()
    params = {**TINY, "val_fraction": 0.25}
    single = RWKVClassifier(**params).fit(X, y)
    ens = RWKVClassifier(**params, ensemble_size=3).fit(X, y)
    assert isinstance(ens.model_, SequenceEnsemble) and len(ens.model_.members) == 3
    # member 0 is the single model of the same random_state, bit for bit
    for a, b in zip(
        ens.model_.members[0].state_dict().values(),
        single.model_.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(ens.scale_mean_, single.scale_mean_)
    # the others differ: their own seeds and validation splits
    w = [m.head.weight.detach() for m in ens.model_.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    assert len(ens.member_histories_) == 3 and ens.history_ == ens.member_histories_[0]
    with torch.no_grad():
        members = [m(_scaled(ens, X)).softmax(-1).numpy() for m in ens.model_.members]
    proba = ens.predict_proba(X)
    np.testing.assert_allclose(proba, np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_array_equal(ens.predict(X), ens.classes_[proba.argmax(axis=1)])
    # a stream gives the ensemble's probabilities after every sample
    stream = ens.stream()
    steps = ens.predict_proba_steps(X[:1])[0]
    got = np.concatenate([stream.update(X[0].T[:9]), stream.update(X[0].T[9:])])
    np.testing.assert_allclose(got[3:], steps[3:], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[-1], proba[0], atol=1e-5, rtol=0)
    # the file keeps the members fitted, whatever ensemble_size says after fit
    ens.set_params(ensemble_size=1)
    path = tmp_path / "ens.rwkvts"
    ens.save(path)
    ens.set_params(ensemble_size=3)
    loaded = rwkv_ts.load(path)
    assert loaded.ensemble_size == 3 and len(loaded.model_.members) == 3
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)


def test_regressor_ensemble_streams_every_cycle_of_real_engines(fd001, tmp_path):
    """An ensemble of three regressors trained on every prefix of 12 FD001 engines: the estimate
    is the members' mean, the stream equals it after every cycle of every engine, and a saved
    and loaded ensemble answers the same."""
    data, prep = fd001
    reg = RWKVRegressor(
        **{**TINY, "patch_len": 1, "stride": 1, "n_layers": 2},
        ensemble_size=3,
        val_fraction=0.25,
        id_col="unit",
        time_col="cycle",
    )
    units = data.train[data.train["unit"] <= 12]
    frame = units[["unit", "cycle", *prep.channels]]
    reg.fit(frame, list(prep.y_train[:12]))  # per-cycle targets, units in order
    test_frame = data.test[data.test["unit"] <= 3][["unit", "cycle", *prep.channels]]
    pred = reg.predict(test_frame)
    histories = [g[prep.channels].to_numpy().T for _, g in test_frame.groupby("unit")]
    with torch.no_grad():
        members = [
            m(_scaled(reg, x[None]))[0, 0].item() * reg.target_std_[0] + reg.target_mean_[0]
            for x in histories
            for m in reg.model_.members
        ]
    np.testing.assert_allclose(pred, np.reshape(members, (3, 3)).mean(axis=1), rtol=1e-5)
    stream = reg.stream()
    got = pd.concat(
        [
            stream.update(test_frame[test_frame["cycle"] == c])
            for c in range(1, test_frame["cycle"].max() + 1)
        ]
    ).sort_values(["unit", "n_seen"])
    expected = np.concatenate(reg.predict_steps(test_frame))
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.groupby("unit")["prediction"].last(), pred, atol=1e-4)

    reg.save(tmp_path / "ensemble.rwkvts")
    loaded = rwkv_ts.load(tmp_path / "ensemble.rwkvts")
    assert loaded.ensemble_size == 3 and isinstance(loaded.model_, SequenceEnsemble)
    np.testing.assert_array_equal(loaded.predict(test_frame), pred)
    assert [len(h) for h in loaded.member_histories_] == [len(h) for h in reg.member_histories_]


class _CrashInTraining(Callback):
    """Raise in epoch ``epoch`` of the ``n``-th training of this process (0-based)."""

    def __init__(self, n: int, epoch: int) -> None:
        self.n, self.epoch, self.started = n, epoch, -1

    def on_train_start(self, trainer, pl_module) -> None:
        self.started += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.started == self.n and trainer.current_epoch == self.epoch:
            raise _Crashed


class _Crashed(Exception):
    pass


class _CountTrainings(Callback):
    def __init__(self) -> None:
        self.count = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.count += 1


def test_killed_ensemble_fit_resumes_with_the_member_it_was_training(tmp_path):
    X, y = _waves()
    params = {**TINY, "max_epochs": 4, "val_fraction": 0.25, "ensemble_size": 3}
    reference = RWKVClassifier(**params).fit(X, y)
    with training_callbacks(_CrashInTraining(1, epoch=2)), pytest.raises(_Crashed):
        RWKVClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert (tmp_path / "ensemble_member_0.safetensors").exists()  # member 0 finished
    counter = _CountTrainings()
    with training_callbacks(counter):
        resumed = RWKVClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert counter.count == 2  # member 0 was not trained again; member 1 resumed, member 2 new
    np.testing.assert_array_equal(resumed.predict_proba(X), reference.predict_proba(X))
    assert [len(h) for h in resumed.member_histories_] == [
        len(h) for h in reference.member_histories_
    ]
    assert not list(tmp_path.iterdir())  # cleaned up once fit completes


def test_verbose_ensemble_names_the_member_in_training(capsys):
    X, y = _waves()
    RWKVClassifier(**{**TINY, "max_epochs": 1}, ensemble_size=2, verbose=True).fit(X, y)
    err = capsys.readouterr().err
    assert "RWKVClassifier: ensemble member 1 of 2" in err
    assert "RWKVClassifier: ensemble member 2 of 2" in err


def test_ensemble_size_is_validated_and_one_is_a_single_model():
    X, y = _waves()
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="ensemble_size must be a positive integer"):
            RWKVClassifier(**TINY, ensemble_size=bad).fit(X, y)
    one = RWKVRegressor(**TINY).fit(X, X[:, 0, -1])
    assert isinstance(one.model_, RWKVSequenceModel) and len(one.member_histories_) == 1


def _expected_failed(est) -> dict:
    # the same expected failures, for the same reasons, as the single models
    module = test_classifier if isinstance(est, RWKVClassifier) else test_regressor
    return module.EXPECTED_FAILED


@parametrize_with_checks(
    [
        RWKVClassifier(**test_classifier.SKLEARN_TINY, ensemble_size=2),
        RWKVRegressor(**test_regressor.SKLEARN_TINY, ensemble_size=2),
    ],
    expected_failed_checks=_expected_failed,
)
def test_ensembles_are_sklearn_compatible(estimator, check):
    check(estimator)
