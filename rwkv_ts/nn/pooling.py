"""Causal pooling of a sequence: what the sequence models read after every token or sample."""

from __future__ import annotations

import torch
from torch import nn


class CausalPooling(nn.Module):
    """Read the tokens seen so far: the last one, their running mean and/or running maximum.

    ``forward`` gives the pooled features at every token position; ``step`` updates running
    statistics (sums in float64) only for the rows whose token is ready.

    Examples
    --------
    >>> import torch
    >>> pool = CausalPooling(d_model=4, parts=("mean", "last"))
    >>> pool(torch.randn(2, 5, 4)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, parts: tuple[str, ...] = ("mean",)) -> None:
        super().__init__()
        self.d_model = d_model
        self.parts = tuple(parts)

    @property
    def out_features(self) -> int:
        return self.d_model * len(self.parts)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = []
        for part in self.parts:
            if part == "last":
                out.append(tokens)
            elif part == "mean":
                count = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
                mean = tokens.double().cumsum(dim=1) / count[None, :, None]
                out.append(mean.to(tokens.dtype))
            else:
                out.append(tokens.cummax(dim=1).values)
        return torch.cat(out, dim=-1)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        d = self.d_model
        return {
            "last": torch.zeros(batch_size, d, device=device, dtype=dtype),
            "sum": torch.zeros(batch_size, d, device=device, dtype=torch.float64),
            "max": torch.full((batch_size, d), -torch.inf, device=device, dtype=dtype),
            "count": torch.zeros(batch_size, dtype=torch.long, device=device),
        }

    def step(
        self, token: torch.Tensor, ready: torch.Tensor, state: dict
    ) -> tuple[torch.Tensor, dict]:
        """Fold ``token`` (B, D) into the rows where ``ready``; return the pooled features."""
        r = ready[:, None]
        new = {
            "last": torch.where(r, token, state["last"]),
            "sum": torch.where(r, state["sum"] + token.double(), state["sum"]),
            "max": torch.where(r, torch.maximum(state["max"], token), state["max"]),
            "count": state["count"] + ready.long(),
        }
        return self.read(new, token.dtype), new

    def read(self, state: dict, dtype=torch.float32) -> torch.Tensor:
        """Pooled features (B, out_features) of a state."""
        out = []
        for part in self.parts:
            if part == "last":
                out.append(state["last"])
            elif part == "mean":
                n = state["count"].clamp(min=1).double()[:, None]
                out.append((state["sum"] / n).to(dtype))
            else:
                out.append(state["max"])
        return torch.cat(out, dim=-1)
