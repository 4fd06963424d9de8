"""Export of trained models for deployment without torch: an ONNX step graph with explicit state
(:func:`export_onnx`, run with :class:`OnnxStream`). The numpy/numba runtime is
:mod:`rwkv_ts.runtime`. See ``docs/streaming.md``."""

from rwkv_ts.export.onnx import OnnxStream, build_step_graph, export_onnx

__all__ = ["OnnxStream", "build_step_graph", "export_onnx"]
