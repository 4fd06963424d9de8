"""Conversion between user data (pandas, polars, numpy) and the internal :class:`Panel`.

Data is converted once, at the boundary: :func:`to_panel` turns a frame, a series or an array into
a :class:`Panel` of float32 numpy arrays (one per series), validating it on the way, and
:func:`forecast_to_frame` turns forecasts back into the library and layout of the input, with
timestamps continuing the input's frequency. The caller's object is never modified.

Accepted inputs
---------------
* pandas ``DataFrame``, wide: the time is a datetime column (``time_col``; by default the single
  datetime column, if any) or else the index (a ``DatetimeIndex`` or an integer index); every other
  column (or ``value_cols``) is a channel.
* pandas or polars ``DataFrame``, long: one row per (series id, time) with value column(s).
  Long layout is used when ``id_col`` is given, when ``long=True``, or when a ``unique_id`` column
  is present; Nixtla's names ``unique_id``, ``ds`` and ``y`` are the defaults.
* polars ``DataFrame`` (or ``LazyFrame``, collected), wide: a time column (``Datetime``, ``Date``
  or integer); without one, the row position is the (integer) time.
* pandas ``Series`` with a ``DatetimeIndex`` or an integer index: one channel named after it.
* numpy array (or list) of shape ``(T,)`` or ``(T, C)``: integer time ``0 .. T-1``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import narwhals as nw
import numpy as np
import pandas as pd

from rwkv_ts.data.validation import (
    DataTypeError,
    DataValidationError,
    TimeContext,
    check_array_shape,
    check_columns,
    check_finite,
    check_float32_range,
    check_impute,
    check_min_length,
    check_positive_int,
    check_time_order,
    format_list,
    impute_missing,
    infer_frequency,
)

__all__ = ["FrameSpec", "Panel", "forecast_to_frame", "to_panel"]

Library = Literal["pandas", "polars", "numpy", "pandas-series"]
Layout = Literal["wide", "long"]

_NIXTLA_ID, _NIXTLA_TIME, _NIXTLA_VALUE = "unique_id", "ds", "y"


@dataclass(frozen=True)
class FrameSpec:
    """What came in, so that forecasts can go back out in the same form.

    Attributes
    ----------
    library : {"pandas", "polars", "numpy", "pandas-series"}
        Library of the input.
    layout : {"wide", "long"}
        Wide (one column per channel, one series) or long (series id, time, values).
    time_source : {"column", "index", "position"}
        Where the time came from: a column, the pandas index, or the row position (numpy arrays,
        polars frames without a time column).
    time_col : hashable or None
        Name of the time column (``time_source == "column"``).
    time_name : hashable or None
        Name of the pandas index holding the time (``time_source == "index"``).
    id_col : hashable or None
        Name of the series id column (long layout).
    value_cols : tuple of hashable
        Original labels of the value columns, in channel order.
    column_order : tuple of hashable
        Id, time and value columns in their input order (used for the output).
    time_kind : {"datetime", "integer"}
        Kind of the time axis.
    tz : tzinfo, str or None
        Time zone of timezone-aware timestamps (native object of the input library).
    time_unit : str or None
        Resolution of datetimes (``"s"``, ``"ms"``, ``"us"``, ``"ns"``).
    time_dtype : Any
        Native dtype of the time column or index (e.g. polars ``Date``, numpy ``int32``).
    id_dtype : Any
        Native dtype of the id column (long layout).
    series_name : hashable or None
        Name of a pandas Series input.
    ndim : int
        Number of dimensions of a numpy input (1 or 2).
    range_index : bool
        Whether the integer time was a pandas ``RangeIndex`` (kept as one in the output).
    """

    library: Library
    layout: Layout = "wide"
    time_source: Literal["column", "index", "position"] = "position"
    time_col: Hashable | None = None
    time_name: Hashable | None = None
    id_col: Hashable | None = None
    value_cols: tuple[Hashable, ...] = ()
    column_order: tuple[Hashable, ...] = ()
    time_kind: Literal["datetime", "integer"] = "integer"
    tz: Any = None
    time_unit: str | None = None
    time_dtype: Any = None
    id_dtype: Any = None
    series_name: Hashable | None = None
    ndim: int = 2
    range_index: bool = False


@dataclass
class Panel:
    """Validated series as float32 numpy arrays, plus what is needed to convert back.

    Attributes
    ----------
    values : list of numpy.ndarray
        One C-contiguous float32 array of shape ``(T_i, C)`` per series, in chronological order.
        They are owned by the panel (never views of the caller's data).
    channels : list of str
        Channel names: the value columns (as ``str``); ``"0", "1", ...`` for numpy input.
    series_ids : list or None
        Series ids in order of first appearance (long layout); ``None`` for a single series.
    last_times : list
        Per series, the last timestamp (``pandas.Timestamp``, timezone-aware where the input was)
        or the last integer time.
    freq : pandas.DateOffset or int or None
        The common step: a pandas offset for datetimes, an ``int`` for integer time; ``None``
        when no series has two observations.
    spec : FrameSpec
        Description of the input.
    """

    values: list[np.ndarray]
    channels: list[str]
    series_ids: list | None
    last_times: list
    freq: pd.DateOffset | int | None
    spec: FrameSpec = field(repr=False)

    @property
    def n_series(self) -> int:
        """Number of series."""
        return len(self.values)

    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return len(self.channels)

    @property
    def lengths(self) -> list[int]:
        """Number of observations of each series."""
        return [len(v) for v in self.values]


@dataclass
class _Raw:
    """Data read from the input, rows in input order, before validation."""

    times: np.ndarray  # datetime64 (UTC instants when tz-aware) or int64
    values: np.ndarray  # (N, C) float, NaN for missing
    codes: np.ndarray | None  # series code per row (long), None for one series
    series_ids: list | None
    channels: list[str]
    spec: FrameSpec
    time_label: str
    sort_hint: str
    declared_freq: pd.DateOffset | None = None


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def to_panel(
    y: Any,
    *,
    time_col: Hashable | None = None,
    id_col: Hashable | None = None,
    value_cols: Hashable | Sequence[Hashable] | None = None,
    long: bool | None = None,
    impute: Literal["linear", "ffill", "zero"] | None = None,
    min_length: int = 1,
) -> Panel:
    """Validate and convert user data into a :class:`Panel`.

    Parameters
    ----------
    y : pandas.DataFrame, pandas.Series, polars.DataFrame, polars.LazyFrame or array-like
        The series; see the module docstring for accepted layouts.
    time_col : hashable, optional
        Time column. Default: ``"ds"`` for a long frame that has it, else the single
        ``Datetime``/``Date`` column, else (pandas) the index, else (polars wide) the row position.
        A pandas index name is accepted too.
    id_col : hashable, optional
        Series id column; giving it selects the long layout.
    value_cols : hashable or sequence of hashable, optional
        Value (channel) columns. Default: ``"y"`` for a long frame that has it, else every column
        other than the id and time columns.
    long : bool, optional
        Force (``True``) or forbid (``False``) the long layout. Default: long when ``id_col`` is
        given or a ``unique_id`` column exists.
    impute : {"linear", "ffill", "zero"}, optional
        What to do with missing values (NaN, or null in polars / pandas nullable dtypes). ``None``
        (default): they are an error. ``"linear"``: linear interpolation in time, with the first
        / last observed value carried to the ends. ``"ffill"``: last observed value carried
        forward, leading gaps take the first observed value. ``"zero"``: replaced by 0.
        Infinite values are always an error.
    min_length : int, default 1
        Minimum number of observations of every series (the estimator passes
        ``lookback + horizon`` at fit).

    Returns
    -------
    Panel
        Float32 arrays per series, channel names, series ids, last times, frequency, input spec.

    Raises
    ------
    DataValidationError
        Empty input, unknown columns, bad array shape, missing or infinite values, unsorted or
        duplicated timestamps, irregular or differing frequencies, too-short series.
    DataTypeError
        Non-numeric value columns, time column of the wrong dtype.
    TypeError
        Unsupported input type.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0]}, index=pd.date_range("2024", periods=3, freq="h"))
    >>> panel = to_panel(df)
    >>> panel.channels, panel.values[0].shape, panel.freq.freqstr
    (['y'], (3, 1), 'h')
    """
    check_impute(impute)
    min_length = check_positive_int(min_length, "min_length")
    raw = _read(y, time_col=time_col, id_col=id_col, value_cols=value_cols, long=long)
    return _build_panel(raw, impute=impute, min_length=min_length)


def forecast_to_frame(forecasts: Sequence[np.ndarray], panel: Panel, horizon: int) -> Any:
    """Turn forecasts into the library and layout of the input of ``panel``.

    Parameters
    ----------
    forecasts : sequence of numpy.ndarray
        One array of shape ``(horizon, C)`` per series of ``panel`` (``(horizon,)`` is accepted
        when ``C == 1``), in the order of ``panel.values``.
    panel : Panel
        The panel the forecasts continue.
    horizon : int
        Number of forecast steps.

    Returns
    -------
    pandas.DataFrame, pandas.Series, polars.DataFrame or numpy.ndarray
        The next ``horizon`` steps of every series, timestamps ``last + freq * (1 .. horizon)``:

        * numpy input: an array of shape ``(horizon, C)`` (also for a 1-D input);
        * pandas Series: a Series with the same name and index kind;
        * wide frame: same time column (or index, with its name) and channel columns;
        * long frame: id, time and value columns, ``horizon`` rows per series, series in
          ``panel.series_ids`` order.

        Values keep the dtype of ``forecasts``.

    Raises
    ------
    DataValidationError
        If the number or shapes of the forecasts do not match the panel, or the frequency is
        unknown (every series had a single observation).
    """
    horizon = check_positive_int(horizon, "horizon")
    spec = panel.spec
    n_channels = len(panel.channels)
    if len(forecasts) != panel.n_series:
        raise DataValidationError(
            f"got {len(forecasts)} forecast array(s) for a panel of {panel.n_series} series"
        )
    fcs = []
    for i, f in enumerate(forecasts):
        a = np.asarray(f)
        if a.ndim == 1 and n_channels == 1:
            a = a[:, None]
        if a.shape != (horizon, n_channels):
            who = "the series" if panel.series_ids is None else f"series {panel.series_ids[i]!r}"
            raise DataValidationError(
                f"forecast for {who} has shape {a.shape}; expected (horizon, C) = "
                f"({horizon}, {n_channels})"
            )
        fcs.append(a)
    if spec.library == "numpy":
        return np.array(fcs[0], copy=True)

    data = np.concatenate(fcs, axis=0)
    times = None if spec.time_source == "position" else _future_times(panel, horizon)
    if spec.library == "pandas-series":
        return pd.Series(
            data[:, 0], index=_pandas_time_index(times, panel, horizon), name=spec.series_name
        )
    ids = None
    if spec.layout == "long":
        ids = [sid for sid in panel.series_ids for _ in range(horizon)]
    if spec.library == "pandas":
        return _pandas_frame(data, times, ids, panel, horizon)
    return _polars_frame(data, times, ids, panel)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def _read(
    y: Any,
    *,
    time_col: Hashable | None,
    id_col: Hashable | None,
    value_cols: Hashable | Sequence[Hashable] | None,
    long: bool | None,
) -> _Raw:
    """Dispatch on the input type."""
    if isinstance(y, pd.Series) or isinstance(y, (np.ndarray, list, tuple)):
        given = {
            "time_col": time_col,
            "id_col": id_col,
            "value_cols": value_cols,
            "long": long or None,
        }
        used = [k for k, v in given.items() if v is not None]
        if used:
            kind = "a pandas Series" if isinstance(y, pd.Series) else "an array"
            raise DataValidationError(
                f"{', '.join(used)} cannot be used with {kind} (a single series); pass a data "
                "frame to select columns or to use the long layout"
            )
        if isinstance(y, pd.Series):
            return _read_pandas_series(y)
        return _read_array(y)
    if isinstance(y, pd.DataFrame):
        return _read_frame(y, time_col=time_col, id_col=id_col, value_cols=value_cols, long=long)
    frame = nw.from_native(y, pass_through=True)
    if isinstance(frame, (nw.DataFrame, nw.LazyFrame)) and frame.implementation.is_polars():
        return _read_frame(y, time_col=time_col, id_col=id_col, value_cols=value_cols, long=long)
    raise TypeError(
        f"unsupported input type {type(y).__module__}.{type(y).__qualname__}; expected a pandas "
        "DataFrame or Series, a polars DataFrame or LazyFrame, or a numpy array of shape (T,) "
        "or (T, C)"
    )


def _read_array(y: Any) -> _Raw:
    """Read a numpy array (or list) of shape (T,) or (T, C)."""
    arr = np.asarray(y)
    check_array_shape(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise DataTypeError(
            f"array has dtype {arr.dtype}; expected real numbers (integer or float; not bool, "
            "complex, string, object or datetime)"
        )
    ndim = arr.ndim
    values = arr.reshape(len(arr), -1)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    channels = [str(c) for c in range(values.shape[1])]
    spec = FrameSpec(
        library="numpy",
        layout="wide",
        time_source="position",
        value_cols=tuple(range(values.shape[1])),
        time_kind="integer",
        time_dtype=np.dtype(np.int64),
        ndim=ndim,
    )
    return _Raw(
        times=np.arange(len(values), dtype=np.int64),
        values=values,
        codes=None,
        series_ids=None,
        channels=channels,
        spec=spec,
        time_label="row positions",
        sort_hint="",
    )


def _read_pandas_series(y: pd.Series) -> _Raw:
    """Read a pandas Series with a DatetimeIndex or an integer index."""
    if len(y) == 0:
        raise DataValidationError("empty input: the Series has no rows")
    _check_pandas_numeric(y.dtype, y.name, "Series")
    times, info = _pandas_index_time(y.index, long=False)
    values = _pandas_values(y)[:, None]
    channel = "0" if y.name is None else str(y.name)
    spec = FrameSpec(
        library="pandas-series",
        layout="wide",
        time_source="index",
        time_name=y.index.name,
        value_cols=(y.name,),
        series_name=y.name,
        **info["spec"],
    )
    return _Raw(
        times=times,
        values=values,
        codes=None,
        series_ids=None,
        channels=[channel],
        spec=spec,
        time_label="index",
        sort_hint="s.sort_index()",
        declared_freq=info["declared_freq"],
    )


def _pandas_values(s: pd.Series) -> np.ndarray:
    """Values of a numeric pandas Series as a float numpy array (NaN for NA)."""
    if s.dtype.kind == "f" and isinstance(s.dtype, np.dtype):
        return s.to_numpy()
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_pandas_numeric(dtype: Any, name: Hashable, what: str) -> None:
    """Raise DataTypeError unless ``dtype`` is a real numeric (non-bool) pandas dtype."""
    ok = pd.api.types.is_numeric_dtype(dtype) and not (
        pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_complex_dtype(dtype)
    )
    if not ok:
        raise DataTypeError(
            f"{what} {name!r} has non-numeric dtype {dtype}; values must be integers or floats"
        )


def _pandas_index_time(index: pd.Index, *, long: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Times from a pandas index (DatetimeIndex or integer index)."""
    if isinstance(index, pd.MultiIndex):
        raise DataValidationError(
            f"a MultiIndex ({list(index.names)}) is not supported as the time axis; reset it "
            "with .reset_index() and pass time_col= (and id_col= for several series)"
        )
    if isinstance(index, pd.PeriodIndex):
        raise DataTypeError(
            "a PeriodIndex is not supported as the time axis; convert it with .to_timestamp()"
        )
    if isinstance(index, pd.DatetimeIndex):
        if index.hasnans:
            nat = np.flatnonzero(index.isna())
            raise DataValidationError(
                f"the index has {len(nat)} missing timestamp(s) (NaT), first at row {nat[0]}"
            )
        tz = index.tz
        times = (index.tz_convert(None) if tz is not None else index).to_numpy()
        spec = {
            "time_kind": "datetime",
            "tz": tz,
            "time_unit": index.unit,
            "time_dtype": index.dtype,
        }
        return times, {"spec": spec, "declared_freq": None if long else index.freq}
    if pd.api.types.is_integer_dtype(index.dtype) and not pd.api.types.is_bool_dtype(index.dtype):
        if index.hasnans:
            raise DataValidationError("the integer index has missing values")
        spec = {
            "time_kind": "integer",
            "time_dtype": index.dtype,
            "range_index": isinstance(index, pd.RangeIndex),
        }
        return index.to_numpy(dtype=np.int64), {"spec": spec, "declared_freq": None}
    raise DataTypeError(
        f"the index has dtype {index.dtype}; the time axis must be a DatetimeIndex or an integer "
        "index (or pass time_col= naming a datetime or integer column)"
    )


