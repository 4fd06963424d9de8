"""Streaming inference: feed samples as they arrive, forecasts at once, constant memory per series.

``est.stream()`` on a fitted :class:`~rwkv_ts.RWKVForecaster` returns a :class:`ForecastStream`;
:mod:`rwkv_ts.stream.engine` holds the batched torch engines and :mod:`rwkv_ts.stream.training`
the training regime of the streamable configuration. See ``docs/streaming.md``.
"""

from rwkv_ts.stream.stream import ForecastStream, StreamStateError, model_fingerprint

__all__ = ["ForecastStream", "StreamStateError", "model_fingerprint"]
