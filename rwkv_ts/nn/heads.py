"""Forecast heads that read the encoder's last tokens."""

from __future__ import annotations

import torch
from torch import nn


class TokenHead(nn.Module):
    """Linear forecast from the last ``n_tokens`` tokens, flattened.

    ``n_tokens`` equal to the number of patches of the lookback is the flatten head of PatchTST and
    RWKV-TS; ``n_tokens=1`` reads only the last state. ``step`` keeps a ring buffer of the last
    ``n_tokens`` tokens.

    Examples
    --------
    >>> import torch
    >>> head = TokenHead(n_tokens=3, d_model=8, horizon=5)
    >>> head(torch.randn(2, 10, 8)).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_tokens: int, d_model: int, horizon: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(n_tokens * d_model, horizon)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Forecast (B, horizon) from tokens (B, P, D) with P >= n_tokens."""
        if tokens.shape[1] < self.n_tokens:
            raise ValueError(
                f"the head reads {self.n_tokens} tokens but the sequence has {tokens.shape[1]}"
            )
        last = tokens[:, tokens.shape[1] - self.n_tokens :].flatten(1)
        return self.linear(self.dropout(last))

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(
                batch_size, self.n_tokens, self.d_model, device=device, dtype=dtype
            )
        }

    def step(self, token: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        buffer = torch.cat([state["buffer"][:, 1:], token[:, None]], dim=1)
        return self.linear(self.dropout(buffer.flatten(1))), {"buffer": buffer}
