"""Save and load fitted estimators: one safetensors file with a JSON header; nothing is unpickled.

The file holds the model weights, the scaler and the last lookback window of each training series as
tensors, and in its metadata a JSON document with the format version, the estimator's parameters,
the model configuration and what is needed to rebuild forecasts in the input's layout. Since format
version 2 the metadata also holds a SHA-256 of everything else, checked before anything is built.
Writes are atomic (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rwkv_ts._safefile import CHECKSUM_KEY, check_bytes, seal, write_atomic
from rwkv_ts.data.cycle import resolve_cycle
from rwkv_ts.data.serialize import RecordError, panel_from_record, panel_to_record
from rwkv_ts.nn import ForecastEnsemble, RWKVTSConfig, RWKVTSModel

FORMAT = "rwkv-ts/forecaster"
#: format tag of the sequence estimators (RWKVClassifier, RWKVRegressor); same versioning
SEQUENCE_FORMAT = "rwkv-ts/sequence"
#: other estimators' format tags -> "module:function" loading (header, tensors, path); same
#: versioning (add a line per estimator)
OTHER_FORMATS: dict[str, str] = {
    "rwkv-ts/vad": "rwkv_ts.audio.vad:_load_detector",
    "rwkv-ts/asr": "rwkv_ts.audio.asr:_load_recognizer",
}
#: version 2 adds the checksum (required from then on); version 1 files still load
FORMAT_VERSION = 3
#: forecasters with ``cycle=None`` are written in the version before the cycle existed, without the
#: parameter, so that an older rwkv-ts still reads them; any other ``cycle`` needs version 3
_FORMAT_VERSION_WITHOUT_CYCLE = 2


class ModelFileError(ValueError):
    """A model file that cannot be loaded: not ours, corrupt, truncated, newer, or inconsistent."""


def _json_params(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, np.integer):
            value = int(value)
        if isinstance(value, np.floating):
            value = float(value)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        out[key] = value
    try:
        json.dumps(out)
    except TypeError as exc:
        raise TypeError(f"cannot save estimator parameters as JSON: {exc}") from None
    return out


def _fitted_params(est) -> dict:
    """The estimator's parameters with ``ensemble_size`` as fitted (a ``set_params`` after ``fit``
    must not write a file whose weights do not match its parameters)."""
    params = est.get_params(deep=False)
    if "ensemble_size" in params:
        from rwkv_ts._ensemble import fitted_ensemble_size

        params["ensemble_size"] = fitted_ensemble_size(est.model_)
    if "class_weight" in params:
        weights = params.pop("class_weight")
        # left out when None, so that an older rwkv-ts reads the file; a dict's labels may be of
        # any type, which JSON's string keys would lose
        if isinstance(weights, dict):
            from rwkv_ts.data.serialize import encode_label

            weights = {"label_weights": [[encode_label(k), float(v)] for k, v in weights.items()]}
        if weights is not None:
            params["class_weight"] = weights
    return params


def save_forecaster(est, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`~rwkv_ts.RWKVForecaster` to ``path`` atomically."""
    path = Path(path)
    panel_record, windows = panel_to_record(est.last_panel_)
    tensors: dict[str, torch.Tensor] = {
        f"model.{name}": t.detach().cpu().contiguous()
        for name, t in est.model_.state_dict().items()
    }
    tensors["scale.mean"] = torch.from_numpy(np.asarray(est.scale_mean_, dtype=np.float64))
    tensors["scale.std"] = torch.from_numpy(np.asarray(est.scale_std_, dtype=np.float64))
    for i, window in enumerate(windows):
        tensors[f"last_window.{i}"] = torch.from_numpy(np.ascontiguousarray(window))
    profile = getattr(est, "cycle_profile_", None)
    if profile is not None:
        tensors["cycle.profile"] = torch.from_numpy(np.asarray(profile, dtype=np.float64))
    params = _fitted_params(est)
    if params.get("cycle") is None:
        params.pop("cycle", None)  # its default: an older rwkv-ts, without the parameter, loads it
    for name, default in (
        ("ensemble_size", 1),
        ("loss", "mse"),
        ("val_loss", None),
        ("frequency_loss_weight", 0.0),
    ):
        if name in params and params[name] == default:
            params.pop(name)  # the same: a file of the defaults stays readable there
    from rwkv_ts import __version__

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if "cycle" in params else _FORMAT_VERSION_WITHOUT_CYCLE,
        "rwkv_ts_version": __version__,
        "estimator": type(est).__name__,
        "params": _json_params(params),
        "config": est.config_.to_dict(),
        "channels": list(est.channels_),
        "history": est.history_,
        "best_epoch": est.best_epoch_,
        "best_val_loss": getattr(est, "best_val_loss_", None),
        "n_epochs": est.n_epochs_,
        "panel": panel_record,
        # an older rwkv-ts (without ensembles) reads a single model's file as before
        **(
            {
                "member_histories": est.member_histories_,
                "member_best_epochs": est.member_best_epochs_,
            }
            if isinstance(est.model_, ForecastEnsemble)
            else {}
        ),
    }
    return _write_atomic(tensors, {"format": FORMAT, "rwkv_ts": json.dumps(header)}, path)


