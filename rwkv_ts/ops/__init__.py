"""The WKV operator (RWKV-5/6 recurrence) and its back-ends.

``wkv(r, k, v, w, u, state=None) -> (y, state)`` is the public entry point; it dispatches to a
registered compiled kernel (``register_backend``) or to the pure-PyTorch paths:

* :func:`wkv_reference` -- float64 step-by-step loop, the oracle of the tests;
* :func:`wkv_chunked` -- chunked parallel form, differentiable, robust for any decay;
* :func:`wkv_recurrent` -- direct step loop, used for very short sequences.
"""

from .chunked import wkv_chunked, wkv_recurrent
from .dispatch import available_backends, register_backend, unregister_backend, wkv
from .reference import wkv_reference


def _register_cuda() -> None:
    """Plug in the CUDA back-end when its module is present (cheap: it builds on first use)."""
    try:
        from . import cuda
    except ImportError:
        return
    register = getattr(cuda, "register", None)
    if callable(register):
        register()


_register_cuda()

__all__ = [
    "available_backends",
    "register_backend",
    "unregister_backend",
    "wkv",
    "wkv_chunked",
    "wkv_recurrent",
    "wkv_reference",
]
