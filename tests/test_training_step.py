"""The optimisation step run by rwkv-ts (replayed as a CUDA graph on a GPU) and batched loading.

On the CPU: the own step trains exactly as Lightning's automatic optimisation does (bit for bit),
batched loading gives the item-wise loader's batches, a non-finite step raises naming its step,
and the graph is used only where it can be. The CUDA tests (skipped without a GPU) check that the
replayed graph trains as the eager step does and that a model that cannot be captured falls back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import Callback
from tiny_settings import TINY_FORECASTER as TINY
from torch.utils.data import DataLoader, TensorDataset

import rwkv_ts.training as training
from rwkv_ts import RWKVForecaster
from rwkv_ts.data import WindowDataset
from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel
from rwkv_ts.training import (
    TrainingDivergedError,
    TrainingOptions,
    train_model,
    training_callbacks,
)
from rwkv_ts.training_step import CudaGraphWarning, GraphedStep, capturable_adamw

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="CUDA not available")


class _GlobalStep(Callback):
    def on_fit_end(self, trainer, pl_module) -> None:
        self.global_step = trainer.global_step


@pytest.mark.filterwarnings("error::rwkv_ts.training_step.CudaGraphWarning")
@pytest.mark.parametrize("streamable", [False, True])
def test_own_step_trains_as_lightning_does(etth1_slice, monkeypatch, streamable):
    extra = dict(norm="causal", head="last") if streamable else {}
    steps = _GlobalStep(), _GlobalStep()
    with training_callbacks(steps[0]):
        reference = RWKVForecaster(**TINY, **extra).fit(etth1_slice)
    monkeypatch.setattr(training, "_own_step", lambda options: True)
    with training_callbacks(steps[1]):
        own = RWKVForecaster(**TINY, **extra).fit(etth1_slice)
    assert steps[1].global_step == steps[0].global_step > 0  # callbacks see the same counts
    for name, tensor in reference.model_.state_dict().items():
        assert torch.equal(tensor, own.model_.state_dict()[name]), name
    assert [h["train_loss"] for h in own.history_] == [h["train_loss"] for h in reference.history_]
    assert [h["val_loss"] for h in own.history_] == [h["val_loss"] for h in reference.history_]
    assert own.best_epoch_ == reference.best_epoch_


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(10, 60), min_size=1, max_size=3),
    channels=st.integers(1, 3),
    batch_size=st.integers(1, 40),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_batched_loader_gives_the_itemwise_batches(lengths, channels, batch_size, shuffle, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(n, channels)).astype(np.float32) for n in lengths]
    data = WindowDataset(arrays, lookback=6, horizon=3)
    if len(data) == 0:
        return
    drop_last = shuffle and len(data) > batch_size
    gen_a, gen_b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    batched = training._loader(data, batch_size, TrainingOptions(), shuffle, gen_a, drop_last)
    assert isinstance(batched.dataset, training._BatchedItems)
    itemwise = DataLoader(
        data, batch_size=batch_size, shuffle=shuffle, generator=gen_b, drop_last=drop_last
    )
    for _ in range(2):  # two epochs: the generators must stay in step
        pairs = list(zip(batched, itemwise, strict=True))
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.is_contiguous()


def test_own_step_raises_on_a_nonfinite_step(monkeypatch):
    monkeypatch.setattr(training, "_own_step", lambda options: True)
    x = torch.randn(64, 3)
    y = torch.zeros(64, 1)
    y[:] = float("inf")
    options = TrainingOptions(
        max_epochs=2, batch_size=16, accelerator="cpu", verbose=False, random_state=0
    )
    data = TensorDataset(x, y)
    with pytest.raises(TrainingDivergedError, match=r"non-finite at epoch 0, step 0"):
        train_model(torch.nn.Linear(3, 1), data, data, options)


def test_the_graph_is_used_only_where_it_can_be(monkeypatch, tmp_path):
    monkeypatch.delenv("RWKV_TS_CUDA_GRAPH", raising=False)
    base = TrainingOptions(cuda_graph=True, accelerator="auto")
    if not HAS_CUDA:
        assert not training._own_step(base)  # no GPU: Lightning's step
    monkeypatch.setattr(training, "_trains_on_cuda", lambda options: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert training._own_step(base)
    assert not training._own_step(TrainingOptions(cuda_graph=False))
    assert not training._own_step(TrainingOptions(cuda_graph=True, on_nonfinite_loss="skip"))
    assert not training._own_step(TrainingOptions(cuda_graph=True, checkpoint_dir=tmp_path))
    assert not training._own_step(TrainingOptions(cuda_graph=True, devices=2))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert not training._own_step(base)  # "auto" devices on two GPUs: DDP
    assert training._own_step(TrainingOptions(cuda_graph=True, devices=[1]))
    assert not training._own_step(TrainingOptions(cuda_graph=True, devices=-1))
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "0")
    assert not training._own_step(TrainingOptions(cuda_graph=True, devices=1))


def test_the_forecaster_asks_for_the_graph(etth1_slice, monkeypatch):
    seen = []
    real = training.train_model

    def spy(model, train_data, val_data, options):
        seen.append(options.cuda_graph)
        return real(model, train_data, val_data, options)

    monkeypatch.setattr("rwkv_ts.forecaster.train_model", spy)
    RWKVForecaster(**(TINY | {"max_epochs": 1})).fit(etth1_slice)
    assert seen == [True]


SEQ_TINY = dict(patch_len=4, stride=2, d_model=16, head_size=8, n_layers=1, max_epochs=2)


def _sequence_fits(shared_data_home, accelerator: str = "auto", **extra):
    """A classifier on SyntheticControl (equal lengths) and a per-cycle RUL regressor on six
    FD001 engines (unequal lengths, per-token targets), both fitted."""
    from rwkv_ts import RWKVClassifier, RWKVRegressor
    from rwkv_ts.datasets import load_classification, load_cmapss

    X, y = load_classification("SyntheticControl", "train", data_home=shared_data_home)
    clf = RWKVClassifier(**SEQ_TINY, random_state=0, accelerator=accelerator, **extra)
    clf.fit(X[:120], y[:120])
    prep = load_cmapss("FD001", data_home=shared_data_home).prepare(rul_cap=125)
    reg = RWKVRegressor(**SEQ_TINY, random_state=0, accelerator=accelerator, **extra)
    reg.fit(prep.X_train[:6], prep.y_train[:6])
    return clf, reg


@pytest.mark.filterwarnings("error::rwkv_ts.training_step.CudaGraphWarning")
def test_sequence_estimators_own_step_trains_as_lightning_does(shared_data_home, monkeypatch):
    reference = _sequence_fits(shared_data_home)
    monkeypatch.setattr(training, "_own_step", lambda options: True)
    own = _sequence_fits(shared_data_home)
    for a, b in zip(reference, own, strict=True):
        for name, tensor in a.model_.state_dict().items():
            assert torch.equal(tensor, b.model_.state_dict()[name]), (type(a).__name__, name)
        assert [h.get("val_loss") for h in a.history_] == [h.get("val_loss") for h in b.history_]


def _model(seed: int = 0) -> RWKVTSModel:
    torch.manual_seed(seed)
    config = RWKVTSConfig(
        lookback=48, horizon=12, patch_len=8, stride=4, d_model=32, head_size=16, dropout=0.0
    )
    return RWKVTSModel(config)


def _train(model, use_graph: bool, batches, lr=1e-3):
    device = torch.device("cuda")
    model = model.to(device)
    opt = capturable_adamw(list(model.parameters()), lr, 1e-4, device)
    step = GraphedStep(model, torch.nn.functional.mse_loss, opt, 1.0, use_graph=use_graph)
    losses = []
    for x, y in batches:
        loss, _ = step((x.to(device),), y.to(device))
        losses.append(loss.clone())
    torch.cuda.synchronize()
    return step, torch.stack(losses).cpu(), {k: v.cpu() for k, v in model.state_dict().items()}


@gpu
@pytest.mark.parametrize("backend", ["cuda", "torch"])
def test_graph_replay_trains_as_the_eager_step(monkeypatch, backend):
    monkeypatch.setenv("RWKV_TS_KERNEL", backend)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 48, 1, generator=gen), torch.randn(32, 12, 1, generator=gen))]
    batches = batches * 2 + [
        (torch.randn(32, 48, 1, generator=gen), torch.randn(32, 12, 1, generator=gen))
        for _ in range(8)
    ]
    graphed, loss_g, state_g = _train(_model(), True, batches)
    eager, loss_e, state_e = _train(_model(), False, batches)
    assert graphed.captured and not eager.captured
    torch.testing.assert_close(loss_g, loss_e, rtol=1e-4, atol=1e-6)
    for name in state_e:
        torch.testing.assert_close(state_g[name], state_e[name], rtol=1e-4, atol=1e-5)


class _ReadsOnHost(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x):
        if float(x.abs().max()) > 1e9:  # a host read: not capturable
            raise ValueError("too large")
        return self.linear(x)


@gpu
def test_a_model_that_cannot_be_captured_trains_eagerly():
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen))] * 6
    torch.manual_seed(0)
    with pytest.warns(CudaGraphWarning, match="could not be captured"):
        step, losses, state = _train(_ReadsOnHost(), True, batches, lr=1e-2)
    assert not step.captured and not step.use_graph
    torch.manual_seed(0)
    _, losses_eager, state_eager = _train(_ReadsOnHost(), False, batches, lr=1e-2)
    torch.testing.assert_close(losses, losses_eager)
    assert losses[-1] < losses[0]


@gpu
@pytest.mark.filterwarnings("error::rwkv_ts.training_step.CudaGraphWarning")
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ema_epochs": 0.5},
        {"frequency_loss_weight": 0.8},
        {"frequency_loss_weight": 0.8, "norm": "causal", "head": "last"},
    ],
    ids=["live", "averaged", "frequency-term", "frequency-term-streamable"],
)
def test_forecaster_fit_with_and_without_the_graph(etth1_slice, monkeypatch, extra):
    # averaged: the weight average is updated after each replayed step as after each eager one;
    # frequency-term: the loss's FFT (cuFFT) is captured and replayed with the step
    settings_ = TINY | {"dropout": 0.0, "accelerator": "gpu", "linear_skip": False} | extra
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "1")
    graphed = RWKVForecaster(**settings_).fit(etth1_slice)
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "0")
    eager = RWKVForecaster(**settings_).fit(etth1_slice)
    np.testing.assert_allclose(
        [h["train_loss"] for h in graphed.history_],
        [h["train_loss"] for h in eager.history_],
        rtol=1e-3,
    )
    a = graphed.predict()[graphed.channels_].to_numpy()
    b = eager.predict()[eager.channels_].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@gpu
@pytest.mark.filterwarnings("error::rwkv_ts.training_step.CudaGraphWarning")
def test_sequence_estimators_with_and_without_the_graph(shared_data_home, monkeypatch):
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "1")
    graphed = _sequence_fits(shared_data_home, "gpu", dropout=0.0)
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "0")
    eager = _sequence_fits(shared_data_home, "gpu", dropout=0.0)
    for a, b in zip(graphed, eager, strict=True):
        np.testing.assert_allclose(
            [h["train_loss"] for h in a.history_], [h["train_loss"] for h in b.history_], rtol=1e-3
        )
    X = np.random.default_rng(0).normal(size=(5, 1, 60))
    np.testing.assert_allclose(
        graphed[0].predict_proba(X), eager[0].predict_proba(X), rtol=1e-3, atol=1e-4
    )


@gpu
@pytest.mark.filterwarnings("error::rwkv_ts.training_step.CudaGraphWarning")
def test_class_weighted_classifier_with_and_without_the_graph(shared_data_home, monkeypatch):
    """The class weights reach the device in the eager warm-up steps, so the captured step copies
    nothing from the host and trains as the eager one does."""
    from rwkv_ts import RWKVClassifier
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("SyntheticControl", "train", data_home=shared_data_home)
    settings_ = SEQ_TINY | {"random_state": 0, "accelerator": "gpu", "dropout": 0.0}
    weights = {1: 4.0, 2: 0.5}
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "1")
    graphed = RWKVClassifier(**settings_, class_weight=weights).fit(X[:120], y[:120])
    monkeypatch.setenv("RWKV_TS_CUDA_GRAPH", "0")
    eager = RWKVClassifier(**settings_, class_weight=weights).fit(X[:120], y[:120])
    unweighted = RWKVClassifier(**settings_).fit(X[:120], y[:120])
    losses = [h["train_loss"] for h in graphed.history_]
    np.testing.assert_allclose(losses, [h["train_loss"] for h in eager.history_], rtol=1e-3)
    assert losses != [h["train_loss"] for h in unweighted.history_]
    np.testing.assert_allclose(
        graphed.predict_proba(X[120:130]), eager.predict_proba(X[120:130]), rtol=1e-3, atol=1e-4
    )