def _write_atomic(tensors: dict[str, torch.Tensor], metadata: dict, path: Path) -> Path:
    data = seal(lambda meta: st_save(tensors, metadata=meta), metadata)
    return write_atomic(path, data)


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path} is not a readable rwkv-ts model file: {exc}") from None
    # Everything is checked on the bytes (pickle, sizes, truncation, checksum) before a tensor or
    # an estimator is built from them.
    _, metadata = check_bytes(data, str(path), ModelFileError)
    if metadata.get("format") not in (FORMAT, SEQUENCE_FORMAT, *OTHER_FORMATS):
        raise ModelFileError(
            f"{path} is a safetensors file but not an rwkv-ts model "
            f"(format {metadata.get('format')!r})"
        )
    try:
        header = json.loads(metadata["rwkv_ts"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} has an unreadable rwkv-ts header: {exc!r}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has an unreadable rwkv-ts header (not a JSON object)")
    version = header.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path} has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in format version {version}, newer than this rwkv-ts reads "
            f"({FORMAT_VERSION}); upgrade rwkv-ts to load it"
        )
    if version >= 2 and CHECKSUM_KEY not in metadata:
        raise ModelFileError(
            f"{path} is corrupt or edited: format version {version} files carry a checksum and "
            "this one has none"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path} is not a readable rwkv-ts model file (corrupt or truncated): {exc}"
        ) from None
    return header, tensors


def _load_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    stored = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path} does not match its configuration: missing tensors {missing[:10]}, "
            f"unexpected tensors {unexpected[:10]}"
        )
    for name, tensor in expected.items():
        if tuple(stored[name].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"{path}: tensor {name!r} has shape {tuple(stored[name].shape)}, "
                f"the configuration needs {tuple(tensor.shape)}"
            )
        if not torch.isfinite(stored[name]).all() and stored[name].is_floating_point():
            raise ModelFileError(f"{path}: tensor {name!r} holds NaN or infinite values")
    model.load_state_dict(stored, strict=True)


