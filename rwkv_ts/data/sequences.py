"""Training items for sequence-level models: whole instances of any length, batched with padding.

:class:`SequenceDataset` keeps the instances as given; :func:`collate_sequences` pads a batch to its
longest instance (zeros after the end, which a causal model never reads for earlier outputs) and
passes the lengths, so a batch is ``(x, lengths, target)``. Targets are one value (or vector) per
instance, or one per token for per-prefix training (padded with NaN, which the loss skips).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SequenceDataset", "collate_sequences", "token_targets"]


def token_targets(
    per_sample: Sequence[np.ndarray], patch_len: int, stride: int
) -> list[np.ndarray]:
    """Per-token targets from per-sample targets: token ``j`` of a sequence ends at sample
    ``j * stride + patch_len - 1`` and takes that sample's target.

    Examples
    --------
    >>> token_targets([np.arange(7.0)], patch_len=3, stride=2)[0].ravel().tolist()
    [2.0, 4.0, 6.0]
    """
    out = []
    for y in per_sample:
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 1:
            y = y[:, None]
        ends = np.arange(patch_len - 1, len(y), stride)
        out.append(np.ascontiguousarray(y[ends]))
    return out


class SequenceDataset(Dataset):
    """Instances ``(T_i, C)`` with their targets.

    Parameters
    ----------
    values : sequence of numpy.ndarray
        float32 arrays ``(T_i, C)``.
    targets : numpy.ndarray or sequence of numpy.ndarray
        One row per instance (class indices as int64, or float32 values), or one float32 array
        ``(P_i, k)`` per instance for per-token targets.

    Examples
    --------
    >>> ds = SequenceDataset([np.zeros((5, 2), np.float32), np.ones((3, 2), np.float32)],
    ...                      np.array([0, 1]))
    >>> x, lengths, y = collate_sequences([ds[0], ds[1]])
    >>> tuple(x.shape), lengths.tolist(), y.tolist()
    ((2, 5, 2), [5, 3], [0, 1])
    """

    def __init__(self, values: Sequence[np.ndarray], targets) -> None:
        if len(values) != len(targets):
            raise ValueError(f"{len(values)} instances but {len(targets)} targets")
        self.values = [torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for v in values]
        if isinstance(targets, np.ndarray):
            self.targets = torch.from_numpy(np.ascontiguousarray(targets))
        else:
            self.targets = [torch.from_numpy(np.ascontiguousarray(t)) for t in targets]

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int):
        return self.values[i], self.targets[i]


def collate_sequences(batch):
    """Pad ``[(x_i, target_i), ...]`` into ``(x, lengths, targets)``; per-token targets of
    differing lengths are padded with NaN."""
    xs, ys = zip(*batch, strict=True)
    lengths = torch.tensor([len(x) for x in xs], dtype=torch.long)
    x = torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True)
    if ys[0].ndim >= 2:  # per-token targets (P_i, k)
        y = torch.nn.utils.rnn.pad_sequence(list(ys), batch_first=True, padding_value=float("nan"))
    else:
        y = torch.stack(list(ys))
    return x, lengths, y
