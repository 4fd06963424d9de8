"""Training faults, part two: a killed ``fit`` resumes from its checkpoint to the same model as an
uninterrupted one (in-process crashes at every stage, and a real SIGKILL with the resume in a fresh
process); checkpoints of another run or damaged ones are not resumed; non-finite losses and
gradients are skipped on request. ``docs/guides/reliability.md`` lists these guarantees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.base import clone
from tiny_settings import TINY_SEQUENCE

from rwkv_ts import RWKVClassifier, RWKVForecaster, RWKVRegressor
from rwkv_ts._checkpoint import CHECKPOINT_NAME, read_checkpoint
from rwkv_ts.losses import LOSSES
from rwkv_ts.training import (
    CheckpointWarning,
    TrainingDivergedError,
    training_callbacks,
)

# A high learning rate on a noisy series: the validation loss turns up after a few epochs, so
# early stopping ends the run and the best weights come from an earlier epoch — every piece of
# state (dropout, shuffling, early stopping, best weights, schedule) decides the result.
FC = dict(
    horizon=4,
    lookback=16,
    patch_len=4,
    stride=4,
    d_model=8,
    head_size=4,
    n_layers=1,
    shift_distances=(1,),
    tcn_dilations=(),
    max_epochs=8,
    batch_size=16,
    learning_rate=6e-2,
    # the early-stopping scenario below was built on the normalised linear branch
    linear_skip=True,
    patience=2,
    dropout=0.3,
    verbose=False,
    # the first seed tried for a run that stops early (before max_epochs) and restores weights
    # older than its last epoch, the scenario the resume tests need (see forecaster_reference)
    random_state=3,
    accelerator="cpu",
)
SEQ = {
    **TINY_SEQUENCE,
    "max_epochs": 6,
    "learning_rate": 2e-2,
    "patience": 2,
    "dropout": 0.3,
    "val_fraction": 0.25,
}


def _series() -> np.ndarray:
    return np.sin(np.arange(240) / 7.0) + 0.3 * np.random.default_rng(0).normal(size=240)


def _instances() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.linspace(0, 6, 24)
    X = np.stack([np.sin(t * (1 + k % 2)) + 0.3 * rng.normal(size=24) for k in range(48)])
    return X[:, None, :], np.array(["slow", "fast"] * 24)


class Crashed(Exception):
    """Stands for the process dying (Lightning turns a KeyboardInterrupt into an exit)."""


class CrashAt(Callback):
    """Raise in epoch ``epoch`` after batch ``batch`` (mid-epoch), or at the end of training."""

    def __init__(self, epoch: int | None, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise Crashed

    def on_train_end(self, trainer, pl_module) -> None:
        if self.epoch is None:  # after the last checkpoint, before the best weights return
            raise Crashed


def _crash(fit, crash: CrashAt) -> None:
    """Run ``fit()`` until ``crash`` stops it."""
    with training_callbacks(crash), pytest.raises(Crashed):
        fit()


def _history(est) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "train_seconds"} for h in est.history_]


def _assert_same_fit(resumed, reference) -> None:
    assert resumed.n_epochs_ == reference.n_epochs_
    assert resumed.best_epoch_ == reference.best_epoch_
    assert _history(resumed) == _history(reference)
    for a, b in zip(
        resumed.model_.state_dict().values(), reference.model_.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture(scope="module")
def forecaster_reference():
    """The uninterrupted fit of the scenario: early stopping, then the best (older) weights back.

    Which seed gives that depends on the float rounding of the installed numpy and torch (seed 3
    did until numpy 2.4 / pandas 3 turned its run into one that trains all 8 epochs), so the
    fixture takes the first seed from ``FC``'s that does and stores it in ``FC`` for the resumed
    fits of the tests that use this fixture.
    """
    first = FC["random_state"]
    for seed in range(first, first + 20):
        est = RWKVForecaster(**{**FC, "random_state": seed}).fit(_series())
        if est.n_epochs_ < FC["max_epochs"] and est.best_epoch_ < est.n_epochs_ - 1:
            FC["random_state"] = seed
            return est
    pytest.fail(f"no seed in {first}..{first + 19} stops early and restores older weights")


@pytest.mark.parametrize("crash_epoch", [0, 2, None], ids=["epoch0", "mid-epoch2", "at-end"])
def test_forecaster_resumes_to_the_uninterrupted_result(
    tmp_path, forecaster_reference, crash_epoch
):
    y = _series()
    _crash(lambda: RWKVForecaster(**FC, checkpoint_dir=tmp_path).fit(y), CrashAt(crash_epoch))
    if crash_epoch == 0:  # no epoch completed: nothing to resume, the run starts afresh
        assert not (tmp_path / CHECKPOINT_NAME).exists()
    else:
        _, state = read_checkpoint(tmp_path / CHECKPOINT_NAME)
        # the checkpoint of the last complete epoch (at the end: the early-stopped one)
        last = forecaster_reference.n_epochs_ - 1
        assert state["epoch"] == (last if crash_epoch is None else crash_epoch - 1)
    torch.rand(5)  # the global generator moved on: the checkpoint must restore it
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        resumed = RWKVForecaster(**FC, checkpoint_dir=tmp_path).fit(y)
    np.testing.assert_array_equal(resumed.predict(), forecaster_reference.predict())
    _assert_same_fit(resumed, forecaster_reference)
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # deleted once fit completes


def test_resume_keeps_a_fitted_start_that_no_epoch_beat(tmp_path):
    # The linear branch's least-squares start wins on validation (best epoch -1): a resumed run
    # must restore that start too, not the best epoch it saw after resuming.
    params = FC | dict(linear_skip="raw", learning_rate=1e-1, max_epochs=3)
    y = _series()
    reference = RWKVForecaster(**params).fit(y)
    assert reference.best_epoch_ == -1 and reference.n_epochs_ == 3
    _crash(lambda: RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(y), CrashAt(2))
    resumed = RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(y)
    assert resumed.best_val_loss_ == reference.best_val_loss_
    _assert_same_fit(resumed, reference)


def test_classifier_and_regressor_resume_to_the_uninterrupted_result(tmp_path):
    X, labels = _instances()
    targets = X[:, 0, -3:].mean(axis=1)
    # augmentation draws from torch's global generator, which the checkpoint must carry
    augmented = {**SEQ, "augment": "slice+warp+scale+jitter"}
    cases = [
        (RWKVClassifier, SEQ, labels, "predict_proba"),
        (RWKVRegressor, SEQ, targets, "predict"),
        (RWKVClassifier, augmented, labels, "predict_proba"),
    ]
    for k, (cls, params, y, method) in enumerate(cases):
        folder = tmp_path / f"{cls.__name__}{k}"
        reference = cls(**params).fit(X, y)
        assert reference.n_val_instances_ > 0
        _crash(
            lambda c=cls, p=params, f=folder, y=y: c(**p, checkpoint_dir=f).fit(X, y), CrashAt(2)
        )
        resumed = cls(**params, checkpoint_dir=folder).fit(X, y)
        np.testing.assert_array_equal(getattr(resumed, method)(X), getattr(reference, method)(X))
        _assert_same_fit(resumed, reference)


class CrashInRun(CrashAt):
    """Crash mid-epoch ``epoch`` of the ``run``-th training run of a fit (1: the first); counts
    the runs it saw start."""

    def __init__(self, run: int, epoch: int) -> None:
        super().__init__(epoch)
        self.run, self.started = run, 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.started += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.started == self.run:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


@pytest.mark.parametrize("run", [1, 2], ids=["early-stopped-run", "refit"])
def test_refit_resumes_to_the_uninterrupted_result(tmp_path, run):
    """A fit with ``refit`` trains twice (early stopping, then all instances); killed in either
    run it resumes to the uninterrupted model, and killed in the refit it does not train the
    early-stopped run again."""
    X, _ = _instances()
    y = X[:, 0, -3:].mean(axis=1)
    params = {**SEQ, "refit": 1.5}
    reference = RWKVRegressor(**params).fit(X, y)
    assert reference.refit_epochs_ >= 2
    _crash(lambda: RWKVRegressor(**params, checkpoint_dir=tmp_path).fit(X, y), CrashInRun(run, 1))
    counter = CrashInRun(run=0, epoch=0)  # never crashes; counts the runs of the resumed fit
    with training_callbacks(counter):
        resumed = RWKVRegressor(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert counter.started == (2 if run == 1 else 1)
    assert resumed.refit_epochs_ == reference.refit_epochs_
    np.testing.assert_array_equal(resumed.predict(X), reference.predict(X))
    _assert_same_fit(resumed, reference)
    assert list(tmp_path.iterdir()) == []


_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from lightning.pytorch.callbacks import Callback
    from rwkv_ts import RWKVForecaster
    from rwkv_ts.training import training_callbacks

    kwargs, marker = eval(sys.argv[1]), sys.argv[2]

    class WaitForKill(Callback):
        # mid-epoch 2: epochs 0 and 1 are checkpointed, this one is not
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 1:
                open(marker, "w").close()
                time.sleep(120)

    y = np.sin(np.arange(240) / 7.0) + 0.3 * np.random.default_rng(0).normal(size=240)
    with training_callbacks(WaitForKill()):
        RWKVForecaster(**kwargs).fit(y)
    """
)


