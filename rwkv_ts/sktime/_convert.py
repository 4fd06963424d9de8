"""Conversion between sktime's pandas mtypes and the per-series arrays the estimators use.

sktime hands a forecaster one of three pandas layouts (its "inner mtypes"):

* ``pd.DataFrame``: one series, the index is the time;
* ``pd-multiindex``: a panel, index ``(instance, time)``;
* ``pd_multiindex_hier``: a hierarchy, index ``(level_0, ..., level_k, time)``.

The instance key is every index level but the last; one series has the key ``None``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np
import pandas as pd


def iter_instances(y: pd.DataFrame) -> Iterator[tuple[Hashable, pd.DataFrame]]:
    """Yield ``(key, frame)`` per series, in order of first appearance; the frame has a plain
    time index.

    Examples
    --------
    >>> idx = pd.MultiIndex.from_product([["a", "b"], [0, 1]], names=["id", "t"])
    >>> y = pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=idx)
    >>> [(k, f["v"].tolist()) for k, f in iter_instances(y)]
    [('a', [1.0, 2.0]), ('b', [3.0, 4.0])]
    """
    if not isinstance(y.index, pd.MultiIndex):
        yield None, y
        return
    levels = list(range(y.index.nlevels - 1))
    key_level = levels[0] if len(levels) == 1 else levels
    for key, frame in y.groupby(level=key_level, sort=False):
        yield key, frame.droplevel(levels)


def to_long_frame(
    instances: list[tuple[Hashable, pd.DataFrame]],
) -> tuple[pd.DataFrame, list[str]]:
    """A long frame (integer series code, integer time position, value columns ``c0, c1, ..``)
    that :class:`rwkv_ts.RWKVForecaster` accepts whatever the original time index was.

    Examples
    --------
    >>> a = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.period_range("2000", periods=2, freq="M"))
    >>> long, cols = to_long_frame([(None, a)])
    >>> long.columns.tolist(), cols
    (['series', 'step', 'c0'], ['c0'])
    """
    n_cols = instances[0][1].shape[1]
    value_cols = [f"c{j}" for j in range(n_cols)]
    parts = []
    for code, (_, frame) in enumerate(instances):
        n = len(frame)
        part = pd.DataFrame(frame.to_numpy(dtype=np.float64), columns=value_cols)
        part.insert(0, "step", np.arange(n, dtype=np.int64))
        part.insert(0, "series", np.full(n, code, dtype=np.int64))
        parts.append(part)
    return pd.concat(parts, ignore_index=True), value_cols


def stack_output(
    pieces: list[tuple[Hashable, pd.DataFrame]], index_names: list, multi: bool
) -> pd.DataFrame:
    """Concatenate per-series forecasts back into the layout sktime expects."""
    if not multi:
        out = pieces[0][1]
        out.index.name = index_names[-1]
        return out
    frames, keys = [], []
    for key, frame in pieces:
        frames.append(frame)
        keys.append(key if isinstance(key, tuple) else (key,))
    out = pd.concat(frames, keys=keys)
    out.index.names = index_names
    return out
