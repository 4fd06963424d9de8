"""Weight averaging (``ema_epochs``): the returned weights are the exponential moving average of
the weights after every optimiser step, validation and early stopping read that average, a killed
fit resumes to the same average, and the own step averages as Lightning's does (the replayed CUDA
graph against the eager step: ``test_training_step.py``, on a GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from test_resume import FC, SEQ, CrashAt, _assert_same_fit, _crash, _instances, _series
from tiny_settings import TINY_FORECASTER as TINY
from torch import nn
from torch.utils.data import TensorDataset

import rwkv_ts.training as training
from rwkv_ts import RWKVClassifier, RWKVForecaster, RWKVRegressor
from rwkv_ts.training import AveragedWeights, TrainingOptions, train_model


class _StepWeights(Callback):
    """The live weights after every optimiser step, and after every epoch's validation."""

    def __init__(self) -> None:
        self.steps: list[list[torch.Tensor]] = []
        self.epochs: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append([p.detach().clone() for p in pl_module.model.parameters()])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append([p.detach().clone() for p in pl_module.model.parameters()])


def _regression(n: int, seed: int) -> TensorDataset:
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(n, 6)), dtype=torch.float32)
    y = x @ torch.arange(1.0, 7.0)[:, None] / 6 + 0.5 * torch.randn(n, 1)
    return TensorDataset(x, y)


def _options(**settings) -> TrainingOptions:
    base = dict(
        max_epochs=4,
        batch_size=16,
        learning_rate=5e-2,
        verbose=False,
        accelerator="cpu",
        random_state=0,
        ema_epochs=0.7,
    )
    return TrainingOptions(**(base | settings))


def _expected_average(steps: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    average = [w.double() for w in steps[0]]
    for n, weights in enumerate(steps[1:], start=1):
        d = min(decay, n / (n + 1))
        average = [d * a + (1 - d) * w.double() for a, w in zip(average, weights, strict=True)]
    return average


def _mse(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean())


def test_without_validation_the_model_is_the_average_of_every_step():
    torch.manual_seed(0)
    model = nn.Linear(6, 1)
    recorder = _StepWeights()
    train_data = _regression(160, 0)  # 10 steps an epoch
    options = _options(extra_callbacks=[recorder])
    train_model(model, train_data, None, options)
    assert len(recorder.steps) == 40
    decay = math.exp(-1 / (0.7 * 10))
    expected = _expected_average(recorder.steps, decay)
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach().double(), want, rtol=1e-6, atol=1e-6)
    # the average is not the last step's weights (the test would pass trivially otherwise)
    assert not torch.allclose(model.weight.detach(), recorder.steps[-1][0], atol=1e-3)


def test_validation_and_the_kept_weights_are_the_average():
    torch.manual_seed(1)
    model = nn.Linear(6, 1)
    recorder = _StepWeights()
    train_data, val_data = _regression(160, 0), _regression(64, 1)
    result = train_model(model, train_data, val_data, _options(extra_callbacks=[recorder]))
    decay = math.exp(-1 / (0.7 * 10))
    # each epoch's validation loss is that of the average of the steps so far
    for epoch, entry in enumerate(result.history):
        average = _expected_average(recorder.steps[: 10 * (epoch + 1)], decay)
        probe = nn.Linear(6, 1)
        with torch.no_grad():
            probe.weight.copy_(average[0])
            probe.bias.copy_(average[1])
        assert entry["val_loss"] == pytest.approx(_mse(probe, val_data), rel=1e-5)
        # training went on from the live weights, which validate differently
        live = nn.Linear(6, 1)
        with torch.no_grad():
            live.weight.copy_(recorder.epochs[epoch][0])
            live.bias.copy_(recorder.epochs[epoch][1])
        assert _mse(live, val_data) != pytest.approx(entry["val_loss"], rel=1e-4)
    # the model returned is the best epoch's average, scored as the history says
    assert _mse(model, val_data) == pytest.approx(result.best_val_loss, rel=1e-5)
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)


