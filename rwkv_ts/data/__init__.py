"""The data boundary: user frames/arrays <-> internal panels, validation, training windows.

Data is converted once, at the boundary: :func:`to_panel` validates a pandas/polars frame, a pandas
Series or a numpy array and returns a :class:`Panel` of float32 arrays; the estimator works on
numpy/torch internally and :func:`forecast_to_frame` turns its forecasts back into the input's
library and layout. :class:`WindowDataset` and :func:`chronological_split` build training
windows without materialising them.
"""

from rwkv_ts.data.frames import FrameSpec, Panel, forecast_to_frame, to_panel
from rwkv_ts.data.validation import (
    IMPUTE_METHODS,
    DataTooLargeError,
    DataTypeError,
    DataValidationError,
    check_same_channels,
)

__all__ = [
    "IMPUTE_METHODS",
    "DataTooLargeError",
    "DataTypeError",
    "DataValidationError",
    "FrameSpec",
    "Panel",
    "WindowDataset",
    "check_same_channels",
    "chronological_split",
    "forecast_to_frame",
    "to_panel",
]


def __getattr__(name: str):
    # the training windows need torch; the rest of the boundary (and the torch-free runtime, which
    # reads phases through rwkv_ts.data.cycle) does not, so they load on first use
    if name in ("WindowDataset", "chronological_split"):
        from rwkv_ts.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'rwkv_ts.data' has no attribute {name!r}")
