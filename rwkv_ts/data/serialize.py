"""JSON-safe records of a :class:`~rwkv_ts.data.frames.Panel` (no pickle), for saving fitted
estimators.

Labels (column names, series ids) keep their Python type through a small tagged encoding; dtypes and
time zones are stored by name and rebuilt with the library they came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from rwkv_ts.data.frames import FrameSpec, Panel

_LABEL_FIELDS = ("time_col", "time_name", "id_col", "series_name")
_TUPLE_FIELDS = ("value_cols", "column_order")
_PLAIN_FIELDS = (
    "library",
    "layout",
    "time_source",
    "time_kind",
    "time_unit",
    "ndim",
    "range_index",
)


class RecordError(ValueError):
    """A stored record that cannot be turned back into a panel; the message names the field."""


def encode_label(value: Hashable) -> Any:
    """Encode a label (str, int, float, bool, None, or tuples of them) as JSON-safe data.

    Examples
    --------
    >>> encode_label(("a", 1))
    {'tuple': ['a', {'int': 1}]}
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return {"bool": bool(value)}
    if isinstance(value, int | np.integer):
        return {"int": int(value)}
    if isinstance(value, float | np.floating):
        return {"float": float(value)}
    if isinstance(value, tuple):
        return {"tuple": [encode_label(v) for v in value]}
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return {"timestamp": pd.Timestamp(value).isoformat()}
    raise TypeError(
        f"cannot save the label {value!r} of type {type(value).__name__}; "
        "use str, int, float, bool or tuples of them for column names and series ids"
    )


def decode_label(value: Any) -> Hashable:
    """Inverse of :func:`encode_label`.

    Examples
    --------
    >>> decode_label({"tuple": ["a", {"int": 1}]})
    ('a', 1)
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind == "bool":
            return bool(inner)
        if kind == "int":
            return int(inner)
        if kind == "float":
            return float(inner)
        if kind == "tuple":
            return tuple(decode_label(v) for v in inner)
        if kind == "timestamp":
            return pd.Timestamp(inner)
    raise RecordError(f"unreadable label record {value!r}")


def _encode_tz(tz: Any) -> Any:
    if tz is None:
        return None
    if isinstance(tz, str):
        return {"name": tz}
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if key:
        return {"name": str(key)}
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        return {"offset_seconds": int(offset.total_seconds())}
    name = str(tz)
    pd.Timestamp("2000-01-01", tz=name)  # raises if pandas cannot rebuild it
    return {"name": name}


def _decode_tz(record: Any, library: str) -> Any:
    if record is None:
        return None
    if "offset_seconds" in record:
        return dt.timezone(dt.timedelta(seconds=record["offset_seconds"]))
    name = record["name"]
    if library == "polars":
        return name
    return pd.Timestamp("2000-01-01", tz=name).tz


def _encode_dtype(dtype: Any) -> Any:
    if dtype is None:
        return None
    module = type(dtype).__module__
    if module.startswith("polars"):
        record = {"polars": type(dtype).__name__ if not isinstance(dtype, type) else dtype.__name__}
        for attr in ("time_unit", "time_zone"):
            if getattr(dtype, attr, None) is not None:
                record[attr] = str(getattr(dtype, attr))
        return record
    if isinstance(dtype, type) and dtype.__module__.startswith("polars"):
        return {"polars": dtype.__name__}
    return {"pandas": str(dtype)}


def _decode_dtype(record: Any) -> Any:
    if record is None:
        return None
    if "polars" in record:
        import polars as pl

        cls = getattr(pl, record["polars"], None)
        if cls is None:
            raise RecordError(f"unknown polars dtype {record['polars']!r}")
        kwargs = {k: record[k] for k in ("time_unit", "time_zone") if k in record}
        return cls(**kwargs) if kwargs else cls
    return pd.api.types.pandas_dtype(record["pandas"])


def _encode_freq(freq: Any) -> Any:
    if freq is None:
        return None
    if isinstance(freq, int | np.integer):
        return {"int": int(freq)}
    return {"offset": to_offset(freq).freqstr}


def decode_freq(record: Any) -> Any:
    """The time step of a panel record's ``"freq"`` entry: an offset, an integer, or ``None``."""
    if record is None:
        return None
    if "int" in record:
        return int(record["int"])
    return to_offset(record["offset"])


