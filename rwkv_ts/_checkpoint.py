"""Training checkpoints for resuming a killed ``fit``: Lightning's checkpoint dictionary stored as
safetensors with a JSON skeleton (no pickle), written atomically, with a fingerprint of the run.

Lightning collects the whole training state (weights, optimiser and LR-scheduler state, loop
counters, every callback's ``state_dict``); :class:`SafeCheckpointIO` is the Lightning checkpoint
plug-in that stores that dictionary: its tensors go into the safetensors body, everything else
(nested dicts with int or str keys, lists, tuples, numbers, strings, booleans, ``None``) into a
typed JSON skeleton in the metadata. The file carries the checksum of :func:`rwkv_ts._safefile.seal`
and is written with :func:`rwkv_ts._safefile.write_atomic`, so a process killed while saving
leaves the previous checkpoint intact. Reading never unpickles: a file that fails any check is
reported as unusable, never half-read.

The fingerprint is a JSON object describing what the result depends on (training options, the
model's architecture, the estimator's parameters, a hash of the training data); a checkpoint is
only resumed by a run with the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rwkv_ts._safefile import CHECKSUM_KEY, check_bytes, seal, write_atomic

#: file name of the checkpoint inside ``checkpoint_dir``
CHECKPOINT_NAME = "training_checkpoint.safetensors"
FORMAT = "rwkv_ts.training_checkpoint"
FORMAT_VERSION = 1


class CheckpointFileError(ValueError):
    """A training checkpoint that cannot be used: corrupt, truncated, a pickle, another format."""


# ---------------------------------------------------------------------- nested state <-> JSON
def encode_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a typed JSON skeleton and its tensors.

    Dicts become ``{"$dict": [[key, value], ...]}`` (keys keep their type: optimiser states are
    keyed by int), tuples ``{"$tuple": [...]}``, tensors ``{"$tensor": name}``; lists, numbers,
    strings, booleans and ``None`` stay as they are. Anything else raises ``TypeError``.

    Examples
    --------
    >>> skeleton, tensors = encode_state({"step": 3, 0: (0.9, 0.99), "w": torch.ones(2)})
    >>> restored = decode_state(skeleton, tensors)
    >>> restored["step"], restored[0], restored["w"].tolist()
    (3, (0.9, 0.99), [1.0, 1.0])
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            name = f"t{len(tensors)}"
            # a private contiguous CPU copy: safetensors refuses shared or strided storage
            tensors[name] = value.detach().to("cpu", copy=True).contiguous()
            return {"$tensor": name}
        if isinstance(value, dict):
            return {"$dict": [[enc(k, where), enc(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(
            f"cannot store {type(value).__name__} at {where or 'the top'} of a training "
            "checkpoint (tensors, numbers, strings, lists, tuples and dicts only)"
        )

    return enc(obj, ""), tensors


def decode_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the state that :func:`encode_state` split."""
    if isinstance(skeleton, list):
        return [decode_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if set(skeleton) == {"$tensor"}:
            return tensors[skeleton["$tensor"]]
        if set(skeleton) == {"$tuple"}:
            return tuple(decode_state(v, tensors) for v in skeleton["$tuple"])
        if set(skeleton) == {"$dict"}:
            return {
                _hashable(decode_state(k, tensors)): decode_state(v, tensors)
                for k, v in skeleton["$dict"]
            }
        raise ValueError(f"unknown node in a training checkpoint: {sorted(skeleton)}")
    return skeleton


def _hashable(key: Any) -> Any:
    if isinstance(key, list | dict | torch.Tensor):
        raise ValueError(f"a training checkpoint holds an unhashable dict key: {key!r}")
    return key


# ---------------------------------------------------------------------- the file
def write_checkpoint(path: str | os.PathLike, state: dict, fingerprint: dict) -> Path:
    """Write ``state`` (Lightning's checkpoint dictionary) to ``path`` atomically."""
    skeleton, tensors = encode_state(state)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "fingerprint": json.dumps(fingerprint, sort_keys=True),
        "state": json.dumps(skeleton),
    }
    data = seal(lambda meta: st_save(tensors, metadata=meta), metadata)
    return write_atomic(path, data)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read and check a checkpoint; return ``(fingerprint, state)``.

    Raises
    ------
    CheckpointFileError
        The file is unreadable, a pickle, truncated, corrupt (checksum), of another format or of
        a newer format version.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointFileError(f"{path} is not readable: {exc}") from None
    _, metadata = check_bytes(data, str(path), CheckpointFileError)
    if metadata.get("format") != FORMAT:
        raise CheckpointFileError(
            f"{path} is not an rwkv-ts training checkpoint (format {metadata.get('format')!r})"
        )
    if CHECKSUM_KEY not in metadata:
        raise CheckpointFileError(f"{path} is corrupt or edited: it carries no checksum")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise CheckpointFileError(
            f"{path} has format version {version!r}; this rwkv-ts reads up to {FORMAT_VERSION}"
        )
    try:
        fingerprint = json.loads(metadata["fingerprint"])
        skeleton = json.loads(metadata["state"])
        tensors = st_load(data)
        state = decode_state(skeleton, tensors)
    except (KeyError, TypeError, ValueError, SafetensorError, RuntimeError) as exc:
        raise CheckpointFileError(f"{path} is not a readable training checkpoint: {exc}") from None
    if not isinstance(fingerprint, dict) or not isinstance(state, dict):
        raise CheckpointFileError(f"{path} is not a readable training checkpoint")
    return fingerprint, state


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint plug-in: :func:`write_checkpoint` / :func:`read_checkpoint`.

    ``preloaded`` (path -> state) serves a checkpoint already read and checked by the caller.
    """

    def __init__(self, fingerprint: dict, preloaded: dict[str, dict] | None = None) -> None:
        self.fingerprint = fingerprint
        self.preloaded = dict(preloaded or {})

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        write_checkpoint(path, checkpoint, self.fingerprint)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: Any = None) -> dict:
        state = self.preloaded.pop(str(path), None)
        if state is not None:
            return state
        fingerprint, state = read_checkpoint(path)
        if fingerprint != self.fingerprint:
            raise CheckpointFileError(f"{path} was written by another training run")
        return state

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------------- fingerprints
def data_digest(*parts: Any) -> str:
    """SHA-256 over arrays (dtype, shape, bytes), lists/tuples of them, and JSON-able values.

    Examples
    --------
    >>> a = np.arange(3.0)
    >>> data_digest([a], "x") == data_digest([a.copy()], "x") != data_digest([a + 1], "x")
    True
    """
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            digest.update(f"array{value.dtype.str}{value.shape}".encode())
            digest.update(memoryview(value).cast("B") if value.size else b"")
        elif isinstance(value, list | tuple):
            digest.update(f"seq{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(json.dumps(value, sort_keys=True, default=repr).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()


def estimator_tag(estimator: Any, *data: Any) -> dict:
    """What a fit depends on beyond the training options: the estimator's class and parameters
    (settings that cannot change the result left out) and a digest of its prepared data."""
    skip = {"verbose", "log_dir", "checkpoint_dir"}
    params = {}
    for name, value in sorted(estimator.get_params(deep=False).items()):
        if name in skip:
            continue
        value = value.item() if isinstance(value, np.generic) else value
        try:
            params[name] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            params[name] = repr(value)
    return {"estimator": type(estimator).__name__, "params": params, "data": data_digest(*data)}


def describe_differences(saved: dict, current: dict) -> str:
    """Name what differs between two fingerprints (parameters by name and value).

    Examples
    --------
    >>> describe_differences({"params": {"d": 8}, "data": "a"}, {"params": {"d": 16}, "data": "a"})
    'parameter d (8 -> 16)'
    """
    out = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if key == "params" and isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    out.append(f"parameter {name} ({old.get(name)!r} -> {new.get(name)!r})")
        elif key == "data":
            out.append("the training data")
        elif key == "model":
            out.append("the model's architecture")
        else:
            out.append(f"{key} ({old!r} -> {new!r})")
    return ", ".join(out) or "nothing visible"
