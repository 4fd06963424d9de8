"""``RWKVRegressor``: sequence -> value(s) with an RWKV-TS encoder, e.g. the remaining useful life
(RUL) of a machine after every cycle."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin

from rwkv_ts.data.instances import Instances, align_targets, check_y
from rwkv_ts.data.sequences import token_targets
from rwkv_ts.data.validation import DataValidationError
from rwkv_ts.losses import check_losses
from rwkv_ts.sequence_estimator import _SHARED_DOC, SequenceEstimator


def _per_sample_targets(y: Any, inst: Instances) -> list[np.ndarray] | None:
    """``y`` as one float array (T_i, k) per instance when it gives a target after every
    sample, else ``None``."""
    if not isinstance(y, list | tuple) or len(y) != inst.n_instances:
        return None
    if not all(np.ndim(item) >= 1 for item in y):
        return None
    out = []
    for i, (item, length) in enumerate(zip(y, inst.lengths, strict=True)):
        a = np.asarray(item, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or len(a) != length:
            raise DataValidationError(
                f"per-sample targets of instance {i} have shape {np.shape(item)}; expected "
                f"({length},) or ({length}, k) like the instance's {length} samples"
            )
        out.append(a)
    if len({a.shape[1] for a in out}) > 1:
        raise DataValidationError("per-sample targets have different numbers of outputs")
    return out


class RWKVRegressor(RegressorMixin, SequenceEstimator):
    __doc__ = (
        """Regress one value (or a vector) on a whole sequence with an RWKV-TS encoder.

    Made for remaining useful life: the model is causal, so the estimate is defined after every
    sample (every engine cycle). ``y`` can give one target per instance, or one target after
    every sample of each instance (a list of arrays), which trains on every prefix at once;
    :meth:`stream` then updates the estimate after each new cycle and equals :meth:`predict` on
    the same history. Targets are standardised for training and mapped back.

    Parameters
    ----------"""
        + _SHARED_DOC
        + """    loss : {"mse", "mae", "huber"}, default "mse"
        The training loss on the standardised targets: squared error, absolute error, or
        Huber's loss (squared within one target standard deviation, absolute beyond).
    val_loss : {"mse", "mae", "huber"} or None, default None
        The loss that validation, early stopping and the kept epoch go by; ``None``: ``loss``.

    Attributes
    ----------
    model_ : RWKVSequenceModel or SequenceEnsemble
        The model; a :class:`~rwkv_ts.nn.sequence.SequenceEnsemble` when ``ensemble_size > 1``.
    config_ : SequenceConfig
    channels_ : list of str
    scale_mean_, scale_std_ : ndarray of shape (n_channels,)
    target_mean_, target_std_ : ndarray of shape (n_outputs,)
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (with a validation split),
        ``train_seconds`` and ``skipped_steps`` (see ``on_nonfinite_loss``).
    best_epoch_ : int or None
        ``history_`` and ``best_epoch_`` are member 0's in an ensemble.
    member_histories_ : list of list of dict
        The ``history_`` of every member (one for a single model).
    refit_epochs_ : int or None
        Epochs of the refit on all instances (see ``refit``); ``None`` without one.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2, 30)).cumsum(axis=2)
    >>> y = X[:, 0, -1] - X[:, 1, -1]
    >>> reg = RWKVRegressor(patch_len=2, stride=2, d_model=16, head_size=8, n_layers=1,
    ...                     max_epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:4]).shape
    (4,)
    """
    )

    def __init__(
        self,
        patch_len: int = 1,
        stride: int = 1,
        d_model: int = 64,
        n_layers: int = 2,
        head_size: int = 16,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (1, 2, 4),
        decay: str = "data",
        norm: str = "none",
        norm_window: int = 64,
        pooling: str = "last",
        dropout: float = 0.1,
        conv_channels: tuple[int, ...] = (),
        conv_kernels: tuple[int, ...] = (8, 5, 3),
        max_epochs: int = 100,
        batch_size: int | str = 32,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-2,
        patience: int = 15,
        loss: str = "mse",
        val_loss: str | None = None,
        ema_epochs: float | None = None,
        augment: str | None = None,
        val_fraction: float = 0.2,
        refit: float | None = None,
        ensemble_size: int = 1,
        impute: str | None = None,
        id_col: str | None = None,
        time_col: str | None = None,
        value_cols: list[str] | None = None,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = False,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.patch_len = patch_len
        self.stride = stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_size = head_size
        self.ffn_mult = ffn_mult
        self.shift_distances = shift_distances
        self.tcn_dilations = tcn_dilations
        self.decay = decay
        self.norm = norm
        self.norm_window = norm_window
        self.pooling = pooling
        self.dropout = dropout
        self.conv_channels = conv_channels
        self.conv_kernels = conv_kernels
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.loss = loss
        self.val_loss = val_loss
        self.ema_epochs = ema_epochs
        self.augment = augment
        self.val_fraction = val_fraction
        self.refit = refit
        self.ensemble_size = ensemble_size
        self.impute = impute
        self.id_col = id_col
        self.time_col = time_col
        self.value_cols = value_cols
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir

    def fit(self, X: Any, y: Any, groups: Any = None) -> RWKVRegressor:
        """Train on instances ``X`` with targets ``y``.

        Parameters
        ----------
        X : array (n_instances, n_channels, n_timepoints), array (n_instances, n_timepoints),
            list of (n_channels, T_i) arrays, or a long pandas/polars frame
        y : array-like (n_instances,) or (n_instances, k), or a list of per-sample arrays
            One target per instance (read at its end), or one array ``(T_i,)`` / ``(T_i, k)``
            per instance giving the target after every sample (training then uses every
            prefix). For a long frame a pandas Series (or dict) indexed by instance id is
            matched by id.
        groups : array-like of shape (n_instances,), optional
            Group of each instance (e.g. the engine a window came from); the validation split
            then holds out whole groups.

        Returns
        -------
        self
        """
        self._check_params()
        inst = self._instances(X)
        check_y(y, type(self).__name__)
        dense = _per_sample_targets(y, inst)
        if dense is not None:
            stacked = np.concatenate(dense, axis=0)
            self._set_target_scale(stacked)
            scaled = [((a - self.target_mean_) / self.target_std_) for a in dense]
            targets: Any = token_targets(scaled, self.patch_len, self.stride)
            n_outputs = stacked.shape[1]
            self.target_ndim_ = 1 if all(np.ndim(item) == 1 for item in y) else 2
            prefix = "masked_"  # per-token targets padded with NaN
        else:
            values = np.asarray(align_targets(y, inst), dtype=np.float64)
            if values.ndim not in (1, 2):
                raise DataValidationError(
                    f"y has shape {values.shape}; expected (n_instances,) or (n_instances, k)"
                )
            if not np.isfinite(values).all():
                raise DataValidationError("y contains NaN or infinite values")
            self.target_ndim_ = values.ndim
            values = values.reshape(len(values), -1)
            self._set_target_scale(values)
            targets = ((values - self.target_mean_) / self.target_std_).astype(np.float32)
            n_outputs = values.shape[1]
            prefix = ""
        self._train(
            inst,
            targets,
            n_outputs=n_outputs,
            loss=prefix + self.loss,
            val_loss=None if self.val_loss is None else prefix + self.val_loss,
            groups=groups,
        )
        return self

    def _check_params(self) -> None:
        super()._check_params()
        check_losses(self.loss, self.val_loss)

    def _set_target_scale(self, values: np.ndarray) -> None:
        if not np.isfinite(values).all():
            raise DataValidationError("y contains NaN or infinite values")
        std = values.std(axis=0)
        self.target_mean_ = values.mean(axis=0)
        self.target_std_ = np.where(std > 1e-12, std, 1.0)

    def _outputs_from_raw(self, raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float64) * self.target_std_ + self.target_mean_
        return out[..., 0] if self.target_ndim_ == 1 else out

    def predict(self, X: Any) -> np.ndarray:
        """Estimates at the end of each instance: (n_instances,) or (n_instances, k)."""
        inst = self._fitted_instances(X)
        return self._outputs_from_raw(self._raw_outputs(inst))

    def predict_steps(self, X: Any) -> list[np.ndarray]:
        """Estimates after every sample of each instance: one (T_i,) (or (T_i, k)) array per
        instance; entry ``t`` equals ``predict`` on the first ``t + 1`` samples (NaN before the
        first complete patch)."""
        inst = self._fitted_instances(X, min_length=1)
        return [self._outputs_from_raw(out) for out in self._raw_step_outputs(inst)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


__all__ = ["RWKVRegressor"]
