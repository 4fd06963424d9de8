"""Optuna tuning: search spaces, pruning, refit, shared storage across processes, resuming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
torch = pytest.importorskip("torch")

from optuna.distributions import FloatDistribution  # noqa: E402

from rwkv_ts import RWKVForecaster  # noqa: E402
from rwkv_ts.datasets import load_co2  # noqa: E402
from rwkv_ts.tune import (  # noqa: E402
    PruningCallback,
    decode_params,
    default_search_space,
    make_storage,
    suggest_params,
    tune,
)

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(
    horizon=8,
    lookback=32,
    patch_len=8,
    stride=4,
    d_model=8,
    head_size=8,
    n_layers=1,
    tcn_dilations=(),
    shift_distances=(1,),
    batch_size=256,
    max_epochs=3,
    verbose=False,
    random_state=0,
    accelerator="cpu",
)
LR_SPACE = {"learning_rate": FloatDistribution(1e-5, 5e-2, log=True)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def co2_fit_part():
    """The first 600 weeks of the Mauna Loa CO2 series (real data, embedded in the package)."""
    return load_co2().frame.iloc[:600].copy()


def test_default_search_space_gives_valid_configurations():
    est = RWKVForecaster(lookback=96, horizon=24)
    space = default_search_space(est)
    assert {"lookback", "horizon", "val_fraction", "norm", "head"}.isdisjoint(space)
    assert space["cycle"] == [None, "auto"]  # the ETT recipe's choice is in the space
    # the accurate preset's loss too, every trial validated by the same loss
    assert (space["loss"], space["val_loss"]) == (["huber", "mse"], ["mse"])
    robust = default_search_space(RWKVForecaster(loss="mae"))
    assert (robust["loss"], robust["val_loss"]) == (["huber", "mae", "mse"], ["mae"])
    assert default_search_space(RWKVForecaster(val_loss="huber"))["val_loss"] == ["huber"]
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(30):
        trial = study.ask()
        params = suggest_params(trial, space)
        clone = RWKVForecaster(lookback=96, horizon=24).set_params(**params)
        n_patches = (96 - clone.patch_len) // clone.stride + 1
        clone._build_config(clone._resolve_distances([np.zeros((200, 1))], n_patches)).validate()
        assert isinstance(params["tcn_dilations"], tuple)
        study.tell(trial, 0.0)
    # tuple choices are stored as labels and decoded back
    stored = study.trials[0].params
    assert decode_params(stored, space) == suggest_params(optuna.trial.FixedTrial(stored), space)


def test_classifier_space_chooses_augmentation_and_the_regressor_space_does_not():
    from rwkv_ts import RWKVClassifier, RWKVRegressor

    space = default_search_space(RWKVClassifier())
    assert space["augment"] == [None, "slice+warp"]
    assert "augment" not in default_search_space(RWKVRegressor())  # per-cycle targets
    for choice in space["augment"]:  # every choice is a valid setting
        RWKVClassifier(augment=choice)._check_params()


def test_sktime_sequence_adapter_is_tuned_through_its_core_estimator(shared_data_home):
    pytest.importorskip("sktime", reason="the sktime extra is not installed")
    from tiny_settings import TINY_SEQUENCE

    from rwkv_ts import RWKVClassifier, RWKVRegressor
    from rwkv_ts.datasets import load_classification
    from rwkv_ts.sktime import RWKVSktimeClassifier, RWKVSktimeRegressor

    X, y = load_classification("ECG200", "train", data_home=shared_data_home)
    adapter = RWKVSktimeClassifier(RWKVClassifier(**TINY_SEQUENCE, val_fraction=0.25))
    space = default_search_space(adapter)
    assert space["estimator__augment"] == [None, "slice+warp"]
    assert all(name.startswith("estimator__") for name in space)
    small = {name: space[name] for name in ("estimator__learning_rate", "estimator__augment")}
    result = tune(adapter, X[:40], y[:40], n_trials=2, search_space=small)
    assert set(result.best_params) == set(small)
    assert all(np.isfinite(t.value) for t in result.study.trials)
    assert (
        result.estimator.estimator_.learning_rate == result.best_params["estimator__learning_rate"]
    )
    assert result.estimator.predict(X[40:44]).shape == (4,)
    assert adapter.estimator.learning_rate == TINY_SEQUENCE.get("learning_rate", 3e-3)  # untouched
    # the regressor adapter the same way (its default space has no augmentation)
    regressor = RWKVSktimeRegressor(RWKVRegressor(**TINY_SEQUENCE))
    assert "estimator__augment" not in default_search_space(regressor)
    target = X[:40, 0, -8:].mean(axis=1)
    fitted = tune(regressor, X[:40], target, n_trials=2, search_space={k: small[k] for k in
                  ("estimator__learning_rate",)})  # fmt: skip
    assert fitted.estimator.predict(X[40:44]).shape == (4,)
    with pytest.raises(TypeError, match=r"RWKVSktimeClassifier\(RWKVClassifier\(val_fraction"):
        default_search_space(RWKVSktimeClassifier())
    with pytest.raises(TypeError, match=r"RWKVSktimeRegressor\(RWKVRegressor\(val_fraction"):
        default_search_space(RWKVSktimeRegressor())


def test_default_search_space_respects_a_short_lookback():
    space = default_search_space(RWKVForecaster(lookback=20))
    assert max(space["patch_len"]) <= 10


def test_tune_prunes_on_validation_loss_and_refits_the_best(co2_fit_part):
    est = RWKVForecaster(**TINY)
    template_lr = est.learning_rate
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    result = tune(
        est,
        co2_fit_part,
        n_trials=6,
        search_space=LR_SPACE,
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    states = [t.state for t in result.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 2
    # pruning stopped the training early: fewer epochs reported than max_epochs
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert min(len(t.intermediate_values) for t in pruned) < TINY["max_epochs"]
    best, study = result
    assert best.learning_rate == pytest.approx(study.best_params["learning_rate"])
    assert best.learning_rate == pytest.approx(result.best_params["learning_rate"])
    # the best value is the validation loss of that configuration, reproduced by the refit
    refit_val = min(h["val_loss"] for h in best.history_ if "val_loss" in h)
    assert refit_val == pytest.approx(study.best_value, rel=1e-4)
    assert est.get_params()["learning_rate"] == template_lr  # the template was not modified
    assert best.predict().shape == (8, 2)


def test_tune_needs_a_validation_part(co2_fit_part):
    est = RWKVForecaster(**{**TINY, "val_fraction": 0.0, "max_epochs": 1})
    with pytest.raises(ValueError, match="without a validation part"):
        tune(est, co2_fit_part, n_trials=1, search_space=LR_SPACE)


def test_storage_needs_a_study_name(tmp_path, co2_fit_part):
    with pytest.raises(ValueError, match="study_name"):
        tune(RWKVForecaster(**TINY), co2_fit_part, storage=str(tmp_path / "s.log"))


def test_sqlite_storage_is_shared_and_counts_trials_across_runs(tmp_path, co2_fit_part):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    est = RWKVForecaster(**{**TINY, "max_epochs": 1})
    kw = dict(search_space=LR_SPACE, storage=url, study_name="s", refit=False)
    tune(est, co2_fit_part, n_trials=2, **kw)
    # a second run with the same target finds the study done and runs nothing more
    again = tune(est, co2_fit_part, n_trials=2, **kw)
    assert len(again.study.trials) == 2
    # raising the target continues the same study
    more = tune(est, co2_fit_part, n_trials=3, **kw)
    assert len(more.study.trials) == 3
    assert type(make_storage(url)).__name__ == "RDBStorage"


def test_pruning_callback_stops_training():
    class Trial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    trial = Trial()
    est = RWKVForecaster(**{**TINY, "max_epochs": 6, "patience": 10})
    from rwkv_ts.training import training_callbacks

    callback = PruningCallback(trial)
    with training_callbacks(callback):
        est.fit(load_co2().frame.iloc[:400])
    assert callback.pruned_at == 1
    assert est.n_epochs_ == 2
    assert [s for s, _ in trial.reported] == [0, 1]


# ------------------------------------------------------------------------------ processes

WORKER = """
import os
import sys
import time
from pathlib import Path
import optuna
import torch
from lightning.pytorch.callbacks import Callback
from optuna.distributions import FloatDistribution
from rwkv_ts import RWKVForecaster
from rwkv_ts.datasets import load_co2
from rwkv_ts.training import training_callbacks
from rwkv_ts.tune import tune