def _nw_time(frame: nw.DataFrame, col: Hashable, native_dtype: Any) -> tuple[np.ndarray, dict]:
    """Times from a narwhals column (Datetime, Date or integer)."""
    s = frame.get_column(col)
    n_null = int(s.null_count())
    if n_null:
        first = int(np.argmax(s.is_null().to_numpy()))
        raise DataValidationError(
            f"time column {col!r} has {n_null} missing value(s), first at row {first}"
        )
    dtype = s.dtype
    if isinstance(dtype, nw.Datetime):
        tz_name = dtype.time_zone
        if tz_name is not None:
            s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            tz = getattr(native_dtype, "tz", tz_name)  # pandas keeps its tzinfo object
        else:
            tz = None
        times = s.to_numpy()
        spec = {"time_kind": "datetime", "tz": tz, "time_unit": dtype.time_unit}
    elif isinstance(dtype, nw.Date):
        times = s.to_numpy().astype("datetime64[us]")
        spec = {"time_kind": "datetime", "tz": None, "time_unit": "us"}
    elif dtype.is_integer():
        times = s.to_numpy().astype(np.int64)
        spec = {"time_kind": "integer"}
    else:
        hint = (
            " (parse it with pd.to_datetime / str.to_datetime first)" if dtype == nw.String else ""
        )
        raise DataTypeError(
            f"time column {col!r} has dtype {native_dtype}; expected a datetime, date or integer "
            f"column{hint}"
        )
    spec["time_dtype"] = native_dtype
    return times, spec


