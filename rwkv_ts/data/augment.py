"""Random transformations of training instances (data augmentation) for the sequence estimators.

Deep time-series classifiers overfit the small training sets that are common in the field (UCR has
many problems of 20-30 training series). The transformations here are the ones that the survey of
Iwana & Uchida (2021, "An empirical survey of data augmentation for time series classification
with neural networks", PLOS ONE) found most useful, drawn afresh every time an instance is read,
so that every epoch sees new variants:

``"jitter"``
    Gaussian noise with standard deviation 0.03 added to every value (Um et al. 2017).
``"scale"``
    Each channel multiplied by a factor drawn from N(1, 0.1²) (Um et al. 2017).
``"slice"``
    A random window of 90 % of the instance, stretched back to the instance's length by linear
    interpolation (window slicing, Le Guennec et al. 2016).
``"warp"``
    A random window of 10 % of the instance played at half or double speed, the whole instance
    then resampled to its length (window warping, Le Guennec et al. 2016).

The values are those of the estimators' standardised channels (unit variance on the training
data). Each named transformation is applied to an instance with probability 0.5, independently
of the others, so the original instances stay part of what the model sees. Draws come from
torch's global generator, which the estimators seed and a training checkpoint saves, so a seeded
fit is reproducible and a resumed one draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

__all__ = ["AUGMENTATIONS", "AugmentedSequences", "parse_augment", "TIME_AUGMENTATIONS"]

JITTER_STD = 0.03
SCALE_STD = 0.1
SLICE_FRACTION = 0.9
WARP_FRACTION = 0.1
WARP_SPEEDS = (0.5, 2.0)
PROBABILITY = 0.5


def resample(x: torch.Tensor, length: int) -> torch.Tensor:
    """``x`` ``(T, C)`` linearly interpolated to ``(length, C)`` (end points kept).

    Examples
    --------
    >>> resample(torch.tensor([[0.0], [2.0]]), 3).ravel().tolist()
    [0.0, 1.0, 2.0]
    """
    if len(x) == length:
        return x
    if len(x) == 1:
        return x.expand(length, -1).clone()
    # positions in float64 so that the last one is exactly the last sample (torch's
    # interpolate misses it by a rounding error)
    position = torch.linspace(0.0, len(x) - 1.0, length, dtype=torch.float64)
    left = position.floor().long().clamp(max=len(x) - 2)
    weight = (position - left).to(x.dtype)[:, None]
    return x[left] * (1.0 - weight) + x[left + 1] * weight


def _randint(low: int, high: int) -> int:
    """An integer in ``[low, high]`` from torch's global generator."""
    return int(torch.randint(low, high + 1, ()))


def jitter(x: torch.Tensor) -> torch.Tensor:
    return x + JITTER_STD * torch.randn(x.shape, dtype=x.dtype)


def scale(x: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + SCALE_STD * torch.randn((1, x.shape[1]), dtype=x.dtype))


def window_slice(x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    width = max(2, math.ceil(SLICE_FRACTION * n))
    if width >= n:
        return x
    start = _randint(0, n - width)
    return resample(x[start : start + width], n)


def window_warp(x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    width = max(1, math.ceil(WARP_FRACTION * n))
    if n < 2 or width >= n:
        return x
    start = _randint(0, n - width)
    speed = WARP_SPEEDS[_randint(0, len(WARP_SPEEDS) - 1)]
    # at least two samples for a window of two or more, so that its own ends (the instance's
    # where the window reaches them) stay
    middle = resample(x[start : start + width], max(min(width, 2), round(width * speed)))
    return resample(torch.cat([x[:start], middle, x[start + width :]]), n)


#: name -> transformation of one instance ``(T, C)`` (same shape out)
AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jitter": jitter,
    "scale": scale,
    "slice": window_slice,
    "warp": window_warp,
}

#: the transformations that move samples in time (so per-sample targets would no longer line up)
TIME_AUGMENTATIONS = frozenset({"slice", "warp"})


def parse_augment(value: str | None) -> tuple[str, ...]:
    """The transformations named by ``value`` (``None``, or names joined by ``"+"``).

    Examples
    --------
    >>> parse_augment("slice+scale")
    ('slice', 'scale')
    >>> parse_augment(None)
    ()
    """
    if value is None:
        return ()
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"augment must be None or names joined by '+' from {sorted(AUGMENTATIONS)}, "
            f"got {value!r}"
        )
    names = tuple(part.strip() for part in value.split("+"))
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"augment: unknown transformation {name!r} in {value!r}; "
                f"choose from {sorted(AUGMENTATIONS)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"augment names a transformation twice: {value!r}")
    return names


class AugmentedSequences(Dataset):
    """Items ``(x, target)`` of ``data`` with the named transformations applied at random.

    Parameters
    ----------
    data : Dataset
        Items ``(x, target)`` with ``x`` a float tensor ``(T, C)``.
    names : tuple of str
        Keys of :data:`AUGMENTATIONS`, applied in this order, each with probability 0.5.

    Examples
    --------
    >>> from rwkv_ts.data.sequences import SequenceDataset
    >>> import numpy as np
    >>> data = SequenceDataset([np.arange(20.0, dtype=np.float32)[:, None]], np.array([1]))
    >>> _ = torch.manual_seed(0)
    >>> x, y = AugmentedSequences(data, ("slice", "warp"))[0]
    >>> tuple(x.shape), int(y)
    ((20, 1), 1)
    """

    def __init__(self, data: Dataset, names: tuple[str, ...]) -> None:
        self.data = data
        self.transforms = [AUGMENTATIONS[name] for name in names]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, target = self.data[i]
        for transform in self.transforms:
            if float(torch.rand(())) < PROBABILITY:
                x = transform(x)
        return x, target
