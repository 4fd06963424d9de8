"""CUDA back-end of the WKV operator: autograd Function over the kernels in ``kernels/``.

Importing this module builds nothing. The extension is compiled on first use (the first call of
:func:`supports` with CUDA tensors, or of :func:`wkv_cuda`) by :mod:`rwkv_ts.ops._build`; when that
is impossible (no GPU, no compiler, a compile error) one one-line warning is issued and
:func:`supports` answers ``False`` from then on, so ``wkv`` falls back to the PyTorch path.

:func:`register` plugs the back-end into :func:`rwkv_ts.ops.wkv` under the name ``"cuda"``.
"""

from __future__ import annotations

import os
import threading
import warnings
from types import ModuleType

import torch
from torch import Tensor

from .timesplit import time_split_chunks, wkv_time_split

__all__ = [
    "CHUNKED_LONG_T",
    "CHUNKED_MIN_SEQUENCES",
    "CHUNKED_MIN_T",
    "CHUNKED_N16_MAX_SEQUENCES",
    "HEAD_SIZES",
    "extension",
    "kernel_form",
    "is_available",
    "register",
    "supports",
    "wkv_cuda",
]

#: Head sizes the kernels are compiled for.
HEAD_SIZES = (16, 32, 64, 128)
#: Input dtypes of r, k, v, w the kernels take (state and accumulation are float32).
DTYPES = (torch.float32, torch.bfloat16)
#: ``RWKV_TS_WKV_FORM=auto|sequential|chunked`` picks the kernels' form (see :func:`kernel_form`).
FORM_ENV_VAR = "RWKV_TS_WKV_FORM"
#: bfloat16 inputs of at least this many steps may take the tensor-core chunked kernels:
CHUNKED_MIN_T = 16
#: sequences of at least this many steps at head sizes 32 and up (at 16: see below),
CHUNKED_LONG_T = 256
#: or at least this many (batch, head) sequences at head size 64 and up, and at head size 32;
CHUNKED_MIN_SEQUENCES = {64: 512, 32: 2048}
#: at head size 16, long sequences (CHUNKED_LONG_T) and at most this many of them.
CHUNKED_N16_MAX_SEQUENCES = 2048
# Measured on an H100 (benchmarks/results/wkv_kernel_forms.md: forward+backward through autograd,
# each form, B*H 64-8192, T 42-720, N 16/32/64, three interleaved rounds): the chunked kernels do
# more work per call on the host and in launches, so short sequences in small batches run faster
# on the sequential ones; the edges above are where the chunked form measured faster. At head
# size 16 the sequential kernels' small per-step work wins from B*H = 4096 on.


_ext: ModuleType | None = None
_failed: str | None = None
_load_lock = threading.Lock()


def extension() -> ModuleType | None:
    """The compiled extension, building it on first use; ``None`` (after one warning) if impossible.

    Set ``RWKV_TS_BUILD_VERBOSE=1`` to see the compiler's output.
    """
    global _ext, _failed
    if _ext is not None or _failed is not None:
        return _ext
    with _load_lock:
        if _ext is not None or _failed is not None:
            return _ext
        try:
            from . import _build

            _ext = _build.load_extension(verbose=os.environ.get("RWKV_TS_BUILD_VERBOSE") == "1")
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the torch path
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            _failed = f"{type(exc).__name__}: {first}"
            warnings.warn(
                f"rwkv_ts: CUDA WKV kernel unavailable ({_failed}); using the PyTorch path",
                RuntimeWarning,
                stacklevel=2,
            )
    return _ext


def is_available() -> bool:
    """Whether CUDA is usable and the extension builds/loads (builds it on first call)."""
    return torch.cuda.is_available() and extension() is not None


def supports(
    r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None = None
) -> bool:
    """Whether :func:`wkv_cuda` handles these tensors.

    True for CUDA tensors on one device, ``r, k, v, w`` of one dtype in float32/bfloat16, head
    size in :data:`HEAD_SIZES`, a float32 state (or none), and a loadable extension. Cheap checks
    come first, so CPU tensors never trigger a build.
    """
    if not (r.is_cuda and r.ndim == 4 and r.dtype in DTYPES):
        return False
    dev = r.device
    if any(x.device != dev or x.dtype != r.dtype or x.shape != r.shape for x in (k, v, w)):
        return False
    if u.device != dev or not u.is_floating_point() or u.dtype == torch.float64:
        return False
    if state is not None and (state.device != dev or state.dtype != torch.float32):
        return False
    if r.shape[-1] not in HEAD_SIZES:
        return False
    return extension() is not None


