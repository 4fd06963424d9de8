"""Patch embedding: cut a univariate sequence into patches and project each to a token."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    """Linear embedding of patches of ``patch_len`` samples taken every ``stride`` samples.

    ``forward`` aligns the patches so that the last one ends at the last sample (leading samples
    that do not fill a patch are dropped); ``step`` takes one sample at a time and emits a token
    whenever a patch is complete, counting from the first sample it saw. The two agree whenever the
    sequence length ``L`` satisfies ``(L - patch_len) % stride == 0``.

    Examples
    --------
    >>> import torch
    >>> embed = PatchEmbedding(patch_len=4, stride=2, d_model=8)
    >>> embed(torch.randn(3, 10)).shape
    torch.Size([3, 4, 8])
    """

    def __init__(self, patch_len: int, stride: int, d_model: int) -> None:
        super().__init__()
        self.patch_len = patch_len
        self.stride = stride
        self.proj = nn.Linear(patch_len, d_model)

    def n_patches(self, length: int) -> int:
        return (length - self.patch_len) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``x`` of shape (B, L) into tokens (B, P, d_model)."""
        length = x.shape[1]
        if length < self.patch_len:
            raise ValueError(
                f"sequence of length {length} is shorter than patch_len={self.patch_len}"
            )
        offset = (length - self.patch_len) % self.stride
        patches = x[:, offset:].unfold(dimension=1, size=self.patch_len, step=self.stride)
        return self.proj(patches)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(batch_size, self.patch_len, device=device, dtype=dtype),
            "count": torch.zeros((), dtype=torch.long, device=device),
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor | None, dict]:
        """Take samples ``x_t`` (B,); return a token (B, d_model) when a patch completes, else
        ``None``."""
        buffer = torch.cat([state["buffer"][:, 1:], x_t[:, None]], dim=1)
        count = state["count"] + 1
        new_state = {"buffer": buffer, "count": count}
        n = int(count)
        if n >= self.patch_len and (n - self.patch_len) % self.stride == 0:
            return self.proj(buffer), new_state
        return None, new_state
