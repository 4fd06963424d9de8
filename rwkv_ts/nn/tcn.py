"""A causal dilated temporal-convolution (TCN) branch over tokens, fused with the RWKV branch by a
gate."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CausalConvLayer(nn.Module):
    """Depthwise causal dilated convolution, GELU, pointwise projection, and a residual
    connection."""

    def __init__(self, d_model: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.receptive = (kernel_size - 1) * dilation
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, dilation=dilation, groups=d_model)
        self.pointwise = nn.Linear(d_model, d_model)

    def scan(
        self, x: torch.Tensor, history: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, width = x.shape
        if history is None:
            history = x.new_zeros(batch, self.receptive, width)
        padded = torch.cat([history, x], dim=1)
        h = self.depthwise(padded.transpose(1, 2)).transpose(1, 2)
        out = x + self.pointwise(F.gelu(h))
        return out, padded[:, padded.shape[1] - self.receptive :]

    def step(self, x_t: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([history, x_t[:, None]], dim=1)  # (B, receptive + 1, D)
        taps = window[:, :: self.dilation]  # the kernel_size samples the filter reads
        weight = self.depthwise.weight[:, 0, :]  # (D, kernel)
        h = torch.einsum("bkd,dk->bd", taps, weight) + self.depthwise.bias
        return x_t + self.pointwise(F.gelu(h)), window[:, 1:]


class TCNBranch(nn.Module):
    """A stack of causal dilated convolutions over the token sequence.

    After MSRWKV-2DTCN's temporal-convolution branch, made causal so it streams with bounded
    buffers.

    Examples
    --------
    >>> import torch
    >>> tcn = TCNBranch(d_model=8, dilations=(1, 2), kernel_size=3)
    >>> tcn(torch.randn(2, 6, 8)).shape
    torch.Size([2, 6, 8])
    """

    def __init__(self, d_model: int, dilations: tuple[int, ...], kernel_size: int = 3) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(CausalConvLayer(d_model, kernel_size, d) for d in dilations)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            str(i): torch.zeros(
                batch_size, layer.receptive, self.d_model, device=device, dtype=dtype
            )
            for i, layer in enumerate(self.layers)
        }

    def scan(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        new_state = {}
        for i, layer in enumerate(self.layers):
            x, new_state[str(i)] = layer.scan(x, None if state is None else state[str(i)])
        return x, new_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scan(x)[0]

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        new_state = {}
        for i, layer in enumerate(self.layers):
            x_t, new_state[str(i)] = layer.step(x_t, state[str(i)])
        return x_t, new_state


class GatedFusion(nn.Module):
    """Fuse two branches with a learned, per-channel sigmoid gate: ``g * a + (1 - g) * b``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * d_model, d_model)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, 1.0)  # start leaning on the RWKV branch

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))
        return g * a + (1.0 - g) * b