torch.set_num_threads(1)
storage, n_trials = sys.argv[1], int(sys.argv[2])
# a barrier: start tuning only when every worker of this group has finished its imports
barrier, group = Path(sys.argv[3]), int(sys.argv[4])
stall_after = int(sys.argv[5])


class StallMidTrial(Callback):
    # holds the worker inside a trial once it has finished `stall_after` of them, so that the
    # test kills it there however fast the machine runs the trials
    started = 0

    def on_train_start(self, trainer, pl_module):
        StallMidTrial.started += 1
        if stall_after and StallMidTrial.started > stall_after:
            time.sleep(600)


(barrier / str(os.getpid())).touch()
deadline = time.monotonic() + 120
while len(list(barrier.iterdir())) < group and time.monotonic() < deadline:
    time.sleep(0.05)
est = RWKVForecaster(horizon=8, lookback=32, patch_len=8, stride=4, d_model=8, head_size=8,
                     n_layers=1, tcn_dilations=(), shift_distances=(1,), batch_size=256,
                     max_epochs=2, verbose=False, random_state=0, accelerator="cpu")
with training_callbacks(StallMidTrial()):
    tune(est, load_co2().frame.iloc[:500], n_trials=n_trials, storage=storage,
         study_name="shared",
         search_space={"learning_rate": FloatDistribution(1e-5, 5e-2, log=True)},
         pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0), refit=False)
