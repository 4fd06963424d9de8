"""Checks on time-series inputs, with errors that name the problem.

Every check raises :class:`DataValidationError` (a :class:`ValueError`) whose message names the
column, series, timestamp, shape or value at fault, or :class:`DataTypeError` (both a
:class:`DataValidationError` and a :class:`TypeError`) when a column or array has the wrong dtype.

The functions here work on the internal representation built by :mod:`rwkv_ts.data.frames`:
the rows of all series grouped by series (stable order, the rows of one series in input order),
``starts``/``counts`` delimiting each series, times as ``datetime64`` (UTC instants for
timezone-aware data) or ``int64``, and the row position each grouped row had in the input.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

if TYPE_CHECKING:
    from rwkv_ts.data.frames import Panel

__all__ = [
    "IMPUTE_METHODS",
    "DataTooLargeError",
    "DataTypeError",
    "DataValidationError",
    "check_same_channels",
]

#: Accepted values of the ``impute`` argument of :func:`rwkv_ts.data.to_panel`.
IMPUTE_METHODS = ("linear", "ffill", "zero")

_DAY = np.timedelta64(1, "D")


class DataValidationError(ValueError):
    """Input data that cannot be used as given; the message says what and where."""


class DataTypeError(DataValidationError, TypeError):
    """A column or array whose dtype cannot be used (non-numeric values, non-time time column)."""


class DataTooLargeError(DataValidationError, MemoryError):
    """Input (with the settings given) that would need more memory than the machine has free;
    raised before the work starts, the message says how much and what to lower."""


# ----------------------------------------------------------------------------------------------
# formatting helpers
# ----------------------------------------------------------------------------------------------


def format_list(items: Sequence[Any], limit: int = 20) -> str:
    """Format ``items`` as a bracketed list of reprs, eliding after ``limit`` items.

    Parameters
    ----------
    items : sequence
        Items to show.
    limit : int, default 20
        Maximum number of items shown.

    Returns
    -------
    str
        For example ``"['a', 'b', ... (30 in all)]"``.
    """
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return f"[{shown}]"


def format_delta(delta: Any, time_kind: str) -> str:
    """Format a time step for a message (``"1h"``-like for datetimes, the integer otherwise).

    Parameters
    ----------
    delta : numpy.timedelta64 or int
        The step.
    time_kind : {"datetime", "integer"}
        Kind of the time axis.

    Returns
    -------
    str
        A readable step, e.g. ``"7 days"``, ``"1h"``, ``"15min"`` or ``"3"``.
    """
    if time_kind == "integer":
        return str(int(delta))
    td = pd.Timedelta(delta)
    if td % pd.Timedelta(days=1) == pd.Timedelta(0):
        days = td.days
        return f"{days} day" if days == 1 else f"{days} days"
    text = to_offset(td).freqstr
    return text if text[0].isdigit() else f"1{text}"


@dataclass
class TimeContext:
    """How series, timestamps and sorting advice are named in error messages.

    Parameters
    ----------
    series_ids : sequence or None
        Series identifiers by series code; ``None`` for a single series.
    time_kind : {"datetime", "integer"}
        Kind of the time axis.
    tz : tzinfo, str or None
        Time zone of timezone-aware timestamps (the stored times are then UTC instants).
    time_label : str
        How the time axis is named, e.g. ``"time column 'ds'"`` or ``"the index"``.
    sort_hint : str
        A suggestion of how to sort the input, e.g. ``"df.sort_values(['unique_id', 'ds'])"``.
    """

    series_ids: Sequence[Hashable] | None
    time_kind: str
    tz: Any = None
    time_label: str = "time"
    sort_hint: str = ""

    def series(self, code: int) -> str:
        """Name the series with code ``code``."""
        if self.series_ids is None:
            return "the series"
        return f"series {self.series_ids[int(code)]!r}"

    def timestamp(self, value: Any) -> str:
        """Format a stored time value as the user sees it (local time for tz-aware data)."""
        if self.time_kind == "integer":
            return str(int(value))
        ts = pd.Timestamp(value)
        if self.tz is not None:
            ts = ts.tz_localize("UTC").tz_convert(self.tz)
        return str(ts)

    def local_index(self, times: np.ndarray) -> pd.DatetimeIndex:
        """Turn stored ``datetime64`` values into a (timezone-aware where needed) index."""
        idx = pd.DatetimeIndex(times)
        if self.tz is not None:
            idx = idx.tz_localize("UTC").tz_convert(self.tz)
        return idx


# ----------------------------------------------------------------------------------------------
# argument and structure checks
# ----------------------------------------------------------------------------------------------


def check_impute(impute: str | None) -> None:
    """Check the ``impute`` argument.

    Parameters
    ----------
    impute : {"linear", "ffill", "zero"} or None
        Imputation method.

    Raises
    ------
    DataValidationError
        If ``impute`` is not one of the accepted values.
    """
    if impute is not None and impute not in IMPUTE_METHODS:
        raise DataValidationError(
            f"impute={impute!r} is not supported; use one of {format_list(IMPUTE_METHODS)} "
            "or None (missing values are then an error)"
        )


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an integer of at least ``minimum`` and return it as ``int``.

    Parameters
    ----------
    value : Any
        Value to check.
    name : str
        Argument name used in the message.
    minimum : int, default 1
        Smallest accepted value.

    Returns
    -------
    int
        ``value`` as a Python integer.

    Raises
    ------
    DataTypeError
        If ``value`` is not an integer.
    DataValidationError
        If ``value`` is smaller than ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise DataValidationError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_columns(requested: Sequence[Hashable], available: Sequence[Hashable], role: str) -> None:
    """Check that every requested column exists.

    Parameters
    ----------
    requested : sequence of hashable
        Requested column names.
    available : sequence of hashable
        Columns of the frame.
    role : str
        What the columns are for, e.g. ``"value_cols"``, used in the message.

    Raises
    ------
    DataValidationError
        Naming the unknown columns and listing the available ones.
    """
    avail = set(available)
    unknown = [c for c in requested if c not in avail]
    if unknown:
        raise DataValidationError(
            f"unknown column(s) {format_list(unknown)} in {role}; "
            f"available columns: {format_list(list(available), limit=50)}"
        )


def check_array_shape(shape: tuple[int, ...]) -> None:
    """Check the shape of an array input: ``(T,)`` or ``(T, C)`` with ``T, C > 0``.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array.

    Raises
    ------
    DataValidationError
        For 0-D or 3-D+ arrays and for empty arrays.
    """
    if len(shape) not in (1, 2):
        raise DataValidationError(
            f"got a {len(shape)}-D array of shape {shape}; accepted shapes are (T,) for one "
            "channel or (T, C) for C channels (time along the first axis). For several series, "
            "pass a long data frame (series id, time, value) instead of a 3-D array"
        )
    if shape[0] == 0 or (len(shape) == 2 and shape[1] == 0):
        raise DataValidationError(f"empty input: the array has shape {shape}")


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (``MemAvailable`` on Linux), or ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(nbytes: float, what: str, advice: str) -> None:
    """Raise :class:`DataTooLargeError` when ``nbytes`` exceed the memory free now.

    An estimate made before the big allocations so that too large an input gives a clear error,
    not an out-of-memory kill half-way through. Nothing is checked when the free memory cannot be
    read.

    Parameters
    ----------
    nbytes : float
        Estimated peak bytes of the work about to start.
    what : str
        The work, for the message ("training on 3 series of 10,000,000 samples").
    advice : str
        Which settings or input to reduce.

    Examples
    --------
    >>> check_memory(1024, "a tiny job", "nothing")
    """
    free = available_memory()
    if free is None or nbytes <= free:
        return
    raise DataTooLargeError(
        f"{what} needs about {nbytes / 2**30:.1f} GiB of memory, more than the "
        f"{free / 2**30:.1f} GiB free; {advice}"
    )


def as_real_array(values: Any, what: str) -> np.ndarray:
    """``values`` as a float64 array, or a clear error for values that are not real numbers.

    Integers, floats and object arrays holding only numbers are accepted; bool, complex, string,
    bytes, datetime and timedelta values and ragged nested lists are rejected (``np.asarray``
    with ``dtype=float`` would turn bools into 0/1 silently and fail on the rest with messages
    that do not say where).

    Parameters
    ----------
    values : array-like
    what : str
        What to call the values in messages ("series 'a'", "samples").

    Raises
    ------
    DataTypeError
        Values of a non-numeric type; the message names the dtype or the first bad value.
    DataValidationError
        A ragged nested list.

    Examples
    --------
    >>> as_real_array([1, 2.5], "samples")
    array([1. , 2.5])
    >>> try:
    ...     as_real_array([True, False], "samples")
    ... except DataTypeError as exc:
    ...     print(str(exc)[:24])
    samples have dtype bool;
    """
    try:
        arr = np.asarray(values)
    except ValueError:
        raise DataValidationError(
            f"{what} are a ragged nested sequence; give an array of shape (k,) or (k, C)"
        ) from None
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O":
        flat = arr.ravel()
        for i, v in enumerate(flat):
            if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
                raise DataTypeError(
                    f"{what} hold the non-numeric value {v!r} ({type(v).__name__}) at flat "
                    f"position {i}; expected real numbers"
                )
            if isinstance(v, complex | np.complexfloating):
                raise DataTypeError(f"{what} hold the complex value {v!r} at flat position {i}")
        return arr.astype(np.float64)
    raise DataTypeError(
        f"{what} have dtype {arr.dtype}; expected real numbers (integers or floats; not bool, "
        "complex, string or datetime)"
    )


# ----------------------------------------------------------------------------------------------
# time axis
# ----------------------------------------------------------------------------------------------


def _within_mask(n_rows: int, starts: np.ndarray) -> np.ndarray:
    """Mask over ``np.diff`` of the grouped rows: True where both rows belong to one series."""
    within = np.ones(max(n_rows - 1, 0), dtype=bool)
    boundaries = starts[1:] - 1
    within[boundaries[boundaries >= 0]] = False
    return within


def check_time_order(
    times: np.ndarray,
    starts: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    ctx: TimeContext,
) -> None:
    """Check that the timestamps of every series strictly increase in input order.

    Parameters
    ----------
    times : numpy.ndarray
        Grouped times (``datetime64`` or ``int64``).
    starts : numpy.ndarray
        First grouped row of each series.
    codes : numpy.ndarray
        Series code of each grouped row.
    rows : numpy.ndarray
        Input row position of each grouped row.
    ctx : TimeContext
        Naming context for the message.

    Raises
    ------
    DataValidationError
        If a series is not sorted (the frame is never sorted silently) or has a duplicated
        timestamp; the message names the series, the timestamps and their rows.
    """
    if len(times) < 2:
        return
    d = np.diff(times)
    within = _within_mask(len(times), starts)
    zero = np.zeros((), dtype=d.dtype)
    neg = within & (d < zero)
    if neg.any():
        idx = np.flatnonzero(neg)
        j = idx[np.argmin(rows[idx + 1])]
        hint = f" (e.g. {ctx.sort_hint})" if ctx.sort_hint else ""
        raise DataValidationError(
            f"timestamps are not sorted in {ctx.series(codes[j])}: "
            f"{ctx.timestamp(times[j])} (row {rows[j]}) is followed by "
            f"{ctx.timestamp(times[j + 1])} (row {rows[j + 1]}) in the {ctx.time_label}; "
            f"{int(neg.sum())} decreasing step(s) in all. Sort the data by time first{hint}; "
            "it is not sorted silently"
        )
    dup = within & (d == zero)
    if dup.any():
        idx = np.flatnonzero(dup)
        j = idx[np.argmin(rows[idx + 1])]
        raise DataValidationError(
            f"duplicated timestamp {ctx.timestamp(times[j])} in {ctx.series(codes[j])} "
            f"(rows {rows[j]} and {rows[j + 1]}) in the {ctx.time_label}; {int(dup.sum())} "
            "duplicated row(s) in all. Aggregate or drop the duplicates first"
        )


def _calendar_freq(index: pd.DatetimeIndex) -> pd.DateOffset | None:
    """``pd.infer_freq`` as an offset (``None`` if irregular or too short)."""
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(index)
    return None if freq is None else to_offset(freq)


def _short_calendar_offset(
    step: np.timedelta64, times: np.ndarray, within: np.ndarray, ctx: TimeContext
) -> pd.DateOffset | None:
    """A month/quarter/year offset that explains a constant step of two-point series.

    A constant step of 28-31 days between month ends (say) can only come from series with two
    observations (longer month-end series have unequal steps); such a step is taken as monthly
    rather than as a fixed number of days. Likewise for quarters (89-92 days) and years (365-366).
    """
    days = step / _DAY
    first = ctx.local_index(times[:1])[0]
    if 28 <= days <= 31:
        candidates = [pd.offsets.MonthEnd(), pd.offsets.MonthBegin()]
    elif 89 <= days <= 92:
        month = (first.month - 1) % 3 + 1
        candidates = [
            pd.offsets.QuarterEnd(startingMonth=month),
            pd.offsets.QuarterBegin(startingMonth=month),
        ]
    elif 365 <= days <= 366:
        candidates = [
            pd.offsets.YearEnd(month=first.month),
            pd.offsets.YearBegin(month=first.month),
        ]
    else:
        return None
    local = ctx.local_index(times)
    for off in candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shifted = local[:-1] + off
        if bool(np.all(np.asarray(shifted == local[1:])[within])) and off.is_on_offset(first):
            return off
    return None


def _tick_offset(
    step: np.timedelta64, times: np.ndarray, within: np.ndarray, ctx: TimeContext
) -> pd.DateOffset:
    """The offset of a constant step.

    Whole days become ``Day(n)``: for tz-aware data a calendar day (same wall-clock time after a
    daylight saving change) when the wall-clock times agree with it, else the fixed duration.
    """
    if step % _DAY == np.timedelta64(0, "D"):
        day = pd.offsets.Day(int(step // _DAY))
        if ctx.tz is None:
            return day
        local = ctx.local_index(times)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shifted = local[:-1] + day
        if bool(np.all(np.asarray(shifted == local[1:])[within])):
            return day
    return to_offset(pd.Timedelta(step))


def infer_frequency(
    times: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    ctx: TimeContext,
    declared: pd.DateOffset | None = None,
) -> pd.DateOffset | int | None:
    """Infer the common regular step of all series.

    A series is regular when all its steps are equal (any unit), or, for datetimes, when pandas
    recognises a calendar frequency (month ends, business days, calendar days across a daylight
    saving change, ...). All series must share one step.

    Parameters
    ----------
    times : numpy.ndarray
        Grouped, strictly increasing (per series) times, ``datetime64`` or ``int64``.
    starts, counts : numpy.ndarray
        First grouped row and number of rows of each series.
    ctx : TimeContext
        Naming context for messages.
    declared : pandas.DateOffset, optional
        A frequency declared by the input (``DatetimeIndex.freq``) for a single series; used as is.

    Returns
    -------
    pandas.DateOffset or int or None
        The step: an offset for datetimes, an ``int`` for integer times, ``None`` when no series
        has two observations.

    Raises
    ------
    DataValidationError
        If a series has irregular steps (gaps or mixed frequencies; the series and two different
        steps are named) or the series have different frequencies.
    """
    if declared is not None and len(starts) == 1:
        return declared
    n_series = len(starts)
    n_diffs = counts - 1
    within = _within_mask(len(times), starts)
    d = np.diff(times)[within]
    if len(d) == 0:
        return None
    first_pos = np.cumsum(n_diffs) - n_diffs
    multi = n_diffs > 0
    first = np.zeros(n_series, dtype=d.dtype)
    first[multi] = d[first_pos[multi]]
    seg = np.repeat(np.arange(n_series), n_diffs)
    mismatch = d != np.repeat(first, n_diffs)
    irregular = np.unique(seg[mismatch])

    def irregular_error(code: int) -> DataValidationError:
        sl = slice(first_pos[code], first_pos[code] + n_diffs[code])
        ds = d[sl]
        k = int(np.flatnonzero(ds != ds[0])[0])
        row = starts[code] + k + 1
        return DataValidationError(
            f"irregular time steps in {ctx.series(code)}: found steps "
            f"{format_delta(ds[0], ctx.time_kind)} and {format_delta(ds[k], ctx.time_kind)} "
            f"(the latter from {ctx.timestamp(times[row - 1])} to {ctx.timestamp(times[row])}) "
            f"in the {ctx.time_label}. Gaps or mixed frequencies are not supported: resample or "
            "reindex the series to a regular grid first"
        )

    def differing_error(code_a: int, step_a: str, code_b: int, step_b: str) -> DataValidationError:
        return DataValidationError(
            f"the series have different frequencies: {ctx.series(code_a)} has step {step_a} "
            f"while {ctx.series(code_b)} has step {step_b}; all series of one frame must share "
            "a frequency (fit separate models or resample)"
        )

    if ctx.time_kind == "integer":
        if len(irregular):
            raise irregular_error(int(irregular[0]))
        return _common_step(first, multi, ctx, differing_error)

    if len(irregular) == 0:
        step = _common_step(first, multi, ctx, differing_error)
        if step is None:
            return None
        return _short_calendar_offset(step, times, within, ctx) or _tick_offset(
            step, times, within, ctx
        )

    def series_index(code: int) -> pd.DatetimeIndex:
        return ctx.local_index(times[starts[code] : starts[code] + counts[code]])

    code0 = int(irregular[0])
    off = _calendar_freq(series_index(code0))
    if off is None:
        raise irregular_error(code0)
    # every step of every series must be that calendar step (vectorised over all rows)
    local = ctx.local_index(times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shifted = local[:-1] + off
    bad = np.asarray(shifted != local[1:])[within]
    if bad.any():
        code = int(seg[int(np.argmax(bad))])
        if code in irregular:
            other = _calendar_freq(series_index(code))
            if other is None:
                raise irregular_error(code)
            step = other.freqstr
        else:
            step = format_delta(first[code], ctx.time_kind)
        raise differing_error(code, step, code0, off.freqstr)
    return off


def _common_step(
    first: np.ndarray, mask: np.ndarray, ctx: TimeContext, differing_error: Any
) -> Any:
    """The single step shared by the series in ``mask`` (``None`` if none)."""
    codes = np.flatnonzero(mask)
    if len(codes) == 0:
        return None
    steps = first[codes]
    other = np.flatnonzero(steps != steps[0])
    if len(other):
        b = codes[other[0]]
        raise differing_error(
            int(codes[0]),
            format_delta(steps[0], ctx.time_kind),
            int(b),
            format_delta(first[b], ctx.time_kind),
        )
    return int(steps[0]) if ctx.time_kind == "integer" else steps[0]


# ----------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------


def check_finite(
    values: np.ndarray,
    columns: Sequence[Hashable],
    times: np.ndarray,
    codes: np.ndarray | None,
    ctx: TimeContext,
    impute: str | None,
) -> bool:
    """Check for infinite and missing values (input row order).

    Parameters
    ----------
    values : numpy.ndarray
        Values of shape ``(N, C)``, rows in input order, missing values as NaN.
    columns : sequence of hashable
        Column name of each of the ``C`` columns.
    times : numpy.ndarray
        Time of each row.
    codes : numpy.ndarray or None
        Series code of each row (``None`` for a single series).
    ctx : TimeContext
        Naming context for messages.
    impute : str or None
        Imputation method; when ``None`` missing values are an error.

    Returns
    -------
    bool
        Whether there are missing values (to be imputed).

    Raises
    ------
    DataValidationError
        For any ±inf value (always), and for NaN/null values when ``impute`` is None; the
        message names each offending column, its count, and the first row, series and timestamp.
    """
    if not np.issubdtype(values.dtype, np.floating):
        return False
    for kind, mask in (("infinite", np.isinf(values)), ("missing (NaN/null)", np.isnan(values))):
        if not mask.any():
            continue
        if kind.startswith("missing") and impute is not None:
            return True
        parts = []
        for c in np.flatnonzero(mask.any(axis=0)):
            col_mask = mask[:, c]
            row = int(np.argmax(col_mask))
            where = f"time {ctx.timestamp(times[row])}"
            if codes is not None:
                where += f", {ctx.series(codes[row])}"
            where = f"row {row} ({where})"
            value = f" ({values[row, c]})" if kind == "infinite" else ""
            parts.append(
                f"column {columns[c]!r} has {int(col_mask.sum())} {kind} value(s), "
                f"first{value} at {where}"
            )
        advice = (
            "Infinite values are never accepted: replace or drop them"
            if kind == "infinite"
            else f"Pass impute= one of {format_list(IMPUTE_METHODS)} or fill them first"
        )
        raise DataValidationError("; ".join(parts) + f". {advice}")
    return False


def check_float32_range(values: np.ndarray, columns: Sequence[Hashable]) -> None:
    """Check that no finite value overflowed when cast to float32.

    Parameters
    ----------
    values : numpy.ndarray
        The float32 values of shape ``(N, C)``.
    columns : sequence of hashable
        Column names.

    Raises
    ------
    DataValidationError
        Naming the columns with values beyond the float32 range (about ±3.4e38).
    """
    bad = np.isinf(values)
    if bad.any():
        cols = [columns[c] for c in np.flatnonzero(bad.any(axis=0))]
        raise DataValidationError(
            f"column(s) {format_list(cols)} hold values beyond the float32 range (about ±3.4e38); "
            "rescale them first"
        )


def impute_missing(
    values: np.ndarray,
    times: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    method: str,
    columns: Sequence[Hashable],
    ctx: TimeContext,
) -> None:
    """Fill NaN values of grouped rows in place, series by series.

    Methods:

    * ``"linear"``: linear interpolation in time (the timestamps, not the row numbers, are the
      abscissa) between the surrounding observed values; leading missing values take the first
      observed value and trailing ones the last (back fill / forward fill at the ends).
    * ``"ffill"``: each missing value takes the last observed value before it; leading missing
      values, which have none, take the first observed value (back fill).
    * ``"zero"``: missing values become 0.

    Parameters
    ----------
    values : numpy.ndarray
        Grouped values of shape ``(N, C)``, modified in place.
    times : numpy.ndarray
        Grouped times (``datetime64`` or ``int64``).
    starts, counts : numpy.ndarray
        First grouped row and number of rows of each series.
    method : {"linear", "ffill", "zero"}
        Imputation method.
    columns : sequence of hashable
        Column names for messages.
    ctx : TimeContext
        Naming context for messages.

    Raises
    ------
    DataValidationError
        If, for ``"linear"`` or ``"ffill"``, a column of a series has no observed value at all.
    """
    nan = np.isnan(values)
    if method == "zero":
        values[nan] = 0.0
        return
    x_all = times.view(np.int64).astype(np.float64) if times.dtype.kind == "M" else times
    series_of_row = np.repeat(np.arange(len(starts)), counts)
    for c in np.flatnonzero(nan.any(axis=0)):
        for code in np.unique(series_of_row[nan[:, c]]):
            sl = slice(starts[code], starts[code] + counts[code])
            y = values[sl, c]
            m = nan[sl, c]
            if m.all():
                raise DataValidationError(
                    f"column {columns[c]!r} of {ctx.series(code)} has only missing values; "
                    f"impute={method!r} has nothing to fill from (drop the series or use "
                    "impute='zero')"
                )
            if method == "linear":
                x = np.asarray(x_all[sl], dtype=np.float64)
                y[m] = np.interp(x[m], x[~m], y[~m])
            else:  # ffill, then back fill of the leading gap
                pos = np.where(m, 0, np.arange(len(y)))
                np.maximum.accumulate(pos, out=pos)
                filled = y[pos]
                filled[: int(np.argmax(~m))] = y[int(np.argmax(~m))]
                y[:] = filled


def check_min_length(counts: np.ndarray, min_length: int, ctx: TimeContext) -> None:
    """Check that every series has at least ``min_length`` observations.

    Parameters
    ----------
    counts : numpy.ndarray
        Number of observations of each series.
    min_length : int
        Required number of observations (the estimator passes ``lookback + horizon`` at fit).
    ctx : TimeContext
        Naming context for messages.

    Raises
    ------
    DataValidationError
        Naming the first too-short series, its length, the required length, and how many
        series are too short.
    """
    short = np.flatnonzero(counts < min_length)
    if len(short) == 0:
        return
    code = int(short[0])
    msg = (
        f"{ctx.series(code)} is too short: it has {int(counts[code])} observation(s) but at "
        f"least {min_length} are required"
    )
    if ctx.series_ids is not None and len(short) > 1:
        ids = [ctx.series_ids[i] for i in short]
        msg += f"; {len(short)} series are too short: {format_list(ids, limit=10)}"
    raise DataValidationError(msg + " (drop short series or use a shorter lookback/horizon)")


# ----------------------------------------------------------------------------------------------
# channels at predict time
# ----------------------------------------------------------------------------------------------


def check_same_channels(panel: Panel | Sequence[str], fitted_channels: Sequence[str]) -> None:
    """Check that a panel has exactly the channels seen in ``fit``, in the same order.

    Parameters
    ----------
    panel : Panel or sequence of str
        The panel built at predict time (or its channel names).
    fitted_channels : sequence of str
        Channel names recorded at fit.

    Raises
    ------
    DataValidationError
        Naming the missing and the unexpected channels, or, when the channels are the same but
        ordered differently, both orders.
    """
    got = list(getattr(panel, "channels", panel))
    expected = list(fitted_channels)
    if got == expected:
        return
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing channel(s) {format_list(missing)}")
        if extra:
            parts.append(f"unexpected channel(s) {format_list(extra)}")
        raise DataValidationError(
            "the channels differ from those seen in fit: "
            + " and ".join(parts)
            + f"; expected {format_list(expected)}"
        )
    raise DataValidationError(
        f"the channels are those seen in fit but in a different order: expected "
        f"{format_list(expected)}, got {format_list(got)}; reorder the columns"
    )
