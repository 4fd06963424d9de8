"""Forecast error metrics and naive baselines."""

from __future__ import annotations

import numpy as np


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"y_true has shape {a.shape} but y_pred has shape {b.shape}")
    if a.size == 0:
        raise ValueError("cannot score empty arrays")
    return a, b


def mse(y_true, y_pred) -> float:
    """Mean squared error.

    Examples
    --------
    >>> mse([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    a, b = _pair(y_true, y_pred)
    return float(np.mean((a - b) ** 2))


def mae(y_true, y_pred) -> float:
    """Mean absolute error.

    Examples
    --------
    >>> mae([1.0, 2.0], [1.0, 4.0])
    1.0
    """
    a, b = _pair(y_true, y_pred)
    return float(np.mean(np.abs(a - b)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error.

    Examples
    --------
    >>> rmse([0.0, 0.0], [3.0, 4.0]) == (12.5) ** 0.5
    True
    """
    return float(np.sqrt(mse(y_true, y_pred)))


def naive_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last value: (T, C) history -> (horizon, C) forecast.

    Examples
    --------
    >>> naive_forecast(np.array([[1.0], [2.0]]), 2).ravel().tolist()
    [2.0, 2.0]
    """
    history = np.asarray(history, dtype=np.float64)
    if history.ndim == 1:
        history = history[:, None]
    return np.repeat(history[-1:], horizon, axis=0)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Repeat the last full season: (T, C) history -> (horizon, C) forecast.

    Examples
    --------
    >>> seasonal_naive_forecast(np.arange(6.0)[:, None], 4, period=3).ravel().tolist()
    [3.0, 4.0, 5.0, 3.0]
    """
    history = np.asarray(history, dtype=np.float64)
    if history.ndim == 1:
        history = history[:, None]
    if not 1 <= period <= len(history):
        raise ValueError(f"period={period} must lie in [1, {len(history)}] (the history's length)")
    season = history[-period:]
    reps = -(-horizon // period)
    return np.tile(season, (reps, 1))[:horizon]


def phm08_score(y_true, y_pred) -> float:
    """The PHM08 challenge score of remaining-useful-life estimates (lower is better).

    With ``d = y_pred - y_true``, each unit adds ``exp(-d / 13) - 1`` when the estimate is early
    (``d < 0``) and ``exp(d / 10) - 1`` when it is late, so late estimates cost more (Saxena et
    al., PHM 2008). The RMSE of RUL estimates is :func:`rmse`.

    Examples
    --------
    >>> round(phm08_score([50.0, 50.0], [40.0, 60.0]), 4)  # 10 early, then 10 late
    2.8764
    """
    a, b = _pair(y_true, y_pred)
    d = b - a
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))