"""


def _worker(
    storage: Path, n_trials: int, barrier: Path, group: int, stall_after: int = 0
) -> subprocess.Popen:
    barrier.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *map(str, (storage, n_trials, barrier, group, stall_after))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finished(study) -> list:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


def test_workers_share_one_study_and_a_killed_run_resumes(tmp_path):
    storage = tmp_path / "study.log"
    target = 8
    # a first worker is killed half-way, inside its third trial ...
    first = _worker(storage, target, tmp_path / "alone", 1, stall_after=2)
    deadline = time.monotonic() + 180
    study = None
    while time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.3)
        if storage.exists():
            study = optuna.load_study(study_name="shared", storage=make_storage(storage))
            if len(_finished(study)) >= 2:
                break
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert study is not None and len(_finished(study)) == 2
    before = {t.number: t.params for t in _finished(study)}
    # ... and two workers started on the same storage finish the study together
    workers = [_worker(storage, target, tmp_path / "pair", 2) for _ in range(2)]
    for w in workers:
        out, _ = w.communicate(timeout=240)
        assert w.returncode == 0, out
    study = optuna.load_study(study_name="shared", storage=make_storage(storage))
    done = _finished(study)
    assert target <= len(done) <= target + 1  # both may finish the last trial at once
    # the trials finished before the kill are kept; every trial is recorded, numbered
    # without gaps; only the killed worker's trial was left unfinished
    assert {t.number: t.params for t in done if t.number in before} == before
    assert [t.number for t in study.trials] == list(range(len(study.trials)))
    assert sum(not t.state.is_finished() for t in study.trials) <= 1
    assert len({t.user_attrs["worker"] for t in done if t.number not in before}) == 2
    states = [t.state for t in done]
    assert optuna.trial.TrialState.PRUNED in states
    assert optuna.trial.TrialState.COMPLETE in states


def test_tune_a_classifier_on_ecg200(shared_data_home):
    from rwkv_ts import RWKVClassifier
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("ECG200", "train", data_home=shared_data_home)
    clf = RWKVClassifier(
        d_model=8, head_size=4, n_layers=1, max_epochs=2, val_fraction=0.25, random_state=0
    )
    space = default_search_space(clf)
    assert {"d_model", "patch_len", "learning_rate"} <= set(space)
    result = tune(clf, X, y, n_trials=2, search_space=LR_SPACE)
    assert len(result.study.trials) == 2
    assert result.estimator.predict(X[:5]).shape == (5,)
    best_val = min(h["val_loss"] for h in result.estimator.history_ if "val_loss" in h)
    assert best_val == pytest.approx(result.study.best_value, rel=1e-4)


def _tune_counting_runs(reg, data_home) -> tuple:
    """Tune ``reg`` (2 trials of the learning rate) on 16 real FD001 engines; the result and
    how many training runs started."""
    from lightning.pytorch.callbacks import Callback

    from rwkv_ts.datasets import load_cmapss
    from rwkv_ts.training import training_callbacks

    class Count(Callback):
        n = 0

        def on_train_start(self, trainer, pl_module):
            Count.n += 1

    prep = load_cmapss("FD001", data_home=data_home).prepare(rul_cap=125)
    with training_callbacks(Count()):
        result = tune(
            reg,
            prep.X_train[:16],
            prep.y_train[:16],
            n_trials=2,
            search_space=LR_SPACE,
            groups=prep.groups_train[:16],
        )
    return result, Count.n


def test_an_ensemble_is_tuned_one_member_per_trial_and_refitted_whole(shared_data_home):
    from rwkv_ts import RWKVRegressor
    from rwkv_ts.nn.sequence import SequenceEnsemble

    reg = RWKVRegressor(
        d_model=8, head_size=4, n_layers=1, max_epochs=2, random_state=0, ensemble_size=3
    )
    result, runs = _tune_counting_runs(reg, shared_data_home)
    assert runs == 2 + 3  # one member per trial, then the three of the refit
    assert isinstance(result.estimator.model_, SequenceEnsemble)
    assert result.estimator.ensemble_size == 3 and reg.ensemble_size == 3


def test_trials_skip_the_estimators_refit_and_the_final_fit_does_it(shared_data_home):
    from rwkv_ts import RWKVRegressor

    reg = RWKVRegressor(d_model=8, head_size=4, n_layers=1, max_epochs=2, random_state=0, refit=1.5)
    result, runs = _tune_counting_runs(reg, shared_data_home)
    assert runs == 2 + 2  # one run per trial, then early stopping and the refit
    assert result.estimator.refit == 1.5 and result.estimator.refit_epochs_ is not None
    assert all(t.value is not None for t in result.study.trials)
