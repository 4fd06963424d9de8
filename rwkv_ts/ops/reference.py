"""Float64 step-by-step WKV recurrence: the oracle every other back-end is tested against.

Also home of the input validation shared by all back-ends (:func:`check_wkv_inputs`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_wkv_inputs", "wkv_reference"]

#: ``w`` is clamped from above before ``exp``: ``exp(-exp(40))`` is exactly 0 in float64 already,
#: and the clamp keeps ``exp(w)`` (and its gradient) finite.
W_MAX = 40.0


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def check_wkv_inputs(
    r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None
) -> tuple[int, int, int, int]:
    """Validate the arguments of a WKV call and return ``(B, T, H, N)``.

    Raises
    ------
    ValueError
        If a shape, rank or dtype does not match the contract; the message names all shapes.
    """
    names = ("r", "k", "v", "w", "u", "state")
    args = (r, k, v, w, u, state)
    desc = ", ".join(f"{n}={_shape(a)}" for n, a in zip(names, args, strict=True) if a is not None)

    def fail(why: str) -> ValueError:
        return ValueError(f"wkv: {why}; got {desc}")

    for n, a in zip(names, args, strict=True):
        if a is None and n == "state":
            continue
        if not isinstance(a, Tensor):
            raise fail(f"{n} must be a torch.Tensor, not {type(a).__name__}")
        if not a.is_floating_point():
            raise fail(f"{n} must have a floating dtype, not {a.dtype}")
    if r.ndim != 4:
        raise fail("r, k, v, w must be 4-D (B, T, H, N)")
    shape = tuple(r.shape)
    for n, a in zip(names[1:4], (k, v, w), strict=True):
        if tuple(a.shape) != shape:
            raise fail(f"{n} must have the shape of r (B, T, H, N) = {shape}")
    B, T, H, N = shape
    if T < 1:
        raise fail("the sequence length T must be >= 1")
    if tuple(u.shape) != (H, N):
        raise fail(f"u must have shape (H, N) = {(H, N)}")
    if state is not None and tuple(state.shape) != (B, H, N, N):
        raise fail(f"state must have shape (B, H, N, N) = {(B, H, N, N)}")
    return B, T, H, N


def wkv_reference(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Step-by-step float64 WKV recurrence (RWKV-6 form); slow but exact, the test oracle.

    Per batch element and head, with ``d_t = exp(-exp(w_t))``::

        y_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)
        S_t = diag(d_t) S_{t-1} + k_t v_t^T

    Parameters
    ----------
    r, k, v, w : Tensor
        Shape ``(B, T, H, N)``: receptance, key, value and the decay parameter ``w``.
    u : Tensor
        Shape ``(H, N)``: the bonus of the current token.
    state : Tensor, optional
        Shape ``(B, H, N, N)``, ``S[b, h, i, j]`` with ``i`` the key channel and ``j`` the value
        channel. ``None`` means zeros.

    Returns
    -------
    y : Tensor
        Shape ``(B, T, H, N)``, in the dtype of ``r``.
    state : Tensor
        The final state, shape ``(B, H, N, N)``, float64.

    Examples
    --------
    >>> import torch
    >>> B, T, H, N = 1, 3, 1, 2
    >>> r, k, v, w = (torch.randn(B, T, H, N) for _ in range(4))
    >>> y, s = wkv_reference(r, k, v, w, torch.zeros(H, N))
    >>> y.shape, s.dtype
    (torch.Size([1, 3, 1, 2]), torch.float64)
    """
    B, T, H, N = check_wkv_inputs(r, k, v, w, u, state)
    f64 = torch.float64
    r64, k64, v64 = r.to(f64), k.to(f64), v.to(f64)
    d = torch.exp(-torch.exp(w.to(f64).clamp(max=W_MAX)))
    u64 = u.to(f64)
    if state is None:
        s = r64.new_zeros(B, H, N, N)
    else:
        s = state.to(device=r.device, dtype=f64)
    ys = []
    for t in range(T):
        kv = k64[:, t, :, :, None] * v64[:, t, :, None, :]  # (B, H, N, N)
        y_t = torch.einsum("bhi,bhij->bhj", r64[:, t], s + u64[None, :, :, None] * kv)
        ys.append(y_t)
        s = d[:, t, :, :, None] * s + kv
    y = torch.stack(ys, dim=1)
    return y.to(r.dtype), s
