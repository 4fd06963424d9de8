"""Rolling-origin backtests: forecast from many origins of a held-out part, score by horizon step,
compare with naive baselines from the same origins.

Examples
--------
>>> import numpy as np
>>> from rwkv_ts import RWKVForecaster
>>> from rwkv_ts.backtest import backtest
>>> y = np.sin(np.arange(400) * 2 * np.pi / 24)[:, None]
>>> est = RWKVForecaster(horizon=6, lookback=48, patch_len=8, stride=4, d_model=16, head_size=8,
...                      max_epochs=2, verbose=False, random_state=0).fit(y[:300])
>>> result = backtest(est, y, start=300, step=6, season=24)
>>> result.n_origins, sorted(result.forecasts)
(16, ['RWKV-TS', 'naive', 'seasonal naive'])
>>> result.errors_by_horizon("mae")["RWKV-TS"].shape
(6,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rwkv_ts.data.cycle import phases_ending
from rwkv_ts.metrics import naive_forecast, seasonal_naive_forecast

__all__ = ["BacktestResult", "backtest", "season_of"]

MODEL = "RWKV-TS"

_SEASONS = {"h": 24, "15min": 96, "min": 60, "30min": 48, "D": 7, "B": 5, "W": 52, "M": 12}


def season_of(freq: str | None) -> int | None:
    """A natural season length for a pandas frequency alias (daily cycle for sub-daily data,
    weekly for daily, yearly for weekly and monthly); ``None`` when unknown.

    Examples
    --------
    >>> season_of("h"), season_of("15min"), season_of("W-SAT"), season_of(None)
    (24, 96, 52, None)
    """
    if not freq:
        return None
    base = str(freq).split("-")[0]
    for alias in (base, base.upper(), base.lower()):
        if alias in _SEASONS:
            return _SEASONS[alias]
    if base in ("ME", "MS"):
        return 12
    return None


@dataclass
class BacktestResult:
    """Forecasts and actual values of a rolling-origin backtest.

    Attributes
    ----------
    origins : ndarray of int
        Row positions of the forecast origins (the first forecast step is that row).
    actual : ndarray (n_origins, horizon, C)
    forecasts : dict of str -> ndarray (n_origins, horizon, C)
        The model (``"RWKV-TS"``) and each baseline.
    channels : list of str
    scale : ndarray (C,)
        Per-channel standard deviation of the training data (the estimator's scaler), used by
        ``scaled=True`` metrics, which are comparable with published z-scored results.
    """

    origins: np.ndarray
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]
    channels: list[str]
    scale: np.ndarray = field(repr=False)

    @property
    def n_origins(self) -> int:
        return len(self.origins)

    @property
    def horizon(self) -> int:
        return self.actual.shape[1]

    def _errors(self, name: str, scaled: bool) -> np.ndarray:
        err = self.forecasts[name] - self.actual
        return err / self.scale if scaled else err

    def metrics(self, scaled: bool = False) -> dict[str, dict[str, float]]:
        """MSE and MAE over every origin, step and channel, per method."""
        out = {}
        for name in self.forecasts:
            err = self._errors(name, scaled)
            out[name] = {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}
        return out

    def errors_by_horizon(self, metric: str = "mae", scaled: bool = False) -> dict[str, np.ndarray]:
        """Per method, the error at each horizon step (mean over origins and channels)."""
        if metric not in ("mae", "mse", "rmse"):
            raise ValueError(f"metric must be 'mae', 'mse' or 'rmse', got {metric!r}")
        out = {}
        for name in self.forecasts:
            err = self._errors(name, scaled)
            if metric == "mae":
                out[name] = np.mean(np.abs(err), axis=(0, 2))
            else:
                mse = np.mean(err**2, axis=(0, 2))
                out[name] = mse if metric == "mse" else np.sqrt(mse)
        return out


def _values(estimator: Any, y: Any) -> np.ndarray:
    """(T, C) float64 values of the estimator's channels from a wide frame or an array."""
    channels = list(estimator.channels_)
    if hasattr(y, "columns"):
        missing = [c for c in channels if c not in [str(col) for col in y.columns]]
        if missing:
            raise ValueError(f"the data has no column(s) {missing} the estimator was trained on")
        by_name = {str(col): col for col in y.columns}
        arr = np.column_stack([np.asarray(y[by_name[c]], dtype=np.float64) for c in channels])
    else:
        arr = np.asarray(y, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(channels):
            raise ValueError(
                f"y must have shape (T, {len(channels)}) for the estimator's channels "
                f"{channels}, got {np.shape(y)}"
            )
    if not np.isfinite(arr).all():
        raise ValueError("the data contain NaN or infinite values; impute them first")
    return arr


def backtest(
    estimator: Any,
    y: Any,
    *,
    start: int,
    end: int | None = None,
    step: int = 1,
    season: int | None = None,
    baselines: bool = True,
) -> BacktestResult:
    """Forecast from every ``step``-th origin of ``y[start:end]`` and keep the actual values.

    Each origin ``o`` forecasts rows ``o .. o + horizon - 1`` from the rows before it, all inside
    ``[start, end)``; nothing at or after an origin is read for its forecast. With the windowed
    configuration the model reads the last ``lookback`` rows; with the streamable one
    (``norm="causal"`` and a bounded head) it reads the whole history through its stream, as
    ``predict`` does.

    Parameters
    ----------
    estimator : fitted RWKVForecaster
    y : wide pandas/polars frame with the estimator's channel columns, or array (T, C)
        One series, history included (``start`` must leave ``lookback`` rows before it).
    start, end : int
        The part forecast: origins run from ``start`` to ``end - horizon``; ``end`` defaults to
        the length of ``y``.
    step : int, default 1
        Distance between origins.
    season : int, optional
        Season length of the seasonal-naive baseline; without it only the naive baseline runs.
    baselines : bool, default True
        Also forecast with the naive (last value) and seasonal-naive baselines.

    Returns
    -------
    BacktestResult
    """
    values = _values(estimator, y)
    horizon = estimator.config_.horizon
    lookback = estimator.config_.lookback
    end = len(values) if end is None else int(end)
    if not lookback <= start <= end - horizon:
        raise ValueError(
            f"start={start} must leave lookback={lookback} rows before it and horizon={horizon} "
            f"rows before end={end}"
        )
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    origins = np.arange(start, end - horizon + 1, step)
    actual = np.stack([values[o : o + horizon] for o in origins])
    forecasts = {MODEL: _model_forecasts(estimator, y, values, origins)}
    if baselines:
        forecasts["naive"] = np.stack([naive_forecast(values[:o], horizon) for o in origins])
        if season is not None:
            if not 1 <= season <= start:
                raise ValueError(f"season={season} must lie in [1, start={start}]")
            forecasts["seasonal naive"] = np.stack(
                [seasonal_naive_forecast(values[:o], horizon, season) for o in origins]
            )
    return BacktestResult(
        origins=origins,
        actual=actual,
        forecasts=forecasts,
        channels=list(estimator.channels_),
        scale=np.asarray(estimator.scale_std_, dtype=np.float64),
    )


def _model_forecasts(estimator: Any, y: Any, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    if not getattr(estimator.config_, "streamable", False):
        lookback = estimator.config_.lookback
        windows = np.stack([values[o - lookback : o] for o in origins])
        if getattr(estimator, "cycle_", None) is None:
            return estimator.forecast_windows(windows)
        # the phase of every window's first row, from the rows' times as predict reads them
        panel = estimator._panel(_head(estimator, y, values, len(values)), min_length=1)
        rows = phases_ending(panel.last_times[0], panel.freq, len(values), estimator.cycle_)
        return estimator.forecast_windows(windows, phases=rows[origins - lookback])
    # The streamable model forecasts from the whole history: feed it once, in order, starting
    # from the input's own layout so that the stream knows its time axis.
    first = int(origins[0])
    stream = estimator.stream(_head(estimator, y, values, first))
    out = [stream.forecast_array()[0]]
    fed = first
    for o in origins[1:]:
        out.append(stream.update_array(values[None, fed:o])[0])
        fed = int(o)
    return np.stack(out)


def _head(estimator: Any, y: Any, values: np.ndarray, n: int) -> Any:
    """The first ``n`` rows of ``y`` with only its time column and the estimator's channels."""
    if not hasattr(y, "columns"):
        return values[:n]
    channels = set(estimator.channels_)

    def is_time(col: Any) -> bool:
        if col == estimator.time_col:
            return True
        dtype = y[col].dtype
        if hasattr(dtype, "is_temporal"):  # polars
            return dtype.is_temporal()
        import pandas as pd

        return pd.api.types.is_datetime64_any_dtype(dtype)

    keep = [c for c in y.columns if str(c) in channels or is_time(c)]
    if hasattr(y, "iloc"):
        return y[keep].iloc[:n]
    return y.select(keep).head(n)
