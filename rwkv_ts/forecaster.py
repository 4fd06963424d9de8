"""``RWKVForecaster``: a scikit-learn-style forecaster on pandas/polars frames and arrays."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.utils.data import DataLoader

from rwkv_ts._ensemble import load_member, member_file, member_seeds, remove_members, save_member
from rwkv_ts.data import Panel, WindowDataset, check_same_channels, chronological_split, to_panel
from rwkv_ts.data.cycle import (
    fit_profile,
    phases_after,
    phases_ending,
    resolve_cycle,
    step_indices,
)
from rwkv_ts.data.frames import forecast_to_frame
from rwkv_ts.data.serialize import panel_tail
from rwkv_ts.data.validation import check_memory
from rwkv_ts.losses import check_losses, with_frequency_term
from rwkv_ts.nn import (
    ForecastEnsemble,
    RWKVTSConfig,
    RWKVTSModel,
    dominant_periods,
    periods_to_distances,
)
from rwkv_ts.nn.config import int_tuple
from rwkv_ts.training import (
    check_training_settings,
    inference_device,
    options_from,
    train_model,
)


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _cuda_devices() -> list[int]:
    """The CUDA devices whose generators a forked random state must cover (none without CUDA)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


class _LinearBranch(nn.Module):
    """The linear branch of ``model`` alone (:meth:`RWKVTSModel.linear_forecast`), as a module
    whose only parameters are the branch's: training it leaves the encoder as it is."""

    def __init__(self, model: RWKVTSModel) -> None:
        super().__init__()
        self.skip = model.skip
        # kept outside the registered modules, so that its other weights are not trained
        self._forecast = model.linear_forecast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forecast(x)


def choose_skip_input(
    config: RWKVTSConfig, train_data: WindowDataset, val_data: WindowDataset | None
) -> RWKVTSConfig:
    """``config`` with the linear branch's input (``"raw"`` or ``"normalised"``) whose
    least-squares fit on ``train_data`` forecasts ``val_data`` with the lower MSE (ties and a
    missing validation part give ``"normalised"``). Used by ``linear_skip="auto"``."""
    if val_data is None or len(val_data) == 0:
        return replace(config, skip_input="normalised")
    errors = {}
    # the candidates' random initialisation must not move the caller's generator
    with torch.random.fork_rng(devices=[]):
        for skip_input in ("normalised", "raw"):
            candidate = RWKVTSModel(replace(config, skip_input=skip_input)).eval()
            candidate.fit_skip_least_squares(DataLoader(train_data, batch_size=4096))
            squared, count = 0.0, 0
            with torch.no_grad():
                for x, y in DataLoader(val_data, batch_size=4096):
                    squared += float(((candidate.linear_forecast(x) - y) ** 2).double().sum())
                    count += y.numel()
            errors[skip_input] = squared / count
    # ties keep the normalised branch, the one the streamable configuration shares
    best = "raw" if errors["raw"] < errors["normalised"] else "normalised"
    return replace(config, skip_input=best)


#: The frequency term's weight that ``frequency_loss_weight="auto"`` tries beside none: FreDF's
#: usual setting, and the best mean change of 0.5, 0.8 and 1 on ETTm2's validation part, the set
#: the term helped most (``benchmarks/results/ett_validation_sweep_round12.md``).
AUTO_FREQUENCY_WEIGHT = 0.8

#: Named presets of :meth:`RWKVForecaster.from_preset`: the parameters each one sets.
PRESETS = MappingProxyType(
    {
        # every preset removes the daily cycle where the data have a time step below a day
        # (cycle="auto"; nothing for arrays and integer time): chosen on ETT's validation parts
        # for both configurations (ett_validation_sweep_round7.md, round 8 for the streamable
        # one), it lowered 22 of 24 ETT test averages (benchmarks/results/forecast_ett_v3.md).
        # The stream, the torch-free runtime and the ONNX host apply it too.
        # instance normalisation, flatten head, linear branch chosen on validation: the most
        # accurate configuration on the ETT benchmarks. Huber's loss, the kept epoch chosen by
        # the validation MSE: chosen on ETT's validation parts (ett_validation_sweep_round10.md,
        # 14 of 16 pairs lower or equal), it lowered 6 of 8 ETT test averages (forecast_ett_v4.md).
        # The linear stage tries FreDF's frequency term and keeps what validates better
        # (ett_validation_sweep_round12.md; its test measurement: forecast_ett_v5.md)
        "accurate": MappingProxyType(
            {
                "norm": "instance",
                "head": "flatten",
                "cycle": "auto",
                "loss": "huber",
                "val_loss": "mse",
                "frequency_loss_weight": "auto",
            }
        ),
        # causal normalisation and the last-state head: forecasts from the whole history, and
        # ``stream()`` answers each new sample in O(1) time and memory
        "streaming": MappingProxyType({"norm": "causal", "head": "last", "cycle": "auto"}),
        # a 16-wide encoder at 7x the default batch (learning rate scaled with it): the ETT
        # winner, validated equal to the default batch on ETT's validation parts, 7x fewer steps
        "fast": MappingProxyType(
            {
                "d_model": 16,
                "head_size": 16,
                "batch_size": 896,
                "learning_rate": 3e-4,
                "cycle": "auto",
            }
        ),
    }
)


