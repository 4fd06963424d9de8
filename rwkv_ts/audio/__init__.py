"""Audio: WAV input/output, a causal streaming log-mel front end, voice activity and speech.

* :func:`read_wav`, :func:`write_wav`, :func:`resample`, :class:`AudioFileError` -- PCM WAV files
  through the standard library and polyphase resampling (:mod:`rwkv_ts.audio.io`).
* :class:`FrontendConfig`, :class:`LogMelFrontend`, :class:`FrontendStream` -- log-mel features,
  offline or pushed chunk by chunk with bit-identical numbers (:mod:`rwkv_ts.audio.features`).
* :class:`RWKVVoiceActivityDetector` (:mod:`rwkv_ts.audio.vad`) and
  :class:`RWKVSpeechRecognizer` (:mod:`rwkv_ts.audio.asr`) -- RWKV estimators over the front end.

Everything is imported lazily: ``import rwkv_ts.audio`` loads neither torch nor Lightning.

Examples
--------
>>> import numpy as np
>>> from rwkv_ts.audio import LogMelFrontend
>>> LogMelFrontend().transform(np.zeros(16000, dtype=np.float32)).shape
(98, 40)
"""

from __future__ import annotations

__all__ = [
    "AudioFileError",
    "FrontendConfig",
    "FrontendStream",
    "LogMelFrontend",
    "RWKVSpeechRecognizer",
    "RWKVVoiceActivityDetector",
    "read_wav",
    "resample",
    "write_wav",
]

_EXPORTS = {
    "AudioFileError": "rwkv_ts.audio.io",
    "read_wav": "rwkv_ts.audio.io",
    "resample": "rwkv_ts.audio.io",
    "write_wav": "rwkv_ts.audio.io",
    "FrontendConfig": "rwkv_ts.audio.features",
    "FrontendStream": "rwkv_ts.audio.features",
    "LogMelFrontend": "rwkv_ts.audio.features",
    "RWKVVoiceActivityDetector": "rwkv_ts.audio.vad",
    "RWKVSpeechRecognizer": "rwkv_ts.audio.asr",
}


def __getattr__(name: str):
    # Lazy exports: the estimators import torch and Lightning, the front end only numpy.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rwkv_ts.audio' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
