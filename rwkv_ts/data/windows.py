"""Training windows over series without materialising them.

:class:`WindowDataset` keeps the series arrays as given and an index table of
``(series, start, channel)`` rows; every item is sliced from the stored arrays on demand, so the
memory cost is ``O(number of windows)`` integers, not ``O(windows x (lookback + horizon))`` floats.
:func:`chronological_split` splits every series in time into training and validation parts
without validation targets leaking into training targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rwkv_ts.data.validation import DataValidationError, check_positive_int

__all__ = ["WindowDataset", "chronological_split"]


def _as_2d_float32(a: np.ndarray, i: int) -> np.ndarray:
    """``a`` as a writable float32 array of shape (T, C): a view when it already is one."""
    arr = np.asarray(a)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataValidationError(
            f"series {i} has shape {arr.shape}; expected (T,) or (T, C) arrays"
        )
    if arr.dtype != np.float32 or not arr.flags.writeable:
        # torch.from_numpy needs a writable array; this is the only case that copies
        arr = np.array(arr, dtype=np.float32)
    return arr


def _n_windows(lengths: np.ndarray, span: int, stride: int) -> np.ndarray:
    """Number of windows of ``span`` steps at ``stride`` in series of the given lengths."""
    return np.where(lengths >= span, (lengths - span) // stride + 1, 0)


class WindowDataset(Dataset):
    """Sliding (lookback, horizon) windows over a list of series, sliced on demand.

    Windows of series ``i`` start at ``0, stride, 2 * stride, ...`` while
    ``start + lookback + horizon <= T_i``; series shorter than ``lookback + horizon`` give none.
    Item ``k`` is ``(x, y)`` with ``x = a[start : start + lookback]`` and
    ``y = a[start + lookback : start + lookback + horizon]`` (tensors sharing memory with the
    stored array ``a``); with ``channel_independent=True`` only column ``channel`` is taken,
    keeping a trailing axis of size 1.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        Series of shape ``(T_i, C_i)`` (or ``(T_i,)``), float32. They are stored as given (no
        copy); only non-float32 or read-only arrays are converted, once.
    lookback : int
        Input length.
    horizon : int
        Target length.
    stride : int, default 1
        Step between window starts.
    channel_independent : bool, default True
        If True, each item is one channel of one window: ``x`` of shape ``(lookback, 1)``,
        ``y`` of shape ``(horizon, 1)``; channel counts may differ between series. If False,
        items are ``(lookback, C)`` / ``(horizon, C)`` and all series must have the same ``C``.

    Attributes
    ----------
    arrays : list of numpy.ndarray
        The stored series.
    index : numpy.ndarray
        Read-only integer table (``int32``, or ``int64`` for series beyond 2**31 steps) of shape
        ``(n_items, 3)``: series, start, channel (``-1`` when ``channel_independent`` is False),
        ordered by series, then start, then channel.

    Raises
    ------
    DataValidationError
        For non-positive sizes, arrays that are not 1-D/2-D, or differing channel counts when
        ``channel_independent`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> ds = WindowDataset([np.zeros((10, 2), np.float32)], lookback=4, horizon=2)
    >>> len(ds), tuple(ds[0][0].shape), tuple(ds[0][1].shape)
    (10, (4, 1), (2, 1))
    """

    def __init__(
        self,
        arrays: Sequence[np.ndarray],
        lookback: int,
        horizon: int,
        stride: int = 1,
        channel_independent: bool = True,
    ) -> None:
        self.lookback = check_positive_int(lookback, "lookback")
        self.horizon = check_positive_int(horizon, "horizon")
        self.stride = check_positive_int(stride, "stride")
        self.channel_independent = bool(channel_independent)
        self.arrays = [_as_2d_float32(a, i) for i, a in enumerate(arrays)]
        lengths = np.array([a.shape[0] for a in self.arrays], dtype=np.int64)
        channels = np.array([a.shape[1] for a in self.arrays], dtype=np.int64)
        if not self.channel_independent and len(set(channels.tolist())) > 1:
            raise DataValidationError(
                f"with channel_independent=False all series need the same number of channels; "
                f"got {sorted(set(channels.tolist()))}"
            )
        n_win = _n_windows(lengths, self.lookback + self.horizon, self.stride)
        per_item = channels if self.channel_independent else np.ones_like(channels)
        n_items = n_win * per_item
        total = int(n_items.sum())
        series = np.repeat(np.arange(len(self.arrays), dtype=np.int64), n_items)
        k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_items) - n_items, n_items)
        c_rep = np.repeat(per_item, n_items)
        # the smallest integer type that holds every series number and start
        fits32 = max(len(self.arrays), int(lengths.max(initial=0))) < np.iinfo(np.int32).max
        index = np.empty((total, 3), dtype=np.int32 if fits32 else np.int64)
        index[:, 0] = series
        index[:, 1] = (k // c_rep) * self.stride
        index[:, 2] = k % c_rep if self.channel_independent else -1
        index.flags.writeable = False
        self.index = index

    def __len__(self) -> int:
        """Number of items (windows, times channels when channel-independent)."""
        return len(self.index)

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i`` as numpy views ``(x, y)`` of the stored array.

        Parameters
        ----------
        i : int
            Item number (negative numbers count from the end).

        Returns
        -------
        x, y : numpy.ndarray
            Views of shape ``(lookback, c)`` and ``(horizon, c)``, ``c`` being 1 or ``C``.
        """
        s, t, c = self.index[i].tolist()
        a = self.arrays[s]
        cols = slice(c, c + 1) if c >= 0 else slice(None)
        mid = t + self.lookback
        return a[t:mid, cols], a[mid : mid + self.horizon, cols]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i`` as tensors ``(x, y)`` sharing memory with the stored array."""
        x, y = self.window(i)
        return torch.from_numpy(x), torch.from_numpy(y)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather several items at once (one vectorised gather per series).

        Parameters
        ----------
        indices : sequence of int
            Item numbers.

        Returns
        -------
        x, y : torch.Tensor
            New tensors of shape ``(B, lookback, c)`` and ``(B, horizon, c)``, equal to stacking
            ``self[i]`` for ``i`` in ``indices``.
        """
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.index[idx]
        span = self.lookback + self.horizon
        c = 1 if self.channel_independent else (self.arrays[0].shape[1] if self.arrays else 0)
        out = np.empty((len(idx), span, c), dtype=np.float32)
        for s in np.unique(rows[:, 0]):
            sel = np.flatnonzero(rows[:, 0] == s)
            view = np.lib.stride_tricks.sliding_window_view(self.arrays[s], span, axis=0)
            if self.channel_independent:  # view: (n, C, span) -> (k, span)
                out[sel, :, 0] = view[rows[sel, 1], rows[sel, 2]]
            else:
                out[sel] = view[rows[sel, 1]].transpose(0, 2, 1)
        out_t = torch.from_numpy(out)
        return out_t[:, : self.lookback], out_t[:, self.lookback :]


def chronological_split(
    values: Sequence[np.ndarray], val_fraction: float, lookback: int, horizon: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split every series in time into a training part and a validation part (views).

    For a series of length ``T`` the target positions of its windows are ``lookback .. T-1``.
    Its validation part holds the targets of the last ``n_val = round(val_fraction * (T -
    lookback))`` positions (at least ``horizon``, so that it gives one window, and at most
    ``T - lookback - horizon``, so that training keeps one window); its array starts
    ``lookback`` steps earlier: ``a[T - n_val - lookback :]``. The training array is
    ``a[: T - n_val]``. Training targets (positions ``< T - n_val``) and validation targets
    (``>= T - n_val``) never overlap; only the validation *inputs* see training data (TSLib
    convention). Series too short for a validation window (``T < lookback + 2 * horizon``)
    go whole to training.

    Parameters
    ----------
    values : sequence of numpy.ndarray
        Series of shape ``(T_i, C)``.
    val_fraction : float
        Share of each series' target positions used for validation, in ``[0, 1)``; 0 gives
        no validation arrays.
    lookback : int
        Input length of a window.
    horizon : int
        Target length of a window.

    Returns
    -------
    train_arrays : list of numpy.ndarray
        One view per series (series shorter than ``lookback + horizon`` included, whole).
    val_arrays : list of numpy.ndarray
        One view per series long enough for a validation window (possibly empty list).

    Raises
    ------
    DataValidationError
        If ``val_fraction`` is outside ``[0, 1)`` or no series can give a training window.
    """
    lookback = check_positive_int(lookback, "lookback")
    horizon = check_positive_int(horizon, "horizon")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataValidationError(f"val_fraction must be in [0, 1), got {val_fraction}")
    span = lookback + horizon
    lengths = [len(a) for a in values]
    if not lengths or max(lengths) < span:
        longest = max(lengths) if lengths else 0
        raise DataValidationError(
            f"no series can give a training window: lookback + horizon = {span} observations "
            f"are needed, the longest of the {len(lengths)} series has {longest}"
        )
    train, val = [], []
    for a in values:
        n = len(a)
        n_val = 0
        if val_fraction > 0 and n >= span + horizon:
            n_val = int(round(val_fraction * (n - lookback)))
            n_val = min(max(n_val, horizon), n - span)
        if n_val:
            train.append(a[: n - n_val])
            val.append(a[n - n_val - lookback :])
        else:
            train.append(a)
    return train, val
