"""The public WKV entry point and the back-end registry.

``wkv`` picks a back-end per call:

* ``RWKV_TS_KERNEL=auto`` (the default): a registered ``"cuda"`` back-end when its ``supports``
  accepts the tensors, otherwise the torch path;
* ``RWKV_TS_KERNEL=torch``: always the torch path;
* ``RWKV_TS_KERNEL=cuda``: the registered ``"cuda"`` back-end, or a ``RuntimeError``.

The torch path runs the direct recurrence (:func:`~rwkv_ts.ops.chunked.wkv_recurrent`) for very
short sequences and the chunked parallel form (:func:`~rwkv_ts.ops.chunked.wkv_chunked`)
otherwise. A compiled kernel plugs in with :func:`register_backend`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .chunked import wkv_chunked, wkv_recurrent
from .reference import check_wkv_inputs

__all__ = [
    "ENV_VAR",
    "RECURRENT_MAX_STATE",
    "RECURRENT_MAX_T",
    "available_backends",
    "kernel_choice",
    "register_backend",
    "unregister_backend",
    "wkv",
]

#: Environment variable that selects the back-end.
ENV_VAR = "RWKV_TS_KERNEL"
#: The torch path runs the direct recurrence for T == 1, and for T <= RECURRENT_MAX_T when the
#: state is small (B * H * N * N <= RECURRENT_MAX_STATE), where the chunked form's fixed number of
#: operations dominates. Measured on a 2-core CPU (N = 32): B*H = 3584 is faster chunked from
#: T = 2 on (11 vs 23 ms), B*H = 14..112 faster recurrent up to T = 4..8 (0.5 vs 0.9 ms at T = 2).
RECURRENT_MAX_T = 4
RECURRENT_MAX_STATE = 1 << 18

WkvFn = Callable[..., tuple[Tensor, Tensor]]
SupportsFn = Callable[..., bool]

_BUILTIN = ("auto", "cuda", "torch")


@dataclass(frozen=True)
class _Backend:
    name: str
    fn: WkvFn
    supports: SupportsFn
    available: Callable[[], bool]


_registry: dict[str, _Backend] = {}
_lock = threading.Lock()


def _always(*args: object, **kwargs: object) -> bool:
    return True


def register_backend(
    name: str,
    fn: WkvFn,
    supports: SupportsFn | None = None,
    available: Callable[[], bool] | None = None,
) -> None:
    """Register (or replace) a WKV back-end.

    Parameters
    ----------
    name : str
        Back-end name; ``"cuda"`` is the one ``auto`` prefers. ``"torch"`` and ``"auto"`` are
        reserved.
    fn : callable
        ``fn(r, k, v, w, u, state) -> (y, state)`` with the contract of :func:`wkv`.
    supports : callable, optional
        ``supports(r, k, v, w, u, state) -> bool``: whether ``fn`` handles these tensors (device,
        dtype, head size...). ``None`` means always.
    available : callable, optional
        ``available() -> bool``, cheap: whether the back-end can run on this machine at all (for
        :func:`available_backends` and the error of a forced back-end). ``None`` means
        ``torch.cuda.is_available`` for ``"cuda"`` and always for other names.

    Raises
    ------
    ValueError
        For a reserved or empty name.
    """
    if not isinstance(name, str) or not name or name in ("auto", "torch"):
        raise ValueError(f"invalid back-end name {name!r}: 'auto' and 'torch' are reserved")
    if not callable(fn) or any(f is not None and not callable(f) for f in (supports, available)):
        raise TypeError("fn, supports and available must be callable")
    if available is None:
        available = torch.cuda.is_available if name == "cuda" else _always
    with _lock:
        _registry[name] = _Backend(name, fn, supports or _always, available)


def unregister_backend(name: str) -> None:
    """Remove a registered back-end (no error if it is not registered)."""
    with _lock:
        _registry.pop(name, None)


def available_backends() -> list[str]:
    """Names of the back-ends usable on this machine.

    ``"torch"`` (always) and every registered back-end whose ``available()`` is true (for
    ``"cuda"``: by default, when ``torch.cuda.is_available()``). Whether a back-end handles given
    tensors is decided per call by its ``supports``.
    """
    with _lock:
        backends = sorted(_registry.values(), key=lambda b: b.name)
    return ["torch", *(b.name for b in backends if b.available())]


def kernel_choice() -> str:
    """The back-end requested through ``RWKV_TS_KERNEL`` (``"auto"`` when unset or empty).

    Raises
    ------
    ValueError
        For a value that is neither ``auto``, ``cuda``, ``torch`` nor a registered back-end.
    """
    raw = os.environ.get(ENV_VAR, "")
    value = raw.strip().lower() or "auto"
    with _lock:
        allowed = list(_BUILTIN) + sorted(n for n in _registry if n not in _BUILTIN)
    if value not in allowed:
        raise ValueError(f"{ENV_VAR}={raw!r} is not one of {', '.join(allowed)}")
    return value


def _torch_path(
    r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None
) -> tuple[Tensor, Tensor]:
    B, T, H, N = r.shape
    if T == 1 or (T <= RECURRENT_MAX_T and B * H * N * N <= RECURRENT_MAX_STATE):
        return wkv_recurrent(r, k, v, w, u, state)
    return wkv_chunked(r, k, v, w, u, state)


def wkv(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
    *,
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """WKV operator, RWKV-6 form, on the best available back-end.

    Per batch element and head, with the decay ``d_t = exp(-exp(w_t))``::

        y_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)
        S_t = diag(d_t) S_{t-1} + k_t v_t^T

    A ``w`` constant in time gives RWKV-5. The state returned continues the sequence exactly:
    running ``[0, t)`` and then ``[t, T)`` from the returned state equals one call on ``[0, T)``.

    Parameters
    ----------
    r, k, v, w : Tensor
        Shape ``(B, T, H, N)`` with ``T >= 1``: receptance, key, value, decay parameter.
    u : Tensor
        Shape ``(H, N)``: the bonus of the current token.
    state : Tensor, optional
        Shape ``(B, H, N, N)``, ``S[b, h, i, j]`` with ``i`` the key and ``j`` the value channel;
        ``None`` means zeros.
    backend : str, optional
        Overrides ``RWKV_TS_KERNEL`` for this call: ``"auto"``, ``"torch"`` or a registered name.

    Returns
    -------
    y : Tensor
        Shape ``(B, T, H, N)``, in the dtype of ``r``.
    state : Tensor
        The final state, shape ``(B, H, N, N)``, float32 (float64 for float64 inputs on the torch
        path).

    Raises
    ------
    ValueError
        For mismatched shapes or ranks (the message names all shapes) or an unknown back-end name.
    RuntimeError
        When the ``cuda`` back-end is forced but none is registered or it does not support the
        tensors.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.ops import wkv
    >>> B, T, H, N = 2, 10, 2, 4
    >>> r, k, v = (torch.randn(B, T, H, N) for _ in range(3))
    >>> w = torch.full((B, T, H, N), -1.0)  # decay exp(-exp(-1)) ~ 0.69 per step
    >>> u = torch.zeros(H, N)
    >>> y, state = wkv(r, k, v, w, u)
    >>> tuple(y.shape), tuple(state.shape), state.dtype
    ((2, 10, 2, 4), (2, 2, 4, 4), torch.float32)

    Splitting the sequence and passing the state gives the same result:

    >>> y1, s1 = wkv(r[:, :6], k[:, :6], v[:, :6], w[:, :6], u)
    >>> y2, s2 = wkv(r[:, 6:], k[:, 6:], v[:, 6:], w[:, 6:], u, s1)
    >>> bool(torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-5))
    True
    """
    check_wkv_inputs(r, k, v, w, u, state)
    if backend is None:
        choice = kernel_choice()
    else:
        choice = backend.strip().lower()
    if choice == "torch":
        return _torch_path(r, k, v, w, u, state)
    with _lock:
        be = _registry.get("cuda" if choice == "auto" else choice)
    if choice == "auto":
        if be is not None and be.supports(r, k, v, w, u, state):
            return be.fn(r, k, v, w, u, state)
        return _torch_path(r, k, v, w, u, state)
    if be is None and choice != "cuda":
        raise ValueError(
            f"unknown WKV back-end {choice!r}; available: {', '.join(available_backends())}"
        )
    if be is None or not be.available():
        why = "is not registered" if be is None else "is not available on this machine"
        raise RuntimeError(
            f"the WKV back-end {choice!r} was requested ({ENV_VAR} or backend=) but {why}; "
            f"available: {', '.join(available_backends())}. Use 'auto' or 'torch'."
        )
    if not be.supports(r, k, v, w, u, state):
        raise RuntimeError(
            f"WKV back-end {choice!r} does not support these tensors (device={r.device}, "
            f"dtype={r.dtype}, shape={tuple(r.shape)}); use 'auto' or 'torch'"
        )
    return be.fn(r, k, v, w, u, state)