def _encode_time(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return {"timestamp": value.isoformat()}
    return {"int": int(value)}


def _decode_time(record: Any, tz: Any) -> Any:
    if "timestamp" in record:
        stamp = pd.Timestamp(record["timestamp"])
        return stamp.tz_convert(tz) if stamp.tzinfo is not None and tz is not None else stamp
    return int(record["int"])


def spec_to_record(spec: FrameSpec) -> dict:
    record: dict[str, Any] = {name: getattr(spec, name) for name in _PLAIN_FIELDS}
    for name in _LABEL_FIELDS:
        record[name] = encode_label(getattr(spec, name))
    for name in _TUPLE_FIELDS:
        record[name] = [encode_label(v) for v in getattr(spec, name)]
    record["tz"] = _encode_tz(spec.tz)
    record["time_dtype"] = _encode_dtype(spec.time_dtype)
    record["id_dtype"] = _encode_dtype(spec.id_dtype)
    return record


def spec_from_record(record: dict) -> FrameSpec:
    try:
        kwargs: dict[str, Any] = {name: record[name] for name in _PLAIN_FIELDS}
        for name in _LABEL_FIELDS:
            kwargs[name] = decode_label(record[name])
        for name in _TUPLE_FIELDS:
            kwargs[name] = tuple(decode_label(v) for v in record[name])
        kwargs["tz"] = _decode_tz(record["tz"], record["library"])
        kwargs["time_dtype"] = _decode_dtype(record["time_dtype"])
        kwargs["id_dtype"] = _decode_dtype(record["id_dtype"])
    except KeyError as exc:
        raise RecordError(f"the stored frame description lacks the field {exc.args[0]!r}") from None
    return FrameSpec(**kwargs)


def panel_to_record(panel: Panel) -> tuple[dict, list[np.ndarray]]:
    """Split a panel into a JSON-safe record and its value arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts.data import to_panel
    >>> record, arrays = panel_to_record(to_panel(np.arange(6.0)))
    >>> panel_from_record(record, arrays).last_times
    [5]
    """
    record = {
        "channels": list(panel.channels),
        "series_ids": None
        if panel.series_ids is None
        else [encode_label(s) for s in panel.series_ids],
        "last_times": [_encode_time(t) for t in panel.last_times],
        "freq": _encode_freq(panel.freq),
        "spec": spec_to_record(panel.spec),
    }
    return record, [np.ascontiguousarray(v) for v in panel.values]


def panel_from_record(record: dict, arrays: list[np.ndarray]) -> Panel:
    """Inverse of :func:`panel_to_record`."""
    spec = spec_from_record(record["spec"])
    ids = record["series_ids"]
    series_ids = None if ids is None else [decode_label(s) for s in ids]
    n = len(arrays)
    if len(record["last_times"]) != n or (series_ids is not None and len(series_ids) != n):
        raise RecordError(
            f"the stored panel has {n} value arrays but {len(record['last_times'])} last times"
        )
    return Panel(
        values=list(arrays),
        channels=list(record["channels"]),
        series_ids=series_ids,
        last_times=[_decode_time(t, spec.tz) for t in record["last_times"]],
        freq=decode_freq(record["freq"]),
        spec=spec,
    )


def panel_tail(panel: Panel, n: int) -> Panel:
    """The panel with only the last ``n`` observations of each series (copies)."""
    return Panel(
        values=[np.array(v[-n:], copy=True) for v in panel.values],
        channels=list(panel.channels),
        series_ids=None if panel.series_ids is None else list(panel.series_ids),
        last_times=list(panel.last_times),
        freq=panel.freq,
        spec=panel.spec,
    )
