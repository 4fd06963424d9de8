"""The :class:`ForecastingData` container and the split-border conventions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["ForecastingData", "PARTS", "custom_borders"]

#: The names of the three parts, in chronological order.
PARTS: tuple[str, str, str] = ("train", "val", "test")


def custom_borders(
    n_rows: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> dict[str, tuple[int, int]]:
    """Chronological train/val/test borders by the "custom" convention.

    The convention of Autoformer and Time-Series-Library for user data:
    ``num_train = int(f_train * N)``, ``num_test = int(f_test * N)`` and
    ``num_val = N - num_train - num_test`` (the validation fraction only has to make
    the three sum to one; the validation part takes the rounding remainder).

    Parameters
    ----------
    n_rows : int
        Number of rows ``N``.
    fractions : tuple of float, default (0.7, 0.1, 0.2)
        Train, validation and test fractions; non-negative, summing to 1.

    Returns
    -------
    dict of str to (int, int)
        ``{"train": (0, a), "val": (a, b), "test": (b, N)}``, half-open row ranges
        without any lookback overlap.

    Examples
    --------
    >>> custom_borders(1000)
    {'train': (0, 700), 'val': (700, 800), 'test': (800, 1000)}
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    try:
        f_train, f_val, f_test = (float(f) for f in fractions)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"borders must be three fractions (train, val, test), got {fractions!r}"
        ) from err
    if min(f_train, f_val, f_test) < 0 or abs(f_train + f_val + f_test - 1.0) > 1e-6:
        raise ValueError(
            "borders must be three non-negative fractions (train, val, test) summing to 1, "
            f"got {fractions!r}"
        )
    num_train = int(n_rows * f_train)
    num_test = int(n_rows * f_test)
    num_val = n_rows - num_train - num_test
    return {
        "train": (0, num_train),
        "val": (num_train, num_train + num_val),
        "test": (num_train + num_val, n_rows),
    }


def _check_borders(borders: Mapping[str, Any], n_rows: int) -> dict[str, tuple[int, int]]:
    """Validate explicit borders and return a fresh ``dict`` of int pairs."""
    missing = [p for p in PARTS if p not in borders]
    if missing:
        raise ValueError(f"borders lack the part(s) {missing}; expected keys {list(PARTS)}")
    out: dict[str, tuple[int, int]] = {}
    for part, value in borders.items():
        try:
            start, end = (int(v) for v in value)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"borders[{part!r}] must be a (start, end) pair of ints, got {value!r}"
            ) from err
        if not 0 <= start <= end <= n_rows:
            raise ValueError(
                f"borders[{part!r}] = ({start}, {end}) is not within 0 <= start <= end <= "
                f"{n_rows} (the number of rows)"
            )
        out[str(part)] = (start, end)
    return out


