"""Loaders: ``load_ett`` (downloadable), ``load_csv`` (user files), ``load_co2`` (embedded)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pandas as pd
from pandas.tseries.frequencies import to_offset

from ._base import ForecastingData, _check_borders, custom_borders
from ._fetch import DATA_HOME_ENV, download, get_data_home, verify_file
from ._registry import DatasetSpec, get_spec

__all__ = ["load_co2", "load_csv", "load_ett"]

_ETT_NAMES = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
_ETT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


# --------------------------------------------------------------------------- helpers


def _as_ns(times: pd.Series) -> pd.Series:
    """Datetime series in nanosecond resolution (the same on pandas 2 and 3)."""
    return times.dt.as_unit("ns")


def _infer_freq(times: pd.Series) -> str | None:
    """Pandas offset alias of a regular, increasing time series; ``None`` otherwise."""
    if len(times) < 3 or times.isna().any():
        return None
    with warnings.catch_warnings():
        # pandas 3 warns that infer_freq will return an offset instead of a string
        warnings.simplefilter("ignore")
        try:
            freq = pd.infer_freq(pd.DatetimeIndex(times))
        except (TypeError, ValueError):
            return None
    return None if freq is None else to_offset(freq).freqstr


def _normalize_freq(freq: str) -> str:
    try:
        return to_offset(freq).freqstr
    except (TypeError, ValueError) as err:
        raise ValueError(f"freq {freq!r} is not a valid pandas offset alias") from err


def _parse_times(values: pd.Series) -> pd.Series | None:
    """Parse strings as datetimes (ISO 8601 first, then pandas inference); None if it fails."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    text = values if not pd.api.types.is_numeric_dtype(values) else values.astype(str)
    for kwargs in ({"format": "ISO8601"}, {}):
        with warnings.catch_warnings():
            # "Could not infer format ..." when pandas falls back to dateutil
            warnings.simplefilter("ignore", UserWarning)
            try:
                return pd.to_datetime(text, **kwargs)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _regular_grid(frame: pd.DataFrame, time_column: str, freq: str) -> pd.DataFrame:
    """Reindex `frame` onto the regular `freq` grid from its first to its last time.

    Rows for missing grid points are inserted with NaN channels. Raises ``ValueError`` when
    a timestamp is missing, duplicated, out of order or off the grid.
    """
    times = frame[time_column]
    if times.isna().any():
        raise ValueError(f"time column {time_column!r} has missing values")
    if times.duplicated().any() or not times.is_monotonic_increasing:
        raise ValueError(f"time column {time_column!r} is not strictly increasing")
    grid = pd.date_range(times.iloc[0], times.iloc[-1], freq=freq).as_unit("ns")
    if len(grid) == len(times) and bool((grid == pd.DatetimeIndex(times)).all()):
        return frame
    off_grid = ~times.isin(grid)
    if off_grid.any():
        first = times[off_grid].iloc[0]
        raise ValueError(
            f"{int(off_grid.sum())} timestamp(s) of {time_column!r} are off the regular "
            f"{freq!r} grid (first: {first})"
        )
    out = frame.set_index(time_column).reindex(grid)
    out.index.name = time_column
    return out.reset_index()[list(frame.columns)]


# --------------------------------------------------------------------------- ETT


def _ett_spec(name: str) -> DatasetSpec:
    try:
        spec = get_spec(name)
    except KeyError:
        spec = None
    if spec is None or spec.name not in _ETT_NAMES:
        raise ValueError(f"unknown ETT data set {name!r}; expected one of {list(_ETT_NAMES)}")
    return spec


