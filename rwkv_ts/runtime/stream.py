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
#: the state of a model that removes a cycle also holds each lane's phase (of its next sample)
_CYCLE_STATE_NAMES = (*_STATE_NAMES, "phase")


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
        profile = arrays.cycle_profile
        #: the removed cycle's period in steps, or None
        self.cycle = None if profile is None else int(profile.shape[0])
        # a model without a cycle runs the same kernel with a one-phase profile of zeros
        self.cycle_profile = np.ascontiguousarray(
            np.zeros((1, len(self.channels))) if profile is None else profile, dtype=np.float64
        )
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
        if self.cycle is not None:
            digest.update(b"cycle" + self.cycle_profile.tobytes())
        self.fingerprint = digest.hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike) -> RuntimeModel:
        """Read a model saved with ``RWKVForecaster.save`` (torch is not imported)."""
        return cls(read_model_file(path))

    def stream(self, n_series: int = 0, phase: int | np.ndarray = 0) -> RuntimeStream:
        """A stream of ``n_series`` empty series; ``phase``: the phase of each one's first sample
        in the removed cycle (see :meth:`cycle_phases`; ignored without a cycle)."""
        return RuntimeStream(self, n_series, phase)

    def cycle_phases(self, times) -> np.ndarray:
        """The phases in the removed cycle of samples at ``times`` (timestamps, or integer time
        as at ``fit``), as the saved forecaster computes them: what :meth:`stream`,
        :meth:`RuntimeStream.add_series` and :meth:`RuntimeStream.set_phases` take for a series'
        next sample. Imports pandas (not torch).

        Examples
        --------
        >>> import tempfile, numpy as np, pandas as pd
        >>> from pathlib import Path
        >>> from rwkv_ts import RWKVForecaster
        >>> from rwkv_ts.runtime import RuntimeModel
        >>> t = pd.date_range("2024-01-01", periods=400, freq="h")
        >>> y = pd.DataFrame({"load": np.sin(np.arange(400) * 2 * np.pi / 24)}, index=t)
        >>> est = RWKVForecaster.from_preset("streaming", horizon=12, lookback=48, patch_len=8,
        ...     stride=4, d_model=16, head_size=8, max_epochs=1, verbose=False, random_state=0)
        >>> est = est.fit(y)
        >>> path = Path(tempfile.mkdtemp()) / "load.rwkvts"
        >>> est.save(path)
        >>> model = RuntimeModel.load(path)
        >>> model.cycle, model.cycle_phases(t[-1] + pd.Timedelta("1h")).tolist()
        (24, [16])
        >>> stream = model.stream(1, phase=model.cycle_phases(t[0]))
        >>> stream.update(y.to_numpy()[None]).shape, stream.phases.tolist()
        ((1, 12, 1), [16])
        """
        if self.cycle is None:
            raise ValueError("this model removes no cycle")
        from rwkv_ts.data.cycle import step_indices
        from rwkv_ts.data.serialize import decode_freq

        freq = decode_freq(self.arrays.freq)
        stamps = np.atleast_1d(np.asarray(times, dtype=object))
        return step_indices(list(stamps), freq) % self.cycle


