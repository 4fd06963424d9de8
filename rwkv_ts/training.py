"""Training through Lightning: the training system (loss, optimiser, schedule) and the fit loop
set-up.

The model (:class:`rwkv_ts.nn.RWKVTSModel`) knows nothing of training; :class:`ForecastingSystem`
wraps it the way Lightning separates a model from its training system. :func:`train_model` runs the
Trainer quietly (no log folders, no checkpoints on disk, best weights kept in memory) and returns
the training history.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


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


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    # NaN targets mark padding (per-token targets of sequences of different lengths)
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    total = (diff * diff).sum()
    return total if reduction == "sum" else total / mask.sum().clamp(min=1)


#: Losses selectable by ``TrainingOptions.loss``: ``fn(prediction, target, reduction=...)``.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": nn.functional.mse_loss,
    "cross_entropy": nn.functional.cross_entropy,
    "masked_mse": _masked_mse,
}


def _n_targets(loss: str, target: torch.Tensor) -> int:
    return int(torch.isfinite(target).sum()) if loss == "masked_mse" else target.numel()


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
    #: a key of :data:`LOSSES`: "mse" (forecasting, regression), "cross_entropy" (class indices),
    #: "masked_mse" (targets with NaN padding)
    loss: str = "mse"
    #: how the loaders batch items; ``None`` is PyTorch's default (batches are ``(*inputs, y)``)
    collate_fn: Callable | None = None


class ForecastingSystem(pl.LightningModule):
    """Lightning training system: the loss of ``options.loss`` (MSE for forecasting), AdamW,
    warm-up then cosine decay. A batch is ``(*inputs, target)``; the model is called on the
    inputs."""

    def __init__(self, model: nn.Module, options: TrainingOptions, steps_per_epoch: int) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.history: list[dict] = []
        self._epoch_losses: list[float] = []
        if options.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {options.loss!r}")
        self.loss_fn = LOSSES[options.loss]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs)

    def _loss(self, batch) -> torch.Tensor:
        *inputs, y = batch
        return self.loss_fn(self.model(*inputs), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {batch_idx}; "
                "lower learning_rate or check the input for extreme values"
            )
        self._epoch_losses.append(loss.detach().item())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        *inputs, y = batch
        # Summed loss so that the epoch's loss is exact whatever the last batch's size.
        sse = self.loss_fn(self.model(*inputs), y, reduction="sum")
        self._val_sse = getattr(self, "_val_sse", 0.0) + sse.item()
        self._val_n = getattr(self, "_val_n", 0) + _n_targets(self.options.loss, y)

    def on_validation_epoch_end(self) -> None:
        n = getattr(self, "_val_n", 0)
        sse = getattr(self, "_val_sse", 0.0)
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

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()
        self._steps_ended: float | None = None

    def on_validation_start(self) -> None:
        # Lightning validates inside the training epoch: the training steps end here.
        if not self.trainer.sanity_checking and getattr(self, "_steps_ended", 0.0) is None:
            self._steps_ended = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        train_loss = sum(self._epoch_losses) / max(len(self._epoch_losses), 1)
        self._epoch_losses = []
        # wall time of the epoch's training steps, validation excluded (each step's loss.item()
        # has synchronised with the device)
        ended = self._steps_ended if self._steps_ended is not None else time.perf_counter()
        seconds = ended - self._epoch_started
        entry = {"epoch": self.current_epoch, "train_loss": train_loss, "train_seconds": seconds}
        if hasattr(self, "_last_val"):
            entry["val_loss"] = self._last_val
        self.history.append(entry)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.options.learning_rate,
            weight_decay=self.options.weight_decay,
        )
        total = self.options.max_epochs * self.steps_per_epoch
        warmup = min(self.steps_per_epoch, max(total // 10, 1))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class BestWeights(Callback):
    """Keep the weights of the epoch with the lowest monitored loss in memory and restore them at
    the end."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict | None = None

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


def train_model(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    options: TrainingOptions,
) -> TrainingResult:
    """Fit ``model`` in place on ``train_data`` with early stopping on ``val_data``.

    Shuffling uses a generator seeded from ``options.random_state``; no files are written unless
    ``options.log_dir`` is set (then CSV logs go there).
    """
    generator = torch.Generator()
    if options.random_state is not None:
        generator.manual_seed(options.random_state)
    else:
        generator.seed()
    train_loader = DataLoader(
        train_data,
        batch_size=options.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(train_data) > options.batch_size,
        collate_fn=options.collate_fn,
    )
    val_loader = (
        DataLoader(
            val_data,
            batch_size=max(options.batch_size, 256),
            shuffle=False,
            collate_fn=options.collate_fn,
        )
        if val_data is not None and len(val_data) > 0
        else None
    )
    system = ForecastingSystem(model, options, steps_per_epoch=len(train_loader))
    callbacks: list[Callback] = list(options.extra_callbacks) + list(_EXTRA_CALLBACKS.get())
    best = None
    if val_loader is not None:
        best = BestWeights()
        callbacks += [
            EarlyStopping(monitor="val_loss", patience=options.patience, mode="min"),
            best,
        ]
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
            enable_checkpointing=False,
            enable_progress_bar=options.verbose,
            enable_model_summary=options.verbose,
            callbacks=callbacks,
            gradient_clip_val=options.gradient_clip,
            num_sanity_val_steps=0,
            default_root_dir=options.log_dir,
        )
        try:
            trainer.fit(system, train_dataloaders=train_loader, val_dataloaders=val_loader)
        except torch.OutOfMemoryError as exc:
            if isinstance(exc, TrainingOutOfMemoryError):
                raise
            model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise TrainingOutOfMemoryError(_out_of_memory_message(exc, options)) from exc
    model.to("cpu")
    return TrainingResult(
        history=system.history,
        best_epoch=None if best is None else best.best_epoch,
        best_val_loss=None if best is None or best.best_epoch is None else best.best_score,
        n_epochs=len(system.history),
    )