def _as_label_list(value_cols: Hashable | Sequence[Hashable]) -> list[Hashable]:
    """``value_cols`` as a list (a single name is a one-element list)."""
    if isinstance(value_cols, (str, bytes)) or not isinstance(value_cols, Sequence):
        return [value_cols]
    return list(value_cols)


def _read_frame(
    y: Any,
    *,
    time_col: Hashable | None,
    id_col: Hashable | None,
    value_cols: Hashable | Sequence[Hashable] | None,
    long: bool | None,
) -> _Raw:
    """Read a pandas or polars frame (wide or long) through narwhals."""
    is_pandas = isinstance(y, pd.DataFrame)
    if is_pandas:
        if isinstance(y.columns, pd.MultiIndex):
            raise DataValidationError(
                "MultiIndex columns are not supported; flatten them first (e.g. "
                "df.columns = ['_'.join(map(str, c)) for c in df.columns])"
            )
        dup = y.columns[y.columns.duplicated()].unique().tolist()
        if dup:
            raise DataValidationError(f"duplicated column name(s) {format_list(dup)}")
    frame = nw.from_native(y)
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    native_schema = dict(y.dtypes.items()) if is_pandas else dict(frame.to_native().schema)
    columns = list(frame.columns)
    schema = frame.schema
    library = "pandas" if is_pandas else "polars"
    if frame.shape[0] == 0 or not columns:
        raise DataValidationError(f"empty input: the frame has shape {frame.shape} (rows, columns)")

    # layout and id column
    if long is None:
        long = id_col is not None or _NIXTLA_ID in columns
    if long:
        if id_col is None:
            if _NIXTLA_ID not in columns:
                raise DataValidationError(
                    f"long layout needs a series id column: pass id_col= (no {_NIXTLA_ID!r} "
                    f"column); available columns: {format_list(columns, limit=50)}"
                )
            id_col = _NIXTLA_ID
        check_columns([id_col], columns, "id_col")
    elif id_col is not None:
        raise DataValidationError(f"id_col={id_col!r} was given with long=False")

    # time
    source: str
    if time_col is not None:
        if time_col in columns:
            source = "column"
        elif is_pandas and y.index.name is not None and time_col == y.index.name:
            source = "index"
        else:
            check_columns([time_col], columns, "time_col")
        if time_col == id_col:
            raise DataValidationError(f"time_col and id_col are the same column {time_col!r}")
    elif long and _NIXTLA_TIME in columns:
        time_col, source = _NIXTLA_TIME, "column"
    else:
        dt_cols = [
            c for c, d in schema.items() if c != id_col and isinstance(d, (nw.Datetime, nw.Date))
        ]
        if len(dt_cols) > 1:
            raise DataValidationError(
                f"several datetime columns {format_list(dt_cols)}: pass time_col= to choose the "
                "time column"
            )
        if dt_cols:
            time_col, source = dt_cols[0], "column"
        elif is_pandas and (
            not long
            or isinstance(y.index, pd.DatetimeIndex)
            or (y.index.name is not None and pd.api.types.is_integer_dtype(y.index.dtype))
        ):
            source = "index"
        elif not long:
            source = "position"
        else:
            raise DataValidationError(
                "no time column found for the long frame: pass time_col= (no datetime column "
                f"and no {_NIXTLA_TIME!r} column); available columns: "
                f"{format_list(columns, limit=50)}"
            )

    # values
    reserved = {id_col} | ({time_col} if source == "column" else set())
    reserved.discard(None)
    if value_cols is None:
        if long and _NIXTLA_VALUE in columns and _NIXTLA_VALUE not in reserved:
            vcols = [_NIXTLA_VALUE]
        else:
            vcols = [c for c in columns if c not in reserved]
    else:
        vcols = _as_label_list(value_cols)
        check_columns(vcols, columns, "value_cols")
        clash = [c for c in vcols if c in reserved]
        if clash:
            raise DataValidationError(
                f"value_cols {format_list(clash)} also serve as the id or time column"
            )
        if len(set(vcols)) != len(vcols):
            raise DataValidationError(f"value_cols has duplicates: {format_list(vcols)}")
    if not vcols:
        raise DataValidationError(
            f"empty input: no value column left besides the id/time columns; columns: "
            f"{format_list(columns, limit=50)}"
        )
    for c in vcols:
        d = schema[c]
        if not d.is_numeric() or isinstance(d, nw.Boolean):
            raise DataTypeError(
                f"value column {c!r} has non-numeric dtype {native_schema[c]}; value columns "
                "must be integers or floats (select others with value_cols=)"
            )
    cols = []
    for c in vcols:
        s = frame.get_column(c)
        if not s.dtype.is_float():
            s = s.cast(nw.Float64)
        arr = s.to_numpy()
        if arr.dtype.kind != "f":  # e.g. pandas nullable floats with NA
            arr = np.asarray(arr, dtype=np.float64)
        cols.append(arr)
    values = np.column_stack(cols) if len(cols) > 1 else cols[0][:, None]

    # time values
    declared = None
    if source == "column":
        times, tinfo = _nw_time(frame, time_col, native_schema[time_col])
        time_label = f"time column {time_col!r}"
    elif source == "index":
        times, info = _pandas_index_time(y.index, long=long)
        tinfo, declared = info["spec"], info["declared_freq"]
        time_label = "index"
    else:
        times = np.arange(frame.shape[0], dtype=np.int64)
        tinfo = {"time_kind": "integer", "time_dtype": np.dtype(np.int64)}
        time_label = "row positions"

    # series ids
    codes = series_ids = None
    if long:
        s = frame.get_column(id_col)
        n_null = int(s.null_count())
        if n_null:
            first = int(np.argmax(s.is_null().to_numpy()))
            raise DataValidationError(
                f"id column {id_col!r} has {n_null} missing value(s), first at row {first}"
            )
        codes, uniques = pd.factorize(s.to_numpy())
        codes = codes.astype(np.intp, copy=False)
        series_ids = uniques.tolist() if isinstance(uniques, np.ndarray) else list(uniques)

    kept = set(vcols) | reserved
    spec = FrameSpec(
        library=library,
        layout="long" if long else "wide",
        time_source=source,
        time_col=time_col if source == "column" else None,
        time_name=y.index.name if source == "index" else None,
        id_col=id_col,
        value_cols=tuple(vcols),
        column_order=tuple(c for c in columns if c in kept),
        id_dtype=native_schema[id_col] if long else None,
        **tinfo,
    )
    sort_hint = _sort_hint(library, source, id_col, time_col)
    return _Raw(
        times=times,
        values=values,
        codes=codes,
        series_ids=series_ids,
        channels=[str(c) for c in vcols],
        spec=spec,
        time_label=time_label,
        sort_hint=sort_hint,
        declared_freq=declared,
    )


