"""``RWKVForecaster``: a scikit-learn-style forecaster on pandas/polars frames and arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from rwkv_ts.data import Panel, WindowDataset, check_same_channels, chronological_split, to_panel
from rwkv_ts.data.frames import forecast_to_frame
from rwkv_ts.data.serialize import panel_tail
from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel, dominant_periods, periods_to_distances
from rwkv_ts.training import TrainingOptions, train_model


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


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
    shift_distances : tuple of int or "auto", default (1, 2, 4)
        Token distances of the multi-scale token shift; ``(1,)`` is plain RWKV; ``"auto"`` takes the
        series' three dominant periods from an FFT of the training data (converted to tokens) plus
        distance 1.
    tcn_dilations : tuple of int, default (1, 2, 4)
        Dilations of the causal TCN branch fused with the time-mix; ``()`` switches it off.
    decay : {"data", "static"}, default "data"
        RWKV-6 data-dependent decay or RWKV-5 static decay.
    norm : {"instance", "causal"}, default "instance"
        Instance (RevIN) normalisation of each window, or causal trailing statistics (streams in
        O(1)).
    head : {"flatten", "last"} or int, default "flatten"
        Read every token of the lookback, only the last state, or the last ``head`` tokens.
    dropout : float, default 0.1
    max_epochs, batch_size, learning_rate, weight_decay, patience : training settings
        AdamW with a warm-up and cosine decay; early stopping after ``patience`` epochs without
        improvement of the validation loss, restoring the best epoch's weights.
    val_fraction : float, default 0.2
        Share of each series' windows, at its end, used for validation (chronological, no leakage).
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

    Attributes
    ----------
    model_ : RWKVTSModel
        The trained torch module.
    config_ : RWKVTSConfig
    channels_ : list of str
    scale_mean_, scale_std_ : ndarray of shape (n_channels,)
        Per-channel standardisation fitted on the training data.
    history_ : list of dict
        Per-epoch training and validation loss.
    best_epoch_ : int or None

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
        dropout: float = 0.1,
        max_epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 3,
        val_fraction: float = 0.2,
        impute: str | None = None,
        time_col: str | None = None,
        id_col: str | None = None,
        value_cols: list[str] | None = None,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = True,
        log_dir: str | None = None,
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
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.impute = impute
        self.time_col = time_col
        self.id_col = id_col
        self.value_cols = value_cols
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir

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
        return tuple(int(d) for d in self.shift_distances)

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
            tcn_dilations=tuple(self.tcn_dilations),
            norm=self.norm,
            head_tokens=self._head_tokens(n_patches),
            dropout=self.dropout,
        )

    def _check_params(self) -> None:
        for name in ("horizon", "lookback", "max_epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        _check_choice("norm", self.norm, ("instance", "causal"))
        _check_choice("decay", self.decay, ("data", "static"))

    def _device(self) -> torch.device:
        wants_gpu = self.accelerator in ("gpu", "cuda") or (
            self.accelerator == "auto" and torch.cuda.is_available()
        )
        return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")

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
        stacked = np.concatenate(panel.values, axis=0).astype(np.float64)
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        self.scale_mean_ = mean
        self.scale_std_ = np.where(std > 1e-12, std, 1.0)
        scaled = self._scale(panel.values)

        n_patches = (self.lookback - self.patch_len) // self.stride + 1
        config = self._build_config(self._resolve_distances(scaled, n_patches))
        train_arrays, val_arrays = chronological_split(
            scaled, self.val_fraction, self.lookback, self.horizon
        )
        train_data = WindowDataset(train_arrays, self.lookback, self.horizon)
        val_data = WindowDataset(val_arrays, self.lookback, self.horizon) if val_arrays else None

        seed = self.random_state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else torch.seed())
            model = RWKVTSModel(config)
            result = train_model(
                model,
                train_data,
                val_data,
                TrainingOptions(
                    max_epochs=self.max_epochs,
                    batch_size=self.batch_size,
                    learning_rate=self.learning_rate,
                    weight_decay=self.weight_decay,
                    patience=self.patience,
                    accelerator=self.accelerator,
                    devices=self.devices,
                    verbose=self.verbose,
                    random_state=seed,
                    log_dir=self.log_dir,
                ),
            )
        model.eval()
        self.model_ = model
        self.config_ = config
        self.channels_ = list(panel.channels)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = result.n_epochs
        self.last_panel_ = panel_tail(panel, self.lookback)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                "this RWKVForecaster is not fitted yet; call fit(y) before predict or save"
            )

    def predict(self, y: Any = None) -> Any:
        """Forecast the next ``horizon`` steps.

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
        windows = np.stack([v[-self.lookback :] for v in self._scale(panel.values)])
        forecasts = self._forecast_scaled(windows)
        forecasts = forecasts * self.scale_std_ + self.scale_mean_
        return forecast_to_frame(list(forecasts), panel, self.horizon)

    def forecast_windows(self, windows: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Forecast from many windows at once, in data units: (S, lookback, C) -> (S, horizon, C).

        A fast path for backtests: no frame conversion, no timestamps. Channels are in ``channels_``
        order.

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
        scaled = ((windows - self.scale_mean_) / self.scale_std_).astype(np.float32)
        return self._forecast_scaled(scaled, batch_size) * self.scale_std_ + self.scale_mean_

    def _forecast_scaled(self, windows: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Forecasts (S, horizon, C) in the scaled space from windows (S, lookback, C); no
        Trainer."""
        device = self._device()
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
