"""The RWKV-TS encoder-forecaster: normalisation, patching, RWKV blocks, a forecast head.

Parallel mode (``forward``) runs a whole window; recurrent mode (``step``) takes one sample per
channel at a time with an explicit state. In the causal configuration (``norm="causal"``) the two
give the same forecasts; in the windowed configuration (``norm="instance"``) ``step`` keeps the last
``lookback`` samples and recomputes the window, which is what instance normalisation demands.
"""

from __future__ import annotations

import torch
from torch import nn

from rwkv_ts.nn.block import RWKVBlock
from rwkv_ts.nn.config import RWKVTSConfig
from rwkv_ts.nn.heads import TokenHead
from rwkv_ts.nn.norm import CausalNorm, InstanceNorm, denormalise
from rwkv_ts.nn.patch import PatchEmbedding


class RWKVTSModel(nn.Module):
    """Channel-independent RWKV-TS forecaster.

    Parameters
    ----------
    config
        The hyperparameters, see :class:`RWKVTSConfig`.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel
    >>> model = RWKVTSModel(RWKVTSConfig(lookback=32, horizon=8, patch_len=8, stride=4, d_model=16,
    ...                                 head_size=8, n_layers=1))
    >>> model(torch.randn(4, 32, 3)).shape
    torch.Size([4, 8, 3])
    """

    def __init__(self, config: RWKVTSConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        if config.norm == "causal":
            self.norm = CausalNorm(config.causal_norm_window)
        else:
            self.norm = InstanceNorm(config.lookback)
        self.patch = PatchEmbedding(config.patch_len, config.stride, config.d_model)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(RWKVBlock(config, i) for i in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = TokenHead(config.n_head_tokens, config.d_model, config.horizon, config.dropout)

    # ------------------------------------------------------------------ parallel mode
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Tokens of the normalised sequences ``z`` (B, L) after every block: (B, P, d_model)."""
        h = self.embed_dropout(self.patch(z))
        for block in self.blocks:
            h = block(h)
        return self.ln_out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast (B, horizon, C) from the window ``x`` (B, L, C)."""
        if x.ndim != 3:
            raise ValueError(
                f"expected input of shape (batch, length, channels), got {tuple(x.shape)}"
            )
        batch, length, channels = x.shape
        series = x.permute(0, 2, 1).reshape(batch * channels, length)
        z, stats = self.norm(series)
        y = denormalise(self.head(self.encode(z)), stats)
        return y.view(batch, channels, -1).permute(0, 2, 1)

    # ------------------------------------------------------------------ recurrent mode
    def init_state(
        self, batch_size: int, n_channels: int, device=None, dtype=torch.float32
    ) -> dict:
        """Zero state for ``batch_size`` series of ``n_channels`` channels."""
        n = batch_size * n_channels
        state = {"norm": self.norm.init_state(n, device, dtype)}
        if self.config.norm == "causal":
            state["patch"] = self.patch.init_state(n, device, dtype)
            state["blocks"] = {
                str(i): block.init_state(n, device, dtype) for i, block in enumerate(self.blocks)
            }
            state["head"] = self.head.init_state(n, device, dtype)
        return state

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor | None, dict]:
        """Take one sample per channel, ``x_t`` (B, C); return the forecast (B, horizon, C) or
        ``None``.

        Causal configuration: a forecast comes whenever a patch completes (every ``stride`` samples
        once ``patch_len`` samples have been seen) and equals ``forward`` over all samples so far.
        Windowed configuration: a forecast comes after every sample once ``lookback`` samples have
        been seen and equals ``forward`` over the last ``lookback`` samples.
        """
        batch, channels = x_t.shape
        flat = x_t.reshape(batch * channels)
        if self.config.norm != "causal":
            _, norm_state = self.norm.step(flat, state["norm"])
            new_state = {"norm": norm_state}
            if int(norm_state["count"].min()) < self.config.lookback:
                return None, new_state
            window = norm_state["buffer"].view(batch, channels, -1).permute(0, 2, 1)
            return self.forward(window), new_state

        z_t, norm_state = self.norm.step(flat, state["norm"])
        token, patch_state = self.patch.step(z_t, state["patch"])
        new_state = {"norm": norm_state, "patch": patch_state}
        if token is None:
            return None, new_state | {"blocks": state["blocks"], "head": state["head"]}
        h = self.embed_dropout(token)
        new_state["blocks"] = {}
        for i, block in enumerate(self.blocks):
            h, new_state["blocks"][str(i)] = block.step(h, state["blocks"][str(i)])
        y, new_state["head"] = self.head.step(self.ln_out(h), state["head"])
        y = denormalise(y, (norm_state["mean"], norm_state["std"]))
        return y.view(batch, channels, -1).permute(0, 2, 1), new_state