def kernel_form(r: Tensor, form: str | None = None) -> str:
    """Which kernels :func:`wkv_cuda` runs for ``r``: ``"sequential"`` or ``"chunked"``.

    The sequential kernels walk the recurrence one step at a time in float32 (exact to float32).
    The chunked kernels (``kernels/wkv6_chunk.cu``, forward and backward) run the products of each
    16-step chunk on bfloat16 tensor cores with float32 accumulation and state: they take
    bfloat16 inputs only and are exact to bfloat16 precision, and the backward hands a sequence
    whose chunks the factored form cannot take exactly (a decay below e^-60 within 15 steps, a
    non-finite value) to the sequential backward. ``"auto"`` gives bfloat16 inputs of at least
    :data:`CHUNKED_MIN_T` steps on a GPU of compute capability 8.0 or newer to the chunked
    kernels where they measured faster: at head sizes 32 and up for sequences of at least
    :data:`CHUNKED_LONG_T` steps or at least :data:`CHUNKED_MIN_SEQUENCES` of them, at head size
    16 for sequences of at least :data:`CHUNKED_LONG_T` steps, at most
    :data:`CHUNKED_N16_MAX_SEQUENCES` of them; everything else to the sequential ones.

    Parameters
    ----------
    r : Tensor
        The receptance ``(B, T, H, N)`` of the call (CUDA).
    form : {"auto", "sequential", "chunked"}, optional
        Force a form; ``None`` reads ``RWKV_TS_WKV_FORM`` (default ``"auto"``).

    Raises
    ------
    ValueError
        For an unknown choice, or ``"chunked"`` with inputs that are not bfloat16.
    """
    choice = form or os.environ.get(FORM_ENV_VAR, "auto") or "auto"
    if choice not in ("auto", "sequential", "chunked"):
        raise ValueError(
            f"form must be 'auto', 'sequential' or 'chunked' ({FORM_ENV_VAR}); got {choice!r}"
        )
    if choice == "chunked" and r.dtype != torch.bfloat16:
        raise ValueError(f"the chunked WKV kernels take bfloat16 inputs, not {r.dtype}")
    if choice != "auto":
        return choice
    B, T, H, N = r.shape
    if r.dtype != torch.bfloat16 or T < CHUNKED_MIN_T:
        return "sequential"
    if N >= 32:
        faster = T >= CHUNKED_LONG_T or B * H >= CHUNKED_MIN_SEQUENCES[min(N, 64)]
    else:
        faster = T >= CHUNKED_LONG_T and B * H <= CHUNKED_N16_MAX_SEQUENCES
    if faster and torch.cuda.get_device_capability(r.device)[0] >= 8:
        return "chunked"
    return "sequential"


def _apply(
    r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None, kind: str
) -> tuple[Tensor, Tensor]:
    """One call of the extension's autograd operator (``wkv`` in ``kernels/wkv6_binding.cpp``:
    forward, and a backward in C++ that the autograd engine runs without Python)."""
    ext = extension()
    if ext is None:
        raise RuntimeError(f"rwkv_ts CUDA WKV kernel unavailable: {_failed}")
    return ext.wkv(r, k, v, w, u, state, kind == "chunked")


def wkv_cuda(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    u: Tensor,
    state: Tensor | None = None,
    *,
    time_chunks: int | None = None,
    form: str | None = None,
) -> tuple[Tensor, Tensor]:
    """WKV operator on the CUDA kernels; same contract as :func:`rwkv_ts.ops.wkv`.

    A few long sequences (``B * H`` up to 64, ``T`` of 4096 or more) are cut into time chunks
    that run side by side (:func:`rwkv_ts.ops.timesplit.wkv_time_split`); the sequential kernel
    alone would keep most of the GPU idle for ``T`` dependent steps.

    Parameters
    ----------
    r, k, v, w : Tensor
        ``(B, T, H, N)`` CUDA tensors of one dtype (float32 or bfloat16); decay ``exp(-exp(w))``.
    u : Tensor
        ``(H, N)`` bonus (any float dtype; used in float32).
    state : Tensor, optional
        ``(B, H, N, N)`` float32 initial state; ``None`` means zeros.
    time_chunks : int, optional
        Cut the sequence into this many chunks (1: never); ``None`` lets
        :func:`rwkv_ts.ops.timesplit.time_split_chunks` decide from the shape.
    form : {"auto", "sequential", "chunked"}, optional
        The kernels' form (:func:`kernel_form`); ``None`` reads ``RWKV_TS_WKV_FORM``.

    Returns
    -------
    y : Tensor
        ``(B, T, H, N)`` in the dtype of ``r``.
    state : Tensor
        Final state ``(B, H, N, N)`` float32. Gradients flow to all inputs and the initial state.
    """
    if time_chunks is None:
        time_chunks = time_split_chunks(*r.shape)
    if time_chunks > 1:
        kind = kernel_form(r[:, : r.shape[1] // time_chunks], form)

        def inner(*args: Tensor | None) -> tuple[Tensor, Tensor]:
            return _apply(*args, kind)

        return wkv_time_split(
            r, k, v, w, u, state, n_chunks=time_chunks, inner=inner, combine=_chunk_starts
        )
    return _apply(r, k, v, w, u, state, kernel_form(r, form))


def _chunk_starts(added: Tensor, w: Tensor, n_chunks: int, state: Tensor | None) -> Tensor:
    """Step 2 of the time split on the extension's kernels (``kernels/wkv6_split.cu``): each
    chunk's total log decay, then the scan over the chunks, in float32 with autograd; the
    contract of :func:`rwkv_ts.ops.timesplit.chunk_starts`.

    As PyTorch operations the float64 product cost more than the two WKV passes at few long
    sequences (2.5 of 5.6 ms forward+backward at (B*H, T, N) = (8, 65536, 64) on an H100)."""
    ext = extension()
    if ext is None:
        raise RuntimeError(f"rwkv_ts CUDA WKV kernel unavailable: {_failed}")
    log_decay = ext.chunk_log_decay(w, n_chunks)
    return ext.state_scan(added, log_decay, state)


def register() -> None:
    """Register this back-end as ``"cuda"`` with :func:`rwkv_ts.ops.dispatch.register_backend`.

    Cheap: builds nothing (the build happens on the first supported call).
    """
    from .dispatch import register_backend

    register_backend("cuda", wkv_cuda, supports)
