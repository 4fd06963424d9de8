"""Instance panels: many separate sequences (one per recording, engine, patient ...), for
classification and regression.

:func:`to_instances` validates the accepted layouts once, at the boundary, and returns an
:class:`Instances` of float32 arrays of shape ``(T_i, C)``:

* a 3-D array ``(n_instances, n_channels, n_timepoints)`` (sktime's ``numpy3D``);
* a 2-D array ``(n_instances, n_timepoints)``: univariate instances;
* a list of 2-D arrays ``(n_channels, T_i)`` (or 1-D arrays ``(T_i,)``), lengths may differ;
* a long pandas or polars frame: an instance id column, a time column and channel columns, read
  with :func:`rwkv_ts.data.to_panel` (sorted times, a regular step and finite values are
  checked there).

The caller's data is never modified.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rwkv_ts.data.validation import DataTypeError, DataValidationError, format_list

__all__ = ["Instances", "align_targets", "check_y", "to_instances"]


@dataclass
class Instances:
    """Validated instances as float32 arrays.

    Attributes
    ----------
    values : list of numpy.ndarray
        One C-contiguous float32 array of shape ``(T_i, C)`` per instance (owned, never a view of
        the caller's data).
    channels : list of str
        Channel names: the value columns of a frame, ``"0", "1", ...`` for arrays.
    ids : list or None
        Instance ids of a long frame, in order of first appearance; ``None`` for arrays.
    """

    values: list[np.ndarray]
    channels: list[str]
    ids: list | None = None

    @property
    def n_instances(self) -> int:
        return len(self.values)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)


def _is_frame(X: Any) -> bool:
    if isinstance(X, pd.DataFrame):
        return True
    try:
        import narwhals as nw

        frame = nw.from_native(X, pass_through=True)
        return isinstance(frame, nw.DataFrame | nw.LazyFrame)
    except TypeError:
        return False


def _numeric(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind == "c":
        raise DataTypeError(f"{what} has dtype {arr.dtype}: Complex data not supported")
    if arr.dtype.kind == "O":
        # object arrays of numbers are accepted as scikit-learn does
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            flat = arr.ravel()
            bad = next(
                (i for i, v in enumerate(flat) if not isinstance(v, int | float | np.number)),
                0,
            )
            bad_value = flat[bad] if flat.size else None
            # numpy's own words kept: scikit-learn's checks look for them
            raise DataTypeError(
                f"{what} holds the non-numeric value {bad_value!r} at flat position {bad}; "
                f"expected real numbers ({exc})"
            ) from None
    if arr.dtype.kind not in "iuf":
        raise DataTypeError(
            f"{what} has dtype {arr.dtype}; expected real numbers (integer or float; not bool, "
            "complex, string or datetime)"
        )
    return arr


def _from_array(arr: np.ndarray) -> list[np.ndarray]:
    arr = _numeric(arr, "X")
    if arr.ndim == 2:
        return [row[:, None] for row in arr]
    if arr.ndim == 3:
        return [inst.T for inst in arr]
    raise DataValidationError(
        ("Reshape your data: " if arr.ndim < 2 else "")
        + f"X has shape {arr.shape}; expected (n_instances, n_channels, n_timepoints), "
        "(n_instances, n_timepoints), a list of (n_channels, T_i) arrays, or a long frame"
    )


def _from_list(X: Sequence) -> list[np.ndarray]:
    out = []
    ndims = set()
    for i, item in enumerate(X):
        a = _numeric(np.asarray(item), f"instance {i}")
        if a.ndim == 1:
            a = a[:, None]
        elif a.ndim == 2:
            a = a.T
        else:
            raise DataValidationError(
                f"instance {i} has shape {a.shape}; each instance must be (n_channels, T_i) "
                "or (T_i,)"
            )
        ndims.add(np.ndim(item))
        out.append(a)
    if len(ndims) > 1:
        raise DataValidationError(
            "X mixes 1-D and 2-D instances; give every instance as (n_channels, T_i)"
        )
    return out


def to_instances(
    X: Any,
    *,
    id_col: Hashable | None = None,
    time_col: Hashable | None = None,
    value_cols: Hashable | Sequence[Hashable] | None = None,
    impute: str | None = None,
    min_length: int = 1,
    n_channels: int | None = None,
) -> Instances:
    """Validate and convert instances (see the module docstring for the layouts).

    Parameters
    ----------
    X : array-like, list of arrays, pandas.DataFrame or polars.DataFrame
        The instances.
    id_col, time_col, value_cols : optional
        Columns of a long frame: the instance id (default ``"unique_id"`` when present), the time
        (default ``"ds"`` or the single datetime column) and the channels (default: every other
        column).
    impute : {"linear", "ffill", "zero"}, optional
        How missing values are filled; ``None`` rejects them.
    min_length : int, default 1
        Minimum number of samples of every instance.
    n_channels : int, optional
        The number of channels the instances must have (a fitted estimator's). An array or list
        with another number is refused before its lengths are checked, so that an array given
        time first is named as such rather than as too short.

    Returns
    -------
    Instances

    Raises
    ------
    DataValidationError
        Empty input, a bad shape, differing channel counts, missing or infinite values, too
        short an instance, or a frame problem found by :func:`rwkv_ts.data.to_panel`.
    DataTypeError
        Non-numeric values.

    Examples
    --------
    >>> import numpy as np
    >>> inst = to_instances(np.zeros((4, 2, 30)))
    >>> inst.n_instances, inst.values[0].shape, inst.channels
    (4, (30, 2), ['0', '1'])
    >>> to_instances([np.zeros(5), np.ones(7)]).lengths.tolist()
    [5, 7]
    """
    if _is_frame(X):
        from rwkv_ts.data.frames import to_panel

        panel = to_panel(
            X,
            id_col=id_col,
            time_col=time_col,
            value_cols=value_cols,
            long=True,
            impute=impute,
            min_length=min_length,
        )
        return Instances(
            values=list(panel.values), channels=list(panel.channels), ids=panel.series_ids
        )
    if any(v is not None for v in (id_col, time_col, value_cols)):
        raise DataValidationError(
            "id_col, time_col and value_cols apply to long frames only; X is an array or a list"
        )
    if isinstance(X, list | tuple):
        if len(X) == 0:
            raise DataValidationError("empty input: X has no instances")
        if all(np.ndim(item) == 0 for item in X):
            raise DataValidationError(
                "X is a flat list of numbers; give a list of instances, each (n_channels, T_i)"
            )
        arrays = _from_list(X)
    else:
        if sp.issparse(X):
            raise TypeError(
                "sparse input is not supported: X must be dense (instances, channels, time)"
            )
        arr = np.asarray(X)
        if arr.size == 0:
            raise DataValidationError(
                f"empty input: X has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
                "required."
                if arr.ndim == 2 and arr.shape[0] > 0
                else f"empty input: X has shape {arr.shape}"
            )
        arrays = _from_array(arr)
    channels = {a.shape[1] for a in arrays}
    if len(channels) > 1:
        raise DataValidationError(
            f"instances have different numbers of channels: {format_list(sorted(channels))}"
        )
    if n_channels is not None and channels != {n_channels}:
        raise DataValidationError(
            f"X has {channels.pop()} channel(s) where {n_channels} are expected; arrays are "
            "(instances, channels, time), list items (channels, time)"
        )
    values = []
    for i, a in enumerate(arrays):
        if len(a) < min_length:
            raise DataValidationError(
                f"instance {i} has {len(a)} time points, fewer than the {min_length} needed"
            )
        a = np.array(a, dtype=np.float64)  # our own copy
        bad = ~np.isfinite(a)
        if bad.any():
            if impute is None or np.isinf(a).any():
                t, c = np.argwhere(bad)[0]
                kind = "infinite" if np.isinf(a[t, c]) else "missing (NaN)"
                raise DataValidationError(
                    f"instance {i} has {int(bad.sum())} {kind} value(s), first at time point "
                    f"{t} of channel {c}"
                    + ("" if np.isinf(a[t, c]) else "; pass impute= to fill missing values")
                )
            a = _impute(a, impute)
        if np.abs(a).max(initial=0.0) > np.finfo(np.float32).max:
            raise DataValidationError(f"instance {i} has values beyond the float32 range")
        values.append(np.ascontiguousarray(a, dtype=np.float32))
    return Instances(values=values, channels=[str(c) for c in range(arrays[0].shape[1])])


def _impute(a: np.ndarray, method: str) -> np.ndarray:
    from rwkv_ts.data.validation import check_impute

    check_impute(method)
    frame = pd.DataFrame(a)
    if method == "zero":
        return frame.fillna(0.0).to_numpy()
    if method == "ffill":
        return frame.ffill().bfill().to_numpy()
    return frame.interpolate(method="linear", limit_direction="both").to_numpy()


def check_y(y: Any, estimator: str) -> None:
    """Raise ``ValueError`` for a missing target."""
    if y is None:
        raise ValueError(f"{estimator} requires y to be passed, but the target y is None")


def align_targets(y: Any, instances: Instances, name: str = "y") -> np.ndarray | list:
    """Targets in instance order: an array of ``n_instances`` rows, or a pandas Series (or dict)
    keyed by the instance ids of a long frame; a list of per-sample arrays is returned as is.

    Raises
    ------
    DataValidationError
        When the number of targets does not match, or ids are missing.
    """
    n = instances.n_instances
    if isinstance(y, pd.Series | dict) and instances.ids is not None:
        mapping = y if isinstance(y, dict) else y.to_dict()
        missing = [i for i in instances.ids if i not in mapping]
        if missing:
            raise DataValidationError(
                f"{name} has no value for instance id(s) {format_list(missing)}"
            )
        return np.asarray([mapping[i] for i in instances.ids])
    if isinstance(y, pd.Series | pd.DataFrame):
        y = y.to_numpy()
    elif not isinstance(y, list | tuple | np.ndarray):
        y = np.asarray(y)
    length = len(y) if hasattr(y, "__len__") else None
    if length != n:
        raise DataValidationError(
            f"{name} has {length} entries but X has {n} instances"
            if length is not None
            else f"{name} must be array-like with one entry per instance, got {type(y).__name__}"
        )
    return y
