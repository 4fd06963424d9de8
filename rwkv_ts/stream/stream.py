"""``ForecastStream``: feed samples as they arrive, read forecasts at once, save and restore state.

A stream is made from a fitted :class:`~rwkv_ts.RWKVForecaster` with ``est.stream()``. It holds one
state per series (one lane per channel), batched into tensors, so that thousands of series update in
one call; new series join on their first samples. See ``docs/streaming.md`` for the semantics.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rwkv_ts._safefile import check_bytes, seal, write_atomic
from rwkv_ts.data import Panel, check_same_channels, forecast_to_frame, to_panel
from rwkv_ts.data.cycle import phases_ending, step_indices
from rwkv_ts.data.serialize import RecordError, panel_from_record, panel_to_record
from rwkv_ts.data.validation import DataValidationError, as_real_array
from rwkv_ts.nn import flatten_state, unflatten_state
from rwkv_ts.stream.engine import make_engine

STATE_FORMAT = "rwkv-ts/stream-state"
STATE_FORMAT_VERSION = 1


class StreamStateError(ValueError):
    """A stream state that cannot be restored: not a stream state, corrupt or truncated, newer,
    or saved from another model or configuration."""


def update_with_weights(
    digest: Any, model: torch.nn.Module, scale_mean: np.ndarray, scale_std: np.ndarray
) -> None:
    """Feed ``digest`` (a ``hashlib`` hash) a model's weights (by name, in name order) and its
    scaler: the part every stream fingerprint shares."""
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.asarray(scale_mean, dtype=np.float64).tobytes())
    digest.update(np.asarray(scale_std, dtype=np.float64).tobytes())


def model_fingerprint(
    model: torch.nn.Module,
    scale_mean: np.ndarray,
    scale_std: np.ndarray,
    cycle_profile: np.ndarray | None = None,
) -> str:
    """SHA-256 of a model's configuration, weights, scaler and removed cycle profile (if any): a
    state belongs to exactly one.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel
    >>> model = RWKVTSModel(RWKVTSConfig(lookback=16, horizon=2, patch_len=4, stride=2,
    ...                                 d_model=8, head_size=4, n_layers=1))
    >>> len(model_fingerprint(model, np.zeros(1), np.ones(1)))
    64
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    update_with_weights(digest, model, scale_mean, scale_std)
    if cycle_profile is not None:
        digest.update(b"cycle")
        digest.update(np.asarray(cycle_profile, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_state(
    tensors: Mapping[str, torch.Tensor],
    header: dict,
    fmt: str,
    path: str | os.PathLike | None = None,
) -> bytes | None:
    """A stream state as sealed safetensors: ``tensors`` plus ``header`` (JSON, with the
    tensors' SHA-256 added) under format tag ``fmt``; written to ``path`` atomically, or returned
    as bytes."""
    header = {**header, "sha256": _digest(tensors)}
    # The file-level checksum also covers the header (ids, timestamps, fingerprint).
    data = seal(
        lambda meta: st_save(dict(tensors), metadata=meta),
        {"format": fmt, "rwkv_ts": json.dumps(header)},
    )
    if path is None:
        return data
    write_atomic(path, data)
    return None


def read_state(
    source: bytes | str | os.PathLike,
    fmt: str,
    version: int,
    fingerprint: str,
    what: str,
) -> tuple[dict, dict[str, torch.Tensor], str]:
    """Read a state of :func:`write_state` and check everything but its contents' fit to the
    model: return ``(header, tensors, where)``.

    Raises
    ------
    StreamStateError
        Not a state of format ``fmt`` (``what`` names it in the message), corrupt or truncated,
        of a newer version than ``version``, saved from another model than ``fingerprint``, or
        tensors that do not match their checksum.
    FileNotFoundError, TypeError
        No file at the path; a source that is neither bytes nor a path.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, where = bytes(source), "the state bytes"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no stream state file at {path}")
        data, where = path.read_bytes(), str(path)
    else:
        raise TypeError(f"load_state takes bytes or a path, got {type(source).__name__}")
    _, metadata = check_bytes(data, where, StreamStateError)
    if metadata.get("format") != fmt:
        raise StreamStateError(f"{where} is not {what} (format {metadata.get('format')!r})")
    try:
        header = json.loads(metadata["rwkv_ts"])
        saved_version = header["format_version"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise StreamStateError(f"{where}: unreadable stream-state header ({exc!r})") from None
    if not isinstance(saved_version, int) or saved_version > version:
        raise StreamStateError(
            f"{where} has format version {saved_version!r}; this rwkv-ts reads up to {version}"
        )
    if header.get("model") != fingerprint:
        raise StreamStateError(
            f"{where} was saved from a different model (fingerprint "
            f"{str(header.get('model'))[:12]}…, this stream's model {fingerprint[:12]}…): "
            "a state only continues the model (weights, configuration, scaler) it came from"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise StreamStateError(f"{where} is corrupt or truncated: {exc}") from None
    if header.get("sha256") != _digest(tensors):
        raise StreamStateError(
            f"{where} is corrupt: its tensors do not match the checksum saved with them"
        )
    return header, tensors, where


def check_state_tensors(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    where: str,
    allow_infinite: bool = False,
) -> None:
    """``StreamStateError`` unless ``tensors`` has exactly the names of ``expected``, each of its
    shape and dtype, with no NaN (nor infinities unless ``allow_infinite``)."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise StreamStateError(
            f"{where} does not match this model's stream: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, ref in expected.items():
        got = tensors[name]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise StreamStateError(
                f"{where}: tensor {name!r} is {got.dtype} {tuple(got.shape)}, this model's "
                f"stream needs {ref.dtype} {tuple(ref.shape)}"
            )
        if got.is_floating_point():
            bad = torch.isnan(got) if allow_infinite else ~torch.isfinite(got)
            if bool(bad.any()):
                kind = "NaN" if allow_infinite else "NaN or infinite"
                raise StreamStateError(f"{where}: tensor {name!r} holds {kind} values")


class ForecastStream:
    """Streaming forecasts from a fitted :class:`~rwkv_ts.RWKVForecaster`.

    Made with ``est.stream()``; not constructed directly.

    In the streamable configuration (``norm="causal"`` and a bounded head, e.g. ``head="last"``)
    each new sample costs one token step of the recurrent encoder and the forecast after every
    sample equals ``est.predict`` on the same whole history. In any other configuration the
    stream keeps the last ``lookback`` samples of each series and re-encodes them once per update,
    equal to ``est.predict`` on the last window.

    A series' forecast is available once it has ``lookback`` samples (as for ``predict``).

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVForecaster
    >>> y = np.sin(np.arange(300) / 4.0)
    >>> est = RWKVForecaster(horizon=4, lookback=32, patch_len=8, stride=4, d_model=16,
    ...                      head_size=8, norm="causal", head="last", max_epochs=1,
    ...                      verbose=False, random_state=0).fit(y)
    >>> stream = est.stream()                        # continues the training series
    >>> stream.update(np.array([0.5, 0.7])).shape   # two new samples; the next 4 steps
    (4, 1)
    >>> np.allclose(stream.forecast(), est.predict(np.append(y, [0.5, 0.7])), atol=1e-5)
    True
    """

    def __init__(self, estimator: Any, backend: str = "auto") -> None:
        estimator._check_fitted()
        self._est_params = {
            "time_col": estimator.time_col,
            "id_col": estimator.id_col,
            "value_cols": estimator.value_cols,
            "impute": estimator.impute,
        }
        self.model = estimator.model_.to("cpu").eval()
        self.config = estimator.config_
        self.channels = list(estimator.channels_)
        self.scale_mean = np.asarray(estimator.scale_mean_, dtype=np.float64)
        self.scale_std = np.asarray(estimator.scale_std_, dtype=np.float64)
        # the removed cycle: samples lose the profile at their phase, forecasts get it back
        self.cycle = getattr(estimator, "cycle_", None)
        self.cycle_profile = getattr(estimator, "cycle_profile_", None)
        fit_panel = estimator.last_panel_
        self.freq = fit_panel.freq
        self._spec = fit_panel.spec
        self._time_kind = fit_panel.spec.time_kind
        self.fingerprint = model_fingerprint(
            self.model, self.scale_mean, self.scale_std, self.cycle_profile
        )
        self.backend = backend
        self._engine = make_engine(self.model, backend)
        self.series_ids: list = []
        self._index: dict = {}
        self._last_times: list = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_estimator(
        cls, estimator: Any, history: Any = "fit", backend: str = "auto"
    ) -> ForecastStream:
        """A stream over ``estimator``: continuing its training series (``history="fit"``),
        empty (``None``), or starting from the history ``history`` (as ``predict(y)`` takes);
        ``backend`` as :func:`rwkv_ts.stream.engine.make_engine`."""
        stream = cls(estimator, backend)
        if isinstance(history, str) and history == "fit":
            stream._feed_panel(estimator.last_panel_, check_times=False)
        elif history is not None:
            stream.update(history)
        return stream

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """``"recurrent"`` or ``"numba"`` (streamable configuration, one token step per sample,
        on torch modules or the numba kernel) or ``"window"`` (re-encodes the window)."""
        return self._engine.kind

    @property
    def n_series(self) -> int:
        return len(self.series_ids)

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def n_samples(self) -> dict:
        """Samples seen per series id."""
        counts = self._engine.counts()
        c = len(self.channels)
        return {sid: int(counts[i * c]) for i, sid in enumerate(self.series_ids)}

    def state_nbytes(self) -> int:
        """Bytes held by the stream's state tensors (all series)."""
        return sum(t.numel() * t.element_size() for t in flatten_state(self._engine.state).values())

    # ------------------------------------------------------------------ feeding
    def _advance(self, last: Any, k: int) -> Any:
        if isinstance(self.freq, int | np.integer):
            return int(last) + int(self.freq) * k
        return last + k * self.freq

    def _register(self, sid: Hashable, last_time: Any) -> int:
        pos = len(self.series_ids)
        self.series_ids.append(sid)
        self._index[sid] = pos
        self._last_times.append(last_time)
        return pos

    def _scaled(self, values: np.ndarray, pos: int) -> np.ndarray:
        """Samples (k, C) of the series at ``pos`` as the model reads them; its last time is
        already the last sample's."""
        scaled = (values - self.scale_mean) / self.scale_std
        if self.cycle_profile is not None:
            last = self._last_times[pos]
            scaled = (
                scaled - self.cycle_profile[phases_ending(last, self.freq, len(values), self.cycle)]
            )
        return scaled.astype(np.float32)

    def _push(self, items: list[tuple[int, np.ndarray]]) -> None:
        """Push ``(series position, values (k, C) float32)`` items, grouped by ``k``."""
        c = len(self.channels)
        need = self.n_series * c
        if need > self._engine.n_lanes:
            self._engine.add_lanes(need - self._engine.n_lanes)
        by_k: dict[int, list[tuple[int, np.ndarray]]] = {}
        for pos, values in items:
            if len(values):
                by_k.setdefault(len(values), []).append((pos, values))
        for group in by_k.values():
            lanes = np.concatenate([np.arange(pos * c, pos * c + c) for pos, _ in group])
            # (k, C) per series -> (C, k) rows, lane order s * C + c
            x = np.concatenate([self._scaled(v, pos).T for pos, v in group], axis=0)
            self._engine.push(lanes, x)

    def _feed_panel(self, panel: Panel, check_times: bool = True) -> list[int]:
        check_same_channels(panel, self.channels)
        ids = panel.series_ids if panel.series_ids is not None else [self._wide_id()]
        if panel.freq is not None and self.freq is not None and panel.freq != self.freq:
            raise ValueError(
                f"the new samples have frequency {panel.freq!r}, the stream {self.freq!r}"
            )
        # validate every series before changing anything: a bad update leaves the stream as it was
        for sid, values, last in zip(ids, panel.values, panel.last_times, strict=True):
            pos = self._index.get(sid)
            if pos is not None and check_times:
                expected = self._advance(self._last_times[pos], len(values))
                if expected != last:
                    first = self._advance(self._last_times[pos], 1)
                    raise ValueError(
                        f"series {sid!r}: the new samples must continue the stream at {first} "
                        f"(one step of {self.freq!r} after {self._last_times[pos]}) without gaps; "
                        f"{len(values)} sample(s) ending at {last} do not"
                    )
        items, positions = [], []
        for sid, values, last in zip(ids, panel.values, panel.last_times, strict=True):
            pos = self._index.get(sid)
            if pos is None:
                pos = self._register(sid, last)
            else:
                self._last_times[pos] = last
            items.append((pos, values))
            positions.append(pos)
        if panel.spec.layout == "long" or self.n_series <= 1:
            self._spec = panel.spec
        self._push(items)
        return positions

    def _wide_id(self) -> Hashable:
        if self.n_series == 0:
            return None
        if self.n_series == 1:
            return self.series_ids[0]
        raise ValueError(
            f"this input addresses one series but the stream holds {self.n_series}; use a long "
            "frame (series id, time, values) or a dict {series id: samples}"
        )

    def _as_values(self, sid: Hashable, values: Any) -> np.ndarray:
        arr = as_real_array(values, f"series {sid!r}: the new samples")
        c = len(self.channels)
        if arr.ndim == 1:
            arr = arr[:, None] if c == 1 else arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != c:
            raise DataValidationError(
                f"series {sid!r}: expected samples of shape (k, {c}) (channels "
                f"{self.channels}), got {np.shape(values)}"
            )
        if not np.isfinite(arr).all():
            raise DataValidationError(
                f"series {sid!r}: the new samples contain NaN or infinite values"
            )
        return arr.astype(np.float32)

    def _feed_arrays(self, arrays: Mapping[Hashable, Any]) -> list[int]:
        checked = {sid: self._as_values(sid, values) for sid, values in arrays.items()}
        for sid in checked:
            if sid not in self._index and self._time_kind != "integer":
                raise ValueError(
                    f"series {sid!r} is new: give its first samples in a frame with "
                    "timestamps (this stream's time axis is datetime)"
                )
        items, positions = [], []
        for sid, arr in checked.items():
            pos = self._index.get(sid)
            if pos is None:
                pos = self._register(sid, self._advance(-1, len(arr)))
            else:
                self._last_times[pos] = self._advance(self._last_times[pos], len(arr))
            items.append((pos, arr))
            positions.append(pos)
        self._push(items)
        return positions

    # ------------------------------------------------------------------ public API
    def update(self, y: Any) -> Any:
        """Feed new samples and return the current forecasts of the series they belong to.

        Parameters
        ----------
        y : frame, Series, array or dict
            New samples, in any layout ``fit`` accepts: a wide pandas/polars frame or a pandas
            Series (one series; timestamps must continue it without gaps), a long frame (series
            id, time, values; unknown ids join as new series), an array ``(k,)`` or ``(k, C)``
            (one series, samples after its last one), or a dict ``{series id: array}``.

        Returns
        -------
        Forecasts of the updated series that have at least ``lookback`` samples: a frame in the
        input's library and layout with timestamps continuing each series (frame input), an
        array ``(horizon, C)`` (array input) or a dict ``{series id: array (horizon, C)}``.
        """
        if isinstance(y, Mapping):
            positions = self._feed_arrays(y)
            # copies: a kept row must not keep the whole call's forecasts alive
            return {
                self.series_ids[p]: f.copy()
                for p, f in zip(positions, self._forecasts(positions), strict=True)
                if self._ready(p)
            }
        if isinstance(y, np.ndarray | list | tuple):
            sid = self._wide_id()
            positions = self._feed_arrays({sid: y})
            return self._forecasts(positions)[0].copy()
        panel = to_panel(y, min_length=1, **self._est_params)
        positions = self._feed_panel(panel)
        return self._frame([p for p in positions if self._ready(p)], panel.spec)

    def update_array(
        self, values: np.ndarray, series: Sequence[Hashable] | None = None
    ) -> np.ndarray:
        """Fast path: one or ``k`` new samples for many series at once.

        Parameters
        ----------
        values : array (S, C) or (S, k, C)
            New samples of ``S`` series.
        series : sequence of ids, optional
            The series, in the order of ``values``; new ids join. Default: every series of the
            stream, in order (``stream.series_ids``).

        Returns
        -------
        numpy.ndarray (S, horizon, C)
            The current forecasts; NaN for series with fewer than ``lookback`` samples.
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[:, None, :]
        ids = list(self.series_ids) if series is None else list(series)
        if arr.ndim != 3 or arr.shape[0] != len(ids) or arr.shape[2] != len(self.channels):
            raise ValueError(
                f"values must have shape (S, C) or (S, k, C) with S = {len(ids)} series and "
                f"C = {len(self.channels)} channels, got {np.shape(values)}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("series ids repeat in one update_array call")
        if not np.isfinite(arr).all():
            raise ValueError("values contain NaN or infinite values")
        known = [sid in self._index for sid in ids]
        if all(known) and len(ids) == self.n_series and ids == self.series_ids:
            # every series in order, equal k: one push, no per-series Python work
            k = arr.shape[1]
            self._last_times = [self._advance(t, k) for t in self._last_times]
            arr = arr.astype(np.float32)
            scaled = (arr - self.scale_mean) / self.scale_std
            if self.cycle_profile is not None:
                ends = step_indices(self._last_times, self.freq)
                steps = ends[:, None] + np.arange(1 - k, 1)
                scaled = scaled - self.cycle_profile[np.mod(steps, self.cycle)]
            scaled = scaled.astype(np.float32)
            x = scaled.transpose(0, 2, 1).reshape(-1, k)
            self._engine.push(np.arange(x.shape[0]), x)
            positions = list(range(self.n_series))
        else:
            positions = self._feed_arrays(dict(zip(ids, arr, strict=True)))
        return self._forecasts(positions)

    def forecast(self, series: Sequence[Hashable] | None = None) -> Any:
        """The current forecasts, without new data, in the layout of the latest frame input
        (else of the data seen at fit); only series with ``lookback`` samples.

        ``series`` restricts the output to those ids.
        """
        positions = range(self.n_series) if series is None else [self._pos(s) for s in series]
        ready = [p for p in positions if self._ready(p)]
        spec = self._spec
        if spec.library == "numpy":
            if len(ready) != 1:
                raise ValueError(
                    f"{len(ready)} series have forecasts; an array holds one: use "
                    "forecast_array() or forecast(series=[id])"
                )
            return self._forecasts(ready)[0]
        return self._frame(ready, spec)

    def forecast_array(self, series: Sequence[Hashable] | None = None) -> np.ndarray:
        """Current forecasts (S, horizon, C) of ``series`` (default all, in order); NaN where a
        series has fewer than ``lookback`` samples."""
        positions = range(self.n_series) if series is None else [self._pos(s) for s in series]
        return self._forecasts(list(positions))

    # ------------------------------------------------------------------ output helpers
    def _pos(self, sid: Hashable) -> int:
        try:
            return self._index[sid]
        except KeyError:
            raise KeyError(f"series {sid!r} is not in the stream") from None

    def _ready(self, pos: int) -> bool:
        return int(self._engine.counts()[pos * len(self.channels)]) >= self.config.lookback

    def _forecasts(self, positions: Sequence[int]) -> np.ndarray:
        c, h = len(self.channels), self.horizon
        if not len(positions):
            return np.empty((0, h, c))
        pos = np.asarray(positions, dtype=np.int64)
        lanes = (pos[:, None] * c + np.arange(c)).ravel()
        scaled = self._engine.forecasts().numpy()[lanes].astype(np.float64)
        scaled = scaled.reshape(len(pos), c, h).transpose(0, 2, 1)
        if self.cycle_profile is not None:
            ends = step_indices([self._last_times[p] for p in pos], self.freq)
            scaled = (
                scaled + self.cycle_profile[np.mod(ends[:, None] + np.arange(1, h + 1), self.cycle)]
            )
        out = scaled * self.scale_std + self.scale_mean
        counts = self._engine.counts()[pos * c]
        out[counts < self.config.lookback] = np.nan
        return out

    def _frame(self, positions: list[int], spec) -> Any:
        ids = [self.series_ids[p] for p in positions]
        panel = Panel(
            values=[np.empty((0, len(self.channels)), np.float32) for _ in positions],
            channels=list(self.channels),
            series_ids=ids if spec.layout == "long" else None,
            last_times=[self._last_times[p] for p in positions],
            freq=self.freq,
            spec=spec,
        )
        if spec.layout != "long" and len(positions) > 1:
            raise ValueError(
                f"{len(positions)} series have forecasts but the output layout ({spec.library}, "
                f"{spec.layout}) holds one; use forecast(series=[id]) or forecast_array()"
            )
        if positions:
            return forecast_to_frame(list(self._forecasts(positions)), panel, self.horizon)
        if not self._last_times:
            return None
        # no series is ready yet: an empty frame of the right columns and dtypes
        shape = dict(series_ids=[self.series_ids[0]] if spec.layout == "long" else None)
        dummy = Panel(
            values=[np.empty((0, len(self.channels)), np.float32)],
            channels=list(self.channels),
            last_times=[self._last_times[0]],
            freq=self.freq,
            spec=spec,
            **shape,
        )
        frame = forecast_to_frame([np.zeros((self.horizon, len(self.channels)))], dummy, 1)
        return frame[:0]

    # ------------------------------------------------------------------ state
    def _registry_record(self) -> dict:
        panel = Panel(
            values=[np.empty((0, len(self.channels)), np.float32) for _ in self.series_ids],
            channels=list(self.channels),
            series_ids=list(self.series_ids),
            last_times=list(self._last_times),
            freq=self.freq,
            spec=self._spec,
        )
        record, _ = panel_to_record(panel)
        return record

    def save_state(self, path: str | os.PathLike | None = None) -> bytes | None:
        """Save the stream's state (safetensors; no pickle) to ``path`` atomically, or return bytes.

        The state holds every series' recurrent state, its id and last timestamp, and the
        fingerprint of the model it belongs to; restore it with :meth:`load_state` on a stream of
        the same model (``est.stream(history=None).load_state(...)``), in any process.
        """
        tensors = {
            f"engine.{k}": v.contiguous() for k, v in flatten_state(self._engine.state).items()
        }
        header = {
            "format_version": STATE_FORMAT_VERSION,
            "model": self.fingerprint,
            "engine": self.kind,
            "n_lanes": self._engine.n_lanes,
            "registry": self._registry_record(),
        }
        return write_state(tensors, header, STATE_FORMAT, path)

    def load_state(self, source: bytes | str | os.PathLike) -> ForecastStream:
        """Replace this stream's state by one saved with :meth:`save_state` (bytes or a file).

        Raises
        ------
        StreamStateError
            Not a stream state, corrupt or truncated, a newer format, saved from another model
            (weights, configuration or scaler), or inconsistent tensors.
        """
        header, tensors, where = read_state(
            source, STATE_FORMAT, STATE_FORMAT_VERSION, self.fingerprint, "an rwkv-ts stream state"
        )
        if header.get("engine") != self.kind:
            raise StreamStateError(f"{where} holds a {header.get('engine')!r} stream state")
        try:
            record = header["registry"]
            n_ids = len(record["series_ids"])
            panel = panel_from_record(
                record, [np.empty((0, len(self.channels)), np.float32)] * n_ids
            )
            n_lanes = int(header["n_lanes"])
        except (KeyError, TypeError, ValueError, RecordError) as exc:
            raise StreamStateError(f"{where}: unreadable series registry ({exc!r})") from None
        if panel.channels != self.channels or n_lanes != n_ids * len(self.channels):
            raise StreamStateError(
                f"{where}: {n_lanes} lanes for {n_ids} series of channels {panel.channels}; "
                f"this model has channels {self.channels}"
            )
        engine = make_engine(self.model, self.backend)
        engine.add_lanes(n_lanes)
        expected = {f"engine.{k}": v for k, v in flatten_state(engine.state).items()}
        check_state_tensors(tensors, expected, where)
        engine.state = unflatten_state({k[len("engine.") :]: v for k, v in tensors.items()})
        counts = engine.counts().reshape(-1, len(self.channels)) if n_lanes else np.zeros((0, 1))
        if (counts < 0).any() or (counts != counts[:, :1]).any():
            raise StreamStateError(f"{where}: inconsistent sample counts")
        self._engine = engine
        self.series_ids = list(panel.series_ids)
        self._index = {sid: i for i, sid in enumerate(self.series_ids)}
        self._last_times = list(panel.last_times)
        self.freq = panel.freq
        self._spec = panel.spec
        return self
