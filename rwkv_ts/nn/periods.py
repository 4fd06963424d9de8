"""Dominant periods of a series by FFT, used to choose multi-scale token-shift distances."""

from __future__ import annotations

import numpy as np


def dominant_periods(
    values: np.ndarray, k: int = 3, min_period: int = 2, max_period: int | None = None
) -> list[int]:
    """Return the ``k`` periods (in samples) with the largest mean FFT amplitude.

    Parameters
    ----------
    values
        Array (T,) or (T, C); channels are averaged in amplitude. The mean of each channel is
        removed first.
    k
        Number of periods returned (fewer if the series is too short).
    min_period, max_period
        Periods outside this range are ignored; ``max_period`` defaults to ``T // 2``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(480)
    >>> dominant_periods(np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 96), k=2)
    [24, 96]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    length = x.shape[0]
    max_period = length // 2 if max_period is None else min(max_period, length // 2)
    amplitude = np.abs(np.fft.rfft(x - x.mean(axis=0), axis=0)).mean(axis=1)
    freqs = np.arange(len(amplitude))
    with np.errstate(divide="ignore"):
        periods = np.where(freqs > 0, np.round(length / np.maximum(freqs, 1)), 0).astype(int)
    ok = (freqs > 0) & (periods >= min_period) & (periods <= max_period)
    order = np.argsort(-amplitude[ok], kind="stable")
    chosen: list[int] = []
    for period in periods[ok][order]:
        if int(period) not in chosen:
            chosen.append(int(period))
        if len(chosen) == k:
            break
    return chosen


def periods_to_distances(periods: list[int], stride: int, max_distance: int) -> tuple[int, ...]:
    """Convert sample periods into token distances for a patch stride: always includes distance 1.

    Examples
    --------
    >>> periods_to_distances([24, 168], stride=8, max_distance=32)
    (1, 3, 21)
    """
    distances = {1}
    for period in periods:
        d = int(round(period / stride))
        if 1 <= d <= max_distance:
            distances.add(d)
    return tuple(sorted(distances))