class RWKVForecaster(BaseEstimator):
    """Multi-step forecaster with an RWKV-TS encoder (patching, RWKV-6 blocks, multi-scale shift,
    TCN fusion).

    Channel independent and global: every channel of every series is a univariate sequence encoded
    with shared weights, so one model serves multivariate series and panels of many series.

    Parameters
    ----------
    horizon : int, default 96
        Number of steps forecast.
    lookback : int, default 336
        Number of past steps the model reads.
    patch_len, stride : int, default 16, 8
        Patch length and stride in steps.
    d_model, n_layers, head_size : int, default 128, 2, 32
        Width, number of RWKV blocks and WKV head size.
    ffn_mult : float, default 2.0
        Channel-mix hidden width as a multiple of ``d_model``.
    shift_distances : tuple of int, int or "auto", default (1, 2, 4)
        Token distances of the multi-scale token shift; ``(1,)`` (or ``1``) is plain RWKV;
        ``"auto"`` takes the series' three dominant periods from an FFT of the training data
        (converted to tokens) plus distance 1.
    tcn_dilations : tuple of int, default (1, 2, 4)
        Dilations of the causal TCN branch fused with the time-mix; ``()`` switches it off.
    decay : {"data", "static"}, default "data"
        RWKV-6 data-dependent decay or RWKV-5 static decay.
    norm : {"instance", "causal"}, default "instance"
        Instance (RevIN) normalisation of each window, or causal trailing statistics (streams in
        O(1)).
    head : {"flatten", "last"} or int, default "flatten"
        Read every token of the lookback, only the last state, or the last ``head`` tokens.
    dropout : float, default 0.3
    linear_skip : {"auto", True, "normalised", "raw", False}, default "auto"
        Add a linear map from the lookback to the forecast beside the encoder's head (a residual
        linear branch, as RLinear/DLinear), fitted by ridge least squares on the training windows
        before gradient training, so training starts from the best linear forecast and the
        encoder learns what it misses; early stopping then keeps that start if no epoch beats it
        on the validation windows (``best_epoch_ == -1``). ``True`` or ``"normalised"``: the map
        reads the normalised window (RLinear); ``"raw"``: the window as given (DLinear; the
        windowed configuration only). Which forecasts better depends on the data (on ETT's
        validation parts ``"raw"`` wins on ETTh1, ``"normalised"`` on ETTh2). ``"auto"`` fits
        both and keeps the one with the lower validation MSE (``"normalised"`` without a
        validation part or with causal normalisation, where ``"raw"`` is not available); the
        choice is ``config_.skip_input``. ``False``: no linear branch.
    cycle : int, "auto" or None, default None
        Remove a seasonal cycle of ``cycle`` steps before the model reads the series and add it
        back to the forecasts (residual cycle forecasting, after CycleNet, with the cycle
        estimated rather than learned): the profile is the mean of every phase of the cycle and
        channel over the training part (``cycle_profile_``), so the model learns what the
        profile misses. ``"auto"``: one day of steps for a fixed time step shorter than a day
        (24 for hourly data, 96 for 15-minute data), a week for daily data, no cycle otherwise
        (integer time, arrays, calendar steps). A sample's phase comes from its timestamp (whole
        steps since 1970-01-01, wall-clock time), from integer time, or for arrays from its
        position in the array, so an array given to ``predict`` is taken to start at phase 0.
        ``forecast_windows`` then needs each window's phase (see :meth:`cycle_phases`).
    max_epochs, batch_size, learning_rate, weight_decay, patience : training settings
        Defaults 20, 128, 1e-4, 1e-4, 3.
        AdamW with a warm-up and cosine decay; early stopping after ``patience`` epochs without
        improvement of the validation loss, restoring the best epoch's weights.
    loss : {"mse", "mae", "huber"}, default "mse"
        The training loss on the (scaled) forecasts: squared error, absolute error, or Huber's
        loss (squared within 1 of the target, absolute beyond). The absolute and Huber losses
        give outliers and level shifts in the training part less weight than the squared
        error does; on data that has them they can lower even the squared error of the
        forecasts (see ``benchmarks/results/ett_validation_sweep_round10.md`` for ETT). With
        another loss than ``"mse"``, the windowed configuration's linear branch is trained
        alone by that loss from its least-squares start before the encoder trains (early
        stopping by ``val_loss``; the least-squares start stays if it validates better).
    val_loss : {"mse", "mae", "huber"} or None, default None
        The loss that validation, early stopping and the kept epoch go by (``history_``'s
        ``val_loss``, ``best_val_loss_``); ``None``: ``loss``. Train with ``"mae"`` and
        validate with ``"mse"`` to choose the weights by the squared error while training
        robustly.
    frequency_loss_weight : float or "auto", default 0.0
        Weight ``w`` in [0, 1] of a frequency-domain term in the training loss:
        ``(1 - w) * loss + w * mean |DFT(forecast - target)|`` over the horizon (orthonormal
        DFT; FreDF, Wang et al., ICLR 2025). A horizon's errors are correlated step to step,
        which a loss summed over the steps ignores; the DFT's coefficients are nearly not.
        Validation goes by ``val_loss`` (else ``loss``) alone. With ``w > 0`` the windowed
        configuration's linear branch is trained by the mixed loss from its least-squares
        start, as for a loss other than ``"mse"``. ``"auto"``: the windowed configuration's
        linear branch is trained both without the term and with ``w = 0.8``
        (:data:`AUTO_FREQUENCY_WEIGHT`), the map that validates best is kept and the encoder
        trains with its weight (``frequency_loss_weight_``): whether the term helps depends on
        the data (on ETT's validation parts it helped ETTh2 and ETTm2 and hurt ETTh1 and ETTm1).
        The streamable configuration, which has no linear stage, trains without the term under
        ``"auto"``; so does a fit without a validation part.
    ema_epochs : float or None, default None
        Keep an exponential moving average of the weights with a time constant of this many
        epochs (:class:`rwkv_ts.training.AveragedWeights`): validation, early stopping and the
        fitted model use the averaged weights; training goes on from the live weights.
        The average smooths out the noise of the last steps, which helps some problems and not
        others (on the ETT validation parts it did not, see
        ``benchmarks/results/ett_validation_sweep_round9.md``): compare it on your validation
        data. ``None`` (the default) keeps the weights as trained.
    val_fraction : float, default 0.2
        Share of each series' windows, at its end, used for validation (chronological, no leakage).
    ensemble_size : int, default 1
        Number of models trained and read as one (:class:`rwkv_ts.nn.ForecastEnsemble`): member
        ``i`` has its own seed, initialisation and shuffling (member 0 those of a single model
        with the same ``random_state``); the scaler, the validation part, the linear branch's
        input and its least-squares start are shared. Forecasts are the mean of the members'
        forecasts, in ``predict``, ``forecast_windows`` and streams alike (the torch and numba
        stream engines run one state per member). Training, inference and a stream's state grow
        with the size. The torch-free runtime and the ONNX export read single models only.
    impute : {None, "linear", "ffill", "zero"}, default None
        How missing values are filled; ``None`` rejects them with an error.
    time_col, id_col, value_cols : optional column names
        Where the time, the series id (long format) and the values are; inferred when not given.
    random_state : int or None, default None
        Seed for weight initialisation and shuffling; a fixed value gives reproducible CPU results.
    accelerator, devices : Lightning settings, default "auto"
    verbose : bool, default True
        Show a progress bar while training.
    log_dir : str or None, default None
        Write Lightning CSV logs there; by default nothing is written to disk.
    on_nonfinite_loss : {"raise", "skip"}, default "raise"
        What a NaN or infinite training loss (or gradient) does: ``"raise"`` stops training with
        :class:`rwkv_ts.training.TrainingDivergedError` naming the epoch and step; ``"skip"``
        leaves that batch's optimiser step out with a ``RuntimeWarning`` naming the epoch and
        step, and counts it in ``history_[epoch]["skipped_steps"]``.
    checkpoint_dir : str or None, default None
        A folder for a training checkpoint, written at the end of every epoch (atomically, only
        the latest kept, no pickle). A ``fit`` killed part-way and run again with the same
        folder, data and parameters resumes from the last complete epoch and gives the same
        model as an uninterrupted fit (bit for bit on the CPU with a fixed ``random_state``).
        A checkpoint of other data or parameters is not resumed: a
        :class:`rwkv_ts.training.CheckpointWarning` says so and training starts afresh. The
        checkpoint is deleted when ``fit`` completes. Do not share a folder between fits that
        run at the same time.

    Attributes
    ----------
    model_ : RWKVTSModel or ForecastEnsemble
        The trained torch module (an ensemble when ``ensemble_size > 1``).
    config_ : RWKVTSConfig
    channels_ : list of str
    scale_mean_, scale_std_ : ndarray of shape (n_channels,)
        Per-channel standardisation fitted on the training data.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (with a validation part),
        ``train_seconds`` (wall time of the training steps, validation excluded) and
        ``skipped_steps`` (steps left out for a non-finite loss, see ``on_nonfinite_loss``).
        Member 0's for an ensemble.
    member_histories_ : list of list of dict
        Every member's ``history_``; ``member_best_epochs_`` their ``best_epoch_``.
    best_epoch_ : int or None
        The epoch whose weights were kept (``-1``: the fitted linear branch before training won
        on validation; ``None``: no validation part).
    best_val_loss_ : float or None
        The validation loss (``val_loss``, else ``loss``; scaled data) of the weights kept
        (member 0's for an ensemble).
    frequency_loss_weight_ : float
        The weight of the frequency term the encoder trained with: ``frequency_loss_weight``,
        or the one ``"auto"`` chose (member 0's for an ensemble).
    cycle_ : int or None
        The period of the removed cycle in steps (``cycle`` resolved), or ``None``.
    cycle_profile_ : ndarray of shape (cycle_, n_channels) or None
        The removed profile, in the scaled space (subtract ``scale_mean_``, divide by
        ``scale_std_``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from rwkv_ts import RWKVForecaster
    >>> t = pd.date_range("2024-01-01", periods=400, freq="h")
    >>> y = pd.DataFrame({"load": np.sin(np.arange(400) * 2 * np.pi / 24)}, index=t)
    >>> est = RWKVForecaster(horizon=12, lookback=48, patch_len=8, stride=4, d_model=32,
    ...                      max_epochs=2, verbose=False, random_state=0).fit(y)
    >>> est.predict().shape
    (12, 1)
    """

    def __init__(
        self,
        horizon: int = 96,
        lookback: int = 336,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 128,
        n_layers: int = 2,
        head_size: int = 32,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] | str = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (1, 2, 4),
        decay: str = "data",
        norm: str = "instance",
        head: str | int = "flatten",
        dropout: float = 0.3,
        linear_skip: bool | str = "auto",
        cycle: int | str | None = None,
        max_epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-4,
        patience: int = 3,
        loss: str = "mse",
        val_loss: str | None = None,
        frequency_loss_weight: float | str = 0.0,
        ema_epochs: float | None = None,
        val_fraction: float = 0.2,
        ensemble_size: int = 1,
        impute: str | None = None,
        time_col: str | None = None,
        id_col: str | None = None,
        value_cols: list[str] | None = None,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = True,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.horizon = horizon
        self.lookback = lookback
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
        self.head = head
        self.dropout = dropout
        self.linear_skip = linear_skip
        self.cycle = cycle
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.loss = loss
        self.val_loss = val_loss
        self.frequency_loss_weight = frequency_loss_weight
        self.ema_epochs = ema_epochs
        self.val_fraction = val_fraction
        self.ensemble_size = ensemble_size
        self.impute = impute
        self.time_col = time_col
        self.id_col = id_col
        self.value_cols = value_cols
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir

    @classmethod
    def from_preset(cls, preset: str, **params: Any) -> RWKVForecaster:
        """An estimator with a named preset's parameters; ``params`` set the others and override
        the preset's.

        ``"accurate"``: instance normalisation and the flatten head (the defaults).
        ``"streaming"``: causal normalisation and the last-state head, the configuration that
        :meth:`stream` serves in O(1) memory. ``"fast"``: a 16-wide encoder with heads of 16,
        trained at batch 896 with learning rate 3e-4 (7x fewer, larger steps than the defaults);
        the most accurate settings found on the ETT benchmarks, meant for long series (tens of
        thousands of windows): on short series a batch of 896 leaves few steps an epoch.
        Every preset also sets ``cycle="auto"`` (the daily cycle removed for data with a time
        step below a day, a weekly one for daily data; nothing for arrays), which the estimator's
        default leaves off; with it ``forecast_windows`` needs the windows' phases, and the
        torch-free runtime and ONNX host need the phase of each series' first sample
        (``RuntimeModel.cycle_phases``).
        ``PRESETS`` (module level) holds each preset's parameters. The result is an ordinary
        estimator: ``get_params`` shows every setting, and ``clone``, ``set_params`` and the
        Optuna tuner treat it like any other.

        Parameters
        ----------
        preset : {"accurate", "streaming", "fast"}
        **params
            Any other parameter of :class:`RWKVForecaster`.

        Returns
        -------
        RWKVForecaster

        Examples
        --------
        >>> from rwkv_ts import RWKVForecaster
        >>> est = RWKVForecaster.from_preset("streaming", horizon=24, lookback=96)
        >>> est.norm, est.head, est.horizon
        ('causal', 'last', 24)
        >>> RWKVForecaster.from_preset("fast", d_model=32).d_model
        32
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        return cls(**(dict(PRESETS[preset]) | params))

    # ------------------------------------------------------------------ helpers
    def _panel(self, y: Any, min_length: int) -> Panel:
        return to_panel(
            y,
            time_col=self.time_col,
            id_col=self.id_col,
            value_cols=self.value_cols,
            impute=self.impute,
            min_length=min_length,
        )

    def _head_tokens(self, n_patches: int) -> int | None:
        if self.head == "flatten":
            return None
        if self.head == "last":
            return 1
        if isinstance(self.head, int | np.integer) and not isinstance(self.head, bool):
            return int(self.head)
        raise ValueError(f"head must be 'flatten', 'last' or a number of tokens, got {self.head!r}")

    def _resolve_distances(self, scaled: list[np.ndarray], n_patches: int) -> tuple[int, ...]:
        if isinstance(self.shift_distances, str):
            _check_choice("shift_distances", self.shift_distances, ("auto",))
            longest = max(scaled, key=len)
            periods = dominant_periods(longest, k=3, max_period=self.lookback)
            return periods_to_distances(periods, self.stride, max_distance=max(n_patches - 1, 1))
        return int_tuple("shift_distances", self.shift_distances)

    def _build_config(self, distances: tuple[int, ...]) -> RWKVTSConfig:
        n_patches = (self.lookback - self.patch_len) // self.stride + 1
        return RWKVTSConfig(
            lookback=self.lookback,
            horizon=self.horizon,
            patch_len=self.patch_len,
            stride=self.stride,
            d_model=self.d_model,
            n_layers=self.n_layers,
            head_size=self.head_size,
            ffn_mult=self.ffn_mult,
            shift_distances=distances,
            decay=self.decay,
            tcn_dilations=int_tuple("tcn_dilations", self.tcn_dilations, allow_empty=True),
            norm=self.norm,
            head_tokens=self._head_tokens(n_patches),
            dropout=self.dropout,
            linear_skip=self._skip_input() is not None,
            # "auto" is decided in fit, on the validation windows
            skip_input="raw" if self._skip_input() == "raw" else "normalised",
        )

    def _skip_input(self) -> str | None:
        """What the linear branch reads: None (no branch), "normalised", "raw" or "auto" (the
        better of the two on validation, decided in fit)."""
        if self.linear_skip is False or self.linear_skip is None:
            return None
        if self.linear_skip is True:
            return "normalised"
        _check_choice("linear_skip", self.linear_skip, (True, False, "normalised", "raw", "auto"))
        if self.linear_skip == "auto" and self.norm != "instance":
            return "normalised"
        if self.linear_skip == "raw" and self.norm != "instance":
            raise ValueError(
                "linear_skip='raw' needs norm='instance'; the streamable configuration's linear "
                "branch reads the causally normalised window (use 'normalised')"
            )
        return self.linear_skip

    def _check_params(self) -> None:
        for name in (
            "horizon",
            "lookback",
            "max_epochs",
            "batch_size",
            "patience",
            "ensemble_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        _check_choice("norm", self.norm, ("instance", "causal"))
        _check_choice("decay", self.decay, ("data", "static"))
        check_losses(self.loss, self.val_loss)
        weight = self.frequency_loss_weight
        if not (
            weight == "auto"
            or (
                isinstance(weight, int | float | np.number)
                and not isinstance(weight, bool)
                and 0.0 <= weight <= 1.0
            )
        ):
            raise ValueError(
                f"frequency_loss_weight must be a number in [0, 1] or 'auto', got {weight!r}"
            )
        self._skip_input()
        resolve_cycle(self.cycle, None)  # the value's form; the step is checked at fit
        check_training_settings(self.on_nonfinite_loss, self.checkpoint_dir, self.ema_epochs)

    def _check_fit_memory(self, panel: Panel) -> None:
        # Peak of fit before training: float64 copies of the data, their concatenation for the
        # scaler and the scaled float32 arrays (24 bytes a value beside the panel), plus weights,
        # gradients and two AdamW moments of the largest maps (linear skip, flatten head).
        n_values = sum(v.size for v in panel.values)
        n_patches = max((self.lookback - self.patch_len) // self.stride + 1, 1)
        head_in = self.d_model * (n_patches if self.head == "flatten" else 1)
        n_weights = (self.lookback + head_in) * self.horizon
        check_memory(
            24.0 * n_values + 16.0 * n_weights,
            f"training on {len(panel.values)} series of {n_values:,} values in all "
            f"(lookback={self.lookback}, horizon={self.horizon}, d_model={self.d_model})",
            "fit on fewer or shorter series (older history adds little), or lower lookback, "
            "horizon or d_model",
        )

    def _scale(self, values: list[np.ndarray]) -> list[np.ndarray]:
        return [((v - self.scale_mean_) / self.scale_std_).astype(np.float32) for v in values]

    # ------------------------------------------------------------------ estimator API
    def fit(self, y: Any) -> RWKVForecaster:
        """Train on the history ``y``.

        Parameters
        ----------
        y : pandas.DataFrame, polars.DataFrame, pandas.Series or numpy.ndarray
            Wide frame (a time column or DatetimeIndex and one column per channel), long frame
            (series id, time, value), a Series, or an array (T,) or (T, C). Each series needs
            ``lookback + horizon`` steps.

        Returns
        -------
        self
        """
        self._check_params()
        panel = self._panel(y, min_length=self.lookback + self.horizon)
        self._check_fit_memory(panel)
        raw = [np.asarray(v, dtype=np.float64) for v in panel.values]
        n_patches = (self.lookback - self.patch_len) // self.stride + 1
        streamable = self.norm == "causal" and self._head_tokens(n_patches) is not None
        if streamable:
            # An RNN over the whole history: train on long segments, a loss at every token.
            from rwkv_ts.stream.training import segment_datasets, segment_length

            window = segment_length(
                self.lookback, self.horizon, [len(v) for v in raw], self.val_fraction
            )
        else:
            window = self.lookback
        period = resolve_cycle(self.cycle, panel.freq)
        # Split before scaling: the scaler sees the training part only, never validation.
        train_raw, val_raw = chronological_split(raw, self.val_fraction, window, self.horizon)
        stacked = np.concatenate(train_raw, axis=0)
        std = stacked.std(axis=0)
        self.scale_mean_ = stacked.mean(axis=0)
        self.scale_std_ = np.where(std > 1e-12, std, 1.0)
        self.cycle_, self.cycle_profile_ = period, None
        if period is None:
            train_arrays, val_arrays = self._scale(train_raw), self._scale(val_raw)
        else:
            # the profile from the training part too (each training view starts its series)
            phases = [
                phases_ending(last, panel.freq, len(v), period)
                for v, last in zip(raw, panel.last_times, strict=True)
            ]
            scaled = self._scale(raw)
            self.cycle_profile_ = fit_profile(
                [v[: len(t)] for v, t in zip(scaled, train_raw, strict=True)],
                [p[: len(t)] for p, t in zip(phases, train_raw, strict=True)],
                period,
            )
            residual = [
                (v - self.cycle_profile_[p]).astype(np.float32)
                for v, p in zip(scaled, phases, strict=True)
            ]
            train_arrays, val_arrays = chronological_split(
                residual, self.val_fraction, window, self.horizon
            )

        config = self._build_config(self._resolve_distances(train_arrays, n_patches))
        if config.streamable:
            train_data, val_data = segment_datasets(train_arrays, val_arrays, config, window)
            # batch_size counts lookback windows: a segment holds segment / lookback of them
            batch_size = max(1, self.batch_size * self.lookback // window)
        else:
            train_data = WindowDataset(train_arrays, self.lookback, self.horizon)
            val_data = (
                WindowDataset(val_arrays, self.lookback, self.horizon) if val_arrays else None
            )
            batch_size = self.batch_size

        tag = {}
        if self.checkpoint_dir is not None:
            from rwkv_ts._checkpoint import estimator_tag

            # the prepared data decide the run with the parameters (scaler, split, windows)
            tag = estimator_tag(self, train_arrays, val_arrays, window, batch_size)
        if self._skip_input() == "auto" and not config.streamable:
            config = choose_skip_input(config, train_data, val_data)
        members, results = [], []
        for i, seed in enumerate(member_seeds(self.random_state, self.ensemble_size)):
            model, result = self._train_member(
                i, seed, config, train_data, val_data, batch_size, tag
            )
            members.append(model.eval())
            results.append(result)
        if self.checkpoint_dir is not None and len(members) > 1:
            remove_members(self.checkpoint_dir, len(members))
        self.model_ = members[0] if len(members) == 1 else ForecastEnsemble(members)
        self.config_ = config
        self.channels_ = list(panel.channels)
        self.history_ = results[0]["history"]
        self.best_epoch_ = results[0]["best_epoch"]
        self.best_val_loss_ = results[0]["best_val_loss"]
        self.n_epochs_ = results[0]["n_epochs"]
        self.frequency_loss_weight_ = results[0]["frequency_loss_weight"]
        self.member_histories_ = [r["history"] for r in results]
        self.member_best_epochs_ = [r["best_epoch"] for r in results]
        # The streamable configuration forecasts from the whole history, so it keeps it all.
        self.last_panel_ = panel if config.streamable else panel_tail(panel, self.lookback)
        return self

    def _train_member(
        self,
        i: int,
        seed: int | None,
        config: RWKVTSConfig,
        train_data: Any,
        val_data: Any,
        batch_size: int,
        tag: dict,
    ) -> tuple[RWKVTSModel, dict]:
        """Train member ``i`` of the ensemble (the only one of a single model): the linear
        branch's least-squares start, then gradient training. With a ``checkpoint_dir``, an
        ensemble keeps each finished member there until ``fit`` ends, so that a killed fit
        resumes with the member it was training."""
        keys = ("history", "best_epoch", "best_val_loss", "n_epochs", "frequency_loss_weight")
        checkpoint_dir = self.checkpoint_dir
        ensemble = self.ensemble_size > 1
        if checkpoint_dir is not None and ensemble:
            tag = {**tag, "member": i}
            checkpoint_dir = str(member_file(self.checkpoint_dir, i).with_suffix(""))
            finished = load_member(
                member_file(self.checkpoint_dir, i), tag, lambda: RWKVTSModel(config), keys
            )
            if finished is not None:
                return finished
        if self.verbose and ensemble:  # the progress bar counts epochs, not members
            print(
                f"RWKVForecaster: ensemble member {i + 1} of {self.ensemble_size}",
                file=sys.stderr,
                flush=True,
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else torch.seed())
            model = RWKVTSModel(config)
            weight = self._frequency_weights()[0]
            if config.linear_skip and not config.streamable:
                model.fit_skip_least_squares(DataLoader(train_data, batch_size=4096))
                weight = self._linear_stage(model, train_data, val_data, batch_size, seed)
            elif config.linear_skip:
                from rwkv_ts.stream.training import fit_skip_on_segments

                fit_skip_on_segments(model, train_data)
            if config.streamable:
                from rwkv_ts.stream.training import TokenForecasts

                # per-token targets of segments padded with NaN
                # (batch, tokens, horizon)
                trained, prefix, horizon_dim = TokenForecasts(model), "masked_", -1
            else:
                # (batch, horizon, channels)
                trained, prefix, horizon_dim = model, "", 1
            result = train_model(
                trained,
                train_data,
                val_data,
                options_from(
                    self,
                    loss=self._training_loss(prefix, horizon_dim, weight),
                    val_loss=self._validation_loss(prefix, weight),
                    batch_size=batch_size,
                    random_state=seed,
                    checkpoint_dir=checkpoint_dir,
                    checkpoint_tag=tag,
                    keep_initial=config.linear_skip,
                    # the encoder's forward never reads a value on the host: capturable
                    cuda_graph=True,
                ),
            )
        summary = {k: getattr(result, k) for k in keys if k != "frequency_loss_weight"}
        summary["frequency_loss_weight"] = weight
        if self.checkpoint_dir is not None and ensemble:
            save_member(member_file(self.checkpoint_dir, i), model, summary, tag)
        return model, summary

    def _frequency_weights(self) -> list[float]:
        """The frequency term's weights to train with: ``"auto"``'s candidates (the plain loss
        first), else the one weight asked."""
        if isinstance(self.frequency_loss_weight, str):
            return [0.0, AUTO_FREQUENCY_WEIGHT]
        return [float(self.frequency_loss_weight)]

    def _linear_stage(
        self,
        model: RWKVTSModel,
        train_data: Any,
        val_data: Any,
        batch_size: int,
        seed: int | None,
    ) -> float:
        """Train the windowed configuration's linear branch alone from its least-squares start,
        by the training loss with each weight of the frequency term to try, and keep the map that
        validates best (the start included); return the weight the encoder then trains with
        (0 where the least-squares start is kept, the squared error's own solution).

        The least-squares start is the squared error's optimum: with ``loss="mse"`` and no
        frequency term there is nothing to train. Where the loss is robust or has a frequency
        term, its linear solution is another one.
        """
        weights = self._frequency_weights()
        if val_data is None or len(val_data) == 0:
            weights = weights[:1]  # nothing to choose by
        weights = [w for w in weights if self.loss != "mse" or w > 0]
        if not weights:
            return 0.0
        start = {k: v.clone() for k, v in model.skip.state_dict().items()}
        best: tuple[float, float, dict] | None = None
        for weight in weights:
            model.skip.load_state_dict(start)
            # each candidate leaves the generators as it found them: the encoder's training
            # then does not depend on how many candidates were tried
            with torch.random.fork_rng(devices=_cuda_devices()):
                result = train_model(
                    _LinearBranch(model),
                    train_data,
                    val_data,
                    options_from(
                        self,
                        loss=self._training_loss("", 1, weight),
                        val_loss=self._validation_loss("", weight),
                        batch_size=batch_size,
                        random_state=seed,
                        checkpoint_dir=None,
                        keep_initial=True,
                        cuda_graph=True,
                    ),
                )
            score = math.inf if result.best_val_loss is None else result.best_val_loss
            if best is None or score < best[0]:
                kept = 0.0 if result.best_epoch == -1 else weight
                best = (score, kept, {k: v.clone() for k, v in model.skip.state_dict().items()})
        model.skip.load_state_dict(best[2])
        return best[1]

    def _training_loss(self, prefix: str, horizon_dim: int, weight: float) -> Any:
        """The training loss: ``loss``'s name (with ``prefix``, e.g. ``"masked_"``), or that
        loss mixed with a frequency term of weight ``weight`` along the horizon."""
        if weight > 0:
            return with_frequency_term(prefix + self.loss, weight, horizon_dim)
        return prefix + self.loss

    def _validation_loss(self, prefix: str, weight: float) -> str | None:
        """The validation loss's name: ``val_loss``, else ``loss`` (in the time domain alone
        when the training loss has a frequency term)."""
        if self.val_loss is not None:
            return prefix + self.val_loss
        return prefix + self.loss if weight > 0 else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                "this RWKVForecaster is not fitted yet; call fit(y) before predict or save"
            )

    def predict(self, y: Any = None) -> Any:
        """Forecast the next ``horizon`` steps.

        The windowed configuration reads the last ``lookback`` samples of each series. The
        streamable configuration (``norm="causal"`` with ``head="last"`` or a number of tokens)
        is a recurrent model over the whole history: it reads every sample given (or, without
        ``y``, the whole training series), which is what ``stream()`` gives after every sample.

        Parameters
        ----------
        y : frame, Series or array, optional
            A history in the same layout as at ``fit``; the forecast starts after its end. Without
            it, the forecast continues the training data.

        Returns
        -------
        The forecast in the library and layout of the input (pandas in, pandas out; polars in,
        polars out), with timestamps continuing the history.
        """
        self._check_fitted()
        if y is None:
            panel = self.last_panel_
        else:
            panel = self._panel(y, min_length=self.lookback)
            check_same_channels(panel, self.channels_)
        inputs = self._model_inputs(panel)
        if self.config_.streamable:
            forecasts = self._forecast_histories(inputs)
        else:
            forecasts = self._forecast_scaled(np.stack([v[-self.lookback :] for v in inputs]))
        if getattr(self, "cycle_profile_", None) is not None:
            forecasts += np.stack(
                [
                    self.cycle_profile_[phases_after(last, panel.freq, self.horizon, self.cycle_)]
                    for last in panel.last_times
                ]
            )
        forecasts = forecasts * self.scale_std_ + self.scale_mean_
        return forecast_to_frame(list(forecasts), panel, self.horizon)

    def _model_inputs(self, panel: Panel) -> list[np.ndarray]:
        """The series as the model reads them: scaled, the cycle's profile removed (float32)."""
        scaled = self._scale(panel.values)
        if getattr(self, "cycle_profile_", None) is None:
            return scaled
        return [
            (v - self.cycle_profile_[phases_ending(last, panel.freq, len(v), self.cycle_)]).astype(
                np.float32
            )
            for v, last in zip(scaled, panel.last_times, strict=True)
        ]

    def cycle_phases(self, times: Any) -> np.ndarray:
        """The phases in the removed cycle of samples at ``times`` (timestamps, or integer time
        as at ``fit``): what :meth:`forecast_windows` takes for each window's first sample.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from rwkv_ts import RWKVForecaster
        >>> t = pd.date_range("2024-01-01", periods=400, freq="h")
        >>> y = pd.DataFrame({"load": np.sin(np.arange(400) * 2 * np.pi / 24)}, index=t)
        >>> est = RWKVForecaster(horizon=12, lookback=48, patch_len=8, stride=4, d_model=16,
        ...                      head_size=8, cycle="auto", max_epochs=1, verbose=False,
        ...                      random_state=0).fit(y)
        >>> est.cycle_, est.cycle_phases(t[:3]).tolist()
        (24, [0, 1, 2])
        """
        self._check_fitted()
        if getattr(self, "cycle_", None) is None:
            raise ValueError("this forecaster removes no cycle (cycle_ is None)")
        freq = self.last_panel_.freq
        stamps = np.atleast_1d(np.asarray(times, dtype=object))
        return step_indices(list(stamps), freq) % self.cycle_

    def forecast_windows(
        self, windows: np.ndarray, batch_size: int = 512, phases: Any = None
    ) -> np.ndarray:
        """Forecast from many windows at once, in data units: (S, lookback, C) -> (S, horizon, C).

        A fast path for backtests: no frame conversion, no timestamps. Channels are in ``channels_``
        order. A forecaster that removes a cycle (``cycle_`` not ``None``) needs ``phases``: the
        phase of each window's first sample, an integer array (S,) (see :meth:`cycle_phases`).

        Examples
        --------
        >>> import numpy as np
        >>> from rwkv_ts import RWKVForecaster
        >>> est = RWKVForecaster(horizon=4, lookback=32, patch_len=8, stride=4, d_model=16,
        ...                      head_size=8, max_epochs=1, verbose=False, random_state=0)
        >>> est = est.fit(np.sin(np.arange(200) / 5))
        >>> est.forecast_windows(np.zeros((3, 32, 1))).shape
        (3, 4, 1)
        """
        self._check_fitted()
        windows = np.asarray(windows, dtype=np.float64)
        expected = (self.config_.lookback, len(self.channels_))
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(
                f"windows must have shape (n_windows, lookback, channels) = (S, {expected[0]}, "
                f"{expected[1]}), got {windows.shape}"
            )
        if not np.isfinite(windows).all():
            raise ValueError("windows contain NaN or infinite values")
        scaled = (windows - self.scale_mean_) / self.scale_std_
        if getattr(self, "cycle_profile_", None) is None:
            if phases is not None:
                raise ValueError("phases are for a forecaster that removes a cycle; cycle_ is None")
            forecasts = self._forecast_scaled(scaled.astype(np.float32), batch_size)
            return forecasts * self.scale_std_ + self.scale_mean_
        if phases is None:
            raise ValueError(
                f"this forecaster removes a cycle of {self.cycle_} steps: pass phases, the phase "
                "of each window's first sample (est.cycle_phases(first_times))"
            )
        first = np.asarray(phases)
        if first.shape != (len(windows),) or not np.issubdtype(first.dtype, np.integer):
            raise ValueError(
                f"phases must be an integer array of shape ({len(windows)},), one per window, "
                f"got {first.dtype} {first.shape}"
            )
        lookback = self.config_.lookback
        steps = np.arange(lookback + self.config_.horizon)
        profile = self.cycle_profile_[np.mod(first[:, None] + steps, self.cycle_)]
        residual = (scaled - profile[:, :lookback]).astype(np.float32)
        forecasts = self._forecast_scaled(residual, batch_size) + profile[:, lookback:]
        return forecasts * self.scale_std_ + self.scale_mean_

    def _forecast_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Streamable configuration: forecasts (S, horizon, C), scaled space, each from the whole
        scaled history (T_i, C) of a series, the recurrence starting from zeros at its first
        sample (what a stream fed the same samples gives)."""
        model = self.model_.to("cpu").eval()
        out = np.empty((len(histories), self.horizon, len(self.channels_)), dtype=np.float64)
        by_length: dict[int, list[int]] = {}
        for i, h in enumerate(histories):
            by_length.setdefault(len(h), []).append(i)
        with torch.inference_mode():
            for group in by_length.values():
                x = torch.from_numpy(np.stack([histories[i] for i in group]))
                out[group] = model(x).numpy()
        return out

    def _forecast_scaled(self, windows: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Forecasts (S, horizon, C) in the scaled space from windows (S, lookback, C); no
        Trainer."""
        device = inference_device(self.accelerator)
        model = self.model_.to(device).eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(
                    device
                )
                outputs.append(model(x).cpu().numpy())
        self.model_.to("cpu")
        return np.concatenate(outputs, axis=0).astype(np.float64)

    def stream(self, history: Any = "fit", backend: str = "auto"):
        """A :class:`~rwkv_ts.stream.ForecastStream`: feed new samples, read forecasts at once.

        Parameters
        ----------
        history : "fit", None, or frame/Series/array, default "fit"
            ``"fit"`` continues the series seen at ``fit`` (its forecast is ``predict()``);
            ``None`` starts empty (series join with their first samples, or restore a saved state
            with ``load_state``); data starts from that history, as ``predict(y)`` reads it.
        backend : {"auto", "numba", "torch"}, default "auto"
            ``"numba"`` steps the streamable configuration with the torch-free runtime's kernel
            (same results, far less time per sample; see ``docs/streaming.md``); ``"torch"`` with
            the nn modules' ``step``; ``"auto"`` takes numba for the streamable configuration
            and the torch window engine otherwise. A saved stream state loads into a stream of
            the same engine.

        Notes
        -----
        In the streamable configuration (``norm="causal"`` with ``head="last"`` or a number of
        tokens) a new sample costs one recurrent token step; otherwise the stream re-encodes the
        last ``lookback`` samples per update. Either way the forecasts equal ``predict`` on the
        same history. See ``docs/streaming.md``.

        Examples
        --------
        >>> import numpy as np
        >>> from rwkv_ts import RWKVForecaster
        >>> est = RWKVForecaster(horizon=4, lookback=32, patch_len=8, stride=4, d_model=16,
        ...                      head_size=8, max_epochs=1, verbose=False, random_state=0)
        >>> stream = est.fit(np.sin(np.arange(200) / 5)).stream()
        >>> stream.update(np.array([0.1])).shape
        (4, 1)
        """
        from rwkv_ts.stream import ForecastStream

        self._check_fitted()
        return ForecastStream.from_estimator(self, history, backend)

    def save(self, path) -> None:
        """Save the fitted forecaster to one file (safetensors with a JSON header; no pickle).

        See :func:`rwkv_ts.load`.
        """
        from rwkv_ts.persistence import save_forecaster

        self._check_fitted()
        save_forecaster(self, path)

    @property
    def n_parameters_(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


__all__ = ["RWKVForecaster"]
