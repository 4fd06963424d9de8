"""Weights and configuration of a trained model as numpy arrays, read without torch.

:func:`read_model_file` reads a file written by ``RWKVForecaster.save`` through safetensors' numpy
interface; :func:`pack` gathers the weights the step kernel reads, stacked over layers, every matrix
as ``(out, in)`` (the runtime's fingerprint hashes these); :func:`flatten` lays them out in one
float32 array in the order a token step reads them, with a table of offsets.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_FORMAT = "rwkv-ts/forecaster"
MODEL_FORMAT_VERSION = 3  # kept equal to rwkv_ts.persistence.FORMAT_VERSION


class RuntimeModelError(ValueError):
    """A model file the runtime cannot run: not an rwkv-ts forecaster, corrupt, newer, or a
    configuration the runtime does not implement."""


@dataclass(frozen=True)
class RuntimeConfig:
    """The model hyperparameters the step kernel needs (a torch-free mirror of ``RWKVTSConfig``)."""

    lookback: int
    horizon: int
    patch_len: int
    stride: int
    d_model: int
    n_layers: int
    head_size: int
    hidden: int
    distances: tuple[int, ...]
    data_decay: bool
    lora_rank: int
    dilations: tuple[int, ...]
    kernel_size: int
    norm_window: int
    head_tokens: int
    linear_skip: bool = False

    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_size

    @classmethod
    def from_dict(cls, cfg: dict) -> RuntimeConfig:
        try:
            norm, head_tokens = cfg["norm"], cfg["head_tokens"]
            if norm != "causal" or head_tokens is None:
                raise RuntimeModelError(
                    "the torch-free runtime runs the streamable configuration (norm='causal' and "
                    f"head='last' or a number of tokens); this model has norm={norm!r}, "
                    f"head_tokens={head_tokens!r}"
                )
            d_model = int(cfg["d_model"])
            return cls(
                lookback=int(cfg["lookback"]),
                horizon=int(cfg["horizon"]),
                patch_len=int(cfg["patch_len"]),
                stride=int(cfg["stride"]),
                d_model=d_model,
                n_layers=int(cfg["n_layers"]),
                head_size=int(cfg["head_size"]),
                hidden=int(float(cfg["ffn_mult"]) * d_model),
                distances=tuple(int(d) for d in cfg["shift_distances"]),
                data_decay=cfg["decay"] == "data",
                lora_rank=int(cfg["lora_rank"]),
                dilations=tuple(int(d) for d in cfg["tcn_dilations"]),
                kernel_size=int(cfg["tcn_kernel_size"]),
                norm_window=int(cfg["norm_window"] or cfg["lookback"]),
                head_tokens=int(head_tokens),
                linear_skip=bool(cfg.get("linear_skip", False)),
            )
        except (KeyError, TypeError) as exc:
            raise RuntimeModelError(f"incomplete model configuration: {exc!r}") from None


@dataclass
class ModelArrays:
    """What the runtime needs from a fitted forecaster."""

    config: RuntimeConfig
    config_dict: dict
    weights: dict[str, np.ndarray]  # torch state_dict names, float32
    scale_mean: np.ndarray
    scale_std: np.ndarray
    channels: list[str]
    #: the removed cycle's profile (period, C) in the scaled space, or None
    cycle_profile: np.ndarray | None = None
    #: the saved panel's time-step record (``{"offset": ...}``, ``{"int": ...}`` or None): what
    #: places timestamps in the cycle
    freq: dict | None = None


def read_model_file(path: str | os.PathLike) -> ModelArrays:
    """Read a file written by ``RWKVForecaster.save`` (no torch import).

    Raises
    ------
    FileNotFoundError, RuntimeModelError
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from rwkv_ts._safefile import CHECKSUM_KEY, check_bytes

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    data = path.read_bytes()
    _, metadata = check_bytes(data, str(path), RuntimeModelError)
    if metadata.get("format") != MODEL_FORMAT:
        raise RuntimeModelError(
            f"{path} is not an rwkv-ts forecaster (format {metadata.get('format')!r})"
        )
    try:
        header = json.loads(metadata["rwkv_ts"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise RuntimeModelError(f"{path} has an unreadable header: {exc!r}") from None
    if not isinstance(header, dict):
        raise RuntimeModelError(f"{path} has an unreadable header (not a JSON object)")
    size = (header.get("params") or {}).get("ensemble_size", 1)
    if size != 1:
        raise RuntimeModelError(single_model_only(size, str(path)))
    version = header.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise RuntimeModelError(f"{path} has format version {version!r}, newer than supported")
    if version >= 2 and CHECKSUM_KEY not in metadata:
        raise RuntimeModelError(f"{path} is corrupt or edited: it lacks its checksum")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise RuntimeModelError(f"{path} is corrupt or truncated: {exc}") from None
    profile = tensors.get("cycle.profile")
    if profile is not None:
        profile = np.asarray(profile, dtype=np.float64)
        n_channels = len(header.get("channels") or ())
        if profile.ndim != 2 or profile.shape[0] < 2 or profile.shape[1] != n_channels:
            raise RuntimeModelError(
                f"{path}: tensor 'cycle.profile' has shape {profile.shape}, expected (period >= 2, "
                f"{n_channels} channels)"
            )
        if not np.isfinite(profile).all():
            raise RuntimeModelError(f"{path}: tensor 'cycle.profile' holds NaN or infinite values")
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        return ModelArrays(
            config=RuntimeConfig.from_dict(header["config"]),
            config_dict=header["config"],
            weights=weights,
            scale_mean=np.asarray(tensors["scale.mean"], dtype=np.float64),
            scale_std=np.asarray(tensors["scale.std"], dtype=np.float64),
            channels=list(header["channels"]),
            cycle_profile=profile,
            freq=(header.get("panel") or {}).get("freq"),
        )
    except KeyError as exc:
        raise RuntimeModelError(f"{path} lacks {exc.args[0]!r}") from None


def single_model_only(size: object, what: str) -> str:
    """The message for an ensemble given to what reads single models (runtime, ONNX export)."""
    return (
        f"{what} holds an ensemble of {size} members (ensemble_size={size}); the torch-free "
        "runtime and the ONNX export read single models. Stream it with rwkv_ts itself "
        "(est.stream()), or fit with ensemble_size=1 for them."
    )


def _out_in(a: np.ndarray) -> np.ndarray:
    """Swap the last two axes of a stack of (in, out) matrices, contiguous float32."""
    return _f32(np.swapaxes(a, -1, -2))


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


PARAM_NAMES = (
    "ln",
    "maa_x",
    "maa",
    "maa_w1",
    "maa_w2",
    "decay",
    "decay_w1",
    "decay_w2",
    "bonus",
    "lin",
    "lnx",
    "mix_w",
    "mix_b",
    "tcn_dw",
    "tcn_db",
    "tcn_pw",
    "tcn_pb",
    "fus_w",
    "fus_b",
    "cm_maa",
    "cm_key",
    "cm_rec",
    "cm_val",
    "patch_w",
    "patch_b",
    "ln_out",
    "head_w",
    "head_b",
    "skip_w",
    "skip_b",
)


def pack(cfg: RuntimeConfig, w: dict[str, np.ndarray]) -> tuple:
    """The weights the kernel reads, one array per name of :data:`PARAM_NAMES`, per-layer ones
    stacked over layers, matrices as ``(out, in)``."""

    def get(name: str) -> np.ndarray:
        try:
            return np.asarray(w[name], dtype=np.float32)
        except KeyError:
            raise RuntimeModelError(f"the model lacks the tensor {name!r}") from None

    d, n_layers, rank = cfg.d_model, cfg.n_layers, cfg.lora_rank
    m = len(cfg.distances)
    n_tcn = len(cfg.dilations)
    layers = range(n_layers)

    def stack(fn) -> np.ndarray:
        return _f32(np.stack([fn(f"blocks.{i}.") for i in layers]))

    ln = stack(
        lambda p: np.stack(
            [get(p + "ln1.weight"), get(p + "ln1.bias"), get(p + "ln2.weight"), get(p + "ln2.bias")]
        )
    )
    tm = "time_mix."
    maa_x = stack(lambda p: get(p + tm + "maa_x"))
    maa = stack(lambda p: get(p + tm + "maa"))
    maa_w1 = stack(lambda p: get(p + tm + "maa_w1"))
    maa_w2 = stack(lambda p: get(p + tm + "maa_w2"))
    decay = stack(lambda p: get(p + tm + "time_decay"))
    if cfg.data_decay:
        decay_w1 = stack(lambda p: get(p + tm + "decay_w1"))
        decay_w2 = stack(lambda p: get(p + tm + "decay_w2"))
    else:
        decay_w1 = np.zeros((n_layers, d, 2 * rank), np.float32)
        decay_w2 = np.zeros((n_layers, 2 * rank, d), np.float32)
    bonus = stack(lambda p: get(p + tm + "bonus"))
    lin = stack(
        lambda p: np.stack(
            [
                get(p + tm + f"{n}.weight").T
                for n in ("receptance", "key", "value", "gate", "output")
            ]
        )
    )
    lnx = stack(lambda p: np.stack([get(p + tm + "ln_x.weight"), get(p + tm + "ln_x.bias")]))
    if m > 1:
        mix_w = stack(lambda p: get(p + tm + "shift.mixer.weight").T)
        mix_b = stack(lambda p: get(p + tm + "shift.mixer.bias"))
    else:
        mix_w = np.zeros((n_layers, d, 1), np.float32)
        mix_b = np.zeros((n_layers, 1), np.float32)
    if n_tcn:
        k = cfg.kernel_size

        def tcn(p: str, part: str) -> np.ndarray:
            out = []
            for j in range(n_tcn):
                q = f"{p}tcn.layers.{j}."
                if part == "dw":
                    out.append(get(q + "depthwise.weight")[:, 0, :].T)  # (K, D)
                elif part == "db":
                    out.append(get(q + "depthwise.bias"))
                elif part == "pw":
                    out.append(get(q + "pointwise.weight").T)
                else:
                    out.append(get(q + "pointwise.bias"))
            return np.stack(out)

        tcn_dw = stack(lambda p: tcn(p, "dw"))
        tcn_db = stack(lambda p: tcn(p, "db"))
        tcn_pw = stack(lambda p: tcn(p, "pw"))
        tcn_pb = stack(lambda p: tcn(p, "pb"))
        fus_w = stack(lambda p: get(p + "fusion.gate.weight").T)
        fus_b = stack(lambda p: get(p + "fusion.gate.bias"))
    else:
        k = 1
        tcn_dw = np.zeros((n_layers, 0, k, d), np.float32)
        tcn_db = np.zeros((n_layers, 0, d), np.float32)
        tcn_pw = np.zeros((n_layers, 0, d, d), np.float32)
        tcn_pb = np.zeros((n_layers, 0, d), np.float32)
        fus_w = np.zeros((n_layers, 2 * d, d), np.float32)
        fus_b = np.zeros((n_layers, d), np.float32)
    cm = "channel_mix."
    cm_maa = stack(lambda p: np.stack([get(p + cm + "maa_k"), get(p + cm + "maa_r")]))
    cm_key = stack(lambda p: get(p + cm + "key.weight").T)
    cm_rec = stack(lambda p: get(p + cm + "receptance.weight").T)
    cm_val = stack(lambda p: get(p + cm + "value.weight").T)
    patch_w = _f32(get("patch.proj.weight").T)
    patch_b = _f32(get("patch.proj.bias"))
    ln_out = _f32(np.stack([get("ln_out.weight"), get("ln_out.bias")]))
    head_w = _f32(get("head.linear.weight").T)
    head_b = _f32(get("head.linear.bias"))
    if cfg.linear_skip:
        skip_w = _f32(get("skip.weight").T)
        skip_b = _f32(get("skip.bias"))
    else:
        skip_w = np.zeros((1, cfg.horizon), np.float32)
        skip_b = np.zeros(cfg.horizon, np.float32)
    # The kernel's matrix-vector products read every matrix as (out, in): each output is then a
    # dot product over contiguous memory, which numba vectorises (2-3x faster than (in, out)).
    maa_w1, maa_w2, decay_w1, decay_w2, lin, mix_w, tcn_pw, fus_w = map(
        _out_in, (maa_w1, maa_w2, decay_w1, decay_w2, lin, mix_w, tcn_pw, fus_w)
    )
    cm_key, cm_rec, cm_val, patch_w, head_w, skip_w = map(
        _out_in, (cm_key, cm_rec, cm_val, patch_w, head_w, skip_w)
    )
    return (
        ln,
        maa_x,
        maa,
        maa_w1,
        maa_w2,
        decay,
        decay_w1,
        decay_w2,
        bonus,
        lin,
        lnx,
        mix_w,
        mix_b,
        tcn_dw,
        tcn_db,
        tcn_pw,
        tcn_pb,
        fus_w,
        fus_b,
        cm_maa,
        cm_key,
        cm_rec,
        cm_val,
        patch_w,
        patch_b,
        ln_out,
        head_w,
        head_b,
        skip_w,
        skip_b,
    )


# The order in which a token step reads the per-layer parameters: the flat array then streams
# through memory in one direction (the weights of two layers, ~2.3 MB for d_model 128, do not fit
# in a core's L2 and are read again from L3 for every sample).
_LAYER_ORDER = (
    "ln",
    "mix_w",
    "mix_b",
    "maa_x",
    "maa_w1",
    "maa_w2",
    "maa",
    "lin",
    "decay",
    "decay_w1",
    "decay_w2",
    "decay_static",
    "bonus",
    "lnx",
    "tcn_dw",
    "tcn_db",
    "tcn_pw",
    "tcn_pb",
    "fus_w",
    "fus_b",
    "cm_maa",
    "cm_key",
    "cm_rec",
    "cm_val",
)
_GLOBAL_ORDER = ("patch_w", "patch_b", "ln_out", "head_w", "head_b", "skip_w", "skip_b")
# matrices with short inputs (a LoRA rank, the patch length) that the kernel multiplies in the
# (in, out) form: a dot product over 16 inputs would be mostly its horizontal sum
_IN_OUT = ("maa_w2", "decay_w2", "patch_w")
_ALIGN = 16  # floats: every parameter starts on a 64-byte boundary (one cache line)


def flatten(cfg: RuntimeConfig, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Lay the packed weights out for the kernel: one float32 array and an int64 table.

    Parameters
    ----------
    cfg : RuntimeConfig
    params : tuple
        From :func:`pack`.

    Returns
    -------
    flat : numpy.ndarray
        float32, every parameter at a 64-byte aligned offset; the per-layer parameters of layer
        ``i`` together, in the order a token step reads them, then the global ones.
    table : numpy.ndarray
        int64 (len(PARAM_NAMES) + 1, 2): for each parameter (the row index of
        ``PARAM_NAMES``; the last row is the static decay factor), its offset in layer 0 (or its
        offset, for a global parameter) and the distance between two layers' copies (0 for
        global parameters). The kernel knows the shapes from the configuration.

    Notes
    -----
    ``maa_w2``, ``decay_w2`` and ``patch_w`` are stored ``(in, out)``. The last row holds
    ``exp(-exp(time_decay))`` (computed in float64, rounded once): with a static decay the WKV
    factor depends on weights only, so the kernel does not compute it per sample.
    """
    arrays = dict(zip(PARAM_NAMES, params, strict=True))
    for name in _IN_OUT:
        arrays[name] = np.swapaxes(arrays[name], -1, -2)
    decay = arrays["decay"].astype(np.float64)
    arrays["decay_static"] = np.exp(-np.exp(decay)).astype(np.float32)
    names = (*PARAM_NAMES, "decay_static")
    table = np.zeros((len(names), 2), np.int64)

    def aligned(n: int) -> int:
        return -(-n // _ALIGN) * _ALIGN

    pos = 0
    for name in _LAYER_ORDER:
        table[names.index(name), 0] = pos
        pos += aligned(int(np.prod(arrays[name].shape[1:])))
    layer_size = pos
    for name in _LAYER_ORDER:
        table[names.index(name), 1] = layer_size
    pos = layer_size * cfg.n_layers
    for name in _GLOBAL_ORDER:
        table[names.index(name), 0] = pos
        pos += aligned(int(np.prod(arrays[name].shape)))
    flat = _page_aligned_zeros(pos)
    for name in _LAYER_ORDER:
        off, step = table[names.index(name), :2]
        for layer in range(cfg.n_layers):
            part = np.ascontiguousarray(arrays[name][layer], dtype=np.float32).ravel()
            flat[off + layer * step : off + layer * step + part.size] = part
    for name in _GLOBAL_ORDER:
        part = np.ascontiguousarray(arrays[name], dtype=np.float32).ravel()
        off = table[names.index(name), 0]
        flat[off : off + part.size] = part
    return flat, table


_HUGE_PAGE = 1 << 21


def _page_aligned_zeros(n: int) -> np.ndarray:
    """``n`` float32 zeros in anonymous memory that Linux may back with 2 MiB pages.

    A token step reads every weight once (2.3 MB for d_model 128, two layers): on 4 KiB pages
    that is ~560 pages and as many TLB misses per sample; two huge pages make the stream ~5%
    faster (measured on the one-series benchmark). numpy only advises huge pages for arrays of
    4 MiB and more, and does not align them; elsewhere this is plain ``np.zeros``.
    """
    if not hasattr(mmap, "MADV_HUGEPAGE") or n * 4 < _HUGE_PAGE // 2:
        return np.zeros(n, np.float32)
    size = -(-n * 4 // _HUGE_PAGE) * _HUGE_PAGE + _HUGE_PAGE  # room to align the start
    # private anonymous memory (zero-filled); the array keeps the mapping alive
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except OSError:
        pass  # huge pages disabled: still correct, on small pages
    raw = np.frombuffer(buf, np.uint8)
    start = -raw.ctypes.data % _HUGE_PAGE
    return raw[start : start + n * 4].view(np.float32)
