"""Chunked parallel WKV in pure PyTorch (CPU or any device), differentiable by autograd.

Algorithm
---------
With the per-step decays ``d_t = exp(-exp(w_t))`` in ``[0, 1]``, a chunk of ``L`` steps is cut by
a hierarchy of levels with small factors ``L = n_1 * n_2 * ... * n_m`` (by default 4 x 2 x 2): at a
level, each block of ``n * h`` steps consists of ``n`` parts of ``h`` steps, and every pair of
steps ``s < t`` lying in two different parts ``q < p`` of one block is handled at that level::

    y_t += [ (r_t * prod_{start(p) <= j < t} d_j * prod_{q < m < p} D_m)
             . (k_s * prod_{s < j <= end(q)} d_j) ] v_s

where ``D_m`` is the product of the decays over part ``m``. The decay from ``s`` to ``t`` is thus
split at the part boundaries into factors that are all products of numbers in ``[0, 1]``: nothing
is ever divided by a decay (no ``exp(-cumsum)``), so nothing overflows whatever the decay, and
products keep float32 relative precision when decays near 0 and near 1 are mixed. The pairs inside
one part belong to the level below; the bonus ``r_t . (u * k_t) v_t`` sits on the diagonal. The
levels assemble the lower-triangular ``L x L`` attention matrix ``A`` of each chunk and the
intra-chunk output is ``A @ v``; the running products ``r_t * prod d`` and ``k_s * prod d`` are
extended from one level to the next by one multiplication each.

Across chunks the state is passed: a chunk turns ``S`` into
``diag(prod_j d_j) S + sum_s (k_s * prod_{j > s} d_j) v_s^T`` (all increments in one batched
matmul, then a short loop over the chunks), and its outputs read the state it starts from through
``(r_t * prod_{j < t} d_j)^T S``.

Memory is ``O(B H T (N n + L))`` besides the ``O(B H (T / L) N^2)`` chunk states; compute is
``O(B H T N (L + N))``. Nothing loops over time steps in Python.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .reference import W_MAX, check_wkv_inputs

__all__ = ["DEFAULT_CHUNK_SIZE", "plan_levels", "wkv_chunked", "wkv_recurrent"]

#: Default maximum chunk length. Measured on a 2-core CPU (fp32 forward): for B*H = 3584, T = 42 it
#: ties with 64 (one chunk of 48) and beats 8 and 32 (which pads to 64); for B*H = 256, T = 512
#: it is the fastest: N = 32, 183 ms vs 219 ms for 32 (and with 4 x 4 levels 164 ms vs 186 / 279
#: / 449 ms for 32 / 64 / 128); N = 64, 327 ms vs 372 / 565 ms for 32 / 64.
DEFAULT_CHUNK_SIZE = 16
#: Above this many elements per (B*H, T, N) tensor, the CPU path runs in slabs of the batch.
SLAB_ELEMENTS = 1 << 21
#: Factors of the lower levels: parts of 1 step in blocks of 4, then pairs (8, 16). Measured on a
#: 2-core CPU, (4, 2, 2) beat (4, 4), (2, 2, 2, 2), (2, 2, 4) and (8, 2) (B*H = 3584, T = 42,
#: N = 32: 162 vs 192 / 164 / 185 / 179 ms forward): small batched matmuls of 4 x 4 blocks are slow.
_BASE_FACTORS = (4, 2, 2)
#: Largest factor used for the top level before another base level is added.
_TOP_MAX = 8


def plan_levels(T: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[tuple[int, ...], int]:
    """Choose the level factors and the number of chunks for a sequence of ``T`` steps.

    Returns ``(factors, n_chunks)``; the chunk length is ``prod(factors) <= max(chunk_size, 1)``
    and ``n_chunks * prod(factors) >= T`` with little padding.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    levels: list[int] = []
    sub = 1
    for f in _BASE_FACTORS:
        if -(-T // sub) <= _TOP_MAX or sub * f > chunk_size:
            break
        levels.append(f)
        sub *= f
    n_sub = -(-T // sub)
    n_chunks = -(-n_sub // max(1, chunk_size // sub))
    n_top = -(-n_sub // n_chunks)
    if n_top > 1:
        levels.append(n_top)
    return tuple(levels), n_chunks


def _compute_dtype(*xs: Tensor | None) -> torch.dtype:
    if any(x is not None and x.dtype == torch.float64 for x in xs):
        return torch.float64
    return torch.float32


def _to_bhtn(x: Tensor, dtype: torch.dtype, Tp: int, fill: float = 0.0) -> Tensor:
    """(B, T, H, N) -> (B*H, Tp, N) in ``dtype``, padded with ``fill`` (one copy)."""
    B, T, H, N = x.shape
    out = x.new_empty((B, H, Tp, N), dtype=dtype)
    out[:, :, :T] = x.transpose(1, 2)
    if Tp > T:
        out[:, :, T:] = fill
    return out.view(B * H, Tp, N)


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

    Same contract as :func:`rwkv_ts.ops.wkv`; the module docstring describes the algorithm.
    Computes in float32 (float64 when any input is float64) and is differentiable through all
    inputs, the initial state included. Robust for any decay (``w`` near +3, d ~ 2e-9, and beyond;
    ``w`` near -9, d ~ 1 - 1e-4): it only multiplies decays, never divides by them.

    Parameters
    ----------
    r, k, v, w : Tensor
        Shape ``(B, T, H, N)``; the per-step decay is ``exp(-exp(w))``.
    u : Tensor
        Shape ``(H, N)``.
    state : Tensor, optional
        Shape ``(B, H, N, N)``; ``None`` means zeros.
    chunk_size : int
        Maximum chunk length; longer sequences pass the state between chunks. Any ``T`` is
        accepted (the last chunk is padded internally).

    Returns
    -------
    y : Tensor
        Shape ``(B, T, H, N)`` in the dtype of ``r``.
    state : Tensor
        Final state ``(B, H, N, N)``, float32 (float64 for float64 inputs).

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.ops import wkv_chunked, wkv_reference
    >>> B, T, H, N = 2, 37, 2, 8
    >>> r, k, v, w = (torch.randn(B, T, H, N) for _ in range(4))
    >>> u = torch.randn(H, N)
    >>> y, s = wkv_chunked(r, k, v, w, u, chunk_size=16)
    >>> y_ref, s_ref = wkv_reference(r, k, v, w, u)
    >>> bool(torch.allclose(y, y_ref, atol=1e-4)), s.dtype
    (True, torch.float32)
    """
    B, T, H, N = check_wkv_inputs(r, k, v, w, u, state)
    factors, nc = plan_levels(T, chunk_size)
    cdt = _compute_dtype(r, k, v, w, u, state)
    Tp = nc * math.prod(factors)
    slab = max(1, SLAB_ELEMENTS // (H * Tp * N)) if r.device.type == "cpu" else B
    if slab >= B:
        return _chunked_core(r, k, v, w, u, state, factors, nc, cdt)
    # Large problems on the CPU run in slabs of the batch: every temporary then stays a few MB,
    # which the allocator recycles (fresh large allocations cost a page fault per 4 KiB) and
    # which stays in cache.
    y = r.new_empty((B, T, H, N))
    s_out = r.new_empty((B, H, N, N), dtype=cdt)
    pieces = [x.split(slab) for x in (r, k, v, w)]  # split: one cat in backward, not B / slab
    states = state.split(slab) if state is not None else [None] * len(pieces[0])
    b0 = 0
    for r_b, k_b, v_b, w_b, s_b in zip(*pieces, states, strict=True):
        b1 = b0 + r_b.shape[0]
        y[b0:b1], s_out[b0:b1] = _chunked_core(r_b, k_b, v_b, w_b, u, s_b, factors, nc, cdt)
        b0 = b1
    return y, s_out


def _chunked_core(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None,
    factors: tuple[int, ...],
    nc: int,
    cdt: torch.dtype,
) -> tuple[Tensor, Tensor]:
    # Implementation note: big tensors are cut with unbind/split (their backward is one stack or
    # cat) rather than indexed piece by piece (each slice's backward allocates a zero tensor of
    # the full size).
    B, T, H, N = r.shape
    BH = B * H
    L = math.prod(factors)
    Tp = nc * L

    rr = _to_bhtn(r, cdt, Tp)
    kk = _to_bhtn(k, cdt, Tp)
    vv = _to_bhtn(v, cdt, Tp)
    # per-step decay d = exp(-exp(w)) in [0, 1]; padded steps get w = -inf, i.e. d = 1 (and
    # k = v = 0), so they change neither the real outputs nor the final state.
    ww = _to_bhtn(w, cdt, Tp, float("-inf"))
    if ww.device.type != "cpu" or bool(ww.max() > W_MAX):  # the clamp is a full pass: skip if idle
        ww = ww.clamp(max=W_MAX)
    d = torch.exp(-torch.exp(ww))
    uu = u.to(device=r.device, dtype=cdt).unsqueeze(0).expand(B, H, N).reshape(BH, N, 1)
    need_r = nc > 1 or state is not None  # R of the whole chunk is needed to read a state

    # Level by level, with blocks of the current size h:
    #   D  the diagonal (h x h) blocks of the chunk's attention matrix (pairs inside a block),
    #   R  r_t * prod(d_j, block start <= j < t),   K  k_s * prod(d_j, s < j <= block end),
    #   P  the product of d over each block.
    # Products of decays in [0, 1] never overflow and lose no relative precision.
    D = torch.matmul(rr * kk, uu).view(BH * Tp, 1, 1)  # bonus r_t . (u * k_t) on the diagonal
    R, K, P = rr, kk, d.view(BH * Tp, N)
    h = 1
    for n in factors:
        M = BH * Tp // (n * h)
        Rp = R.view(M, n, h, N).unbind(1)
        Kp = K.view(M, n, h, N).unbind(1)
        Pp = P.view(M, n, N).unbind(1)
        Dp = D.view(M, n, h, h).unbind(1)
        rows = []
        for p in range(n):
            blocks: list[Tensor] = []
            gap: Tensor | None = None  # product of P over the parts strictly between q and p
            for q in range(p - 1, -1, -1):
                rg = Rp[p] if gap is None else Rp[p] * gap.unsqueeze(1)
                if h == 1:
                    blocks.append((rg * Kp[q]).sum(-1, keepdim=True))
                else:
                    blocks.append(torch.matmul(rg, Kp[q].transpose(-1, -2)))
                gap = Pp[q] if gap is None else gap * Pp[q]
            blocks.reverse()
            blocks.append(Dp[p])
            if p < n - 1:
                blocks.append(D.new_zeros(M, h, (n - 1 - p) * h))
            rows.append(torch.cat(blocks, -1))
        D = torch.cat(rows, 1)
        # grow R, K to blocks of n*h steps: multiply part p by the decay of the parts before /
        # after it (one broadcast multiplication each)
        one = torch.ones_like(Pp[0])
        after = [one]
        for q in range(n - 1, 0, -1):
            after.append(Pp[q] if q == n - 1 else after[-1] * Pp[q])
        K = (K.view(M, n, h, N) * torch.stack(after[::-1], 1).unsqueeze(2)).view(BH * Tp, N)
        if need_r or h * n < L:
            before = [one]
            for p in range(n - 1):
                before.append(Pp[p] if p == 0 else before[-1] * Pp[p])
            R = (R.view(M, n, h, N) * torch.stack(before, 1).unsqueeze(2)).view(BH * Tp, N)
        P = Pp[0]
        for q in range(1, n):
            P = P * Pp[q]
        h *= n

    # intra-chunk output, then the chunks in order: read the state, pass it on
    v4 = vv.view(BH, nc, L, N)
    y = torch.matmul(D.view(BH, nc, L, L), v4)
    if nc == 1 and state is None:
        s = torch.matmul(K.view(BH, L, N).transpose(1, 2), vv)
    else:
        s = None if state is None else state.to(device=r.device, dtype=cdt).reshape(BH, N, N)
        Rc = R.view(BH, nc, L, N).unbind(1)
        Kc = K.view(BH, nc, L, N).unbind(1)
        vc = v4.unbind(1)
        Pc = P.view(BH, nc, N, 1).unbind(1)
        ys = list(y.unbind(1))
        for c in range(nc):
            if s is None:
                s = torch.bmm(Kc[c].transpose(1, 2), vc[c])
            else:
                ys[c] = torch.baddbmm(ys[c], Rc[c], s)
                s = torch.baddbmm(Pc[c] * s, Kc[c].transpose(1, 2), vc[c])
        y = torch.stack(ys, 1)
    assert s is not None

    y = y.view(B, H, Tp, N)
    if Tp > T:
        y = y.split([T, Tp - T], 2)[0]
    return y.transpose(1, 2).to(r.dtype), s.view(B, H, N, N)


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

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.ops import wkv_recurrent
    >>> r, k, v, w = (torch.randn(2, 1, 2, 4) for _ in range(4))
    >>> y, s = wkv_recurrent(r, k, v, w, torch.zeros(2, 4))
    >>> tuple(y.shape), tuple(s.shape)
    ((2, 1, 2, 4), (2, 2, 4, 4))
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
        y_t = ((r_t * uu) * k_t).sum(-1, keepdim=True) * v_t
        if s is not None:
            y_t = y_t + torch.matmul(r_t.unsqueeze(-2), s).squeeze(-2)
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        s = kv if s is None else d[:, t].unsqueeze(-1) * s + kv
        ys.append(y_t)
    assert s is not None
    y = torch.stack(ys, dim=1).to(r.dtype)
    return y, s