def _sort_hint(library: str, source: str, id_col: Hashable, time_col: Hashable) -> str:
    """How to sort the input, for error messages."""
    if source == "index":
        return "df.sort_index()"
    keys = [time_col] if id_col is None else [id_col, time_col]
    if library == "polars":
        return f"df.sort({keys!r})"
    return f"df.sort_values({keys!r})"


# ----------------------------------------------------------------------------------------------
# validation and assembly
# ----------------------------------------------------------------------------------------------


def _build_panel(raw: _Raw, *, impute: str | None, min_length: int) -> Panel:
    """Group the rows by series, validate them and assemble the panel."""
    n_rows = len(raw.times)
    if raw.codes is None:
        order = None
        counts = np.array([n_rows], dtype=np.intp)
    else:
        order = np.argsort(raw.codes, kind="stable")
        counts = np.bincount(raw.codes, minlength=len(raw.series_ids)).astype(np.intp)
    starts = np.cumsum(counts) - counts
    times = raw.times if order is None else raw.times[order]
    rows = np.arange(n_rows) if order is None else order
    codes = np.repeat(np.arange(len(counts)), counts)
    spec = raw.spec
    ctx = TimeContext(
        series_ids=raw.series_ids,
        time_kind=spec.time_kind,
        tz=spec.tz,
        time_label=raw.time_label,
        sort_hint=raw.sort_hint,
    )
    columns = list(spec.value_cols)

    check_time_order(times, starts, codes, rows, ctx)
    freq = infer_frequency(times, starts, counts, ctx, declared=raw.declared_freq)
    has_missing = check_finite(raw.values, columns, raw.times, raw.codes, ctx, impute)
    check_min_length(counts, min_length, ctx)

    # our own copy, grouped by series: the caller's data is never touched
    values = raw.values[order] if order is not None else raw.values.copy()
    if has_missing:
        impute_missing(values, times, starts, counts, impute, columns, ctx)
    with np.errstate(over="ignore"):  # overflow is reported just below
        values = np.ascontiguousarray(values, dtype=np.float32)
    check_float32_range(values, columns)

    ends = starts + counts - 1
    if spec.time_kind == "integer":
        last_times = [int(t) for t in times[ends]]
    else:
        last_times = [_to_timestamp(t, spec.tz) for t in times[ends]]
    return Panel(
        values=np.split(values, starts[1:]) if len(starts) > 1 else [values],
        channels=list(raw.channels),
        series_ids=None if raw.series_ids is None else list(raw.series_ids),
        last_times=last_times,
        freq=freq,
        spec=spec,
    )


