"""Training losses by name: elementwise regression losses, cross-entropy, their masked forms for
padded per-token targets, and FreDF's frequency-domain term.

Every loss is called as ``fn(prediction, target, reduction=...)`` with ``reduction`` ``"mean"`` or
``"sum"``; :func:`rwkv_ts.training.train_model` sums validation losses over batches and divides by
:func:`n_targets`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: Elementwise regression losses ``fn(prediction, target, reduction=...)`` by name: squared
#: error, absolute error (robust to outliers; its minimiser is the median) and Huber's loss
#: (squared within 1 of the target, absolute beyond; on standardised data).
REGRESSION_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
    "huber": nn.functional.huber_loss,
}


def _masked(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``loss`` over the finite targets only: NaN targets mark padding (per-token targets of
    sequences of different lengths) and neither count nor pass a gradient."""

    def masked(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        mask = torch.isfinite(target)
        zero = torch.zeros_like(pred)
        pred, target = torch.where(mask, pred, zero), torch.where(mask, target, zero)
        total = loss(pred, target, reduction="none").sum()
        return total if reduction == "sum" else total / mask.sum().clamp(min=1)

    return masked


#: Losses selectable by ``TrainingOptions.loss``: ``fn(prediction, target, reduction=...)``;
#: ``masked_<name>`` is a regression loss over the finite targets only.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    **REGRESSION_LOSSES,
    "cross_entropy": nn.functional.cross_entropy,
    **{f"masked_{name}": _masked(fn) for name, fn in REGRESSION_LOSSES.items()},
}


def with_frequency_term(loss: str, weight: float, dim: int) -> Callable[..., torch.Tensor]:
    """``loss`` (a name of :data:`LOSSES`) mixed with a frequency-domain term along ``dim``,
    the forecast horizon: ``(1 - weight) * loss + weight * mean |DFT(prediction - target)|``.

    The term is FreDF's (H. Wang et al., 'FreDF: Learning to Forecast in the Frequency
    Domain', ICLR 2025): the steps of a horizon are correlated, which a loss summed over the
    steps ignores, while the DFT's coefficients are nearly uncorrelated. The DFT is the
    orthonormal one (``norm="ortho"``), so the term's scale does not grow with the horizon.
    With a ``masked_`` loss, rows of ``target`` along ``dim`` that hold a NaN (padding) are left
    out of both terms.

    Examples
    --------
    >>> import torch
    >>> fn = with_frequency_term("mse", 0.5, dim=1)
    >>> pred, target = torch.zeros(2, 4, 1), torch.ones(2, 4, 1)
    >>> round(float(fn(pred, target)), 4)  # 0.5 * 1 + 0.5 * mean(|[2, 0, 0]|)
    0.8333
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the frequency term's weight must lie in [0, 1], got {weight!r}")
    time_loss = loss_function(loss)
    masked = loss.startswith("masked_")

    def mixed(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        error = pred - target
        n_freq = pred.shape[dim] // 2 + 1
        if masked:
            rows = torch.isfinite(target).all(dim=dim, keepdim=True)
            error = torch.where(rows, error, torch.zeros_like(error))
            n_rows = rows.sum().clamp(min=1)
        else:
            n_rows = error.numel() // error.shape[dim]
        spectrum = torch.fft.rfft(error, dim=dim, norm="ortho").abs().sum()
        if reduction == "sum":
            # the sum over a row's steps (the time term's sum, divided later by the targets)
            spectral = spectrum * pred.shape[dim] / n_freq
        else:
            spectral = spectrum / (n_freq * n_rows)
        return (1.0 - weight) * time_loss(pred, target, reduction=reduction) + weight * spectral

    if masked:
        mixed.n_targets = lambda target: int(torch.isfinite(target).sum())  # type: ignore[attr-defined]
    # what a checkpoint's fingerprint names the loss by
    mixed.__qualname__ = f"with_frequency_term({loss!r}, {weight!r}, dim={dim})"
    return mixed


def check_losses(loss: object, val_loss: object) -> None:
    """Check an estimator's ``loss`` and ``val_loss`` parameters (names of
    :data:`REGRESSION_LOSSES`; ``val_loss`` may be ``None``), naming the bad one.

    Examples
    --------
    >>> check_losses("huber", "mse")
    >>> check_losses("l2", None)
    Traceback (most recent call last):
    ...
    ValueError: loss must be one of ('mse', 'mae', 'huber'), got 'l2'
    """
    for name, value, allowed in (
        ("loss", loss, tuple(REGRESSION_LOSSES)),
        ("val_loss", val_loss, (None, *REGRESSION_LOSSES)),
    ):
        if not isinstance(value, str | None) or value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def loss_function(
    loss: str | Callable[..., torch.Tensor], what: str = "loss"
) -> Callable[..., torch.Tensor]:
    """The loss function ``loss`` names (a key of :data:`LOSSES`), or ``loss`` itself when it is
    callable; ``what`` names the parameter in the error for an unknown name."""
    if callable(loss):
        return loss
    if loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"{what} must be one of {sorted(LOSSES)} or a callable, got {loss!r}")


def n_targets(loss: str | Callable[..., torch.Tensor], target) -> int | torch.Tensor:
    """How many targets a batch's summed validation loss is divided by (a device tensor when
    counting needs the values, so that validation does not wait on the device per batch)."""
    if callable(loss):
        counter = getattr(loss, "n_targets", None)
        return int(counter(target)) if counter is not None else int(target.numel())
    return torch.isfinite(target).sum() if loss.startswith("masked_") else target.numel()


class WeightedCrossEntropy:
    """Cross-entropy with a weight per class (``RWKVClassifier(class_weight=...)``).

    The mean over a batch is ``sum(weights[target] * loss) / batch size``, not the weighted mean
    of :func:`torch.nn.functional.cross_entropy` (divided by ``sum(weights[target])``), which
    gives every batch the same total weight whatever classes it holds: this one's expectation
    over random batches is the weighted loss over the whole training set, whose minimiser the
    weights define (for labels the inputs say nothing of, the class prior times the weights,
    renormalised).
    The weights move to a prediction's device once, on the first call there, so that a step
    captured as a CUDA graph copies nothing from the host.

    Parameters
    ----------
    weights : sequence of float
        One non-negative weight per class, in the order of the model's outputs.

    Examples
    --------
    >>> import torch
    >>> loss = WeightedCrossEntropy([1.0, 3.0])
    >>> logits, target = torch.zeros(2, 2), torch.tensor([0, 1])
    >>> round(float(loss(logits, target)), 4)  # (1 + 3) * log 2 / 2
    1.3863
    >>> round(float(loss(logits, target, reduction="sum")), 4)  # (1 + 3) * log 2
    2.7726
    """

    def __init__(self, weights) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float32).detach().clone()
        self._on_device: dict[torch.device, torch.Tensor] = {}
        # what a checkpoint's fingerprint names the loss by: other weights, another training
        self.__qualname__ = (
            f"WeightedCrossEntropy([{', '.join(f'{w:.6g}' for w in self.weights.tolist())}])"
        )

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        weight = self._on_device.get(pred.device)
        if weight is None:
            weight = self._on_device[pred.device] = self.weights.to(pred.device)
        weighted = nn.functional.cross_entropy(pred, target, reduction="none") * weight[target]
        return weighted.sum() if reduction == "sum" else weighted.mean()

    def __repr__(self) -> str:
        return self.__qualname__