@dataclass(frozen=True, eq=False, repr=False)
class ForecastingData:
    """A forecasting data set: a time-indexed frame plus its metadata and split borders.

    Parameters
    ----------
    name : str
        Data set name, e.g. ``"ETTh1"``.
    frame : pandas.DataFrame
        The data in file order: the time column (``datetime64[ns]``), if any, followed by
        the channel columns (``float64``).
    time_column : str or None, default "date"
        Name of the time column in `frame`; ``None`` when the data has none.
    target : str or None, default None
        The conventional target channel (e.g. ``"OT"``), or ``None``.
    freq : str or None, default None
        Pandas offset alias of the sampling frequency (``"h"``, ``"15min"``, ``"W-SAT"``),
        or ``None`` when unknown / irregular.
    borders : dict of str to (int, int)
        Half-open row ranges of the ``"train"``, ``"val"`` and ``"test"`` parts, *without*
        lookback overlap (the overlap is added by :meth:`split`).

    Attributes
    ----------
    channels : list of str
        The channel (non-time) columns, in file order.

    Notes
    -----
    The dataclass is frozen (the fields cannot be rebound) but the frame itself is an
    ordinary mutable DataFrame: :meth:`split` always returns copies, so prefer it to
    mutating ``frame`` in place.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame(
    ...     {"date": pd.date_range("2024-01-01", periods=10, freq="h"), "y": range(10)}
    ... ).astype({"y": "float64"})
    >>> data = ForecastingData(
    ...     name="toy", frame=frame, target="y", freq="h",
    ...     borders={"train": (0, 6), "val": (6, 8), "test": (8, 10)},
    ... )
    >>> data.channels
    ['y']
    >>> data.split("test", lookback=3)["y"].tolist()
    [5.0, 6.0, 7.0, 8.0, 9.0]
    """

    name: str
    frame: pd.DataFrame
    time_column: str | None = "date"
    target: str | None = None
    freq: str | None = None
    borders: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, got {type(self.frame).__name__}")
        if self.time_column is not None and self.time_column not in self.frame.columns:
            raise ValueError(f"time column {self.time_column!r} is not a column of the frame")
        if self.target is not None and self.target not in self.channels:
            raise ValueError(f"target {self.target!r} is not a channel column of the frame")
        borders = self.borders if self.borders else custom_borders(len(self.frame))
        object.__setattr__(self, "borders", _check_borders(borders, len(self.frame)))

    @property
    def channels(self) -> list[str]:
        """The channel columns (all columns except the time column), in file order."""
        return [str(c) for c in self.frame.columns if c != self.time_column]

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        n_rows, n_cols = self.frame.shape
        borders = ", ".join(f"{k}=[{a}, {b})" for k, (a, b) in self.borders.items())
        return (
            f"ForecastingData(name={self.name!r}, rows={n_rows}, columns={n_cols}, "
            f"time_column={self.time_column!r}, target={self.target!r}, freq={self.freq!r}, "
            f"borders={{{borders}}})"
        )

    def split(
        self,
        part: Literal["train", "val", "test"],
        lookback: int = 0,
        *,
        backend: Literal["pandas", "polars"] = "pandas",
    ) -> pd.DataFrame | pl.DataFrame:
        """Rows of one part, extended `lookback` rows into the past.

        Returns rows ``[max(start - lookback, 0), end)`` of :attr:`frame`: the
        Time-Series-Library convention, in which the validation and test windows start
        ``seq_len`` rows early so that their first forecast origin is the border itself.

        Parameters
        ----------
        part : {"train", "val", "test"}
            Which part.
        lookback : int, default 0
            Number of earlier rows to prepend (clipped at row 0).
        backend : {"pandas", "polars"}, default "pandas"
            Type of the returned frame.

        Returns
        -------
        pandas.DataFrame or polars.DataFrame
            A fresh copy with a default ``RangeIndex``.

        Examples
        --------
        >>> from rwkv_ts.datasets import load_co2
        >>> data = load_co2()
        >>> start, end = data.borders["test"]
        >>> len(data.split("test", lookback=52)) == end - start + 52
        True
        """
        if part not in self.borders:
            raise ValueError(f"unknown part {part!r}; expected one of {list(self.borders)}")
        if isinstance(lookback, bool) or int(lookback) != lookback or lookback < 0:
            raise ValueError(f"lookback must be a non-negative int, got {lookback!r}")
        start, end = self.borders[part]
        start = max(start - int(lookback), 0)
        out = self.frame.iloc[start:end].reset_index(drop=True).copy()
        if backend == "pandas":
            return out
        if backend == "polars":
            return _to_polars(out)
        raise ValueError(f"backend must be 'pandas' or 'polars', got {backend!r}")

    def to_polars(self) -> pl.DataFrame:
        """The whole frame as a :class:`polars.DataFrame`.

        Returns
        -------
        polars.DataFrame
            Same columns and order; the time column becomes a polars ``Datetime``.

        Examples
        --------
        >>> from rwkv_ts.datasets import load_co2
        >>> load_co2().to_polars().columns
        ['date', 'co2']
        """
        return _to_polars(self.frame)


def _to_polars(frame: pd.DataFrame) -> pl.DataFrame:
    """Convert column by column through NumPy (no pyarrow needed)."""
    import polars as pl

    return pl.DataFrame({str(c): frame[c].to_numpy() for c in frame.columns})
