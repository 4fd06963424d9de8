"""Training through Lightning: the training system (loss, optimiser, schedule) and the fit loop
set-up.

The model (:class:`rwkv_ts.nn.RWKVTSModel`) knows nothing of training; :class:`ForecastingSystem`
wraps it the way Lightning separates a model from its training system. :func:`train_model` runs the
Trainer quietly (no log folders, best weights kept in memory) and returns the training history.
Nothing is written to disk unless asked: ``log_dir`` for CSV logs, ``checkpoint_dir`` for a
checkpoint at the end of every epoch from which a killed training resumes (see
:func:`train_model`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from rwkv_ts.losses import loss_function, n_targets
from rwkv_ts.training_step import GraphedStep, capturable_adamw


class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient) became NaN or infinite; the message names the epoch and step."""


class CheckpointWarning(RuntimeWarning):
    """A checkpoint in ``checkpoint_dir`` was not resumed (another run's, or unreadable); the
    training starts from the beginning and overwrites it."""


#: values of ``TrainingOptions.on_nonfinite_loss``
NONFINITE_POLICIES = ("raise", "skip")


def check_training_settings(
    on_nonfinite_loss: object, checkpoint_dir: object, ema_epochs: object = None
) -> None:
    """Validate the training settings shared by the estimators and :class:`TrainingOptions`
    (fault handling, checkpoints, weight averaging).

    Examples
    --------
    >>> check_training_settings("skip", None, ema_epochs=1.0)
    >>> check_training_settings("ignore", None)
    Traceback (most recent call last):
    ...
    ValueError: on_nonfinite_loss must be one of ('raise', 'skip'), got 'ignore'
    >>> check_training_settings("raise", None, ema_epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: ema_epochs must be None or a positive finite number of epochs, got 0
    """
    if ema_epochs is not None and (
        isinstance(ema_epochs, bool)
        or not isinstance(ema_epochs, numbers.Real)
        or not math.isfinite(ema_epochs)
        or ema_epochs <= 0
    ):
        raise ValueError(
            f"ema_epochs must be None or a positive finite number of epochs, got {ema_epochs!r}"
        )
    if not isinstance(on_nonfinite_loss, str) or on_nonfinite_loss not in NONFINITE_POLICIES:
        raise ValueError(
            f"on_nonfinite_loss must be one of {NONFINITE_POLICIES}, got {on_nonfinite_loss!r}"
        )
    if checkpoint_dir is not None:
        if not isinstance(checkpoint_dir, str | os.PathLike) or not os.fspath(checkpoint_dir):
            raise TypeError(
                f"checkpoint_dir must be None or a folder path (str), got {checkpoint_dir!r}"
            )
        if Path(checkpoint_dir).exists() and not Path(checkpoint_dir).is_dir():
            raise ValueError(f"checkpoint_dir {os.fspath(checkpoint_dir)!r} is not a folder")


class TrainingOutOfMemoryError(torch.OutOfMemoryError):
    """The accelerator ran out of memory while training; the message says which settings to lower.

    A subclass of ``torch.OutOfMemoryError``, so code that already catches that keeps working.
    """


