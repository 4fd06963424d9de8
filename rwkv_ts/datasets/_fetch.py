"""Data home, checksums (with an in-process cache) and atomic downloads."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import secrets
import threading
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DATA_HOME_ENV",
    "ChecksumError",
    "DownloadError",
    "download",
    "get_data_home",
    "sha256_file",
    "verify_file",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the default data home.
DATA_HOME_ENV = "RWKV_TS_DATA"

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


class ChecksumError(OSError):
    """A data file does not have the expected sha256."""


class DownloadError(OSError):
    """A data file could not be downloaded (or the download did not verify)."""


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """The folder where downloadable data sets are looked up and stored.

    Resolution order: the `data_home` argument, else the environment variable
    ``RWKV_TS_DATA`` (when set and non-empty), else the user cache folder
    ``platformdirs.user_cache_dir("rwkv-ts")`` (e.g. ``~/.cache/rwkv-ts`` on Linux).
    ``~`` is expanded. The folder is not created here; downloads create what they need.

    The layout inside it mirrors the upstream folders, e.g.
    ``<data home>/ett-small/ETTh1.csv`` and ``<data home>/ett-small/ETTm1.csv.gz``.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        Explicit folder; takes precedence over everything else.

    Returns
    -------
    pathlib.Path
        The data home (it may not exist yet).

    Examples
    --------
    >>> get_data_home("/tmp/my-data").as_posix()
    '/tmp/my-data'
    """
    if data_home is not None:
        return Path(data_home).expanduser()
    env = os.environ.get(DATA_HOME_ENV, "")
    if env.strip():
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rwkv-ts"))


# --------------------------------------------------------------------------- checksums

# (resolved path, mtime_ns, size, mode) -> hex digest. Entries of a changed file no longer
# match because its mtime or size changes.
_HASH_CACHE: dict[tuple[str, int, int, str], str] = {}
_HASH_LOCK = threading.Lock()


def _cache_key(path: Path, mode: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, mode)


def sha256_file(path: str | os.PathLike[str], *, decompress: bool = False) -> str:
    """The sha256 hex digest of a file (or of its gzip-decompressed content).

    Results are cached for the lifetime of the process, keyed by the resolved path,
    modification time and size, so repeated loads do not re-hash unchanged files.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    decompress : bool, default False
        Hash the gzip-decompressed stream instead of the bytes on disk.

    Returns
    -------
    str
        64 lowercase hex characters.
    """
    path = Path(path)
    mode = "gunzip" if decompress else "raw"
    key = _cache_key(path, mode)
    with _HASH_LOCK:
        cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = hexdigest
    return hexdigest


def clear_hash_cache() -> None:
    """Forget all cached digests (mainly for tests)."""
    with _HASH_LOCK:
        _HASH_CACHE.clear()


def verify_file(
    path: str | os.PathLike[str],
    sha256: str | None,
    *,
    content_sha256: str | None = None,
    hint: str = "",
) -> None:
    """Check a file's sha256; raise :class:`ChecksumError` with both hashes on mismatch.

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.
    sha256 : str or None
        Expected digest of the bytes on disk; ``None`` when only `content_sha256` is known.
    content_sha256 : str, optional
        For a gzip file: the expected digest of the decompressed content. A gzip file
        whose own digest differs from `sha256` is still accepted when its content
        matches (a user may have recompressed the identical CSV with other settings).
    hint : str, optional
        Extra advice appended to the error message (e.g. how to re-download).
    """
    if sha256 is None and content_sha256 is None:
        raise ValueError("verify_file needs sha256 or content_sha256")
    path = Path(path)
    actual = sha256_file(path)
    if actual == sha256:
        return
    content_actual = None
    if content_sha256 is not None:
        try:
            content_actual = sha256_file(path, decompress=True)
        except (OSError, EOFError, zlib.error):
            content_actual = None
        if content_actual == content_sha256:
            return
    msg = f"Checksum mismatch for {path}:"
    if sha256 is not None:
        msg += f"\n  expected sha256 {sha256}\n  actual   sha256 {actual}"
    if content_sha256 is not None:
        if sha256 is None:
            msg += f"\n  sha256 of the file {actual}"
        shown = content_actual if content_actual is not None else "(not a readable gzip file)"
        msg += (
            f"\n  expected sha256 of the decompressed content {content_sha256}"
            f"\n  actual   sha256 of the decompressed content {shown}"
        )
    msg += "\nThe file is corrupt, truncated or a different version."
    if hint:
        msg += " " + hint
    raise ChecksumError(msg)


# --------------------------------------------------------------------------- download


def download(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    sha256: str,
    *,
    manual_hint: str = "",
    timeout: float = _TIMEOUT_S,
) -> Path:
    """Download a file atomically and verify it.

    Each URL is tried in turn. The payload is streamed into a temporary file in the
    destination folder and hashed on the way; only a payload with the expected sha256 is
    moved into place with :func:`os.replace`. On any failure the temporary file (and any
    folder this call created) is removed, so nothing is left behind, and
    :class:`DownloadError` is raised.

    Parameters
    ----------
    urls : sequence of str
        Candidate URLs (mirrors), tried in order.
    dest : str or os.PathLike
        Final path of the file.
    sha256 : str
        Expected sha256 of the payload.
    manual_hint : str, optional
        Appended to the error message (where to place the file by hand).
    timeout : float, default 60
        Socket timeout in seconds per URL.

    Returns
    -------
    pathlib.Path
        `dest`, now holding the verified file.
    """
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    failures: list[str] = []
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        failures.append(f"cannot create {dest.parent}: {type(err).__name__}: {err}")
        urls = ()
    for url in urls:
        logger.info("downloading %s to %s", url, dest)
        # a unique temporary name in the destination folder (so os.replace is atomic); opened
        # with "xb" rather than mkstemp so that the file gets the usual umask permissions
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.part"
        try:
            digest = hashlib.sha256()
            with open(tmp, "xb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda r=resp: r.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != sha256:
                failures.append(
                    f"{url}: checksum mismatch (expected sha256 {sha256}, got {actual})"
                )
                continue
            os.replace(tmp, dest)
            with _HASH_LOCK:
                _HASH_CACHE[_cache_key(dest, "raw")] = actual
            return dest
        except Exception as err:  # any failure moves on to the next URL
            failures.append(f"{url}: {type(err).__name__}: {err}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    for folder in created:  # leave no empty folder behind either (deepest first)
        with contextlib.suppress(OSError):
            folder.rmdir()
    detail = "\n  ".join(failures) if failures else "(no URL to try)"
    msg = f"Could not download {dest.name} to {dest}:\n  {detail}"
    if manual_hint:
        msg += "\n" + manual_hint
    raise DownloadError(msg)
