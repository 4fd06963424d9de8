"""Streams of a fitted :class:`~rwkv_ts.RWKVClassifier` or :class:`~rwkv_ts.RWKVRegressor`:
samples go in as they arrive, the answer after every sample comes out.

Each instance (a recording, an engine) keeps its own recurrent state of bounded size: the patch
buffer, each block's token-shift buffers, WKV state and TCN buffer, and the running pooling
statistics (plus the trailing window of the causal normalisation). New instances can join at any
time. The answer after sample ``t`` equals the estimator's batch answer on the first ``t``
samples (``predict_proba`` / ``predict`` on that prefix) to float32 rounding.

The state can be saved (:meth:`SequenceStream.save_state`: safetensors, no pickle) and restored
in another process on a stream of the same fitted estimator (:meth:`SequenceStream.load_state`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import torch

from rwkv_ts.data.instances import Instances, to_instances
from rwkv_ts.data.validation import DataValidationError, as_real_array
from rwkv_ts.nn.state import flatten_state, unflatten_state

__all__ = ["SEQUENCE_STATE_FORMAT", "SequenceStream"]

#: format tag and version of :meth:`SequenceStream.save_state`
SEQUENCE_STATE_FORMAT = "rwkv-ts/sequence-stream-state"
SEQUENCE_STATE_FORMAT_VERSION = 1


def _map2(fn, a: dict, b: dict) -> dict:
    return {k: _map2(fn, v, b[k]) if isinstance(v, dict) else fn(v, b[k]) for k, v in a.items()}


def _cat(states: list[dict]) -> dict:
    first = states[0]
    return {
        k: _cat([s[k] for s in states])
        if isinstance(v, dict)
        else torch.cat([s[k] for s in states])
        for k, v in first.items()
    }


def _split(state: dict, n: int) -> list[dict]:
    """Inverse of :func:`_cat` for ``n`` instances (leaves have ``n * rows`` rows)."""
    parts: list[dict] = [{} for _ in range(n)]
    for k, v in state.items():
        pieces = _split(v, n) if isinstance(v, dict) else torch.chunk(v, n)
        for i in range(n):
            parts[i][k] = pieces[i]
    return parts


def _select(active: torch.Tensor, new: dict, old: dict) -> dict:
    """Rows of ``new`` where ``active`` (per instance), else ``old``; leaves with several rows per
    instance (the per-channel normalisation) repeat the instance's flag."""

    def pick(n: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        mask = active.repeat_interleave(n.shape[0] // active.shape[0])
        return torch.where(mask.view(-1, *([1] * (n.ndim - 1))), n, o)

    return _map2(pick, new, old)


class SequenceStream:
    """Step a fitted sequence estimator through samples as they arrive, per instance.

    Get one with ``est.stream()``.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2, 24))
    >>> reg = RWKVRegressor(d_model=16, head_size=8, n_layers=1, max_epochs=2,
    ...                     random_state=0).fit(X, X[:, 0].sum(axis=1))
    >>> stream = reg.stream()
    >>> first = stream.update(X[0].T[:10], id="a")     # 10 samples of instance "a"
    >>> later = stream.update(X[0].T[10:], id="a")     # the rest, later
    >>> bool(np.allclose(later[-1], reg.predict(X[:1])[0], atol=1e-4))
    True
    """

    def __init__(self, estimator) -> None:
        estimator._check_fitted()
        self._est = estimator
        self._model = estimator.model_.to("cpu").eval()
        self._states: dict[Hashable, dict] = {}
        self._seen: dict[Hashable, int] = {}
        self._last: dict[Hashable, np.ndarray] = {}
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the model (configuration, weights) and scaler a saved state belongs to."""
        if self._fingerprint is None:
            from rwkv_ts.stream.stream import model_fingerprint

            est = self._est
            self._fingerprint = model_fingerprint(self._model, est.scale_mean_, est.scale_std_)
        return self._fingerprint

    @property
    def state_nbytes(self) -> int:
        """Bytes of the recurrent states of all instances (constant per instance)."""
        return sum(
            t.numel() * t.element_size()
            for state in self._states.values()
            for t in flatten_state(state).values()
        )

    # ------------------------------------------------------------------ bookkeeping
    @property
    def ids(self) -> list:
        """Instances the stream has seen, in order of arrival."""
        return list(self._states)

    def n_seen(self, id: Hashable = None) -> int:
        """Samples seen for instance ``id``."""
        return self._seen.get(id, 0)

    def reset(self, id: Hashable = None, *, all: bool = False) -> None:
        """Forget instance ``id`` (or every instance with ``all=True``)."""
        targets = list(self._states) if all else [id]
        for key in targets:
            self._states.pop(key, None)
            self._seen.pop(key, None)
            self._last.pop(key, None)

    def current(self, id: Hashable = None) -> Any:
        """The latest answer for instance ``id`` (NaN before its first complete patch)."""
        raw = self._last.get(id)
        if raw is None:
            raw = np.full(self._est.config_.n_outputs, np.nan, dtype=np.float32)
        return self._est._outputs_from_raw(raw[None])[0]

    # ------------------------------------------------------------------ updates
    def _advance(self, ids: list, values: list[np.ndarray]) -> list[np.ndarray]:
        """Feed scaled samples ``values[i]`` (T_i, C) to instance ``ids[i]``; return the raw
        outputs after every sample (NaN before the first complete patch)."""
        model = self._model
        n = len(ids)
        states = [self._states.get(key) or model.init_state(1) for key in ids]
        state = _cat(states)
        lengths = np.array([len(v) for v in values])
        x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(v) for v in values], batch_first=True)
        outputs = np.full((n, x.shape[1], model.config.n_outputs), np.nan, dtype=np.float32)
        with torch.inference_mode():
            for t in range(x.shape[1]):
                (out, seen), new = model.step(x[:, t], state)
                active = torch.from_numpy(t < lengths)
                state = _select(active, new, state)
                rows = (active & seen).numpy()
                outputs[rows, t] = out[rows].numpy()
        for key, s, v, out in zip(ids, _split(state, n), values, outputs, strict=True):
            self._states[key] = s
            self._seen[key] = self._seen.get(key, 0) + len(v)
            valid = out[: len(v)]
            done = np.flatnonzero(~np.isnan(valid[:, 0]))
            if len(done):
                self._last[key] = valid[done[-1]]
        return [out[: len(v)] for out, v in zip(outputs, values, strict=True)]

    def _scaled_samples(self, values: np.ndarray) -> np.ndarray:
        inst = Instances(values=[values], channels=list(self._est.channels_))
        return self._est._scaled(inst)[0]

    def update(self, X: Any, id: Hashable = None) -> Any:
        """Feed new samples; return the answer after each of them.

        Parameters
        ----------
        X : array or long frame
            An array ``(C,)`` (one sample) or ``(T, C)`` (``T`` samples; for one channel also
            ``(T,)``) for the instance ``id``; or a long pandas/polars frame (the estimator's
            ``id_col``, ``time_col`` and ``value_cols``) with new rows of any number of
            instances, each instance's rows in time order.
        id : hashable, optional
            The instance an array belongs to (default ``None``, a single unnamed instance).

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            For an array: one answer per new sample: ``(T, n_classes)`` probabilities for a
            classifier, ``(T,)`` (or ``(T, k)``) estimates for a regressor. For a frame: a pandas
            frame with the instance id, ``n_seen`` (samples of that instance so far) and the
            answer columns (one per class, or ``prediction``), one row per new row, instances
            in order of first appearance. Rows before an instance's first complete patch are
            NaN.
        """
        est = self._est
        n_channels = len(est.channels_)
        if isinstance(X, np.ndarray | list | tuple):
            a = as_real_array(X, "samples")
            if a.ndim == 1:
                a = a[:, None] if n_channels == 1 else a[None, :]
            if a.ndim != 2 or a.shape[1] != n_channels:
                raise DataValidationError(
                    f"samples have shape {np.shape(X)}; expected (C,) or (T, C) with C = "
                    f"{n_channels} channels {est.channels_}"
                )
            if not np.isfinite(a).all():
                raise DataValidationError("samples contain NaN or infinite values")
            raw = self._advance([id], [self._scaled_samples(a.astype(np.float32))])[0]
            return est._outputs_from_raw(raw)
        inst = to_instances(
            X,
            id_col=est.id_col,
            time_col=est.time_col,
            value_cols=est.value_cols,
            impute=est.impute,
        )
        est._check_channels(inst)
        raws = self._advance(list(inst.ids), est._scaled(inst))
        frames = []
        id_name = est.id_col if est.id_col is not None else "unique_id"
        for key, raw in zip(inst.ids, raws, strict=True):
            out = np.asarray(est._outputs_from_raw(raw))
            if out.ndim == 1:
                cols = {"prediction": out}
            elif hasattr(est, "classes_"):
                cols = {c: out[:, j] for j, c in enumerate(est.classes_)}
            else:
                cols = {f"prediction_{j}": out[:, j] for j in range(out.shape[1])}
            seen = self._seen[key]
            frame = pd.DataFrame(cols)
            frame.insert(0, "n_seen", np.arange(seen - len(raw) + 1, seen + 1))
            frame.insert(0, id_name, [key] * len(raw))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ state
    def save_state(self, path: str | os.PathLike | None = None) -> bytes | None:
        """Save every instance's state (safetensors, no pickle) to ``path`` atomically, or return
        the bytes.

        The state holds each instance's id, samples seen, latest answer and recurrent state, and
        the fingerprint of the model it belongs to; :meth:`load_state` restores it on a stream of
        the same fitted estimator, in any process. Ids must be strings, numbers, booleans,
        timestamps, ``None`` or tuples of them.

        Examples
        --------
        >>> import numpy as np
        >>> from rwkv_ts import RWKVClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(20, 1, 16))
        >>> clf = RWKVClassifier(d_model=16, head_size=8, n_layers=1, max_epochs=1,
        ...                      random_state=0).fit(X, [0, 1] * 10)
        >>> stream = clf.stream()
        >>> _ = stream.update(X[0].T[:10], id="ecg-1")
        >>> blob = stream.save_state()
        >>> restored = clf.stream().load_state(blob)     # e.g. after a restart
        >>> bool(np.allclose(restored.update(X[0].T[10:], id="ecg-1"),
        ...                  stream.update(X[0].T[10:], id="ecg-1")))
        True
        """
        from rwkv_ts.data.serialize import encode_label
        from rwkv_ts.stream.stream import write_state

        ids, tensors = list(self._states), {}
        encoded = []
        for i, key in enumerate(ids):
            try:
                encoded.append(encode_label(key))
            except (TypeError, ValueError):
                raise TypeError(
                    f"instance id {key!r} ({type(key).__name__}) cannot be saved; use strings, "
                    "numbers, booleans, timestamps, None or tuples of them"
                ) from None
            for name, t in flatten_state(self._states[key]).items():
                tensors[f"instance.{i}.{name}"] = t.detach().contiguous()
        n_out = self._est.config_.n_outputs
        last = np.zeros((len(ids), n_out), dtype=np.float32)
        for i, key in enumerate(ids):
            if key in self._last:
                last[i] = self._last[key]
        tensors["seen"] = torch.tensor([self._seen[k] for k in ids], dtype=torch.int64)
        tensors["has_last"] = torch.tensor([k in self._last for k in ids], dtype=torch.bool)
        tensors["last"] = torch.from_numpy(last)
        header = {
            "format_version": SEQUENCE_STATE_FORMAT_VERSION,
            "model": self.fingerprint,
            "estimator": type(self._est).__name__,
            "ids": encoded,
        }
        return write_state(tensors, header, SEQUENCE_STATE_FORMAT, path)

    def load_state(self, source: bytes | str | os.PathLike) -> SequenceStream:
        """Replace this stream's instances by those of a state saved with :meth:`save_state`
        (bytes or a file); returns the stream.

        Raises
        ------
        rwkv_ts.stream.StreamStateError
            Not a sequence-stream state, corrupt or truncated, a newer format, saved from another
            model (weights, configuration or scaler), or tensors that do not fit this model.
            The stream is left as it was.
        """
        from rwkv_ts.data.serialize import RecordError, decode_label
        from rwkv_ts.stream.stream import StreamStateError, check_state_tensors, read_state

        header, tensors, where = read_state(
            source,
            SEQUENCE_STATE_FORMAT,
            SEQUENCE_STATE_FORMAT_VERSION,
            self.fingerprint,
            "an rwkv-ts sequence-stream state",
        )
        try:
            ids = [decode_label(v) for v in header["ids"]]
        except (KeyError, TypeError, ValueError, RecordError) as exc:
            raise StreamStateError(f"{where}: unreadable instance ids ({exc!r})") from None
        n, n_out = len(ids), self._est.config_.n_outputs
        template = flatten_state(self._model.init_state(1))
        expected = {f"instance.{i}.{k}": v for i in range(n) for k, v in template.items()}
        expected.update(
            seen=torch.zeros(n, dtype=torch.int64),
            has_last=torch.zeros(n, dtype=torch.bool),
            last=torch.zeros(n, n_out, dtype=torch.float32),
        )
        if len(set(ids)) != n:
            raise StreamStateError(f"{where}: repeated instance ids")
        # (the running max of the pooling starts at -inf: only NaN is corrupt)
        check_state_tensors(tensors, expected, where, allow_infinite=True)
        if bool((tensors["seen"] < 0).any()):
            raise StreamStateError(f"{where}: negative sample counts")
        states = {
            key: unflatten_state({k: tensors[f"instance.{i}.{k}"].clone() for k in template})
            for i, key in enumerate(ids)
        }
        self._states = states
        self._seen = {key: int(tensors["seen"][i]) for i, key in enumerate(ids)}
        self._last = {
            key: tensors["last"][i].numpy().copy()
            for i, key in enumerate(ids)
            if bool(tensors["has_last"][i])
        }
        return self