class RuntimeStream:
    """Streaming forecasts of ``n_series`` series (series join with :meth:`add_series`).

    ``update(values)`` takes one sample ``(S, C)`` or ``k`` samples ``(S, k, C)`` for every
    series, in order, and returns the forecasts ``(S, horizon, C)`` (NaN for series with fewer
    than ``lookback`` samples), equal to the torch stream and to ``RWKVForecaster.predict`` on
    the same history.
    """

    def __init__(self, model: RuntimeModel, n_series: int = 0, phase: int | np.ndarray = 0) -> None:
        self.model = model
        cfg = model.config
        self._c = len(model.channels)
        self._horizon = cfg.horizon
        self._scratch = make_scratch(model.cfg, cfg.d_model, cfg.horizon)
        self._names = _STATE_NAMES if model.cycle is None else _CYCLE_STATE_NAMES
        self.state = self._zeros(0)
        self.add_series(n_series, phase)

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
        lanes = value["count"].shape[0]
        self._lanes = np.arange(lanes, dtype=np.int64)
        # without a cycle every lane stays at phase 0 of a one-phase profile (not saved)
        self._phase = value["phase"] if "phase" in value else np.zeros(lanes, np.int64)
        self._args = (m.flat, m.table, m.cfg, *(value[k] for k in _STATE_NAMES), self._scratch)

    def _zeros(self, lanes: int) -> dict[str, np.ndarray]:
        cfg = self.model.config
        p, d, n_layers = cfg.stride, cfg.d_model, cfg.n_layers
        n_tcn = len(cfg.dilations)
        rec = max([(cfg.kernel_size - 1) * dil for dil in cfg.dilations] + [1])
        f = np.float32
        phase = {} if self.model.cycle is None else {"phase": np.zeros(lanes, np.int64)}
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
            **phase,
        }

    @property
    def n_series(self) -> int:
        return self.state["count"].shape[0] // self._c

    def add_series(self, n: int, phase: int | np.ndarray = 0) -> None:
        """Add ``n`` new (empty) series after the existing ones; ``phase`` (an integer, or one
        per series) is the phase of each one's first sample in the removed cycle (ignored
        without a cycle)."""
        if n:
            extra = self._zeros(n * self._c)
            if self.model.cycle is not None:
                extra["phase"] = np.repeat(self._checked_phases(phase, n), self._c)
            self.state = {k: np.concatenate([v, extra[k]]) for k, v in self.state.items()}

    @property
    def phases(self) -> np.ndarray | None:
        """The phase of every series' next sample in the removed cycle (S,), or ``None`` for a
        model without a cycle."""
        if self.model.cycle is None:
            return None
        return self._phase[:: self._c].copy()

    def set_phases(self, phase: int | np.ndarray, series: np.ndarray | None = None) -> None:
        """Place the next sample of ``series`` (default all) at ``phase`` of the removed cycle
        (an integer, or one per series): for series whose samples do not follow on from the
        last ones (a gap) or whose first sample is not at phase 0. Forecasts change with it."""
        if self.model.cycle is None:
            raise ValueError("this model removes no cycle: there is no phase to set")
        if series is None:
            idx = np.arange(self.n_series)
        else:
            idx = np.asarray(series, dtype=np.int64).reshape(-1)
            if len(idx) and (idx.min() < 0 or idx.max() >= self.n_series):
                raise ValueError(f"series positions must lie in [0, {self.n_series})")
        values = self._checked_phases(phase, len(idx))
        lanes = (idx[:, None] * self._c + np.arange(self._c)).ravel()
        self._phase[lanes] = np.repeat(values, self._c)

    def _checked_phases(self, phase: int | np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(phase)
        if arr.ndim == 0:
            arr = np.full(n, arr)
        if arr.shape != (n,) or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
        ):
            raise ValueError(
                f"phase must be an integer or an integer array of shape ({n},), one per series, "
                f"got {np.asarray(phase).dtype} {np.shape(phase)}"
            )
        return np.mod(arr.astype(np.int64), self.model.cycle)

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
        args = (m.scale_mean, m.scale_std, m.cycle_profile, self._phase, lanes)
        if not update_lanes(arr, *args, *self._args, out):
            raise ValueError("values contain NaN or infinite values")
        return out

    def advance(self, lanes: np.ndarray, x: np.ndarray) -> None:
        """Advance ``lanes`` (m,) by already scaled samples ``x`` (m, k), the cycle already
        removed (their phases do not move); no checks."""
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
            m.cycle_profile,
            self._phase,
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
        if sorted(tensors) != sorted(self._names):
            raise RuntimeModelError(f"the runtime state holds {sorted(tensors)}")
        lanes = tensors["count"].shape[0]
        ref = self._zeros(lanes)
        for k, v in ref.items():
            if tensors[k].shape != v.shape or tensors[k].dtype != v.dtype:
                raise RuntimeModelError(f"runtime state tensor {k!r} has the wrong shape or dtype")
        self.state = {k: np.ascontiguousarray(tensors[k]) for k in self._names}
        return self