def _read_ett(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    channels = spec.columns[1:]
    frame = pd.read_csv(path, dtype=dict.fromkeys(channels, "float64"))
    if tuple(frame.columns) != spec.columns or len(frame) != spec.n_rows:
        raise ValueError(
            f"{path} has columns {list(frame.columns)} and {len(frame)} rows; expected "
            f"{list(spec.columns)} and {spec.n_rows} rows"
        )
    frame["date"] = _as_ns(pd.to_datetime(frame["date"], format=_ETT_DATE_FORMAT))
    return frame


def load_ett(
    name: str,
    *,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ForecastingData:
    """Load one of the ETT-small data sets (ETTh1, ETTh2, ETTm1, ETTm2).

    The file is looked up in ``<data home>/ett-small/`` as ``<name>.csv`` or, failing
    that, ``<name>.csv.gz``, and its sha256 is verified (once per process and file
    version: the result is cached by path, modification time and size). A missing file is
    downloaded, when `download` is true, from ``raw.githubusercontent.com`` pinned to
    commit ``1d16c8f`` of ``zhouhaoyi/ETDataset``, into a temporary file that is moved
    into place only after its checksum matches.

    Parameters
    ----------
    name : {"ETTh1", "ETTh2", "ETTm1", "ETTm2"}
        Data set name (case-insensitive).
    data_home : str or os.PathLike, optional
        Data home; default :func:`get_data_home` (env ``RWKV_TS_DATA``, then the user
        cache folder).
    download : bool, default True
        Download the file when it is missing.

    Returns
    -------
    ForecastingData
        ``frame`` has a ``date`` column (``datetime64[ns]``) and the 7 float64 channels
        ``HUFL, HULL, MUFL, MULL, LUFL, LULL, OT``; 17,420 rows for ETTh (``freq="h"``),
        69,680 for ETTm (``freq="15min"``). ``target="OT"``. ``borders`` are the
        Informer/Time-Series-Library ones (12/4/4 months): ETTh train ``[0, 8640)``,
        val ``[8640, 11520)``, test ``[11520, 14400)``; ETTm four times these. The rows
        after the test border are unused by convention.

    Raises
    ------
    FileNotFoundError
        The file is missing and `download` is false (the message names the expected
        paths and the ``RWKV_TS_DATA`` variable).
    ChecksumError
        The file on disk does not match the registered sha256 (both hashes are shown).
    DownloadError
        The download failed or did not verify; nothing is left behind.

    See Also
    --------
    ForecastingData.split : rows of a part with the lookback overlap.

    Examples
    --------
    >>> from rwkv_ts.datasets import load_ett
    >>> data = load_ett("ETTh1")  # doctest: +SKIP
    >>> data.frame.shape, data.freq, data.borders["test"]  # doctest: +SKIP
    ((17420, 8), 'h', (11520, 14400))
    >>> data.split("test", lookback=336).shape  # doctest: +SKIP
    (3216, 8)
    """
    spec = _ett_spec(name)
    home = get_data_home(data_home)
    candidates = [home / rel for rel in spec.relative_paths]
    plain = candidates[0]
    manual = (
        f"To install it by hand, download {spec.urls[0]} and save it as {plain} "
        f"(or gzip-compressed as {plain}.gz), or point the environment variable "
        f"{DATA_HOME_ENV} (or data_home=) at a folder that holds ett-small/{spec.filename}."
    )
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if not download:
            raise FileNotFoundError(
                f"{spec.name} not found: looked for {candidates[0]} and {candidates[1]} "
                f"(data home {home}, set by data_home= or the environment variable "
                f"{DATA_HOME_ENV}). Pass download=True to fetch it. {manual}"
            )
        path = _download(spec, plain, manual)
    else:
        is_gz = path.name.endswith(".gz")
        verify_file(
            path,
            spec.gz_sha256 if is_gz else spec.sha256,
            content_sha256=spec.sha256 if is_gz else None,
            hint=(
                f"Delete {path} and call load_ett({spec.name!r}, download=True) to fetch a "
                f"fresh copy, or replace it with the original from {spec.urls[0]}."
            ),
        )
    frame = _read_ett(path, spec)
    return ForecastingData(
        name=spec.name,
        frame=frame,
        time_column="date",
        target=spec.target,
        freq=spec.freq,
        borders=spec.borders_dict(),
    )


def _download(spec: DatasetSpec, dest: Path, manual: str) -> Path:
    # the keyword argument `download` of load_ett shadows the function of _fetch
    return download(spec.urls, dest, spec.sha256, manual_hint=manual)


# --------------------------------------------------------------------------- CSV


def load_csv(
    path: str | os.PathLike[str],
    *,
    time_column: str | None = None,
    freq: str | None = None,
    borders: tuple[float, float, float] | Mapping[str, tuple[int, int]] = (0.7, 0.1, 0.2),
    target: str | None = None,
    name: str | None = None,
) -> ForecastingData:
    """Load a user's CSV file (plain or ``.gz``) as :class:`ForecastingData`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file: a header row, one optional time column, numeric channel columns.
    time_column : str, optional
        Name of the time column. Default: the first column when it is not numeric and
        parses as dates (ISO 8601 or any format pandas infers); otherwise the data has no
        time column (``time_column=None``, ``freq=None``).
    freq : str, optional
        Pandas offset alias of the sampling frequency. Default: inferred with
        :func:`pandas.infer_freq` (``None`` for irregular timestamps).
    borders : (float, float, float) or dict of str to (int, int), default (0.7, 0.1, 0.2)
        Train/val/test fractions by the "custom" convention of Time-Series-Library
        (``num_train = int(0.7 N)``, ``num_test = int(0.2 N)``, ``num_val`` the rest),
        or explicit ``{"train": (a, b), "val": (b, c), "test": (c, d)}`` row ranges.
    target : str, optional
        Target channel; default the last channel column (the custom convention puts the
        target last).
    name : str, optional
        Data set name; default the file name without ``.csv`` / ``.gz``.

    Returns
    -------
    ForecastingData
        Columns in file order: the time column as ``datetime64[ns]`` (time-zone aware
        when the strings carry an offset), the channels as float64 (empty cells are NaN).

    Raises
    ------
    ValueError
        The named time column is missing or does not parse; a channel column is not
        numeric (the message names the columns); there is no channel column; `freq` or
        `borders` are invalid.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from rwkv_ts.datasets import load_csv
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sensor.csv"
    >>> _ = path.write_text(
    ...     "time,temp,load\\n"
    ...     + "".join(f"2024-01-01 {h:02d}:00,{h},{2 * h}\\n" for h in range(20))
    ... )
    >>> data = load_csv(path)
    >>> data.time_column, data.freq, data.target, data.borders["test"]
    ('time', 'h', 'load', (16, 20))
    """
    path = Path(path)
    frame = pd.read_csv(path)
    if frame.shape[1] == 0:
        raise ValueError(f"{path} has no columns")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns

    times: pd.Series | None = None
    if time_column is not None:
        if time_column not in columns:
            raise ValueError(
                f"time column {time_column!r} not found in {path}; the columns are {columns}"
            )
        times = _parse_times(frame[time_column])
        if times is None:
            raise ValueError(
                f"time column {time_column!r} of {path} does not parse as dates; "
                "convert it to ISO 8601 strings (e.g. 2024-01-31 13:00:00)"
            )
    else:
        first = frame[columns[0]]
        if not pd.api.types.is_numeric_dtype(first) and not pd.api.types.is_bool_dtype(first):
            times = _parse_times(first)
            if times is not None:
                time_column = columns[0]

    if times is not None:
        n_bad = int(times.isna().sum())
        if n_bad:
            raise ValueError(
                f"time column {time_column!r} of {path} has {n_bad} empty or unparseable value(s)"
            )
        frame[time_column] = _as_ns(times)

    channels = [c for c in columns if c != time_column]
    if not channels:
        raise ValueError(f"{path} has no channel column besides the time column {time_column!r}")
    bad = [c for c in channels if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        msg = (
            f"non-numeric channel column(s) {bad} in {path}: every column except the time "
            "column must be numeric; drop or encode them"
        )
        if time_column is None and bad[0] == columns[0]:
            msg += (
                f" (if {columns[0]!r} holds timestamps, pass time_column={columns[0]!r} and "
                "check its format)"
            )
        raise ValueError(msg)
    frame[channels] = frame[channels].astype("float64")

    if target is None:
        target = channels[-1]
    elif target not in channels:
        raise ValueError(f"target {target!r} is not a channel column of {path}: {channels}")

    if freq is not None:
        freq = _normalize_freq(freq)
    elif times is not None:
        freq = _infer_freq(frame[time_column])

    if isinstance(borders, Mapping):
        border_dict = _check_borders(borders, len(frame))
    else:
        border_dict = custom_borders(len(frame), borders)

    if name is None:
        name = path.name.removesuffix(".gz")
        name = name.rsplit(".", 1)[0] if "." in name else name
    return ForecastingData(
        name=name,
        frame=frame,
        time_column=time_column,
        target=target,
        freq=freq,
        borders=border_dict,
    )


# --------------------------------------------------------------------------- CO2

#: Weeks missing in the embedded raw CO2 series (of 2,284).
CO2_N_MISSING = 59


def load_co2(*, fill_missing: bool = True) -> ForecastingData:
    """Mauna Loa weekly atmospheric CO2, 1958-03-29 to 2001-12-29 (embedded, no download).

    Weekly averages of continuous air samples at Mauna Loa Observatory, Hawaii, in ppmv
    (Keeling & Whorf 2004, SIO/CDIAC; public domain), from the copy shipped with
    statsmodels (``statsmodels/datasets/co2/co2.csv``); see ``datasets/co2_weekly.md``.

    The 2,284 dates lie on a regular weekly grid anchored on Saturdays (``W-SAT``); the
    loader checks this and reindexes onto the grid if a week were absent. **59 of the
    2,284 weeks have no value** (22 gaps; the longest is 18 weeks from 1964-01-25).

    Parameters
    ----------
    fill_missing : bool, default True
        Fill the 59 missing values by linear interpolation in time between the nearest
        observed weeks (``Series.interpolate(method="time")``; the first and last weeks
        are observed, so nothing is extrapolated). ``False`` keeps them as NaN.

    Returns
    -------
    ForecastingData
        ``name="co2_weekly"``, ``frame`` with columns ``date`` (``datetime64[ns]``) and
        ``co2`` (float64), 2,284 rows; ``freq="W-SAT"``, ``target="co2"``; borders by the
        custom 0.7 / 0.1 / 0.2 convention: train ``[0, 1598)``, val ``[1598, 1828)``,
        test ``[1828, 2284)``.

    Examples
    --------
    >>> from rwkv_ts.datasets import load_co2
    >>> data = load_co2()
    >>> data.frame.shape, data.freq, data.target
    ((2284, 2), 'W-SAT', 'co2')
    >>> int(load_co2(fill_missing=False).frame["co2"].isna().sum())
    59
    """
    spec = get_spec("co2_weekly")
    resource = resources.files(__package__).joinpath("data").joinpath(spec.filename + ".gz")
    with resource.open("rb") as fh:
        raw = pd.read_csv(fh, compression="gzip", dtype={"co2": "float64"})
    if tuple(raw.columns) != spec.columns:
        raise ValueError(f"embedded CO2 file has columns {list(raw.columns)}")
    raw["date"] = _as_ns(pd.to_datetime(raw["date"].astype(str), format="%Y%m%d"))
    frame = _regular_grid(raw, "date", spec.freq)
    if fill_missing:
        series = frame.set_index("date")["co2"]
        filled = series.interpolate(method="time", limit_direction="both")
        frame["co2"] = filled.to_numpy()
    return ForecastingData(
        name=spec.name,
        frame=frame,
        time_column="date",
        target=spec.target,
        freq=spec.freq,
        borders=custom_borders(len(frame)),
    )
