"""Stream states of the audio estimators as checked bytes: the fingerprint of the fitted model a
state belongs to, and safetensors with a checksum (no pickle) in and out."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def fingerprint(est: Any, *settings: Any) -> str:
    """SHA-256 of a fitted estimator's weights (``model_``) and scaler (``scale_mean_``,
    ``scale_std_``) and of JSON-able ``settings`` (front-end configuration, vocabulary ...)."""
    from rwkv_ts.stream.stream import update_with_weights

    digest = hashlib.sha256()
    update_with_weights(digest, est.model_, est.scale_mean_, est.scale_std_)
    for item in settings:
        digest.update(json.dumps(item, sort_keys=True).encode())
    return digest.hexdigest()


def state_to_bytes(arrays: dict[str, np.ndarray], fmt: str, model: str) -> bytes:
    """``arrays`` as safetensors with format tag ``fmt``, fingerprint ``model`` and a checksum."""
    from safetensors.numpy import save as st_save

    from rwkv_ts._safefile import seal

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return seal(lambda meta: st_save(arrays, metadata=meta), {"format": fmt, "model": model})


def state_from_bytes(data: Any, fmt: str, model: str, what: str, owner: str) -> dict:
    """The arrays of :func:`state_to_bytes`; ``ValueError`` for corrupt bytes, another format
    (``what`` names the expected one) or another model (``owner`` names its kind)."""
    from safetensors.numpy import load as st_load

    from rwkv_ts._safefile import CHECKSUM_KEY, check_bytes

    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"load_state takes bytes, got {type(data).__name__}")
    _, metadata = check_bytes(bytes(data), "the state bytes", ValueError)
    if metadata.get("format") != fmt or CHECKSUM_KEY not in metadata:
        raise ValueError(f"the state bytes are not {what} (format {metadata.get('format')!r})")
    if metadata.get("model") != model:
        raise ValueError(f"the state bytes belong to another {owner} (fingerprint mismatch)")
    return st_load(bytes(data))