def _out_of_memory_message(exc: BaseException, options: TrainingOptions) -> str:
    return (
        f"out of memory while training with batch_size={options.batch_size} on "
        f"accelerator={options.accelerator!r}: lower batch_size first (halving it halves the "
        "activation memory), then the sequence length the model reads (lookback, or the "
        "sequence length for the classifier and regressor), then the model size (d_model, "
        f"n_layers). Original error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    )


@dataclass
class TrainingOptions:
    """Optimisation settings of :func:`train_model`."""

    max_epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    accelerator: str = "auto"
    devices: int | str = "auto"
    verbose: bool = True
    gradient_clip: float = 1.0
    random_state: int | None = None
    log_dir: str | None = None
    extra_callbacks: list = field(default_factory=list)
    #: a key of :data:`rwkv_ts.losses.LOSSES`: "mse", "mae" or "huber" (forecasting, regression),
    #: "cross_entropy" (class indices), "masked_mse" etc. (targets with NaN padding); or a
    #: callable ``fn(prediction, target, reduction="mean"|"sum")``, optionally with an
    #: ``n_targets(target)`` attribute that counts the targets a summed validation loss is
    #: divided by (default: ``target.numel()``)
    loss: str | Callable[..., torch.Tensor] = "mse"
    #: the loss that validation, early stopping and the best epoch go by, in the same forms;
    #: ``None``: ``loss``
    val_loss: str | Callable[..., torch.Tensor] | None = None
    #: how the loaders batch items; ``None`` is PyTorch's default (batches are ``(*inputs, y)``)
    collate_fn: Callable | None = None
    #: what a NaN or infinite training loss (or gradient) does: "raise" stops training with
    #: :class:`TrainingDivergedError`; "skip" leaves that batch's optimiser step out, warns (a
    #: ``RuntimeWarning`` naming the epoch and step) and counts it in the history's
    #: ``skipped_steps``
    on_nonfinite_loss: str = "raise"
    #: a folder: a checkpoint is written there at the end of every epoch and a later run with the
    #: same fingerprint resumes from it (see :func:`train_model`); ``None`` writes nothing
    checkpoint_dir: str | os.PathLike | None = None
    #: what the run depends on beyond these options and the model's architecture (the
    #: estimator's parameters, a digest of the data): a checkpoint is resumed only by a run
    #: with the same tag; JSON-able
    checkpoint_tag: dict = field(default_factory=dict)
    #: let the weights before training compete for the best validation loss (see
    #: :class:`BestWeights`); for models that start from a fit, not from random weights
    keep_initial: bool = False
    #: run the optimisation step in rwkv-ts (:class:`rwkv_ts.training_step.GraphedStep`) and
    #: replay it as a CUDA graph, when training on one CUDA device with
    #: ``on_nonfinite_loss="raise"`` and no ``checkpoint_dir``; for models whose forward pass
    #: never reads a tensor's value on the host (the estimator knows). ``RWKV_TS_CUDA_GRAPH=0``
    #: turns it off everywhere.
    cuda_graph: bool = False
    #: the time constant, in epochs, of an exponential moving average of the weights (see
    #: :class:`AveragedWeights`): validation, early stopping and the returned model use the
    #: averaged weights; ``None`` trains and returns the weights themselves
    ema_epochs: float | None = None


#: Estimator parameters that :func:`options_from` copies into :class:`TrainingOptions` by name.
_ESTIMATOR_OPTIONS = (
    "max_epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "patience",
    "accelerator",
    "devices",
    "verbose",
    "log_dir",
    "on_nonfinite_loss",
    "checkpoint_dir",
    "ema_epochs",
)


def options_from(estimator, **settings) -> TrainingOptions:
    """The :class:`TrainingOptions` of an estimator: its parameters of the same names (those it
    has) plus ``settings`` (the loss, the collate function, a seed or batch size it resolved).

    Examples
    --------
    >>> class Est:
    ...     max_epochs, learning_rate, verbose = 5, 1e-3, False
    >>> options = options_from(Est(), loss="cross_entropy")
    >>> options.max_epochs, options.loss, options.batch_size
    (5, 'cross_entropy', 128)
    """
    values = {
        name: getattr(estimator, name) for name in _ESTIMATOR_OPTIONS if hasattr(estimator, name)
    }
    return TrainingOptions(**{**values, **settings})


def _nothing() -> None:
    pass


class ForecastingSystem(pl.LightningModule):
    """Lightning training system: the loss of ``options.loss`` (MSE for forecasting), AdamW,
    warm-up then cosine decay. A batch is ``(*inputs, target)``; the model is called on the
    inputs."""

    def __init__(
        self,
        model: nn.Module,
        options: TrainingOptions,
        steps_per_epoch: int,
        own_step: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.history: list[dict] = []
        self._epoch_losses: list[float] = []
        self._epoch_skipped = 0
        self._skip_step = False
        self._step_idx = 0
        # own_step: the step runs in rwkv-ts (GraphedStep), not in Lightning's automatic
        # optimisation; its losses and non-finite flag stay on the device until the epoch ends
        self.own_step = own_step
        self.automatic_optimization = not own_step
        self._graphed: GraphedStep | None = None
        self._loss_sum: torch.Tensor | None = None
        self._first_nonfinite: torch.Tensor | None = None
        self._own_steps = 0
        check_training_settings(
            options.on_nonfinite_loss, options.checkpoint_dir, options.ema_epochs
        )
        self.loss_fn = loss_function(options.loss)
        self.val_loss_name = options.loss if options.val_loss is None else options.val_loss
        self.val_loss_fn = loss_function(self.val_loss_name, "val_loss")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs)

    def _loss(self, batch) -> torch.Tensor:
        *inputs, y = batch
        return self.loss_fn(self.model(*inputs), y)

    def _any_rank(self, flag: bool) -> bool:
        """``flag`` or'ed over the DDP ranks, so that every rank takes the same decision."""
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(
                torch.tensor(float(flag), device=self.device), reduce_op="sum"
            )
            return bool(total > 0)
        return flag

    def _nonfinite(self, what: str, value: torch.Tensor) -> None:
        """Raise, or warn and count a skipped step, as ``options.on_nonfinite_loss`` says."""
        where = f"at epoch {self.current_epoch}, step {self._step_idx}"
        if self.options.on_nonfinite_loss == "skip":
            self._epoch_skipped += 1
            warnings.warn(
                f"training {what} became {value.item()} {where}; the step was skipped "
                "(on_nonfinite_loss='skip')",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        raise TrainingDivergedError(
            f"training {what} became {value.item()} {where}; "
            "lower learning_rate or check the input for extreme values "
            "(or pass on_nonfinite_loss='skip' to skip such steps)"
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self.own_step:
            return self._own_training_step(batch, batch_idx)
        self._step_idx = batch_idx
        self._skip_step = False
        loss = self._loss(batch)
        if self._any_rank(not bool(torch.isfinite(loss))):
            # (under DDP another rank's loss may be the non-finite one)
            self._nonfinite("loss", loss if not torch.isfinite(loss) else loss.new_tensor(math.nan))
            # Skipped: a zero loss that reaches every weight without touching the batch (so its
            # backward pass is finite and, under DDP, every rank joins the same all-reduce); the
            # gradients are then dropped before the optimiser step (on_before_optimizer_step).
            self._skip_step = True
            weights = [p for p in self.parameters() if p.requires_grad]
            return sum((p.sum() * 0.0 for p in weights), loss.new_zeros(()))
        self._epoch_losses.append(loss.detach().item())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return loss

    def _own_training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """One step through :class:`GraphedStep`, with the learning rate of the schedule; no
        host synchronisation (NaN is looked for at the end of the epoch's steps)."""
        lightning_optimizer = self.optimizers()
        optimizer = lightning_optimizer.optimizer
        if self._graphed is None:
            self._graphed = GraphedStep(
                self.model,
                self.loss_fn,
                optimizer,
                gradient_clip=self.options.gradient_clip,
                use_graph=self.options.cuda_graph,
            )
        rate = self.options.learning_rate * self.lr_factor(self._own_steps)
        for group in optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)
            else:
                group["lr"] = rate
        *inputs, y = batch
        # Lightning counts optimiser steps (trainer.global_step) in these hooks of its optimiser
        # wrapper, whose step() the graph bypasses
        getattr(lightning_optimizer, "_on_before_step", _nothing)()
        loss, norm = self._graphed(inputs, y)
        getattr(lightning_optimizer, "_on_after_step", _nothing)()
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._loss_sum += loss
        bad = ~(torch.isfinite(loss) & torch.isfinite(norm)) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(bad, batch_idx, self._first_nonfinite)
        self._own_steps += 1
        self._epoch_steps += 1
        if self.options.verbose and batch_idx % 20 == 0:  # the bar reads it on the host
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return loss

    def _end_own_steps(self) -> None:
        """After an epoch's steps (own-step mode): raise on a non-finite step, take the mean
        training loss. Synchronises with the device once."""
        if self._loss_sum is None:
            return
        first = int(self._first_nonfinite)
        if first >= 0:
            raise TrainingDivergedError(
                f"training loss or gradient norm became non-finite at epoch "
                f"{self.current_epoch}, step {first}; lower learning_rate or check the input "
                "for extreme values (or pass on_nonfinite_loss='skip', which trains without "
                "CUDA graphs)"
            )
        self._epoch_losses = [float(self._loss_sum) / max(self._epoch_steps, 1)]
        self._loss_sum = None

    def lr_factor(self, step: int) -> float:
        """The schedule: linear warm-up over the first epoch (at most a tenth of the steps), then
        cosine decay to 5% of ``learning_rate``."""
        total = self.options.max_epochs * self.steps_per_epoch
        warmup = min(self.steps_per_epoch, max(total // 10, 1))
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_before_optimizer_step(self, optimizer) -> None:
        # Called after backward, before gradient clipping and the step. Under DDP the gradients
        # are already averaged, so every rank sees the same norm.
        params = [p for p in self.parameters() if p.grad is not None]
        if not self._skip_step and params:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            if not bool(torch.isfinite(norm)):
                self._nonfinite("gradient norm", norm)
                self._skip_step = True
        if self._skip_step:
            # AdamW leaves parameters without a gradient untouched (no decay, no moment update):
            # the step is skipped entirely. The learning-rate schedule moves on.
            for p in params:
                p.grad = None

    def validation_step(self, batch, batch_idx: int) -> None:
        *inputs, y = batch
        # Summed loss so that the epoch's loss is exact whatever the last batch's size.
        sse = self.val_loss_fn(self.model(*inputs), y, reduction="sum")
        # summed on the device (float64, as Python floats would be): no host sync per batch
        self._val_sse = getattr(self, "_val_sse", 0.0) + sse.detach().double()
        self._val_n = getattr(self, "_val_n", 0) + n_targets(self.val_loss_name, y)

    def on_validation_epoch_end(self) -> None:
        n = int(getattr(self, "_val_n", 0))
        sse = float(getattr(self, "_val_sse", 0.0))
        if self.trainer.world_size > 1:
            # Under DDP each rank validates a shard: sum them so that every rank sees the same
            # loss (early stopping and the best epoch must agree across ranks).
            total = self.trainer.strategy.reduce(
                torch.tensor([sse, float(n)], dtype=torch.float64, device=self.device),
                reduce_op="sum",
            )
            sse, n = float(total[0]), float(total[1])
        val_loss = sse / n if n else float("nan")
        self._val_sse, self._val_n = 0.0, 0
        self.log("val_loss", val_loss, prog_bar=True, logger=False)
        if not self.trainer.sanity_checking:
            self._last_val = val_loss

    def _sync(self) -> None:
        # the device may still be running queued steps: time them too
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self) -> None:
        self._sync()
        self._epoch_started = time.perf_counter()
        self._steps_ended: float | None = None
        self._epoch_steps = 0

    def on_validation_start(self) -> None:
        # Lightning validates inside the training epoch: the training steps end here.
        if not self.trainer.sanity_checking and getattr(self, "_steps_ended", 0.0) is None:
            self._sync()
            self._steps_ended = time.perf_counter()
            if self.own_step:
                self._end_own_steps()

    def on_train_epoch_end(self) -> None:
        if self.own_step:
            self._end_own_steps()
        train_loss = sum(self._epoch_losses) / max(len(self._epoch_losses), 1)
        self._epoch_losses = []
        # wall time of the epoch's training steps, validation excluded (each step's loss.item()
        # has synchronised with the device)
        if self._steps_ended is None:
            self._sync()
        ended = self._steps_ended if self._steps_ended is not None else time.perf_counter()
        seconds = ended - self._epoch_started
        entry = {"epoch": self.current_epoch, "train_loss": train_loss, "train_seconds": seconds}
        if hasattr(self, "_last_val"):
            entry["val_loss"] = self._last_val
        entry["skipped_steps"] = self._epoch_skipped
        self._epoch_skipped = 0
        self.history.append(entry)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rwkv_ts_history"] = [dict(entry) for entry in self.history]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [dict(entry) for entry in checkpoint.get("rwkv_ts_history", [])]

    def configure_optimizers(self):
        if self.own_step and self.options.cuda_graph and self.device.type == "cuda":
            # the schedule is set by _own_training_step (a device tensor, no LambdaLR: its
            # tensor arithmetic would read the rate back to the host every step)
            return capturable_adamw(
                list(self.model.parameters()),
                self.options.learning_rate,
                self.options.weight_decay,
                self.device,
            )
        optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.options.learning_rate,
            weight_decay=self.options.weight_decay,
        )
        if self.own_step:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class BestWeights(Callback):
    """Keep the weights of the epoch with the lowest monitored loss in memory and restore them at
    the end.

    With ``initial_loader`` (the validation batches), the weights before training compete too:
    their validation loss is measured when training starts, and if no epoch beats it they are
    restored (``best_epoch`` is then ``-1``). That is early stopping that may stop before the
    first epoch, which is right when training starts from a fitted model (a forecaster's
    least-squares linear branch) rather than from random weights.
    """

    def __init__(self, monitor: str = "val_loss", initial_loader=None) -> None:
        self.monitor = monitor
        self.initial_loader = initial_loader
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.initial_loader is None or self.best_state is not None or trainer.global_step > 0:
            return  # nothing asked, or a resumed run (its best so far came with the checkpoint)
        from lightning.fabric.utilities.apply_func import move_data_to_device

        model = pl_module.model
        was_training = model.training
        model.eval()
        sse, n = 0.0, 0
        with torch.no_grad():
            for batch in self.initial_loader:
                *inputs, y = move_data_to_device(batch, pl_module.device)
                sse += float(pl_module.val_loss_fn(model(*inputs), y, reduction="sum"))
                n += int(n_targets(pl_module.val_loss_name, y))
        model.train(was_training)
        # every rank must take the same decision: rank 0's measurement rules
        score = trainer.strategy.broadcast(sse / n if n else math.inf, src=0)
        if math.isfinite(score):
            self.best_score = score
            self.best_epoch = -1
            self.best_state = copy.deepcopy(model.state_dict())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        score = float(score)
        if score < self.best_score:
            self.best_score = score
            self.best_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.model.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score = float(state_dict["best_score"])
        self.best_epoch = state_dict["best_epoch"]
        self.best_state = state_dict["best_state"]


class AveragedWeights(Callback):
    """An exponential moving average of the model's floating-point parameters, updated after
    every optimiser step; validation (hence early stopping and :class:`BestWeights`) reads the
    averaged weights, training goes on from the live ones.

    The decay per step is ``exp(-1 / (epochs * steps_per_epoch))``: the average forgets with a
    time constant of ``epochs`` epochs whatever the data size and batch, so one setting serves a
    30-instance data set and a 60,000-window one. Until the average holds that many steps it is
    the plain mean of the steps so far (the decay of step ``n`` is at most ``n / (n + 1)``), so
    the weights before training do not linger in it.

    The live weights are swapped out for the average at the start of each validation and back at
    its end, in place (the tensors keep their storage, as a replayed CUDA graph needs), after
    :class:`BestWeights` has copied them: register this callback after it. Without validation
    (``final=True``) the average replaces the weights when training ends. The update runs on the
    device without reading anything back to the host.

    Examples
    --------
    >>> averaged = AveragedWeights(epochs=1.0, steps_per_epoch=10)
    >>> round(averaged.decay, 4)
    0.9048
    """

    def __init__(self, epochs: float, steps_per_epoch: int, final: bool = False) -> None:
        self.epochs = float(epochs)
        self.decay = math.exp(-1.0 / (self.epochs * max(int(steps_per_epoch), 1)))
        self.final = final
        self.n_updates = 0
        self.average: list[torch.Tensor] | None = None
        self._live: list[torch.Tensor] | None = None
        self._swapped = False

    @staticmethod
    def _weights(pl_module: pl.LightningModule) -> list[torch.Tensor]:
        return [p.data for p in pl_module.model.parameters() if p.is_floating_point()]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        weights = self._weights(pl_module)
        if self.average is None:
            self.average = [w.detach().clone() for w in weights]
        else:  # resumed from a checkpoint (its tensors arrive on the CPU)
            self.average = [
                a.to(w.device, w.dtype) for a, w in zip(self.average, weights, strict=True)
            ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        n = self.n_updates
        decay = min(self.decay, n / (n + 1))
        torch._foreach_lerp_(self.average, self._weights(pl_module), 1.0 - decay)
        self.n_updates = n + 1

    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        if self.average is None or self._swapped or self.n_updates == 0:
            return
        weights = self._weights(pl_module)
        self._live = [w.clone() for w in weights]
        torch._foreach_copy_(weights, self.average)
        self._swapped = True

    def _swap_out(self, pl_module: pl.LightningModule) -> None:
        if not self._swapped:
            return
        torch._foreach_copy_(self._weights(pl_module), self._live)
        self._live = None
        self._swapped = False

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._swap_in(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)
        if self.final and self.average is not None and self.n_updates > 0:
            torch._foreach_copy_(self._weights(pl_module), self.average)

    def state_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "decay": self.decay,
            "n_updates": self.n_updates,
            "average": None if self.average is None else list(self.average),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.n_updates = int(state_dict["n_updates"])
        average = state_dict["average"]
        self.average = None if average is None else list(average)


class _RandomState(Callback):
    """Carries the random state that decides the rest of a training through a checkpoint: the
    shuffling generator, the global torch generator (dropout; CUDA's too when in use) and
    whether early stopping has already ended the run."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self._trainer: pl.Trainer | None = None
        self._stop_on_start = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        state = {
            "generator": self.generator.get_state(),
            "torch": torch.get_rng_state(),
            "should_stop": bool(self._trainer is not None and self._trainer.should_stop),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = list(torch.cuda.get_rng_state_all())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.generator.set_state(state_dict["generator"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        self._stop_on_start = bool(state_dict["should_stop"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The checkpoint was written after early stopping had decided to stop: stop again
        # before another epoch starts.
        if self._stop_on_start:
            trainer.should_stop = True


class _EpochCheckpoint(Checkpoint):
    """Write the training state to one file at the end of every epoch (after every other
    callback and the module have updated theirs), replacing the previous one atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


_EXTRA_CALLBACKS: ContextVar[tuple] = ContextVar("rwkv_ts_training_callbacks", default=())


@contextmanager
def training_callbacks(*callbacks: Callback) -> Iterator[None]:
    """Add Lightning callbacks to every training run of any estimator inside the ``with`` block.

    Estimators build their Trainer inside ``fit``; this is how code outside them (the Optuna
    pruning of :mod:`rwkv_ts.tune`, a user's logging callback) joins in, also through wrappers
    such as the sktime adapters. Blocks nest.

    Examples
    --------
    >>> from lightning.pytorch.callbacks import Callback
    >>> with training_callbacks(Callback()):
    ...     len(_EXTRA_CALLBACKS.get())
    1
    """
    token = _EXTRA_CALLBACKS.set(_EXTRA_CALLBACKS.get() + tuple(callbacks))
    try:
        yield
    finally:
        _EXTRA_CALLBACKS.reset(token)


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Silence Lightning's start-up banners (and, unless verbose, everything but warnings)."""
    names = ["lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.* is deprecated")
            warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
            # under DDP the validation loss is already summed over the ranks by hand
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            # training without a validation split (val_fraction=0) is intended
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def inference_device(accelerator: str) -> torch.device:
    """The device batch inference runs on for an estimator's ``accelerator`` setting: CUDA when
    asked for ("gpu", "cuda") or when ``"auto"`` finds it, else the CPU."""
    wants_gpu = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


@dataclass
class TrainingResult:
    history: list[dict]
    best_epoch: int | None
    best_val_loss: float | None
    n_epochs: int


def _fingerprint(
    model: nn.Module, train_data: Dataset, val_data: Dataset | None, options: TrainingOptions
) -> dict:
    """What decides a training's result: the options that matter, the model's architecture
    (parameter names, shapes, dtypes), the dataset sizes and the caller's tag."""
    from rwkv_ts._checkpoint import data_digest

    def loss_name(loss) -> str:
        if isinstance(loss, str):
            return loss
        # a function by its name; a loss object by its class (its repr has an address)
        named = loss if hasattr(loss, "__qualname__") else type(loss)
        return f"{named.__module__}.{named.__qualname__}"

    architecture = [
        type(model).__qualname__,
        [[name, list(t.shape), str(t.dtype)] for name, t in model.state_dict().items()],
    ]
    fingerprint = {
        "max_epochs": options.max_epochs,
        "batch_size": options.batch_size,
        "learning_rate": options.learning_rate,
        "weight_decay": options.weight_decay,
        "patience": options.patience,
        "gradient_clip": options.gradient_clip,
        "random_state": options.random_state,
        "loss": loss_name(options.loss),
        # only when set: the fingerprints of runs validated by their training loss stay as they were
        **({} if options.val_loss is None else {"val_loss": loss_name(options.val_loss)}),
        "on_nonfinite_loss": options.on_nonfinite_loss,
        "keep_initial": options.keep_initial,
        "ema_epochs": options.ema_epochs,
        "accelerator": str(options.accelerator),
        "devices": repr(options.devices),
        "n_train": len(train_data),
        "n_val": 0 if val_data is None else len(val_data),
        "model": data_digest(architecture),
        **options.checkpoint_tag,
    }
    # as it reads back from the file's JSON (numpy scalars as numbers, tuples as lists)
    return json.loads(json.dumps(fingerprint, default=lambda v: getattr(v, "item", v.__repr__)()))


def _resumable_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    """The checkpoint state at ``path`` if this run may resume from it; else ``None``, with a
    :class:`CheckpointWarning` saying why when a file is there."""
    from rwkv_ts._checkpoint import CheckpointFileError, describe_differences, read_checkpoint

    if not path.exists():
        return None
    try:
        saved, state = read_checkpoint(path)
    except CheckpointFileError as exc:
        warnings.warn(
            f"not resuming from {path}: {exc}; training starts from the beginning and "
            "overwrites it",
            CheckpointWarning,
            stacklevel=3,
        )
        return None
    if saved != fingerprint:
        warnings.warn(
            f"not resuming from {path}: it was written by another training run (differs in "
            f"{describe_differences(saved, fingerprint)}); training starts from the beginning "
            "and overwrites it",
            CheckpointWarning,
            stacklevel=3,
        )
        return None
    return state


def _trains_on_cuda(options: TrainingOptions) -> bool:
    """Whether Lightning will put this training on CUDA devices."""
    accelerator = str(options.accelerator).lower()
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def _single_device(options: TrainingOptions) -> bool:
    """Whether the training runs as one process on one device (no DDP)."""
    devices = options.devices
    if isinstance(devices, list | tuple):
        return len(devices) == 1
    if str(devices) == "1":
        return True
    if str(devices) == "auto":  # Lightning: every GPU, or one CPU process
        return not _trains_on_cuda(options) or torch.cuda.device_count() == 1
    if str(devices) == "-1":  # every GPU (on CPUs Lightning decides: not assumed single)
        return _trains_on_cuda(options) and torch.cuda.device_count() == 1
    return False


def _own_step(options: TrainingOptions) -> bool:
    """Whether the step runs in rwkv-ts as a CUDA graph (see ``TrainingOptions.cuda_graph``)."""
    return (
        options.cuda_graph
        and os.environ.get("RWKV_TS_CUDA_GRAPH", "1").strip() != "0"
        and _trains_on_cuda(options)
        and _single_device(options)
        and options.on_nonfinite_loss == "raise"
        and options.checkpoint_dir is None
    )


class _BatchedItems(Dataset):
    """A dataset with ``get_batch(indices)`` indexed by lists of items: one vectorised gather per
    batch instead of one item at a time and a collate."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices):
        return tuple(t.contiguous() for t in self.data.get_batch(indices))


def _loader(
    data: Dataset,
    batch_size: int,
    options: TrainingOptions,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``data``; batched gathering where the dataset offers it (the same batches
    in the same order as item-wise loading), pinned memory when training on CUDA."""
    pin = _trains_on_cuda(options)
    if hasattr(data, "get_batch") and options.collate_fn is None and _single_device(options):
        sampler = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
        return DataLoader(
            _BatchedItems(data),
            sampler=BatchSampler(sampler, batch_size, drop_last),
            batch_size=None,
            # (the loader draws its base seed from this generator, or from torch's global one
            # when None, exactly as the item-wise loader does)
            generator=generator,
            pin_memory=pin,
        )
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        collate_fn=options.collate_fn,
        pin_memory=pin,
    )


def train_model(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    options: TrainingOptions,
) -> TrainingResult:
    """Fit ``model`` in place on ``train_data`` with early stopping on ``val_data``.

    Shuffling uses a generator seeded from ``options.random_state``; no files are written unless
    ``options.log_dir`` is set (then CSV logs go there) or ``options.checkpoint_dir`` is.

    With ``checkpoint_dir``, the whole training state is saved to
    ``<checkpoint_dir>/training_checkpoint.safetensors`` at the end of every epoch (weights,
    optimiser and schedule, loop counters, early stopping, the best weights so far, the history,
    the shuffling and dropout generators), replacing the previous one atomically. A run whose
    fingerprint (options, architecture, ``checkpoint_tag``) matches the file's resumes from the
    end of that epoch and gives the same result as an uninterrupted run (bit for bit on the CPU
    with a fixed ``random_state``); a kill mid-epoch loses that epoch's progress only. A file of
    another run, or one that fails its checks, is not used: a :class:`CheckpointWarning` says
    why, and training starts from the beginning. The file is deleted when training completes.
    """
    check_training_settings(options.on_nonfinite_loss, options.checkpoint_dir, options.ema_epochs)
    generator = torch.Generator()
    if options.random_state is not None:
        generator.manual_seed(options.random_state)
    else:
        generator.seed()
    train_loader = _loader(
        train_data,
        options.batch_size,
        options,
        shuffle=True,
        generator=generator,
        drop_last=len(train_data) > options.batch_size,
    )
    val_loader = (
        _loader(val_data, max(options.batch_size, 256), options, shuffle=False)
        if val_data is not None and len(val_data) > 0
        else None
    )
    own_step = _own_step(options)
    system = ForecastingSystem(model, options, steps_per_epoch=len(train_loader), own_step=own_step)
    callbacks: list[Callback] = list(options.extra_callbacks) + list(_EXTRA_CALLBACKS.get())
    best = None
    if val_loader is not None:
        # Early stopping's patience counts from the first epoch, not from the start: an encoder
        # that needs a few epochs to overtake the fitted start keeps its chance.
        best = BestWeights(initial_loader=val_loader if options.keep_initial else None)
        callbacks += [
            EarlyStopping(monitor="val_loss", patience=options.patience, mode="min"),
            best,
        ]
    if options.ema_epochs is not None:
        # after BestWeights: the averaged weights are swapped back out once it has copied them
        callbacks.append(
            AveragedWeights(options.ema_epochs, len(train_loader), final=val_loader is None)
        )
    plugins: list = []
    ckpt_path = None
    if options.checkpoint_dir is not None:
        from rwkv_ts._checkpoint import CHECKPOINT_NAME, SafeCheckpointIO

        ckpt_file = Path(options.checkpoint_dir) / CHECKPOINT_NAME
        fingerprint = _fingerprint(model, train_data, val_data, options)
        state = _resumable_checkpoint(ckpt_file, fingerprint)
        preloaded = {}
        if state is not None:
            ckpt_path = str(ckpt_file)
            preloaded[ckpt_path] = state
        plugins.append(SafeCheckpointIO(fingerprint, preloaded))
        callbacks += [_RandomState(generator), _EpochCheckpoint(ckpt_file)]
    logger = False
    if options.log_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(options.log_dir, name="rwkv_ts")
    with _quiet(options.verbose):
        trainer = pl.Trainer(
            max_epochs=options.max_epochs,
            accelerator=options.accelerator,
            devices=options.devices,
            logger=logger,
            enable_checkpointing=options.checkpoint_dir is not None,
            plugins=plugins or None,
            enable_progress_bar=options.verbose,
            enable_model_summary=options.verbose,
            callbacks=callbacks,
            # (the own step clips itself: Lightning refuses clipping with manual optimisation)
            gradient_clip_val=None if own_step else options.gradient_clip,
            num_sanity_val_steps=0,
            default_root_dir=options.log_dir,
        )
        try:
            trainer.fit(
                system,
                train_dataloaders=train_loader,
                val_dataloaders=val_loader,
                ckpt_path=ckpt_path,
            )
        except torch.OutOfMemoryError as exc:
            if isinstance(exc, TrainingOutOfMemoryError):
                raise
            model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise TrainingOutOfMemoryError(_out_of_memory_message(exc, options)) from exc
    if system._graphed is not None:
        system._graphed.release()
    model.to("cpu")
    if options.checkpoint_dir is not None and trainer.is_global_zero:
        # Training is complete: the checkpoint has served (a later fit starts afresh).
        (Path(options.checkpoint_dir) / CHECKPOINT_NAME).unlink(missing_ok=True)
    return TrainingResult(
        history=system.history,
        best_epoch=None if best is None else best.best_epoch,
        best_val_loss=None if best is None or best.best_epoch is None else best.best_score,
        n_epochs=len(system.history),
    )
