"""Normalisation of each input series: RevIN-style instance statistics, or causal trailing
statistics.

Both work on channel-independent univariate sequences ``x`` of shape (B, L) and return the
normalised sequence and the statistics used to map forecasts back to the data's scale.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-5


class InstanceNorm(nn.Module):
    """RevIN-style normalisation by the mean and standard deviation of the whole input window.

    ``step`` keeps the last ``window`` samples and normalises each new sample by the statistics of
    the window that ends with it, which is what ``forward`` gives for the last position of that
    window.

    Examples
    --------
    >>> import torch
    >>> norm = InstanceNorm(window=4)
    >>> z, (mean, std) = norm(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> round(float(mean), 2), round(float(z.mean()), 6)
    (2.5, 0.0)
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + EPS)
        return (x - mean) / std, (mean.squeeze(1), std.squeeze(1))

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(batch_size, self.window, device=device, dtype=dtype),
            "count": torch.zeros(batch_size, dtype=torch.long, device=device),
            "mean": torch.zeros(batch_size, device=device, dtype=dtype),
            "std": torch.ones(batch_size, device=device, dtype=dtype),
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        buffer = torch.cat([state["buffer"][:, 1:], x_t[:, None]], dim=1)
        count = state["count"] + 1
        # Before the window is full, the statistics are those of the samples seen so far.
        n = count.clamp(max=self.window).to(x_t.dtype)
        valid = torch.arange(self.window, device=x_t.device)[None, :] >= (self.window - n)[:, None]
        mean = (buffer * valid).sum(dim=1) / n
        var = (((buffer - mean[:, None]) * valid) ** 2).sum(dim=1) / n
        std = torch.sqrt(var + EPS)
        return (x_t - mean) / std, {"buffer": buffer, "count": count, "mean": mean, "std": std}


class CausalNorm(nn.Module):
    """Normalise every sample by the statistics of the trailing ``window`` samples (itself
    included).

    At position ``t`` the mean and variance are those of ``x[max(0, t - window + 1) : t + 1]``, so
    nothing depends on the future and a stream needs only the last ``window`` samples. The
    statistics returned for de-normalising forecasts are those of the last position. Sums are
    accumulated in float64.

    Examples
    --------
    >>> import torch
    >>> norm = CausalNorm(window=2)
    >>> z, (mean, std) = norm(torch.tensor([[1.0, 3.0, 5.0]]))
    >>> float(mean)
    4.0
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x64 = x.double()
        zero = torch.zeros_like(x64[:, :1])
        c1 = torch.cat([zero, x64.cumsum(dim=1)], dim=1)
        c2 = torch.cat([zero, (x64 * x64).cumsum(dim=1)], dim=1)
        length = x.shape[1]
        end = torch.arange(1, length + 1, device=x.device)
        start = (end - self.window).clamp(min=0)
        n = (end - start).to(torch.float64)
        mean = (c1[:, end] - c1[:, start]) / n
        var = ((c2[:, end] - c2[:, start]) / n - mean * mean).clamp(min=0.0)
        return mean, var

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation at every position of ``x`` (B, L), float64, (B, L) each.

        Position ``t`` gives the statistics that ``forward(x[:, : t + 1])`` de-normalises with.
        """
        mean, var = self._stats(x)
        return mean, torch.sqrt(var + EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean, var = self._stats(x)
        std = torch.sqrt(var + EPS)
        z = ((x.double() - mean) / std).to(x.dtype)
        return z, (mean[:, -1].to(x.dtype), std[:, -1].to(x.dtype))

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(batch_size, self.window, device=device, dtype=torch.float64),
            "count": torch.zeros(batch_size, dtype=torch.long, device=device),
            "mean": torch.zeros(batch_size, device=device, dtype=dtype),
            "std": torch.ones(batch_size, device=device, dtype=dtype),
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        buffer = torch.cat([state["buffer"][:, 1:], x_t.double()[:, None]], dim=1)
        count = state["count"] + 1
        n = count.clamp(max=self.window).to(torch.float64)
        mean = buffer.sum(dim=1) / n
        var = ((buffer * buffer).sum(dim=1) / n - mean * mean).clamp(min=0.0)
        std = torch.sqrt(var + EPS)
        z = ((x_t.double() - mean) / std).to(x_t.dtype)
        return z, {
            "buffer": buffer,
            "count": count,
            "mean": mean.to(x_t.dtype),
            "std": std.to(x_t.dtype),
        }


def denormalise(y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Map a normalised forecast ``y`` (B, H) back to the data's scale."""
    mean, std = stats
    return y * std[:, None] + mean[:, None]
