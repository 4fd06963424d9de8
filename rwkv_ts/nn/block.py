"""One RWKV-TS block: time-mix (fused with the TCN branch) and channel-mix, each with pre-norm
residuals."""

from __future__ import annotations

import torch
from torch import nn

from rwkv_ts.nn.channel_mix import ChannelMix
from rwkv_ts.nn.config import RWKVTSConfig
from rwkv_ts.nn.tcn import GatedFusion, TCNBranch
from rwkv_ts.nn.time_mix import TimeMix


class RWKVBlock(nn.Module):
    """Pre-norm RWKV block; with TCN fusion the time-mix output is gated with a causal TCN branch.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn import RWKVTSConfig
    >>> block = RWKVBlock(RWKVTSConfig(d_model=16, head_size=8), layer_id=0)
    >>> block(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    """

    def __init__(self, config: RWKVTSConfig, layer_id: int) -> None:
        super().__init__()
        d = config.d_model
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.time_mix = TimeMix(
            d,
            config.head_size,
            layer_id,
            config.n_layers,
            shift_distances=config.shift_distances,
            decay=config.decay,
            lora_rank=config.lora_rank,
        )
        self.channel_mix = ChannelMix(d, int(config.ffn_mult * d), layer_id, config.n_layers)
        if config.tcn_dilations:
            self.tcn = TCNBranch(d, config.tcn_dilations, config.tcn_kernel_size)
            self.fusion = GatedFusion(d)
        else:
            self.tcn = None
            self.fusion = None
        self.dropout = nn.Dropout(config.dropout)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        state = {
            "time_mix": self.time_mix.init_state(batch_size, device, dtype),
            "channel_mix": self.channel_mix.init_state(batch_size, device, dtype),
        }
        if self.tcn is not None:
            state["tcn"] = self.tcn.init_state(batch_size, device, dtype)
        return state

    def scan(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        new_state = {}
        h = self.ln1(x)
        a, new_state["time_mix"] = self.time_mix.scan(
            h, None if state is None else state["time_mix"]
        )
        if self.tcn is not None:
            c, new_state["tcn"] = self.tcn.scan(h, None if state is None else state["tcn"])
            a = self.fusion(a, c)
        x = x + self.dropout(a)
        f, new_state["channel_mix"] = self.channel_mix.scan(
            self.ln2(x), None if state is None else state["channel_mix"]
        )
        return x + self.dropout(f), new_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scan(x)[0]

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        new_state = {}
        h = self.ln1(x_t)
        a, new_state["time_mix"] = self.time_mix.step(h, state["time_mix"])
        if self.tcn is not None:
            c, new_state["tcn"] = self.tcn.step(h, state["tcn"])
            a = self.fusion(a, c)
        x_t = x_t + self.dropout(a)
        f, new_state["channel_mix"] = self.channel_mix.step(self.ln2(x_t), state["channel_mix"])
        return x_t + self.dropout(f), new_state