def _to_timestamp(t: np.datetime64, tz: Any) -> pd.Timestamp:
    """A stored time (UTC instant when tz-aware) as a user-facing Timestamp."""
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC").tz_convert(tz) if tz is not None else ts


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _future_times(panel: Panel, horizon: int) -> np.ndarray:
    """Future times of all series, concatenated: datetime64 (UTC instants if tz) or int64."""
    spec, freq = panel.spec, panel.freq
    if freq is None:
        raise DataValidationError(
            "cannot continue the timestamps: the frequency is unknown because every series has "
            "a single observation"
        )
    steps = np.arange(1, horizon + 1)
    if spec.time_kind == "integer":
        last = np.asarray(panel.last_times, dtype=np.int64)
        return (last[:, None] + int(freq) * steps).ravel()
    unit = spec.time_unit or "ns"
    fixed = None
    if isinstance(freq, pd.offsets.Tick):
        fixed = pd.Timedelta(freq)
    elif isinstance(freq, pd.offsets.Day) and spec.tz is None:
        fixed = pd.Timedelta(days=freq.n)
    if fixed is not None:  # absolute step: vectorised
        last = np.array(
            [
                (t.tz_convert(None) if t.tz is not None else t).as_unit(unit).to_datetime64()
                for t in panel.last_times
            ]
        )
        step = fixed.as_unit(unit).to_timedelta64()
        return (last[:, None] + step * steps).ravel()
    cache: dict[pd.Timestamp, np.ndarray] = {}
    out = []
    for t in panel.last_times:  # calendar step: per distinct last time
        if t not in cache:
            rng = pd.date_range(start=t, periods=horizon + 1, freq=freq)[1:]
            if rng.tz is not None:
                rng = rng.tz_convert(None)
            cache[t] = rng.as_unit(unit).to_numpy()
        out.append(cache[t])
    return np.concatenate(out)


