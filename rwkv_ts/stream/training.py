"""Training and evaluation of the streamable configuration as the recurrent model it is deployed as.

In the streamable configuration (causal normalisation, a head that reads the last few tokens) a
forecast is a function of the whole history: the encoder is an RNN that starts from a zero state at
the first sample and never forgets a sample by construction (its decays do that, gradually). Batch
``predict`` therefore runs over the full given history, and training must show the model the states
it will see when deployed: it trains on segments of several lookbacks with a loss at *every* token
after a burn-in of ``lookback`` samples, so the forecasts it learns are those made after
``lookback`` to ``segment`` samples of history, from one pass over each segment (as a causal
language model learns from every position).

:func:`forecast_every_token` is the parallel form of that recurrence read out at every token;
:class:`TokenForecasts` wraps a model for the training system; :class:`SegmentDataset` turns
windows into per-token targets (NaN where no loss is taken); :func:`rolling_forecasts` gives the
forecasts a stream would give after every sample of a series, for evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from rwkv_ts.data import WindowDataset
from rwkv_ts.nn import RWKVTSModel

#: A training segment spans this many lookbacks (capped by the data).
SEGMENT_LOOKBACKS = 4


def token_ends(length: int, patch_len: int, stride: int, n_head_tokens: int) -> np.ndarray:
    """Positions (0-based sample index) where the tokens that the head can read end.

    ``forward`` aligns the last patch to end at the last sample; the head needs ``n_head_tokens``
    tokens, so the first ``n_head_tokens - 1`` tokens give no forecast.

    Examples
    --------
    >>> token_ends(20, patch_len=4, stride=3, n_head_tokens=2).tolist()
    [7, 10, 13, 16, 19]
    """
    n_patches = (length - patch_len) // stride + 1
    offset = (length - patch_len) % stride
    first = offset + patch_len - 1
    return first + stride * np.arange(n_head_tokens - 1, n_patches)


def token_end_index(model: RWKVTSModel, length: int, device: torch.device) -> torch.Tensor:
    """:func:`token_ends` of the model's per-token forecasts over ``length`` samples, as an index
    tensor on ``device``."""
    config = model.config
    ends = token_ends(length, config.patch_len, config.stride, model.head.n_tokens)
    return torch.from_numpy(ends.astype(np.int64)).to(device)


def forecast_every_token(
    model: RWKVTSModel, series: torch.Tensor, ends: torch.Tensor | None = None
) -> torch.Tensor:
    """Forecasts (B, P', horizon) after every token of the univariate sequences ``series`` (B, L).

    Token ``j`` of the output is what ``model(series[:, : e_j + 1, None])`` forecasts, ``e_j``
    being :func:`token_ends` ``[j]``: the causal configuration is read out at every position in one
    parallel pass. ``ends`` may pass that index ready on the device (:func:`token_end_index`).
    """
    config = model.config
    if config.norm != "causal":
        raise ValueError("per-token forecasts need the causal normalisation (norm='causal')")
    length = series.shape[1]
    z, _ = model.norm(series)
    mean, std = model.norm.statistics(series)
    tokens = model.encode(z)
    n = model.head.n_tokens
    # (B, P - n + 1, D, n) -> (B, P - n + 1, n * D), oldest token first as the head flattens
    windows = tokens.unfold(1, n, 1).permute(0, 1, 3, 2).flatten(2)
    y = model.head.linear(model.head.dropout(windows))
    if ends is None:
        ends = token_end_index(model, length, series.device)
    if getattr(model, "skip", None) is not None:
        # the linear branch on the last lookback samples before each token's end (zeros before
        # the first sample, as forward pads)
        padded = torch.nn.functional.pad(z, (config.lookback - 1, 0))
        y = y + model.skip(padded.unfold(1, config.lookback, 1)[:, ends])
    scale = std[:, ends].to(series.dtype)
    shift = mean[:, ends].to(series.dtype)
    return y * scale[..., None] + shift[..., None]


class TokenForecasts(nn.Module):
    """``forward(x)`` with ``x`` (B, L, 1) gives the per-token forecasts (B, P', horizon); a
    training system's view of a :class:`~rwkv_ts.nn.RWKVTSModel` in the streamable
    configuration."""

    def __init__(self, model: RWKVTSModel) -> None:
        super().__init__()
        self.model = model
        # token-end indices per (length, device), made once: a copy from the host in every
        # forward pass would keep the training step out of a CUDA graph
        self._ends: dict[tuple[int, torch.device], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[2] != 1:
            raise ValueError(f"expected (batch, length, 1) segments, got {tuple(x.shape)}")
        key = (x.shape[1], x.device)
        if key not in self._ends:
            self._ends[key] = token_end_index(self.model, x.shape[1], x.device)
        return forecast_every_token(self.model, x[..., 0], self._ends[key])


class SegmentDataset(Dataset):
    """Per-token targets over the windows of a :class:`~rwkv_ts.data.WindowDataset`.

    Item ``i`` is ``(x, targets)``: ``x`` the segment (S, 1) and ``targets`` (P', horizon) the
    ``horizon`` values after each token's end, NaN (no loss) where the history is shorter than
    ``burn_in`` samples, or for every token but the last when ``last_only``.
    """

    def __init__(
        self,
        windows: WindowDataset,
        patch_len: int,
        stride: int,
        n_head_tokens: int,
        burn_in: int,
        last_only: bool = False,
    ) -> None:
        if not windows.channel_independent:
            raise ValueError("segments must be channel independent (one channel per item)")
        self.windows = windows
        self.horizon = windows.horizon
        self.ends = token_ends(windows.lookback, patch_len, stride, n_head_tokens)
        keep = self.ends + 1 >= burn_in
        if last_only:
            keep = np.arange(len(self.ends)) == len(self.ends) - 1
        self.keep = keep

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.windows.window(i)
        seq = np.concatenate([x[:, 0], y[:, 0]])
        view = np.lib.stride_tricks.sliding_window_view(seq, self.horizon)
        targets = np.array(view[self.ends + 1], dtype=np.float32)
        targets[~self.keep] = np.nan
        return torch.from_numpy(np.array(x, dtype=np.float32)), torch.from_numpy(targets)


def segment_length(lookback: int, horizon: int, lengths: list[int], val_fraction: float) -> int:
    """Length of the training segments: ``SEGMENT_LOOKBACKS`` lookbacks, at most what the longest
    series leaves after its validation part and one horizon, at least one lookback.

    Examples
    --------
    >>> segment_length(96, 24, [10_000], 0.2)
    384
    >>> segment_length(96, 24, [300], 0.2)
    216
    """
    longest = max(lengths)
    room = int(longest * (1.0 - val_fraction)) - horizon
    return max(lookback, min(SEGMENT_LOOKBACKS * lookback, room))


def segment_datasets(
    train_arrays: list[np.ndarray],
    val_arrays: list[np.ndarray],
    config,
    segment: int,
) -> tuple[SegmentDataset, SegmentDataset | None]:
    """Training and validation datasets of segments for the streamable configuration.

    Segment starts are ``stride + 1`` samples apart (coprime with the patch stride) so that the
    patch grid meets every phase of the series; validation scores only each segment's last
    token, whose targets all lie in the validation part.
    """
    step = config.stride + 1 if config.stride > 1 else 1
    kwargs = dict(
        patch_len=config.patch_len, stride=config.stride, n_head_tokens=config.n_head_tokens
    )
    train = SegmentDataset(
        WindowDataset(train_arrays, segment, config.horizon, stride=step),
        burn_in=config.lookback,
        **kwargs,
    )
    val = None
    if val_arrays:
        val = SegmentDataset(
            WindowDataset(val_arrays, segment, config.horizon, stride=step),
            burn_in=config.lookback,
            last_only=True,
            **kwargs,
        )
    return train, val


@torch.no_grad()
def fit_skip_on_segments(
    model: RWKVTSModel,
    data: SegmentDataset,
    ridge: float = 1e-3,
    max_items: int = 4096,
    positions: int = 16,
) -> int:
    """Set the linear branch (``linear_skip``) of a streamable model to the ridge least-squares
    forecast from the last ``lookback`` normalised samples, on the states it is trained in.

    The windowed configuration fits its branch on windows
    (:meth:`~rwkv_ts.nn.RWKVTSModel.fit_skip_least_squares`); here the normalisation runs over
    whole segments, as in deployment, and the design rows are the last ``positions`` scored tokens
    of up to ``max_items`` segments (evenly spaced), each weighted by the variance its forecast is
    denormalised with (the fit minimises the training loss). Returns the number of rows used.
    """
    config = model.config
    lookback, horizon = config.lookback, config.horizon
    scored = np.flatnonzero(data.keep)[-positions:]
    if model.skip is None or not len(scored) or not len(data):
        return 0
    ends = torch.from_numpy(data.ends[scored].astype(np.int64))
    items = np.unique(np.linspace(0, len(data) - 1, min(len(data), max_items)).astype(np.int64))
    xtx = torch.zeros(lookback + 1, lookback + 1, dtype=torch.float64)
    xty = torch.zeros(lookback + 1, horizon, dtype=torch.float64)
    n, total_weight = 0, 0.0
    for start in range(0, len(items), 256):
        batch = [data[int(i)] for i in items[start : start + 256]]
        series = torch.stack([x for x, _ in batch])[..., 0]
        targets = torch.stack([t for _, t in batch])[:, torch.from_numpy(scored)]
        z, _ = model.norm(series)
        mean, std = model.norm.statistics(series)
        padded = torch.nn.functional.pad(z, (lookback - 1, 0))
        design = padded.unfold(1, lookback, 1)[:, ends].reshape(-1, lookback).double()
        design = torch.cat([design, torch.ones_like(design[:, :1])], dim=1)
        goal = (targets.double() - mean[:, ends, None]) / std[:, ends, None]
        goal = goal.reshape(-1, horizon)
        # rows weighted by the variance they are denormalised with: the fit minimises the
        # squared error of the denormalised forecast (the training loss), so that near-constant
        # stretches, whose normalised targets are huge, do not dominate it
        weight = (std[:, ends] ** 2).reshape(-1, 1)  # float64, as the statistics
        xtx += (design * weight).T @ design
        xty += (design * weight).T @ goal
        total_weight += float(weight.sum())
        n += design.shape[0]
    model.solve_skip(xtx, xty, ridge * total_weight)
    return n


@torch.inference_mode()
def rolling_forecasts(model: RWKVTSModel, series: np.ndarray, start: int) -> np.ndarray:
    """Forecasts made after every sample ``t >= start`` of one univariate scaled series (T,),
    each from the whole history ``series[: t + 1]``: what a stream (or ``predict``) gives there.

    Returns an array (T - start, horizon); row ``i`` is the forecast made after sample
    ``start + i``. Runs ``stride`` parallel passes (one per patch phase).
    """
    config = model.config
    x = torch.as_tensor(np.asarray(series, dtype=np.float32))
    out = np.full((len(x) - start, config.horizon), np.nan, dtype=np.float32)
    for drop in range(config.stride):
        length = len(x) - drop
        if length < config.patch_len + (config.n_head_tokens - 1) * config.stride:
            continue
        ends = token_ends(length, config.patch_len, config.stride, config.n_head_tokens)
        y = forecast_every_token(model, x[None, :length])[0].numpy()
        keep = ends >= start
        out[ends[keep] - start] = y[keep]
    return out
