"""Seasonal cycle removal: the per-channel mean profile of a cycle of ``period`` steps.

The forecaster subtracts the profile (estimated on the training part, in the scaled space) from
every sample before the model reads it and adds it back to the forecasts, so the model learns the
residual. This is residual cycle forecasting (CycleNet, Lin et al., NeurIPS 2024) with the cycle
estimated by phase means instead of learned. A sample's phase is its step index modulo
``period``: for datetimes, whole steps of the frequency since 1970-01-01 in wall-clock time (so a
daily cycle of hourly data is the hour of the day), for integer time the time divided by its step,
for arrays the position in the array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_DAY_NS = 86_400_000_000_000


def step_nanoseconds(freq: Any) -> int | None:
    """Length of a fixed-duration pandas step in nanoseconds; ``None`` for calendar steps (months,
    business days) and for integer time."""
    if freq is None or isinstance(freq, int | np.integer):
        return None
    if isinstance(freq, pd.offsets.Day):
        return freq.n * _DAY_NS
    if isinstance(freq, pd.offsets.Week) and freq.weekday is None:
        return freq.n * 7 * _DAY_NS
    try:
        nanos = pd.Timedelta(freq).value
    except (TypeError, ValueError):
        return None
    return int(nanos) if nanos > 0 else None


def resolve_cycle(cycle: int | str | None, freq: Any) -> int | None:
    """The period in steps that ``cycle`` asks for on data of step ``freq``.

    ``"auto"``: one day of steps for a fixed step shorter than a day that divides it (24 for
    hourly data, 96 for 15-minute data), a week (7) for daily data, else no cycle. An integer
    ``>= 2`` is taken as given; ``None`` means no cycle.

    Examples
    --------
    >>> import pandas as pd
    >>> resolve_cycle("auto", pd.tseries.frequencies.to_offset("15min"))
    96
    >>> resolve_cycle("auto", 1) is None
    True
    >>> resolve_cycle(12, 1)
    12
    """
    if cycle is None:
        return None
    if isinstance(cycle, str):
        if cycle != "auto":
            raise ValueError(f"cycle must be None, 'auto' or an integer >= 2, got {cycle!r}")
        nanos = step_nanoseconds(freq)
        if nanos is None:
            return None
        if nanos < _DAY_NS and _DAY_NS % nanos == 0:
            return _DAY_NS // nanos
        return 7 if nanos == _DAY_NS else None
    if isinstance(cycle, bool) or not isinstance(cycle, int | np.integer) or cycle < 2:
        raise ValueError(f"cycle must be None, 'auto' or an integer >= 2, got {cycle!r}")
    if (
        freq is not None
        and not isinstance(freq, int | np.integer)
        and step_nanoseconds(freq) is None
    ):
        raise ValueError(
            f"cycle={cycle} needs a time step of fixed length (or integer time) to place each "
            f"sample in the cycle; the data's step is {freq!r}"
        )
    return int(cycle)


def step_index(time: Any, freq: Any) -> int:
    """Whole steps of ``freq`` from the origin to ``time`` (see the module's docstring)."""
    return int(step_indices([time], freq)[0])


def step_indices(times: Any, freq: Any) -> np.ndarray:
    """:func:`step_index` of many times at once (int64 array), e.g. a stream's many series."""
    if isinstance(freq, int | np.integer) or freq is None:
        return np.asarray(times, dtype=np.int64) // int(freq or 1)
    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_localize(None)  # wall-clock time: a daily cycle follows local hours
    return index.as_unit("ns").asi8 // step_nanoseconds(freq)


def phases_ending(last_time: Any, freq: Any, n: int, period: int) -> np.ndarray:
    """Phases (n,) of the ``n`` samples whose last one is at ``last_time``."""
    end = step_index(last_time, freq)
    return np.mod(np.arange(end - n + 1, end + 1, dtype=np.int64), period)


def phases_after(last_time: Any, freq: Any, n: int, period: int) -> np.ndarray:
    """Phases (n,) of the ``n`` steps after ``last_time``."""
    end = step_index(last_time, freq)
    return np.mod(np.arange(end + 1, end + n + 1, dtype=np.int64), period)


def fit_profile(series: list[np.ndarray], phases: list[np.ndarray], period: int) -> np.ndarray:
    """Mean of every phase and channel over the samples of ``series`` ((T_i, C) each, with their
    phases (T_i,)): an array (period, C); phases without a sample get 0."""
    n_channels = series[0].shape[1]
    sums = np.zeros((period, n_channels))
    counts = np.zeros(period)
    for values, phase in zip(series, phases, strict=True):
        np.add.at(sums, phase, np.asarray(values, dtype=np.float64))
        counts += np.bincount(phase, minlength=period)
    return sums / np.maximum(counts, 1)[:, None]


__all__ = [
    "fit_profile",
    "phases_after",
    "phases_ending",
    "resolve_cycle",
    "step_index",
    "step_indices",
    "step_nanoseconds",
]