def test_sigkilled_fit_resumes_in_another_process(tmp_path, forecaster_reference):
    script, marker, folder = tmp_path / "fit.py", tmp_path / "marker", tmp_path / "ckpt"
    script.write_text(_CHILD)
    kwargs = repr({**FC, "checkpoint_dir": str(folder)})
    child = subprocess.Popen(
        [sys.executable, str(script), kwargs, str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the child never reached epoch 2"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    _, state = read_checkpoint(folder / CHECKPOINT_NAME)
    assert state["epoch"] == 1
    # This process did not write the checkpoint and has run other fits (global generator
    # consumed): the checkpoint alone must carry the state.
    torch.rand(3)
    resumed = RWKVForecaster(**FC, checkpoint_dir=str(folder)).fit(_series())
    np.testing.assert_array_equal(resumed.predict(), forecaster_reference.predict())
    _assert_same_fit(resumed, forecaster_reference)
    assert not (folder / CHECKPOINT_NAME).exists()


# ---------------------------------------------------------------------- checkpoints not resumed


def _leave_checkpoint(folder, **params) -> None:
    est = RWKVForecaster(**{**FC, **params}, checkpoint_dir=folder)
    _crash(lambda: est.fit(_series()), CrashAt(2))


def test_checkpoint_of_other_parameters_or_data_is_not_resumed(tmp_path, forecaster_reference):
    _leave_checkpoint(tmp_path, learning_rate=1e-2)
    with pytest.warns(CheckpointWarning, match=r"parameter learning_rate \(0\.01 -> 0\.06\)"):
        est = RWKVForecaster(**FC, checkpoint_dir=tmp_path).fit(_series())
    # started from the beginning: the result of a fit without a checkpoint
    np.testing.assert_array_equal(est.predict(), forecaster_reference.predict())
    _assert_same_fit(est, forecaster_reference)

    _leave_checkpoint(tmp_path)
    with pytest.warns(CheckpointWarning, match="the training data"):
        RWKVForecaster(**FC, checkpoint_dir=tmp_path).fit(_series()[::-1].copy())


@pytest.mark.parametrize("damage", ["flip", "truncate", "pickle"])
def test_damaged_checkpoint_is_not_resumed(tmp_path, forecaster_reference, damage):
    import pickle

    _leave_checkpoint(tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-20] ^= 0xFF
        expected = "checksum"
    elif damage == "truncate":
        data = data[: len(data) // 2]
        expected = "truncated"
    else:
        data = bytearray(pickle.dumps({"state_dict": {}}))
        expected = "never unpickles"
    path.write_bytes(bytes(data))
    with pytest.warns(CheckpointWarning, match=expected):
        est = RWKVForecaster(**FC, checkpoint_dir=tmp_path).fit(_series())
    np.testing.assert_array_equal(est.predict(), forecaster_reference.predict())


# ---------------------------------------------------------------------- non-finite losses


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _poison(monkeypatch, at_call: int, kind: str) -> None:
    calls = {"n": 0}
    mse = LOSSES["mse"]

    def poisoned(pred, target, reduction="mean"):
        if reduction == "mean":  # training steps; validation sums
            calls["n"] += 1
            if calls["n"] == at_call:
                if kind == "loss":
                    return mse(pred, target) * float("nan")
                return mse(_InfGrad.apply(pred), target)
        return mse(pred, target, reduction=reduction)

    monkeypatch.setitem(LOSSES, "mse", poisoned)


class _Watch(Callback):
    """Snapshot the weights and optimiser step counts around one training step."""

    def __init__(self, step: int) -> None:
        self.step, self.before, self.after = step, None, None

    def _snapshot(self, pl_module, trainer):
        weights = [p.detach().clone() for p in pl_module.parameters()]
        state = trainer.optimizers[0].state
        steps = [float(s["step"]) for s in state.values()] if state else []
        return weights, steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == self.step:
            self.before = self._snapshot(pl_module, trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == self.step:
            self.after = self._snapshot(pl_module, trainer)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_step_is_skipped_on_request(monkeypatch, kind):
    _poison(monkeypatch, at_call=3, kind=kind)
    watch = _Watch(step=2)
    what = "loss became nan" if kind == "loss" else "gradient norm became (nan|inf)"
    with training_callbacks(watch), pytest.warns(RuntimeWarning, match=what) as record:
        est = RWKVForecaster(**{**FC, "max_epochs": 2}, on_nonfinite_loss="skip").fit(_series())
    messages = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(messages) == 1 and "at epoch 0, step 2" in messages[0]
    assert [h["skipped_steps"] for h in est.history_] == [1, 0]
    assert all(torch.isfinite(p).all() for p in est.model_.parameters())
    # a true skip: no weight moved, no AdamW step counted (no decay, no moment update)
    for a, b in zip(watch.before[0], watch.after[0], strict=True):
        assert torch.equal(a, b)
    assert watch.before[1] == watch.after[1]
    assert np.isfinite(np.asarray(est.predict())).all()


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_step_raises_by_default(monkeypatch, kind):
    _poison(monkeypatch, at_call=3, kind=kind)
    what = "loss" if kind == "loss" else "gradient norm"
    with pytest.raises(TrainingDivergedError, match=rf"{what} became \w+ at epoch 0, step 2"):
        RWKVForecaster(**{**FC, "max_epochs": 2}).fit(_series())


def test_fault_settings_are_validated_and_kept_as_given(tmp_path):
    X, y = _instances()
    cases = [
        (RWKVForecaster, (_series(),)),
        (RWKVClassifier, (X, y)),
        (RWKVRegressor, (X, X[:, 0, -1])),
    ]
    for cls, args in cases:
        est = cls(on_nonfinite_loss="ignore")
        with pytest.raises(ValueError, match="on_nonfinite_loss must be one of"):
            est.fit(*args)
        with pytest.raises(TypeError, match="checkpoint_dir"):
            cls(checkpoint_dir=3).fit(*args)
        params = cls(on_nonfinite_loss="skip", checkpoint_dir=str(tmp_path)).get_params()
        assert params["on_nonfinite_loss"] == "skip" and params["checkpoint_dir"] == str(tmp_path)
        assert clone(cls(checkpoint_dir=str(tmp_path))).checkpoint_dir == str(tmp_path)
        assert cls().get_params()["on_nonfinite_loss"] == "raise"
        assert cls().get_params()["checkpoint_dir"] is None


def test_audio_estimators_resume_to_the_uninterrupted_result(tmp_path):
    from rwkv_ts.audio import RWKVSpeechRecognizer, RWKVVoiceActivityDetector

    rng = np.random.default_rng(3)
    tiny = dict(
        d_model=16, head_size=8, n_layers=1, dropout=0.3, max_epochs=4, batch_size=2,
        learning_rate=1e-2, random_state=0, accelerator="cpu",
    )  # fmt: skip
    speech = [np.repeat(rng.random(60) > 0.5, 160) for _ in range(6)]
    audios = [(rng.normal(size=s.size) * (0.05 + 0.3 * s)).astype(np.float32) for s in speech]
    vad_kwargs = dict(tiny, crop_s=0.3, val_fraction=0.0)
    vad_val = (audios[:2], speech[:2])
    reference = RWKVVoiceActivityDetector(**vad_kwargs).fit(audios, speech, validation=vad_val)
    folder = tmp_path / "vad"
    _crash(
        lambda: RWKVVoiceActivityDetector(**vad_kwargs, checkpoint_dir=folder).fit(
            audios, speech, validation=vad_val
        ),
        CrashAt(2),
    )
    assert read_checkpoint(folder / CHECKPOINT_NAME)[1]["epoch"] == 1
    torch.rand(3)  # the crops come from the global generator: the checkpoint must restore it
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # it resumes, not restarts
        resumed = RWKVVoiceActivityDetector(**vad_kwargs, checkpoint_dir=folder).fit(
            audios, speech, validation=vad_val
        )
    np.testing.assert_array_equal(
        resumed.predict_proba(audios[0]), reference.predict_proba(audios[0])
    )
    _assert_same_fit(resumed, reference)

    clips = [a[:4800] for a in audios]
    texts = ["1 2", "3", "4 5", "1 2", "3", "4 5"]
    validation = (clips[:2], texts[:2])
    reference = RWKVSpeechRecognizer(**tiny).fit(clips, texts, validation=validation)
    folder = tmp_path / "asr"
    _crash(
        lambda: RWKVSpeechRecognizer(**tiny, checkpoint_dir=folder).fit(
            clips, texts, validation=validation
        ),
        CrashAt(2),
    )
    assert read_checkpoint(folder / CHECKPOINT_NAME)[1]["epoch"] == 1
    torch.rand(3)  # the augmentation draws from the global generator too
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        resumed = RWKVSpeechRecognizer(**tiny, checkpoint_dir=folder).fit(
            clips, texts, validation=validation
        )
    np.testing.assert_array_equal(resumed.token_logits(clips[0]), reference.token_logits(clips[0]))
    _assert_same_fit(resumed, reference)
