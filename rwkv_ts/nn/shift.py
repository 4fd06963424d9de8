"""Multi-scale token shift: mix each token with tokens several steps back, with data-dependent
weights."""

from __future__ import annotations

import torch
from torch import nn


def shift_sequence(
    x: torch.Tensor, distance: int, previous: torch.Tensor | None = None
) -> torch.Tensor:
    """Return ``x`` (B, T, D) delayed by ``distance`` steps, filled from ``previous`` (B,
    >=distance, D) or zeros."""
    batch, length, width = x.shape
    if previous is None:
        head = x.new_zeros(batch, distance, width)
    else:
        head = previous[:, previous.shape[1] - distance :]
    return torch.cat([head, x], dim=1)[:, :length]


class MultiScaleShift(nn.Module):
    """Token shift over several distances, mixed by weights computed from the current token.

    For distances ``(d_1, ..., d_m)`` the output at ``t`` is ``sum_i a_i(x_t) * x_{t - d_i}`` with
    ``a(x_t) = softmax(W x_t + b)``; tokens before the start of the sequence are zeros. With the
    single distance ``(1,)`` the weight is 1 and this is RWKV's plain token shift.

    Examples
    --------
    >>> import torch
    >>> shift = MultiScaleShift(d_model=4, distances=(1,))
    >>> x = torch.randn(2, 5, 4)
    >>> torch.equal(shift(x)[:, 1:], x[:, :-1])
    True
    """

    def __init__(self, d_model: int, distances: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.distances = tuple(distances)
        self.max_distance = max(self.distances)
        self.mixer = nn.Linear(d_model, len(self.distances)) if len(self.distances) > 1 else None
        if self.mixer is not None:
            nn.init.zeros_(self.mixer.weight)
            # Start close to the plain shift: the nearest distance gets most of the weight.
            with torch.no_grad():
                bias = torch.zeros(len(self.distances))
                bias[self.distances.index(min(self.distances))] = 2.0
                self.mixer.bias.copy_(bias)

    def _mix(self, x: torch.Tensor, shifted: list[torch.Tensor]) -> torch.Tensor:
        if self.mixer is None:
            return shifted[0]
        weights = torch.softmax(self.mixer(x), dim=-1)
        return sum(weights[..., i : i + 1] * s for i, s in enumerate(shifted))

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Shift ``x`` (B, T, D); ``previous`` holds the tokens before ``x`` (most recent last)."""
        return self._mix(x, [shift_sequence(x, d, previous) for d in self.distances])

    def init_state(self, batch_size: int, width: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(batch_size, self.max_distance, width, device=device, dtype=dtype)
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        buffer = state["buffer"]
        shifted = [buffer[:, buffer.shape[1] - d] for d in self.distances]
        new_buffer = torch.cat([buffer[:, 1:], x_t[:, None]], dim=1)
        return self._mix(x_t, shifted), {"buffer": new_buffer}
