"""rwkv-ts: time-series and signal modelling with RWKV encoders.

Parallel training over whole sequences, and exact step-by-step inference with an explicit state.

Examples
--------
>>> import rwkv_ts
>>> sorted(rwkv_ts.__all__)[:2]
['RWKVClassifier', 'RWKVForecaster']
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rwkv-ts")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "RWKVClassifier",
    "RWKVForecaster",
    "RWKVRegressor",
    "RWKVSpeechRecognizer",
    "RWKVVoiceActivityDetector",
    "__version__",
    "load",
]


def __getattr__(name: str):
    # Import the estimator lazily so that ``import rwkv_ts`` stays light (no Lightning import).
    if name == "RWKVForecaster":
        from rwkv_ts.forecaster import RWKVForecaster

        return RWKVForecaster
    if name == "RWKVClassifier":
        from rwkv_ts.classifier import RWKVClassifier

        return RWKVClassifier
    if name == "RWKVRegressor":
        from rwkv_ts.regressor import RWKVRegressor

        return RWKVRegressor
    if name == "RWKVVoiceActivityDetector":
        from rwkv_ts.audio.vad import RWKVVoiceActivityDetector

        return RWKVVoiceActivityDetector
    if name == "RWKVSpeechRecognizer":
        from rwkv_ts.audio.asr import RWKVSpeechRecognizer

        return RWKVSpeechRecognizer
    if name == "load":
        from rwkv_ts.persistence import load

        return load
    raise AttributeError(f"module 'rwkv_ts' has no attribute {name!r}")
