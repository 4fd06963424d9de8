"""RWKV channel-mix: a squared-ReLU feed-forward with one-step token shift and a receptance gate."""

from __future__ import annotations

import torch
from torch import nn

from rwkv_ts.nn.shift import shift_sequence


class ChannelMix(nn.Module):
    """RWKV-6 channel-mix.

    Examples
    --------
    >>> import torch
    >>> ffn = ChannelMix(d_model=8, hidden=16, layer_id=0, n_layers=1)
    >>> ffn(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, d_model: int, hidden: int, layer_id: int, n_layers: int) -> None:
        super().__init__()
        self.d_model = d_model
        ratio_1_to_almost0 = 1.0 - layer_id / n_layers
        ddd = torch.arange(d_model, dtype=torch.float32) / d_model
        self.maa_k = nn.Parameter(1.0 - ddd.pow(ratio_1_to_almost0))
        self.maa_r = nn.Parameter(1.0 - ddd.pow(ratio_1_to_almost0))
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        nn.init.zeros_(self.value.weight)

    def _mix(self, x: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
        xx = shifted - x
        k = torch.relu(self.key(x + xx * self.maa_k)) ** 2
        return torch.sigmoid(self.receptance(x + xx * self.maa_r)) * self.value(k)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {"last": torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)}

    def scan(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        previous = None if state is None else state["last"][:, None]
        return self._mix(x, shift_sequence(x, 1, previous)), {"last": x[:, -1]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scan(x)[0]

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        return self._mix(x_t, state["last"]), {"last": x_t}
