"""Torch-free streaming runtime: numpy arrays and a numba step kernel.

``RuntimeModel.load(path)`` reads a model saved with ``RWKVForecaster.save`` without importing
torch; ``model.stream(n_series)`` gives a :class:`RuntimeStream` whose ``update`` takes new samples
and returns forecasts equal to the torch stream's. Only the streamable configuration
(``norm="causal"`` with a bounded head) runs here. See ``docs/streaming.md``.
"""

from rwkv_ts.runtime.stream import RuntimeModel, RuntimeStream
from rwkv_ts.runtime.weights import RuntimeModelError, read_model_file

__all__ = ["RuntimeModel", "RuntimeModelError", "RuntimeStream", "read_model_file"]
