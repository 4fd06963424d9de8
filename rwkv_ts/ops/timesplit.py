"""Split one long WKV sequence into chunks that run side by side.

A sequential kernel gives each (batch, head) sequence its own thread block and walks its ``T``
steps in order, so a few long sequences (``B * H`` of 8 to 64, ``T`` in the ten thousands, as in
audio or long lookbacks) occupy a few of the GPU's multiprocessors for ``T`` dependent steps. The
recurrence is linear in the state, so the sequence can be cut into ``n`` chunks of ``C`` steps:

1. every chunk runs from a zero state (all chunks side by side): its final state ``Z_c`` is what
   the chunk adds to the state, and ``L_c = sum_t log d_t`` (per key channel) its total decay;
2. the state at each chunk's start follows: ``S_0`` is the initial state and
   ``S_{c+1} = exp(L_c) S_c + Z_c``, in closed form
   ``S_c = exp(A_c) S_0 + sum_{j<c} exp(A_c - A_{j+1}) Z_j`` with ``A_c = sum_{i<c} L_i``
   (:func:`chunk_starts`: a masked (n x n) matrix product per key channel, in float64, where the
   exponents are differences of cumulative sums that may be large), or on the GPU as that scan
   over the chunks in float32 (``kernels/wkv6_split.cu``, :mod:`rwkv_ts.ops.cuda`);
3. every chunk runs again from its start state, giving the outputs.

That is twice the kernel's arithmetic, but over ``B * H * n`` sequences of ``C`` steps, and
autograd differentiates the three steps (the kernel's backward takes and returns state
gradients), so training is split the same way. The steps after the last whole chunk continue from
its final state with one more call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["chunk_starts", "time_split_chunks", "wkv_time_split"]

WkvFn = Callable[..., tuple[Tensor, Tensor]]
#: ``combine(added, w, n_chunks, state) -> starts``: step 2 (see :func:`chunk_starts`).
CombineFn = Callable[[Tensor, Tensor, int, "Tensor | None"], Tensor]

#: Splitting pays when the sequences alone leave the GPU idle: at most this many (B * H) ...
SPLIT_MAX_SEQUENCES = 64
#: ... of at least this many steps.
SPLIT_MIN_T = 4096
#: The chunks should bring the count of side-by-side sequences to about this many,
TARGET_SEQUENCES = 1024
#: with chunks of at least this many steps and at most this many chunks (the combination's
#: weights are B * H * N * n * n floats).
MIN_CHUNK = 256
MAX_CHUNKS = 128
# Measured on an H100 (benchmarks/wkv_kernel.py --time-split-sweep, N = 64, bf16; see
# benchmarks/results/wkv_kernel_long.md): the sequential kernel takes ~0.55 us a step
# (forward) whatever B * H up to 256, while the split costs about the same per sequence-step from
# ~1024 side-by-side sequences on. Forward+backward, sequential -> split: (B*H, T) = (8, 65536)
# 69.0 -> 7.3 ms, (16, 16384) 17.6 -> 4.1 ms, (64, 4096) 4.6 -> 3.7 ms; but (128, 2048) 2.6 -> 3.8,
# (256, 1024) 1.6 -> 3.8 and (32, 1024) 1.2 -> 1.8 ms: there the sequential kernel wins.


def time_split_chunks(B: int, T: int, H: int, N: int) -> int:
    """How many chunks :func:`wkv_time_split` should cut a sequence into on the GPU (1: none).

    Parameters
    ----------
    B, T, H, N : int
        The operator's shape (batch, steps, heads, head size).

    Returns
    -------
    int
        1 when ``B * H`` sequences keep the GPU busy enough or the sequence is short; otherwise the
        number of chunks that brings ``B * H * n`` to about :data:`TARGET_SEQUENCES`, with chunks
        of at least :data:`MIN_CHUNK` steps and at most :data:`MAX_CHUNKS` of them.

    Examples
    --------
    >>> time_split_chunks(8, 65536, 1, 64), time_split_chunks(64, 4096, 1, 64)
    (128, 16)
    >>> time_split_chunks(3584, 42, 1, 64), time_split_chunks(128, 2048, 1, 64)
    (1, 1)
    """
    sequences = B * H
    if sequences > SPLIT_MAX_SEQUENCES or T < SPLIT_MIN_T:
        return 1
    wanted = -(-TARGET_SEQUENCES // sequences)
    return max(1, min(wanted, MAX_CHUNKS, T // MIN_CHUNK))


def wkv_time_split(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
    *,
    n_chunks: int,
    inner: WkvFn,
    combine: CombineFn | None = None,
) -> tuple[Tensor, Tensor]:
    """WKV over ``n_chunks`` time chunks run side by side by ``inner``; the contract of
    :func:`rwkv_ts.ops.wkv` (same outputs up to rounding, gradients to every input).

    Parameters
    ----------
    r, k, v, w : Tensor
        ``(B, T, H, N)``; decay ``exp(-exp(w))``.
    u : Tensor
        ``(H, N)``.
    state : Tensor, optional
        ``(B, H, N, N)`` initial state; ``None`` means zeros.
    n_chunks : int
        Chunks of ``T // n_chunks`` steps; the ``T % n_chunks`` steps after them continue from the
        last chunk's state. ``1`` calls ``inner`` once.
    inner : callable
        A WKV back-end ``inner(r, k, v, w, u, state) -> (y, state)`` (e.g. the CUDA kernel).
    combine : callable, optional
        Step 2, ``combine(added, w, n_chunks, state) -> starts`` with the shapes of
        :func:`chunk_starts` (the default; the CUDA back-end passes its kernels' scan).

    Returns
    -------
    y : Tensor
        ``(B, T, H, N)`` in ``inner``'s output dtype.
    state : Tensor
        The final state ``(B, H, N, N)``.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.ops import wkv_reference
    >>> g = torch.Generator().manual_seed(0)
    >>> r, k, v = (torch.randn(2, 50, 1, 4, generator=g, dtype=torch.float64) for _ in range(3))
    >>> w = torch.randn(2, 50, 1, 4, generator=g, dtype=torch.float64)
    >>> u = torch.randn(1, 4, generator=g, dtype=torch.float64)
    >>> y, s = wkv_time_split(r, k, v, w, u, n_chunks=4, inner=wkv_reference)
    >>> y_ref, s_ref = wkv_reference(r, k, v, w, u)
    >>> bool(torch.allclose(y, y_ref) and torch.allclose(s, s_ref))
    True
    """
    B, T, H, N = r.shape
    n = int(n_chunks)
    if n < 1:
        raise ValueError(f"n_chunks must be >= 1, got {n_chunks!r}")
    chunk = T // n
    if n == 1 or chunk == 0:
        return inner(r, k, v, w, u, state)
    body = chunk * n

    def chunks(x: Tensor) -> Tensor:
        # (B, T, H, N) -> (B * n, chunk, H, N): the chunks of one batch row are adjacent
        return x[:, :body].reshape(B * n, chunk, H, N)

    rc, kc, vc, wc = (chunks(x) for x in (r, k, v, w))
    # 1. what each chunk adds to the state from a zero start
    _, added = inner(rc, kc, vc, wc, u, None)
    # 2. every chunk's start state
    starts = (combine or chunk_starts)(added.reshape(B, n, H, N, N), w, n, state)
    # 3. every chunk from its start state
    y, final = inner(rc, kc, vc, wc, u, starts.reshape(B * n, H, N, N))
    y = y.reshape(B, body, H, N)
    final = final.reshape(B, n, H, N, N)[:, -1]
    if body == T:
        return y, final
    y_rest, final = inner(r[:, body:], k[:, body:], v[:, body:], w[:, body:], u, final)
    return torch.cat([y, y_rest], dim=1), final


def chunk_starts(added: Tensor, w: Tensor, n_chunks: int, state: Tensor | None) -> Tensor:
    """The state at the start of each of ``n_chunks`` time chunks (step 2 of the split), in
    PyTorch: a masked matrix product over the chunks in float64.

    Parameters
    ----------
    added : Tensor
        ``(B, n, H, N, N)``: each chunk's final state from a zero start.
    w : Tensor
        ``(B, T, H, N)``: the decay parameter; chunk ``c`` is steps ``[c C, (c + 1) C)`` with
        ``C = T // n``.
    n_chunks : int
        ``n``.
    state : Tensor, optional
        ``(B, H, N, N)`` initial state; ``None`` means zeros.

    Returns
    -------
    Tensor
        ``(B, n, H, N, N)`` in ``added``'s dtype; differentiable in every input.
    """
    B, n, H, N, _ = added.shape
    chunk = w.shape[1] // n_chunks
    # exclusive[c] = A_c = sum_{i<c} L_i, inclusive[j] = A_{j+1}
    # A step with a log decay below -104 zeroes a float32 state (exp underflows), as the kernel
    # computes it; clamping at -200 (w at log 200) changes no result and bounds the cumulative
    # sums by 200 T, where float64 differences stay exact to ~1e-9 (and w = inf gives no
    # inf - inf). The terms have one sign, so their float64 sums cancel nothing.
    wc = w[:, : n * chunk]
    rate_dtype = torch.promote_types(wc.dtype, torch.float32)  # float64 inputs stay float64
    rate = torch.exp(wc.to(rate_dtype).clamp_max(math.log(200.0)))
    log_decay = -rate.view(B, n, chunk, H, N).sum(2, dtype=torch.float64)
    inclusive = torch.cumsum(log_decay, 1)
    exclusive = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], 1)
    # (B, c, j, H, N); <= 0 for j < c (clamped: a parallel cumsum need not round monotonically)
    exponent = (exclusive[:, :, None] - inclusive[:, None, :]).clamp_max(0.0)
    earlier = torch.ones(n, n, dtype=torch.bool, device=w.device).tril(-1)
    exponent = exponent.masked_fill(~earlier[None, :, :, None, None], float("-inf"))
    weights = torch.exp(exponent)
    # (B, H, i, c, j) @ (B, H, i, j, v) over the chunks, per key channel i; in float64, which
    # no TF32 setting (torch.set_float32_matmul_precision) rounds to 10 bits
    starts = torch.matmul(weights.permute(0, 3, 4, 1, 2), added.double().permute(0, 2, 3, 1, 4))
    starts = starts.permute(0, 3, 1, 2, 4)  # (B, n, H, N_key, N_value)
    if state is not None:
        starts = starts + torch.exp(exclusive)[..., None] * state[:, None].double()
    return starts.to(added.dtype)
