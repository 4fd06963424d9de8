"""Checked reading and atomic writing of the library's safetensors files (no torch, no pickle).

Model files and stream states are safetensors: an 8-byte little-endian header length, a JSON header
(tensor index and string metadata), then the raw tensor bytes. :func:`seal` adds a SHA-256 over the
tensor index, the rwkv-ts header and the tensor bytes to the metadata, so that a flipped byte
anywhere in them is caught on load; :func:`check_bytes` rejects pickles, absurd header sizes,
truncation and checksum mismatches before any tensor is built; :func:`write_atomic` writes a
temporary file in the target's folder, fsyncs it and renames it over the target, so a crash during
a save leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

#: metadata key of the checksum written by :func:`seal`
CHECKSUM_KEY = "sha256"
# The largest safetensors header we accept: ours are a few hundred kB at most (the JSON header of a
# model with thousands of series); a length beyond this is corruption or not our file, and reading
# it would allocate whatever an attacker declared.
MAX_HEADER_BYTES = 64 * 2**20


def _pickle_like(data: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number; protocol 0/1 streams
    # start with an opcode such as "(" or "}" or "]" and never with a plausible 8-byte length.
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def check_bytes(data: bytes, where: str, error: type[ValueError]) -> tuple[dict, dict]:
    """Parse and check a safetensors byte string; return its header and its metadata.

    Parameters
    ----------
    data
        The whole file.
    where
        What to call the data in messages (a path, "the state bytes").
    error
        The exception class to raise (a ``ValueError`` subclass of the caller's module).

    Raises
    ------
    error
        A pickle, a truncated file, an absurd declared header size, an unreadable header, a tensor
        whose declared extent lies outside the file, or (when the metadata holds one) a checksum
        that does not match.

    Examples
    --------
    >>> import pickle
    >>> try:
    ...     check_bytes(pickle.dumps([1]), "x", ValueError)
    ... except ValueError as exc:
    ...     print(str(exc)[:33])
    x is a Python pickle, not an rwkv
    """
    if _pickle_like(data):
        raise error(
            f"{where} is a Python pickle, not an rwkv-ts file; rwkv-ts never unpickles "
            "(it could run arbitrary code)"
        )
    if len(data) < 8:
        raise error(f"{where} is truncated: {len(data)} bytes, no safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise error(
            f"{where} is corrupt or not an rwkv-ts file: it declares a {n}-byte header "
            f"(at most {MAX_HEADER_BYTES} accepted)"
        )
    if n > len(data) - 8:
        raise error(f"{where} is truncated: its header announces {n} bytes, {len(data) - 8} follow")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{where} is corrupt: unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise error(f"{where} is corrupt: its safetensors header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise error(f"{where} is corrupt: its metadata is not a JSON object")
    size = len(data) - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise error(f"{where} is corrupt: tensor {name!r} has no valid data offsets") from None
        if not 0 <= start <= stop <= size:
            raise error(
                f"{where} is corrupt or truncated: tensor {name!r} declares bytes "
                f"{start}..{stop}, the file holds {size}"
            )
    if CHECKSUM_KEY in metadata and metadata[CHECKSUM_KEY] != _digest(data, header, n):
        raise error(
            f"{where} is corrupt: its contents do not match the checksum saved with them "
            "(flipped bytes or an edited file)"
        )
    return header, metadata


def _digest(data: bytes, header: dict, n: int) -> str:
    # The checksum covers the tensor index (names, dtypes, shapes, offsets), every metadata entry
    # but itself, and the tensor bytes: nothing that load reads is left unchecked.
    index = {k: v for k, v in header.items() if k != "__metadata__"}
    meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256()
    digest.update(json.dumps([index, meta], sort_keys=True).encode())
    digest.update(memoryview(data)[8 + n :])
    return digest.hexdigest()


def seal(serialize, metadata: dict[str, str]) -> bytes:
    """Serialise with ``serialize(metadata)`` (a safetensors ``save``) and add the checksum.

    The tensor bytes and index do not depend on the metadata, so the file is written once to
    compute the checksum and once more with it.

    Examples
    --------
    >>> import numpy as np
    >>> from safetensors.numpy import save
    >>> data = seal(lambda m: save({"w": np.zeros(2)}, metadata=m), {"format": "x"})
    >>> check_bytes(data, "x", ValueError)[1]["format"]
    'x'
    """
    plain = serialize(dict(metadata))
    header, _ = check_bytes(plain, "the serialised file", RuntimeError)
    (n,) = struct.unpack("<Q", plain[:8])
    sealed = serialize({**metadata, CHECKSUM_KEY: _digest(plain, header, n)})
    # Guard the assumption above: the sealed file must verify.
    check_bytes(sealed, "the serialised file", RuntimeError)
    return sealed


def _write_all(fh, data: bytes) -> None:
    # A separate function so that tests can interrupt a save half-way through the temporary file.
    fh.write(data)


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    A crash at any point leaves either the previous file or the new one, never a mix; a stale
    temporary file (``.<name>.*.tmp``) may remain after a hard kill.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_atomic(os.path.join(tempfile.mkdtemp(), "f.bin"), b"abc")
    >>> p.read_bytes()
    b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_all(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