def load(path: str | os.PathLike) -> Any:
    """Load an estimator saved with ``est.save(path)``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        Not an rwkv-ts file, corrupt or truncated, written by a newer format version, or with
        missing tensors or wrong shapes.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from rwkv_ts import RWKVForecaster, load
    >>> y = np.sin(np.arange(200) / 5.0)
    >>> est = RWKVForecaster(horizon=4, lookback=32, patch_len=8, stride=4, d_model=16, head_size=8,
    ...                      max_epochs=1, verbose=False, random_state=0).fit(y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.rwkvts")
    >>> est.save(path)
    >>> np.allclose(load(path).predict(), est.predict())
    True
    """
    from rwkv_ts.forecaster import RWKVForecaster

    path = Path(path)
    header, tensors = _read(path)
    if header.get("format") in OTHER_FORMATS:
        import importlib

        module, name = OTHER_FORMATS[header["format"]].split(":")
        return getattr(importlib.import_module(module), name)(header, tensors, path)
    if header.get("estimator") in ("RWKVClassifier", "RWKVRegressor"):
        return _load_sequence_estimator(header, tensors, path)
    if header.get("estimator") != "RWKVForecaster":
        raise ModelFileError(f"{path} holds a {header.get('estimator')!r}, not an RWKVForecaster")
    try:
        est = RWKVForecaster(**_saved_params(header))
        config = RWKVTSConfig.from_dict(header["config"])
        members = [RWKVTSModel(config) for _ in range(int(est.ensemble_size))]
        model = members[0] if len(members) == 1 else ForecastEnsemble(members)
        _load_state_dict(model, tensors, path)
        n_windows = len([k for k in tensors if k.startswith("last_window.")])
        windows = [tensors[f"last_window.{i}"].numpy() for i in range(n_windows)]
        panel = panel_from_record(header["panel"], windows)
        mean = tensors["scale.mean"].numpy()
        std = tensors["scale.std"].numpy()
        profile = tensors["cycle.profile"].numpy() if "cycle.profile" in tensors else None
        period = resolve_cycle(est.cycle, panel.freq)
    except (KeyError, TypeError, ValueError, RecordError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is incomplete or inconsistent: {exc!r}") from None
    channels = list(header.get("channels") or [])
    if mean.shape != (len(channels),) or std.shape != (len(channels),):
        raise ModelFileError(
            f"{path}: scaler has shape {tuple(mean.shape)} for {len(channels)} channels"
        )
    expected = None if period is None else (period, len(channels))
    if (None if profile is None else tuple(profile.shape)) != expected:
        raise ModelFileError(
            f"{path}: its cycle={est.cycle!r} needs a cycle profile of shape {expected}, the file "
            f"holds {None if profile is None else tuple(profile.shape)}"
        )
    if profile is not None and not np.isfinite(profile).all():
        raise ModelFileError(f"{path}: tensor 'cycle.profile' holds NaN or infinite values")
    model.eval()
    est.model_ = model
    est.config_ = config
    est.channels_ = channels
    est.scale_mean_ = mean
    est.scale_std_ = std
    est.cycle_, est.cycle_profile_ = period, profile
    est.history_ = header.get("history", [])
    est.best_epoch_ = header.get("best_epoch")
    est.best_val_loss_ = header.get("best_val_loss")
    est.n_epochs_ = header.get("n_epochs")
    est.member_histories_ = header.get("member_histories", [est.history_])
    est.member_best_epochs_ = header.get("member_best_epochs", [est.best_epoch_])
    est.last_panel_ = panel
    return est


# ---------------------------------------------------------------------- sequence estimators


def save_scaled_model(
    est,
    path: str | os.PathLike,
    fmt: str,
    header: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a fitted estimator whose model reads inputs standardised by ``scale_mean_`` /
    ``scale_std_`` (the sequence estimators, the audio estimators): its weights, the scaler, the
    parameters, ``config_``, the training history, plus the estimator's own ``header`` entries and
    ``tensors``; format tag ``fmt``. Atomic, no pickle."""
    from rwkv_ts import __version__

    record: dict[str, torch.Tensor] = {
        f"model.{name}": t.detach().cpu().contiguous()
        for name, t in est.model_.state_dict().items()
    }
    record["scale.mean"] = torch.from_numpy(np.asarray(est.scale_mean_, dtype=np.float64))
    record["scale.std"] = torch.from_numpy(np.asarray(est.scale_std_, dtype=np.float64))
    record.update(tensors or {})
    document = {
        "format": fmt,
        "format_version": _FORMAT_VERSION_WITHOUT_CYCLE,
        "rwkv_ts_version": __version__,
        "estimator": type(est).__name__,
        "params": _json_params(_fitted_params(est)),
        "config": est.config_.to_dict(),
        "history": est.history_,
        "best_epoch": est.best_epoch_,
        "n_epochs": est.n_epochs_,
        **(
            {"member_histories": est.member_histories_} if hasattr(est, "member_histories_") else {}
        ),
        **(header or {}),
    }
    metadata = {"format": fmt, "rwkv_ts": json.dumps(document)}
    return _write_atomic(record, metadata, Path(path))


def _saved_params(header: dict) -> dict:
    """The estimator parameters of a model file's header, tuples restored (JSON has lists)."""
    params = dict(header["params"])
    for key in ("shift_distances", "tcn_dilations", "conv_channels", "conv_kernels"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    weights = params.get("class_weight")
    if isinstance(weights, dict):
        from rwkv_ts.data.serialize import decode_label

        params["class_weight"] = {decode_label(k): v for k, v in weights["label_weights"]}
    return params


def load_scaled_model(cls, header: dict, tensors: dict[str, torch.Tensor], path: Path):
    """The counterpart of :func:`save_scaled_model` for an estimator class ``cls`` whose model is
    an :class:`~rwkv_ts.nn.sequence.RWKVSequenceModel`: the estimator built from the saved
    parameters with ``model_``, ``config_``, the scaler and the training history set; the caller
    restores what is its own. ``ModelFileError`` for anything inconsistent."""
    from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig

    if header.get("estimator") != cls.__name__:
        raise ModelFileError(f"{path} holds a {header.get('estimator')!r}, not a {cls.__name__}")
    try:
        est = cls(**_saved_params(header))
        config = SequenceConfig.from_dict(header["config"])
        # the sequence estimators build a single model or an ensemble (``ensemble_size``)
        model = est._new_model(config) if hasattr(est, "_new_model") else RWKVSequenceModel(config)
        _load_state_dict(model, tensors, path)
        mean = tensors["scale.mean"].numpy()
        std = tensors["scale.std"].numpy()
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is incomplete or inconsistent: {exc!r}") from None
    n = config.n_channels
    if mean.shape != (n,) or std.shape != (n,):
        raise ModelFileError(f"{path}: scaler has shape {tuple(mean.shape)}, not ({n},)")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ModelFileError(f"{path}: scaler holds non-finite or non-positive values")
    est.model_ = model.eval()
    est.config_ = config
    est.scale_mean_ = mean
    est.scale_std_ = std
    est.history_ = header.get("history", [])
    est.best_epoch_ = header.get("best_epoch")
    est.n_epochs_ = header.get("n_epochs")
    if hasattr(est, "_new_model"):
        est.member_histories_ = header.get("member_histories", [est.history_])
    return est


def save_sequence_estimator(est, path: str | os.PathLike) -> Path:
    """Write a fitted :class:`~rwkv_ts.RWKVClassifier` or :class:`~rwkv_ts.RWKVRegressor` to
    ``path`` atomically (weights, scalers and class labels; no pickle)."""
    from rwkv_ts.data.serialize import encode_label

    header: dict[str, Any] = {
        "channels": list(est.channels_),
        "refit_epochs": getattr(est, "refit_epochs_", None),
    }
    tensors: dict[str, torch.Tensor] = {}
    if hasattr(est, "classes_"):
        header["classes"] = [encode_label(c) for c in est.classes_.tolist()]
        if est.class_weight is not None:
            header["class_weights"] = [float(w) for w in est.class_weight_]
    else:
        tensors["target.mean"] = torch.from_numpy(np.asarray(est.target_mean_, dtype=np.float64))
        tensors["target.std"] = torch.from_numpy(np.asarray(est.target_std_, dtype=np.float64))
        header["target_ndim"] = int(est.target_ndim_)
    return save_scaled_model(est, path, SEQUENCE_FORMAT, header, tensors)


def _load_sequence_estimator(header: dict, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    from rwkv_ts.classifier import RWKVClassifier
    from rwkv_ts.data.serialize import decode_label
    from rwkv_ts.regressor import RWKVRegressor

    cls = RWKVClassifier if header["estimator"] == "RWKVClassifier" else RWKVRegressor
    est = load_scaled_model(cls, header, tensors, path)
    try:
        channels = list(header["channels"])
        if cls is RWKVClassifier:
            classes = np.array([decode_label(c) for c in header["classes"]])
            if len(classes) != est.config_.n_outputs:
                raise ModelFileError(
                    f"{path}: {len(classes)} class labels for {est.config_.n_outputs} model outputs"
                )
            est.classes_ = classes
            weights = header.get("class_weights")
            est.class_weight_ = (
                np.ones(len(classes)) if weights is None else np.asarray(weights, dtype=np.float64)
            )
            if len(est.class_weight_) != len(classes):
                raise ModelFileError(
                    f"{path}: {len(est.class_weight_)} class weights for {len(classes)} classes"
                )
        else:
            est.target_mean_ = tensors["target.mean"].numpy()
            est.target_std_ = tensors["target.std"].numpy()
            est.target_ndim_ = int(header["target_ndim"])
    except (KeyError, TypeError, ValueError, RecordError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is incomplete or inconsistent: {exc!r}") from None
    if len(channels) != est.config_.n_channels:
        raise ModelFileError(
            f"{path}: {len(channels)} channel names for a model of {est.config_.n_channels}"
        )
    est.channels_ = channels
    est.refit_epochs_ = header.get("refit_epochs")
    return est
