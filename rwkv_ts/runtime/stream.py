"""``RuntimeStream``: the streamable forecaster on numpy arrays and a numba kernel, no torch."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from rwkv_ts.runtime.kernel import make_scratch, run_lanes, unscale_forecasts, update_lanes
from rwkv_ts.runtime.weights import ModelArrays, RuntimeModelError, flatten, pack, read_model_file

RUNTIME_STATE_FORMAT = "rwkv-ts/runtime-state"
_STATE_NAMES = ("nbuf", "count", "zbuf", "shift", "wkv", "tcn", "cm", "head", "fc")


class RuntimeModel:
    """A trained streamable forecaster as numpy arrays, ready for the step kernel.

    Parameters
    ----------
    arrays : ModelArrays
        From :func:`rwkv_ts.runtime.weights.read_model_file` (or :meth:`load`).

    Examples
    --------
    >>> from rwkv_ts.runtime import RuntimeModel
    >>> RuntimeModel.load("missing.rwkvts")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no model file at missing.rwkvts
    """

    def __init__(self, arrays: ModelArrays) -> None:
        self.arrays = arrays
        self.config = cfg = arrays.config
        self.channels = list(arrays.channels)
        self.scale_mean = np.asarray(arrays.scale_mean, dtype=np.float64)
        self.scale_std = np.asarray(arrays.scale_std, dtype=np.float64)
        params = pack(cfg, arrays.weights)
        self.flat, self.table = flatten(cfg, params)
        ints = [
            cfg.n_layers,
            cfg.n_heads,
            cfg.head_size,
            int(cfg.data_decay),
            cfg.lora_rank,
            len(cfg.distances),
            max(cfg.distances),
            len(cfg.dilations),
            cfg.kernel_size,
            cfg.hidden,
            cfg.head_tokens,
            cfg.patch_len,
            cfg.stride,
            int(cfg.linear_skip),
            cfg.lookback,
            0,
        ]
        self.cfg = np.array(ints + list(cfg.distances) + list(cfg.dilations), dtype=np.int64)
        digest = hashlib.sha256(json.dumps(arrays.config_dict, sort_keys=True).encode())
        # over the packed arrays, not the kernel's flat layout: a saved state stays valid when
        # only that layout changes
        for p in params:
            digest.update(np.ascontiguousarray(p).tobytes())
        digest.update(self.scale_mean.tobytes() + self.scale_std.tobytes())
        self.fingerprint = digest.hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike) -> RuntimeModel:
        """Read a model saved with ``RWKVForecaster.save`` (torch is not imported)."""
        return cls(read_model_file(path))

    def stream(self, n_series: int = 0) -> RuntimeStream:
        return RuntimeStream(self, n_series)


class RuntimeStream:
    """Streaming forecasts of ``n_series`` series (series join with :meth:`add_series`).

    ``update(values)`` takes one sample ``(S, C)`` or ``k`` samples ``(S, k, C)`` for every
    series, in order, and returns the forecasts ``(S, horizon, C)`` (NaN for series with fewer
    than ``lookback`` samples), equal to the torch stream and to ``RWKVForecaster.predict`` on
    the same history.
    """

    def __init__(self, model: RuntimeModel, n_series: int = 0) -> None:
        self.model = model
        cfg = model.config
        self._c = len(model.channels)
        self._horizon = cfg.horizon
        self._scratch = make_scratch(model.cfg, cfg.d_model, cfg.horizon)
        self.state = self._zeros(0)
        self.add_series(n_series)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The state arrays by name (lanes first). Assign a whole new dict to replace them: the
        kernel's arguments are gathered then, not on every update (a one-sample update is a few
        tens of microseconds, so its Python side counts)."""
        return self._state

    @state.setter
    def state(self, value: dict[str, np.ndarray]) -> None:
        m = self.model
        self._state = value
        self._lanes = np.arange(value["count"].shape[0], dtype=np.int64)
        self._args = (m.flat, m.table, m.cfg, *(value[k] for k in _STATE_NAMES), self._scratch)

    def _zeros(self, lanes: int) -> dict[str, np.ndarray]:
        cfg = self.model.config
        p, d, n_layers = cfg.stride, cfg.d_model, cfg.n_layers
        n_tcn = len(cfg.dilations)
        rec = max([(cfg.kernel_size - 1) * dil for dil in cfg.dilations] + [1])
        f = np.float32
        return {
            "nbuf": np.zeros((lanes, cfg.norm_window), np.float64),
            "count": np.zeros(lanes, np.int64),
            "zbuf": np.zeros((lanes, max(cfg.patch_len, cfg.lookback * cfg.linear_skip)), f),
            "shift": np.zeros((lanes, p, n_layers, max(cfg.distances), d), f),
            "wkv": np.zeros((lanes, p, n_layers, cfg.n_heads, cfg.head_size, cfg.head_size), f),
            "tcn": np.zeros((lanes, p, n_layers, n_tcn, rec, d), f),
            "cm": np.zeros((lanes, p, n_layers, d), f),
            "head": np.zeros((lanes, p, cfg.head_tokens, d), f),
            "fc": np.zeros((lanes, cfg.horizon), f),
        }

    @property
    def n_series(self) -> int:
        return self.state["count"].shape[0] // self._c

    def add_series(self, n: int) -> None:
        """Add ``n`` new (empty) series after the existing ones."""
        if n:
            extra = self._zeros(n * self._c)
            self.state = {k: np.concatenate([v, extra[k]]) for k, v in self.state.items()}

    def nbytes_per_series(self) -> int:
        return sum(v.nbytes for v in self.state.values()) // max(self.n_series, 1)

    def update(self, values: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
        """Feed samples (S, C) or (S, k, C) to ``series`` (default all, in order); return their
        forecasts (S, horizon, C)."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[:, None, :]
        if series is None:
            lanes = self._lanes
            n_given = lanes.shape[0] // self._c
        else:
            n_series = self.n_series
            idx = np.asarray(series, dtype=np.int64).reshape(-1)
            if len(idx) and (idx.min() < 0 or idx.max() >= n_series):
                raise ValueError(f"series positions must lie in [0, {n_series})")
            lanes, n_given = (idx[:, None] * self._c + np.arange(self._c)).ravel(), len(idx)
        if arr.ndim != 3 or arr.shape[0] != n_given or arr.shape[2] != self._c:
            raise ValueError(
                f"values must have shape (S, C) or (S, k, C) with S = {n_given} series and "
                f"C = {self._c} channels, got {np.shape(values)}"
            )
        m = self.model
        out = np.empty((n_given, self._horizon, self._c), np.float64)
        # scaling checks every value before any state changes: a bad sample changes nothing
        if not update_lanes(arr, m.scale_mean, m.scale_std, lanes, *self._args, out):
            raise ValueError("values contain NaN or infinite values")
        return out

    def advance(self, lanes: np.ndarray, x: np.ndarray) -> None:
        """Advance ``lanes`` (m,) by already scaled samples ``x`` (m, k); no checks."""
        run_lanes(
            np.ascontiguousarray(lanes, dtype=np.int64),
            np.ascontiguousarray(x, dtype=np.float32),
            *self._args,
        )

    def forecast(self) -> np.ndarray:
        """Current forecasts (S, horizon, C) of every series."""
        return self._forecasts(self._lanes)

    def _forecasts(self, lanes: np.ndarray) -> np.ndarray:
        m, c = self.model, self._c
        out = np.empty((len(lanes) // c, m.config.horizon, c), np.float64)
        unscale_forecasts(
            self.state["fc"],
            self.state["count"],
            lanes,
            m.scale_mean,
            m.scale_std,
            m.config.lookback,
            out,
        )
        return out

    # ------------------------------------------------------------------ state
    def save_state(self, path: str | os.PathLike | None = None) -> bytes | None:
        """The state as safetensors bytes (or written to ``path`` atomically)."""
        from safetensors.numpy import save

        from rwkv_ts._safefile import write_atomic

        data = save(
            {k: np.ascontiguousarray(v) for k, v in self.state.items()},
            metadata={"format": RUNTIME_STATE_FORMAT, "model": self.model.fingerprint},
        )
        if path is None:
            return data
        write_atomic(path, data)
        return None

    def load_state(self, source: bytes | str | os.PathLike) -> RuntimeStream:
        """Restore a state saved by :meth:`save_state` of a stream of the same model."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        from rwkv_ts._safefile import check_bytes

        data = bytes(source) if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
        check_bytes(data, "the runtime state", RuntimeModelError)
        try:
            tensors = load(data)
            meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get(
                "__metadata__", {}
            )
        except (SafetensorError, ValueError) as exc:
            raise RuntimeModelError(f"the runtime state is corrupt or truncated: {exc}") from None
        if (
            meta.get("format") != RUNTIME_STATE_FORMAT
            or meta.get("model") != self.model.fingerprint
        ):
            raise RuntimeModelError("the runtime state belongs to another model or is not one")
        if sorted(tensors) != sorted(_STATE_NAMES):
            raise RuntimeModelError(f"the runtime state holds {sorted(tensors)}")
        lanes = tensors["count"].shape[0]
        ref = self._zeros(lanes)
        for k, v in ref.items():
            if tensors[k].shape != v.shape or tensors[k].dtype != v.dtype:
                raise RuntimeModelError(f"runtime state tensor {k!r} has the wrong shape or dtype")
        self.state = {k: np.ascontiguousarray(tensors[k]) for k in _STATE_NAMES}
        return self