def test_forecaster_with_averaging_trains_differently_and_predicts_its_validation_score():
    y = _series()
    plain = RWKVForecaster(**FC).fit(y)
    averaged = RWKVForecaster(**FC, ema_epochs=1.0).fit(y)
    assert averaged.get_params()["ema_epochs"] == 1.0
    assert [h["val_loss"] for h in averaged.history_] != [h["val_loss"] for h in plain.history_]
    if averaged.best_epoch_ >= 0:
        assert averaged.best_val_loss_ == pytest.approx(
            averaged.history_[averaged.best_epoch_]["val_loss"], rel=1e-6
        )
    assert not np.array_equal(averaged.predict(), plain.predict())


@pytest.mark.parametrize("crash_epoch", [2, None], ids=["mid-epoch2", "at-end"])
def test_averaged_fit_resumes_to_the_uninterrupted_result(tmp_path, crash_epoch):
    y = _series()
    params = FC | {"ema_epochs": 1.0}
    reference = RWKVForecaster(**params).fit(y)
    _crash(lambda: RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(y), CrashAt(crash_epoch))
    resumed = RWKVForecaster(**params, checkpoint_dir=tmp_path).fit(y)
    np.testing.assert_array_equal(resumed.predict(), reference.predict())
    _assert_same_fit(resumed, reference)


def test_sequence_estimators_average_with_and_without_validation(tmp_path):
    X, labels = _instances()
    targets = X[:, 0, -3:].mean(axis=1)
    for cls, y in [(RWKVClassifier, labels), (RWKVRegressor, targets)]:
        for val_fraction in (0.25, 0.0):
            params = SEQ | {"val_fraction": val_fraction}
            plain = cls(**params).fit(X, y)
            averaged = cls(**params, ema_epochs=2.0).fit(X, y)
            a = averaged.model_.state_dict()
            assert any(not torch.equal(t, a[k]) for k, t in plain.model_.state_dict().items())
            # a killed averaged fit resumes to the same average
            folder = tmp_path / f"{cls.__name__}_{val_fraction}"
            _crash(
                lambda c=cls, p=params, f=folder, y=y: c(**p, ema_epochs=2.0, checkpoint_dir=f).fit(
                    X, y
                ),
                CrashAt(2),
            )
            resumed = cls(**params, ema_epochs=2.0, checkpoint_dir=folder).fit(X, y)
            _assert_same_fit(resumed, averaged)


def test_own_step_averages_as_lightning_does(etth1_slice, monkeypatch):
    params = TINY | {"ema_epochs": 0.5}
    reference = RWKVForecaster(**params).fit(etth1_slice)
    monkeypatch.setattr(training, "_own_step", lambda options: True)
    own = RWKVForecaster(**params).fit(etth1_slice)
    for name, tensor in reference.model_.state_dict().items():
        assert torch.equal(tensor, own.model_.state_dict()[name]), name
    assert [h["val_loss"] for h in own.history_] == [h["val_loss"] for h in reference.history_]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_ema_epochs_is_refused_naming_the_value(bad):
    y = _series()
    X, labels = _instances()
    with pytest.raises(ValueError, match="ema_epochs must be None or a positive"):
        RWKVForecaster(**FC, ema_epochs=bad).fit(y)
    with pytest.raises(ValueError, match="ema_epochs must be None or a positive"):
        RWKVClassifier(**SEQ, ema_epochs=bad).fit(X, labels)
    with pytest.raises(ValueError, match="ema_epochs must be None or a positive"):
        train_model(nn.Linear(6, 1), _regression(32, 0), None, _options(ema_epochs=bad))


def test_numpy_numbers_are_accepted():
    y = _series()
    est = RWKVForecaster(**(FC | {"max_epochs": 2}), ema_epochs=np.float32(1.5)).fit(y)
    assert est.get_params()["ema_epochs"] == np.float32(1.5)


def test_decay_follows_the_time_constant_in_epochs():
    # the same time constant forgets per epoch alike whatever the steps per epoch
    for steps in (1, 7, 500):
        averaged = AveragedWeights(epochs=2.0, steps_per_epoch=steps)
        assert averaged.decay**steps == pytest.approx(math.exp(-0.5))
