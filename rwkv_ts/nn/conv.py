"""A full-resolution convolutional branch for the sequence models, after FCN and LSTM-FCN.

Wang et al.'s fully convolutional network (FCN, IJCNN 2017: three convolutions of 128, 256 and
128 filters with kernels 8, 5 and 3, batch normalisation, ReLU, global average pooling) is the
deep baseline that generalises best on time-series classification sets of a few dozen series;
Karim et al.'s LSTM-FCN (IEEE Access 2018) reads such a branch beside a recurrent one and
concatenates the two pooled feature vectors before the classifier. :class:`ConvBranch` is that
branch made causal, so that it streams: every convolution is padded on the left only, and the
global average becomes the running mean over the samples seen so far. In inference, batch
normalisation is a fixed per-channel affine map (its running statistics), so one sample at a
time (``step``) gives exactly what the whole sequence gives (``forward``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rwkv_ts.nn.pooling import CausalPooling


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch normalisation over (batch, time) that ignores padded samples while training.

    ``forward(x, valid)`` with ``x`` (B, C, L) and ``valid`` (B, L) booleans (or ``None``: every
    sample counts). In evaluation it is :class:`torch.nn.BatchNorm1d` (running statistics, no
    mask needed: each sample is mapped on its own).
    """

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or valid is None:
            return super().forward(x)
        w = valid[:, None, :].to(x.dtype)  # (B, 1, L)
        n = w.sum().clamp(min=2.0)
        mean = (x * w).sum(dim=(0, 2)) / n
        var = (((x - mean[None, :, None]) ** 2) * w).sum(dim=(0, 2)) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            # momentum None is BatchNorm's cumulative average
            m = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * (var.detach() * n / (n - 1)))
        z = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        return z * self.weight[None, :, None] + self.bias[None, :, None]


class CausalConvBlock(nn.Module):
    """One causal convolution (left padding ``kernel_size - 1``), batch normalisation, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.in_channels = in_channels
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.bn = MaskedBatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L)."""
        h = self.conv(F.pad(x, (self.kernel_size - 1, 0)))
        return F.relu(self.bn(h, valid))

    def step(self, x_t: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample (B, C_in) with the last ``kernel_size - 1`` inputs (B, k - 1, C_in)."""
        window = torch.cat([history, x_t[:, None]], dim=1)  # (B, k, C_in)
        h = torch.einsum("bkc,ock->bo", window, self.conv.weight) + self.conv.bias
        bn = self.bn
        h = (h - bn.running_mean) * torch.rsqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return F.relu(h), window[:, 1:]


class ConvBranch(nn.Module):
    """Causal full-resolution convolutions and their running mean over the samples so far.

    Parameters
    ----------
    n_channels
        Input channels.
    channels, kernels
        Filters and kernel size of each convolution (FCN: ``(128, 256, 128)`` and ``(8, 5, 3)``).

    Examples
    --------
    >>> import torch
    >>> branch = ConvBranch(n_channels=2, channels=(8, 8), kernels=(5, 3)).eval()
    >>> x = torch.randn(3, 20, 2)
    >>> pooled = branch(x)  # the running mean after every sample
    >>> pooled.shape
    torch.Size([3, 20, 8])
    >>> state = branch.init_state(3)
    >>> for t in range(20):
    ...     out, state = branch.step(x[:, t], state)
    >>> bool(torch.allclose(out, pooled[:, -1], atol=1e-5))
    True
    """

    def __init__(
        self, n_channels: int, channels: tuple[int, ...], kernels: tuple[int, ...]
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels) or not channels:
            raise ValueError(
                f"conv_channels {channels} and conv_kernels {kernels} must be non-empty and of "
                "the same length (one kernel size per convolution)"
            )
        widths = (n_channels, *channels)
        self.layers = nn.ModuleList(
            CausalConvBlock(widths[i], widths[i + 1], k) for i, k in enumerate(kernels)
        )
        self.out_features = channels[-1]
        self.pool = CausalPooling(self.out_features, ("mean",))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features after every sample, (B, L, out_features), of ``x`` (B, L, C); ``lengths``
        marks right padding, which batch normalisation leaves out of its training statistics."""
        valid = None
        if lengths is not None:
            steps = torch.arange(x.shape[1], device=x.device)
            valid = steps[None, :] < lengths.to(x.device)[:, None]
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h, valid)
        return h.transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Running mean of the features after every sample, (B, L, out_features)."""
        return self.pool(self.features(x, lengths))

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        state = {
            str(i): torch.zeros(
                batch_size, layer.kernel_size - 1, layer.in_channels, device=device, dtype=dtype
            )
            for i, layer in enumerate(self.layers)
        }
        state["pool"] = self.pool.init_state(batch_size, device, dtype)
        return state

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Take one sample per row, ``x_t`` (B, C); return the running mean (B, out_features)."""
        new_state = {}
        h = x_t
        for i, layer in enumerate(self.layers):
            h, new_state[str(i)] = layer.step(h, state[str(i)])
        every_row = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
        mean, new_state["pool"] = self.pool.step(h, every_row, state["pool"])
        return mean, new_state
