"""Chunked parallel WKV in pure PyTorch (CPU and any device), differentiable by autograd.

Algorithm
---------
Work in the log domain, ``a_t = log d_t = -exp(w_t) <= 0``. The sequence is cut into chunks of
``L`` (a power of two) steps.

* Inside a chunk, the pairs ``s < t`` are covered by a binary hierarchy: at the level of half-size
  ``h`` each block of ``2h`` steps is split into a left and a right half and every pair
  ``(s in left, t in right)`` is factorised through the boundary between the halves::

      y_t += sum_s [ (r_t * exp(sum_{right start <= j < t} a_j)) . (k_s * exp(sum_{s < j in left} a_j)) ] v_s

  Both exponents are sums of non-positive numbers, so every ``exp`` that is materialised is
  ``<= 0`` and nothing overflows whatever the decay (no ``exp(-cumsum)``). Each exponent is a short
  cumulative sum taken inside its own half (never a difference of two long cumulative sums), which
  keeps it accurate to float32 relative precision. ``log2(L)`` levels cover every pair exactly
  once; the level ``h = 1`` needs no ``exp`` at all. The bonus ``r_t . (u * k_t) v_t`` is elementwise.
* Across chunks the state is passed: the state increment of each chunk is
  ``sum_s (k_s * exp(sum_{j > s} a_j)) v_s^T`` (one batched matmul for all chunks), a short loop over
  the chunks applies ``S <- exp(sum a) * S + dS``, and the outputs read the state of their chunk
  with ``(r_t * exp(sum_{j < t} a_j))^T S`` (one batched matmul).

Memory is ``O(B H T N log L)`` for the intra-chunk levels plus ``O(B H (T / L) N^2)`` for the chunk
states; compute is ``O(B H T N (L + N))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import W_MAX, check_wkv_inputs

__all__ = ["DEFAULT_CHUNK_SIZE", "wkv_chunked", "wkv_recurrent"]

#: Default chunk length (measured on a 2-core CPU for B*H = 3584, T = 42, N = 32..64).
DEFAULT_CHUNK_SIZE = 32


def _compute_dtype(*xs: Tensor | None) -> torch.dtype:
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) else torch.float32


def _excl_cumsum(x: Tensor, dim: int = -2) -> Tensor:
    """``out[t] = sum_{j < t} x[j]`` along ``dim`` (``dim`` counted from the end, -2 here)."""
    c = torch.cumsum(x.narrow(dim, 0, x.shape[dim] - 1), dim)
    return F.pad(c, (0, 0, 1, 0))


def _rev_excl_cumsum(x: Tensor, dim: int = -2) -> Tensor:
    """``out[s] = sum_{j > s} x[j]`` along ``dim`` (-2 here)."""
    tail = x.narrow(dim, 1, x.shape[dim] - 1)
    c = torch.flip(torch.cumsum(torch.flip(tail, (dim,)), dim), (dim,))
    return F.pad(c, (0, 0, 0, 1))


def _to_bhtn(x: Tensor, dtype: torch.dtype) -> Tensor:
    B, T, H, N = x.shape
    return x.to(dtype).transpose(1, 2).reshape(B * H, T, N)


def wkv_chunked(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Chunked parallel WKV (RWKV-6 form) in pure PyTorch.

    Same contract as :func:`rwkv_ts.ops.wkv`; see the module docstring for the algorithm. Computes
    in float32 (float64 when any of r, k, v, w, u, state is float64) and is differentiable through
    all inputs, the initial state included.

    Parameters
    ----------
    r, k, v, w : Tensor
        Shape ``(B, T, H, N)``; the per-step decay is ``exp(-exp(w))``.
    u : Tensor
        Shape ``(H, N)``.
    state : Tensor, optional
        Shape ``(B, H, N, N)``; ``None`` means zeros.
    chunk_size : int
        Chunk length; rounded down to a power of two and capped at the next power of two >= T.

    Returns
    -------
    y : Tensor
        Shape ``(B, T, H, N)`` in the dtype of ``r``.
    state : Tensor
        Final state ``(B, H, N, N)``, float32 (float64 for float64 inputs).
    """
    B, T, H, N = check_wkv_inputs(r, k, v, w, u, state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cdt = _compute_dtype(r, k, v, w, u, state)
    BH = B * H
    L = min(1 << int(math.log2(chunk_size)), 1 << (T - 1).bit_length())
    nc = -(-T // L)
    pad = nc * L - T

    rr = _to_bhtn(r, cdt)
    kk = _to_bhtn(k, cdt)
    vv = _to_bhtn(v, cdt)
    a = -torch.exp(_to_bhtn(w, cdt).clamp(max=W_MAX))  # log decay, <= 0
    uu = u.to(device=r.device, dtype=cdt).unsqueeze(0).expand(B, H, N).reshape(BH, 1, N)

    # bonus (current token)
    y = (rr * uu * kk).sum(-1, keepdim=True) * vv
    if pad:
        # padded steps: r = k = v = 0, decay 1 -> no effect on real outputs nor on the state
        rr, kk, vv, a = (F.pad(x, (0, 0, 0, pad)) for x in (rr, kk, vv, a))
        y = F.pad(y, (0, 0, 0, pad))

    # intra-chunk pairs, one level of the binary hierarchy at a time
    y5 = None
    h = 1
    while h < L:
        M = nc * L // (2 * h)
        r5 = rr.view(BH, M, 2, h, N)
        k5 = kk.view(BH, M, 2, h, N)
        v5 = vv.view(BH, M, 2, h, N)
        r_right, k_left, v_left = r5[:, :, 1], k5[:, :, 0], v5[:, :, 0]
        if h == 1:
            contrib = (r_right * k_left).sum(-1, keepdim=True) * v_left
        else:
            a5 = a.view(BH, M, 2, h, N)
            rq = r_right * torch.exp(_excl_cumsum(a5[:, :, 1]))
            kq = k_left * torch.exp(_rev_excl_cumsum(a5[:, :, 0]))
            contrib = torch.matmul(torch.matmul(rq, kq.transpose(-1, -2)), v_left)
        y5 = y.view(BH, M, 2, h, N)
        y = torch.cat((y5[:, :, :1], (y5[:, :, 1] + contrib).unsqueeze(2)), dim=2).view(
            BH, nc * L, N
        )
        h *= 2

    # inter-chunk: pass the state
    a4 = a.view(BH, nc, L, N)
    r4 = rr.view(BH, nc, L, N)
    k4 = kk.view(BH, nc, L, N)
    v4 = vv.view(BH, nc, L, N)
    if state is None:
        s = None
    else:
        s = state.to(device=r.device, dtype=cdt).reshape(BH, N, N)
    if nc > 1 or s is not None:
        # state increments of all chunks (not needed for the last one if only y is wanted, but the
        # final state needs it)
        pass
    kd = k4 * torch.exp(_rev_excl_cumsum(a4))
    ds = torch.matmul(kd.transpose(-1, -2), v4)  # (BH, nc, N, N)
    decay = torch.exp(a4.sum(-2)).unsqueeze(-1)  # (BH, nc, N, 1)
    starts = []
    for c in range(nc):
        starts.append(s)
        s = ds[:, c] if s is None else decay[:, c] * s + ds[:, c]
    if any(x is not None for x in starts):
        first = 0 if starts[0] is not None else 1
        S = torch.stack(starts[first:], dim=1)  # (BH, nc - first, N, N)
        rd = r4[:, first:] * torch.exp(_excl_cumsum(a4[:, first:]))
        y4 = y.view(BH, nc, L, N)
        y = torch.cat((y4[:, :first], y4[:, first:] + torch.matmul(rd, S)), dim=1)
    y = y.view(BH, nc * L, N)[:, :T]
    y = y.view(B, H, T, N).transpose(1, 2).to(r.dtype)
    return y, s.view(B, H, N, N)


def wkv_recurrent(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Direct step-by-step WKV in the compute dtype (float32, float64 for float64 inputs).

    The fastest torch path for very short sequences (``T == 1`` in streaming); same contract as
    :func:`rwkv_ts.ops.wkv`.
    """
    B, T, H, N = check_wkv_inputs(r, k, v, w, u, state)
    cdt = _compute_dtype(r, k, v, w, u, state)
    rr, kk, vv = (x.to(cdt) for x in (r, k, v))
    d = torch.exp(-torch.exp(w.to(cdt).clamp(max=W_MAX)))
    uu = u.to(device=r.device, dtype=cdt)
    s = None if state is None else state.to(device=r.device, dtype=cdt)
    ys = []
    for t in range(T):
        r_t, k_t, v_t = rr[:, t], kk[:, t], vv[:, t]  # (B, H, N)
        y_t = (r_t * uu * k_t).sum(-1, keepdim=True) * v_t
        if s is not None:
            y_t = y_t + torch.matmul(r_t.unsqueeze(-2), s).squeeze(-2)
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        s = kv if s is None else d[:, t].unsqueeze(-1) * s + kv
        ys.append(y_t)
    y = torch.stack(ys, dim=1).to(r.dtype)
    return y, s