def _pandas_datetime_index(times: np.ndarray, spec: FrameSpec, name: Hashable) -> pd.DatetimeIndex:
    """A (tz-aware where needed) DatetimeIndex from stored times."""
    idx = pd.DatetimeIndex(times, name=name)
    if spec.tz is not None:
        idx = idx.tz_localize("UTC").tz_convert(spec.tz)
    return idx


def _pandas_time_index(times: np.ndarray, panel: Panel, horizon: int) -> pd.Index:
    """The output index of a pandas output whose time is the index."""
    spec = panel.spec
    name = spec.time_name
    if spec.time_kind == "datetime":
        idx = _pandas_datetime_index(times, spec, name)
        if panel.n_series == 1 and isinstance(panel.freq, pd.offsets.BaseOffset):
            try:
                idx = pd.DatetimeIndex(idx, freq=panel.freq)
            except ValueError:
                pass
        return idx
    if spec.range_index and panel.n_series == 1:
        step = int(panel.freq)
        start = int(times[0])
        return pd.RangeIndex(start, start + step * horizon, step, name=name)
    return pd.Index(times, name=name).astype(spec.time_dtype)


def _pandas_frame(
    data: np.ndarray, times: np.ndarray | None, ids: list | None, panel: Panel, horizon: int
) -> pd.DataFrame:
    """Output pandas DataFrame (wide or long)."""
    spec = panel.spec
    position = {c: j for j, c in enumerate(spec.value_cols)}
    cols: dict[Hashable, Any] = {}
    order = spec.column_order or spec.value_cols
    for c in order:
        if c in position:
            cols[c] = data[:, position[c]]
        elif spec.layout == "long" and c == spec.id_col:
            cols[c] = pd.array(ids, dtype=spec.id_dtype)
        elif c == spec.time_col and spec.time_source == "column":
            if spec.time_kind == "datetime":
                cols[c] = _pandas_datetime_index(times, spec, None).as_unit(spec.time_unit)
            else:
                cols[c] = pd.array(times, dtype=spec.time_dtype)
    if spec.time_source == "index":
        index = _pandas_time_index(times, panel, horizon)
    else:
        index = pd.RangeIndex(0, len(data))
    return pd.DataFrame(cols, index=index)


def _polars_frame(
    data: np.ndarray, times: np.ndarray | None, ids: list | None, panel: Panel
) -> Any:
    """Output polars DataFrame (wide or long)."""
    import polars as pl

    spec = panel.spec
    position = {c: j for j, c in enumerate(spec.value_cols)}
    series = []
    for c in spec.column_order:
        if c in position:
            series.append(pl.Series(c, data[:, position[c]]))
        elif spec.layout == "long" and c == spec.id_col:
            series.append(pl.Series(c, ids, dtype=spec.id_dtype))
        elif c == spec.time_col:
            s = pl.Series(c, times)
            if spec.time_kind == "datetime" and spec.tz is not None:
                s = s.dt.replace_time_zone("UTC").dt.convert_time_zone(str(spec.tz))
            series.append(s.cast(spec.time_dtype))
    return pl.DataFrame(series)
