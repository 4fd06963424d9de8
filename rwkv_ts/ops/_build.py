"""Build-on-first-use of the CUDA kernels in ``kernels/``: cache key, directory and file lock.

Nothing here runs at import time. :func:`load_extension` compiles the sources with
``torch.utils.cpp_extension.load`` into a directory keyed by the torch and CUDA versions, the GPU
architecture, the compile options and a hash of the sources, under a cross-process file lock:

* the lock is an ``fcntl.flock`` on ``<build dir>.lock`` where available (the kernel releases it
  when its holder dies, so a killed build never leaves a lock behind), else an exclusive-create
  lock file holding the owner's pid and start time, considered stale when that pid is gone or the
  file is older than ``stale_s``;
* waiting is bounded by ``timeout_s`` (``RWKV_TS_BUILD_TIMEOUT``, default 900 s);
* while holding it, a ``lock`` file left in the build directory by torch's own ``FileBaton`` (which
  a killed build leaves behind and on which torch would otherwise wait forever) is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = [
    "BuildLockTimeout",
    "build_lock",
    "cache_root",
    "extension_name",
    "kernel_sources",
    "load_extension",
]

#: Compile options of the kernels (part of the cache key).
NVCC_FLAGS = ("-O3",)
CXX_FLAGS = ("-O3",)


class BuildLockTimeout(TimeoutError):
    """Raised when the build lock could not be taken within the timeout."""


def kernel_dir() -> Path:
    """The directory of the CUDA sources.

    ``kernels/`` beside the package in a source checkout (and an editable install), else
    ``rwkv_ts/kernels`` inside an installed wheel (copied there by ``setup.py``'s build hook).
    """
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "kernels", here.parents[1] / "kernels"):
        if (cand / "wkv6.cu").is_file():
            return cand
    return here.parents[2] / "kernels"


def kernel_sources() -> list[Path]:
    """The sources compiled into the extension (binding first)."""
    d = kernel_dir()
    return [d / "wkv6_binding.cpp", d / "wkv6.cu", d / "wkv6_chunk.cu", d / "wkv6_split.cu"]


def kernel_headers() -> list[Path]:
    """The headers the sources include (part of the cache key)."""
    d = kernel_dir()
    return [d / "wkv6.h", d / "wkv6_device.cuh"]


def cache_root() -> Path:
    """``$RWKV_TS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/rwkv_ts/kernels`` (``~/.cache``)."""
    env = os.environ.get("RWKV_TS_KERNEL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "rwkv_ts" / "kernels"


def _arch_flags(capability: tuple[int, int]) -> list[str]:
    cc = f"{capability[0]}{capability[1]}"
    return [f"-gencode=arch=compute_{cc},code=sm_{cc}"]


def extension_name(capability: tuple[int, int]) -> str:
    """Extension name keyed by torch/CUDA versions, architecture, options and source hash."""
    import torch

    h = hashlib.sha256()
    for src in [*kernel_sources(), *kernel_headers()]:
        h.update(src.read_bytes())
    h.update(" ".join((*NVCC_FLAGS, *CXX_FLAGS)).encode())
    torch_v = torch.__version__.split("+")[0].replace(".", "")
    cuda_v = (torch.version.cuda or "none").replace(".", "")
    return (
        f"rwkv_ts_wkv6_t{torch_v}_cu{cuda_v}_sm{capability[0]}{capability[1]}_{h.hexdigest()[:12]}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def build_lock(
    path: Path, timeout_s: float = 900.0, stale_s: float = 3600.0, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold a cross-process lock on ``path`` (created if needed).

    Parameters
    ----------
    path : Path
        The lock file.
    timeout_s : float
        Give up after this many seconds of waiting (:class:`BuildLockTimeout`).
    stale_s : float
        For the fallback lock file only: a lock older than this is taken over.
    poll_s : float
        Polling interval.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BuildLockTimeout(
                            f"waited {timeout_s:.0f} s for the kernel build lock {path}"
                        ) from None
                    time.sleep(poll_s)
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n".encode())
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    # fallback: exclusive-create lock file with stale detection  # pragma: no cover
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n".encode())
            os.close(fd)
            break
        except FileExistsError:
            if _stale(path, stale_s):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if time.monotonic() > deadline:
                raise BuildLockTimeout(
                    f"waited {timeout_s:.0f} s for the kernel build lock {path}"
                ) from None
            time.sleep(poll_s)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _stale(path: Path, stale_s: float) -> bool:
    """Whether a fallback lock file belongs to a dead process on this host or is too old."""
    try:
        text = path.read_text().split()
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return False
    if age > stale_s:
        return True
    if len(text) >= 2 and text[0] == socket.gethostname():
        with contextlib.suppress(ValueError):
            return not _pid_alive(int(text[1]))
    return False


def load_extension(verbose: bool = False) -> ModuleType:
    """Compile (once per cache key) and import the kernel extension.

    Raises whatever the build raises (no compiler, no GPU, compile error, lock timeout); the caller
    (:mod:`rwkv_ts.ops.cuda`) turns that into one warning and the PyTorch path.
    """
    import torch
    from torch.utils.cpp_extension import load

    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available")
    cap = torch.cuda.get_device_capability()
    name = extension_name(cap)
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("RWKV_TS_BUILD_TIMEOUT", "900"))
    with build_lock(cache_root() / f"{name}.lock", timeout_s=timeout):
        # We hold the only lock: a "lock" file of torch's FileBaton here is a killed build's.
        with contextlib.suppress(FileNotFoundError):
            (build_dir / "lock").unlink()
        return load(
            name=name,
            sources=[str(s) for s in kernel_sources()],
            extra_include_paths=[str(kernel_dir())],
            extra_cflags=list(CXX_FLAGS),
            extra_cuda_cflags=[*NVCC_FLAGS, *_arch_flags(cap)],
            build_directory=str(build_dir),
            verbose=verbose,
        )
