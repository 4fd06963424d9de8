"""Causal log-mel front end, offline and streaming with bit-identical numbers.

Frame ``t`` covers the samples ``[t * hop, t * hop + frame_len)``; it is multiplied by a
(periodic) Hann window, zero-padded to ``fft_size``, turned into a power spectrum
``|rfft|**2``, projected on a triangular mel filterbank (HTK mel scale, no area normalisation)
and logged: ``log(max(mel_energy, log_floor))``. Frame ``t`` is known once
``frame_end(t) = t * hop + frame_len`` samples have arrived, and depends on no later sample.

:meth:`LogMelFrontend.transform` (a whole signal) and :meth:`FrontendStream.push` (chunks of any
size) compute every frame through the same function, in float64 one frame at a time, then cast
to float32: concatenating the outputs of ``push`` over any chunking equals ``transform`` of the
whole signal exactly. The input samples are cast to float32 first on both paths.

Feature scaling (per-mel mean and standard deviation) is not done here: estimators standardise
with their training statistics.

Examples
--------
>>> import numpy as np
>>> from rwkv_ts.audio import FrontendConfig, LogMelFrontend
>>> frontend = LogMelFrontend(FrontendConfig(sample_rate=16000, n_mels=40))
>>> audio = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)
>>> feats = frontend.transform(audio)
>>> feats.shape, feats.dtype
((98, 40), dtype('float32'))
>>> stream = frontend.stream()
>>> parts = [stream.push(audio[i : i + 1234]) for i in range(0, 16000, 1234)]
>>> bool(np.array_equal(np.concatenate(parts), feats))
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rwkv_ts.audio.io import check_samples

__all__ = ["FrontendConfig", "FrontendStream", "LogMelFrontend"]

# frames per block in transform: bounds the float64 working memory (the numbers do not depend on it)
_BLOCK = 2048


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


@dataclass
class FrontendConfig:
    """Settings of the log-mel front end.

    Parameters
    ----------
    sample_rate : int, default 16000
        Samples per second of the input.
    frame_ms : float, default 25.0
        Analysis window length in milliseconds (``frame_len`` samples, rounded).
    hop_ms : float, default 10.0
        Step between frames in milliseconds (``hop`` samples, rounded).
    n_mels : int, default 40
        Number of mel bands.
    n_fft : int, optional
        FFT size (at least ``frame_len``); default: the next power of two >= ``frame_len``.
    fmin : float, default 20.0
        Lower edge of the lowest mel band in Hz.
    fmax : float, optional
        Upper edge of the highest mel band in Hz (at most ``sample_rate / 2``, the default).
    log_floor : float, default 1e-6
        Energies below this are raised to it before the log (positive).

    Examples
    --------
    >>> cfg = FrontendConfig(sample_rate=8000)
    >>> cfg.frame_len, cfg.hop, cfg.fft_size
    (200, 80, 256)
    >>> cfg.n_frames(8000), cfg.frame_end(0)
    (98, 200)
    >>> FrontendConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    sample_rate: int = 16000
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 40
    n_fft: int | None = None
    fmin: float = 20.0
    fmax: float | None = None
    log_floor: float = 1e-6

    @property
    def frame_len(self) -> int:
        """Samples per frame: ``round(sample_rate * frame_ms / 1000)``."""
        return int(round(self.sample_rate * self.frame_ms / 1000.0))

    @property
    def hop(self) -> int:
        """Samples between frame starts: ``round(sample_rate * hop_ms / 1000)``."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def fft_size(self) -> int:
        """``n_fft``, or the next power of two >= ``frame_len``."""
        if self.n_fft is not None:
            return int(self.n_fft)
        return 1 << max(0, (self.frame_len - 1).bit_length())

    @property
    def upper_hz(self) -> float:
        """``fmax``, or the Nyquist frequency ``sample_rate / 2``."""
        return float(self.sample_rate / 2.0 if self.fmax is None else self.fmax)

    def n_frames(self, n_samples: int) -> int:
        """Number of complete frames in ``n_samples`` samples.

        ``0`` when ``n_samples < frame_len``, else ``1 + (n_samples - frame_len) // hop``.

        Examples
        --------
        >>> FrontendConfig().n_frames(399), FrontendConfig().n_frames(400)
        (0, 1)
        """
        if not _is_int(n_samples) or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative integer; got {n_samples!r}")
        n_samples = int(n_samples)
        if n_samples < self.frame_len:
            return 0
        return 1 + (n_samples - self.frame_len) // self.hop

    def frame_end(self, t: int) -> int:
        """Sample count after which frame ``t`` is known: ``t * hop + frame_len``.

        Examples
        --------
        >>> FrontendConfig().frame_end(2)  # 2 * 160 + 400
        720
        """
        if not _is_int(t) or t < 0:
            raise ValueError(f"t (frame index) must be a non-negative integer; got {t!r}")
        return int(t) * self.hop + self.frame_len

    def validate(self) -> FrontendConfig:
        """Check every setting; return ``self``.

        Raises
        ------
        ValueError
            A setting out of range or of the wrong type; the message names it.

        Examples
        --------
        >>> try:
        ...     FrontendConfig(n_mels=0).validate()
        ... except ValueError as exc:
        ...     print(exc)
        n_mels must be a positive integer; got 0
        """
        if not _is_int(self.sample_rate) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer; got {self.sample_rate!r}")
        for name in ("frame_ms", "hop_ms"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        if self.frame_len < 1:
            raise ValueError(
                f"frame_ms={self.frame_ms!r} gives frame_len={self.frame_len} samples at "
                f"{self.sample_rate} Hz; it must be at least 1"
            )
        if self.hop < 1:
            raise ValueError(
                f"hop_ms={self.hop_ms!r} gives hop={self.hop} samples at {self.sample_rate} Hz; "
                "it must be at least 1"
            )
        if not _is_int(self.n_mels) or self.n_mels <= 0:
            raise ValueError(f"n_mels must be a positive integer; got {self.n_mels!r}")
        if self.n_fft is not None and (not _is_int(self.n_fft) or self.n_fft < self.frame_len):
            raise ValueError(
                f"n_fft must be None or an integer >= frame_len ({self.frame_len}); "
                f"got {self.n_fft!r}"
            )
        if not _is_real(self.fmin) or not math.isfinite(self.fmin) or self.fmin < 0:
            raise ValueError(f"fmin must be a finite number >= 0; got {self.fmin!r}")
        nyquist = self.sample_rate / 2.0
        if self.fmax is not None and (
            not _is_real(self.fmax) or not math.isfinite(self.fmax) or self.fmax > nyquist
        ):
            raise ValueError(
                f"fmax must be None or a number <= sample_rate / 2 ({nyquist}); got {self.fmax!r}"
            )
        if self.fmin >= self.upper_hz:
            raise ValueError(f"fmin ({self.fmin!r}) must be below fmax ({self.upper_hz!r} Hz)")
        if not _is_real(self.log_floor) or not (
            math.isfinite(self.log_floor) and self.log_floor > 0
        ):
            raise ValueError(f"log_floor must be a positive number; got {self.log_floor!r}")
        return self

    def to_dict(self) -> dict:
        """The settings as a JSON-friendly dict (plain Python numbers)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                value = value.item()
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> FrontendConfig:
        """Build (and validate) a config from :meth:`to_dict`'s output.

        Raises
        ------
        ValueError
            Unknown keys (named in the message) or an invalid setting.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping of settings; got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown FrontendConfig settings: {unknown}; known: {sorted(names)}")
        return cls(**dict(d)).validate()


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """Triangular mel filterbank (HTK mel scale, peak 1, no area normalisation).

    ``n_mels + 2`` edges equally spaced on the mel scale from ``fmin`` to ``fmax``; filter ``m``
    rises from edge ``m`` to edge ``m + 1`` and falls to edge ``m + 2``, evaluated at the FFT bin
    frequencies ``k * sample_rate / fft_size``.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_mels, fft_size // 2 + 1)``.

    Examples
    --------
    >>> fb = mel_filterbank(FrontendConfig(sample_rate=8000, n_mels=20))
    >>> fb.shape, bool(fb.max() <= 1.0)
    ((20, 129), True)
    """
    config.validate()
    n_bins = config.fft_size // 2 + 1
    freqs = np.arange(n_bins, dtype=np.float64) * config.sample_rate / config.fft_size
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.upper_hz), config.n_mels + 2)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


class _Kernel:
    """The per-frame computation shared by the offline and the streaming path."""

    def __init__(self, config: FrontendConfig):
        self.frame_len = config.frame_len
        self.fft_size = config.fft_size
        self.log_floor = float(config.log_floor)
        n = np.arange(self.frame_len, dtype=np.float64)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.frame_len)  # periodic Hann
        fb = mel_filterbank(config)
        self.filterbank = fb
        # Sparse layout of the filterbank: for every mel band, the indices and weights of its
        # nonzero bins, padded to a common width with weight 0. The projection then sums a fixed
        # number of terms in a fixed order with elementwise operations only (no BLAS), so a
        # frame's value never depends on how many frames are computed together.
        n_mels = fb.shape[0]
        width = max(1, int((fb > 0).sum(axis=1).max()))
        index = np.zeros((n_mels, width), dtype=np.intp)
        weight = np.zeros((n_mels, width), dtype=np.float64)
        for m in range(n_mels):
            nz = np.flatnonzero(fb[m] > 0)
            index[m, : nz.size] = nz
            weight[m, : nz.size] = fb[m, nz]
        self.index = index
        self.weight = weight

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        # frames: float32 (F, frame_len) -> float32 (F, n_mels)
        n = frames.shape[0]
        n_mels = self.index.shape[0]
        if n == 0:
            return np.zeros((0, n_mels), dtype=np.float32)
        windowed = frames.astype(np.float64) * self.window
        spectrum = np.empty((n, self.fft_size // 2 + 1), dtype=np.complex128)
        for i in range(n):  # one frame per FFT call: the numbers cannot depend on the batch
            spectrum[i] = np.fft.rfft(windowed[i], n=self.fft_size)
        power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
        terms = power[:, self.index] * self.weight  # (F, n_mels, width)
        mel = terms[:, :, 0].copy()
        for j in range(1, terms.shape[2]):
            mel += terms[:, :, j]
        return np.log(np.maximum(mel, self.log_floor)).astype(np.float32)


class LogMelFrontend:
    """Causal log-mel features of a mono signal, offline (:meth:`transform`) or streaming.

    Parameters
    ----------
    config : FrontendConfig, optional
        The settings (validated here; a copy is kept). Default: ``FrontendConfig()``.

    Attributes
    ----------
    config : FrontendConfig
        The settings.
    filterbank : numpy.ndarray
        float64 ``(n_mels, fft_size // 2 + 1)``: the mel filterbank (see :func:`mel_filterbank`).

    Examples
    --------
    >>> import numpy as np
    >>> frontend = LogMelFrontend(FrontendConfig(sample_rate=8000, n_mels=20))
    >>> tone = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)
    >>> feats = frontend.transform(tone)
    >>> feats.shape
    (98, 20)
    >>> centres = frontend.mel_centres
    >>> bool(abs(centres[feats[10].argmax()] - 1000) < 150)
    True
    """

    def __init__(self, config: FrontendConfig | None = None):
        if config is None:
            config = FrontendConfig()
        if not isinstance(config, FrontendConfig):
            raise TypeError(f"config must be a FrontendConfig; got {type(config).__name__}")
        self.config = dataclasses.replace(config).validate()
        self._kernel = _Kernel(self.config)

    @property
    def n_mels(self) -> int:
        """Number of features per frame."""
        return int(self.config.n_mels)

    @property
    def filterbank(self) -> np.ndarray:
        """The mel filterbank, float64 ``(n_mels, fft_size // 2 + 1)`` (a copy)."""
        return self._kernel.filterbank.copy()

    @property
    def mel_centres(self) -> np.ndarray:
        """Centre frequency (Hz) of every mel band, float64 ``(n_mels,)``."""
        cfg = self.config
        edges = _mel_to_hz(
            np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(cfg.upper_hz), cfg.n_mels + 2)
        )
        return edges[1:-1]

    def _frames(self, samples: np.ndarray, n_frames: int) -> np.ndarray:
        # float32 samples -> features of the first n_frames frames, in blocks of frames
        cfg = self.config
        out = np.empty((n_frames, cfg.n_mels), dtype=np.float32)
        if n_frames == 0:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(samples, cfg.frame_len)[:: cfg.hop]
        for start in range(0, n_frames, _BLOCK):
            stop = min(n_frames, start + _BLOCK)
            out[start:stop] = self._kernel(windows[start:stop])
        return out

    def transform(self, audio) -> np.ndarray:
        """Log-mel features of a whole signal.

        Parameters
        ----------
        audio : array-like, shape (n,)
            Real, finite mono samples at ``config.sample_rate`` (cast to float32).

        Returns
        -------
        numpy.ndarray
            float32, shape ``(config.n_frames(n), n_mels)``; ``(0, n_mels)`` when
            ``n < frame_len``.

        Raises
        ------
        ValueError
            ``audio`` is not 1-D or holds NaN/inf.
        TypeError
            ``audio`` is not a real numeric array.
        """
        samples = check_samples(audio, "audio")
        return self._frames(samples, self.config.n_frames(samples.size))

    def stream(self) -> FrontendStream:
        """A fresh :class:`FrontendStream` over this front end."""
        return FrontendStream(self)

    def __repr__(self) -> str:
        return f"LogMelFrontend(config={self.config!r})"


class FrontendStream:
    """Incremental log-mel features: push chunks of any size, get the frames they complete.

    Concatenating the outputs of :meth:`push` over any chunking of a signal equals
    ``frontend.transform(signal)`` exactly (bit-identical). The stream keeps only the samples
    of the next, incomplete frame (fewer than ``frame_len``).

    Parameters
    ----------
    frontend : LogMelFrontend
        The front end whose settings and numbers the stream follows.

    Attributes
    ----------
    n_samples : int
        Samples pushed since the start (or the last :meth:`reset`).
    n_frames : int
        Frames returned since the start.

    Examples
    --------
    >>> import numpy as np
    >>> stream = LogMelFrontend(FrontendConfig(sample_rate=8000)).stream()
    >>> stream.push(np.zeros(150)).shape  # frame 0 needs 200 samples
    (0, 40)
    >>> stream.push(np.zeros(150)).shape  # 300 samples: frames 0 and 1 (ends 200, 280)
    (2, 40)
    >>> stream.n_samples, stream.n_frames
    (300, 2)
    """

    def __init__(self, frontend: LogMelFrontend):
        if not isinstance(frontend, LogMelFrontend):
            raise TypeError(f"frontend must be a LogMelFrontend; got {type(frontend).__name__}")
        self.frontend = frontend
        self.reset()

    @property
    def config(self) -> FrontendConfig:
        """The front end's settings."""
        return self.frontend.config

    def reset(self) -> FrontendStream:
        """Forget everything pushed so far; return ``self``."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self.n_samples = 0
        self.n_frames = 0
        return self

    def push(self, chunk) -> np.ndarray:
        """Feed the next samples; return the frames they complete.

        Parameters
        ----------
        chunk : array-like, shape (k,)
            Real, finite samples (any length, including 0; cast to float32).

        Returns
        -------
        numpy.ndarray
            float32, shape ``(j, n_mels)``: frames ``n_frames .. n_frames + j - 1`` (before the
            call), i.e. every frame whose ``frame_end`` is now reached.
        """
        samples = check_samples(chunk, "chunk")
        cfg = self.config
        # samples before the next frame's start that have not arrived yet (hop > frame_len)
        skip = max(0, self.n_frames * cfg.hop - self.n_samples)
        buffer = np.concatenate([self._buffer, samples[skip:]])
        self.n_samples += samples.size
        k = cfg.n_frames(self.n_samples) - self.n_frames
        out = self.frontend._frames(buffer, k)
        self.n_frames += k
        self._buffer = buffer[k * cfg.hop :].copy()
        return out

    def get_state(self) -> dict[str, np.ndarray]:
        """The stream's state as arrays (copies): ``buffer`` float32 (the pending samples),
        ``n_samples`` and ``n_frames`` (int64, shape ``()``)."""
        return {
            "buffer": self._buffer.copy(),
            "n_samples": np.array(self.n_samples, dtype=np.int64),
            "n_frames": np.array(self.n_frames, dtype=np.int64),
        }

    def set_state(self, state: Mapping[str, np.ndarray]) -> FrontendStream:
        """Restore a state from :meth:`get_state` (checked for consistency); return ``self``.

        Raises
        ------
        ValueError
            Missing keys, or counters and buffer that do not fit together or this front end.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of arrays; got {type(state).__name__}")
        missing = sorted({"buffer", "n_samples", "n_frames"} - set(state))
        if missing:
            raise ValueError(f"state lacks {missing}")
        counters = {}
        for key in ("n_samples", "n_frames"):
            value = np.asarray(state[key])
            if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"state[{key!r}] must be one integer; got {value!r}")
            counters[key] = int(value.reshape(()))
            if counters[key] < 0:
                raise ValueError(f"state[{key!r}] must be >= 0; got {counters[key]}")
        buffer = np.asarray(state["buffer"])
        if buffer.ndim != 1:
            raise ValueError(f"state['buffer'] must be 1-D; got shape {buffer.shape}")
        cfg = self.config
        n_samples, n_frames = counters["n_samples"], counters["n_frames"]
        if cfg.n_frames(n_samples) != n_frames:
            raise ValueError(
                f"state is inconsistent: {n_samples} samples give {cfg.n_frames(n_samples)} "
                f"frames with frame_len={cfg.frame_len}, hop={cfg.hop}; the state says {n_frames}"
            )
        expected = max(0, n_samples - n_frames * cfg.hop)
        if buffer.size != expected:
            raise ValueError(
                f"state is inconsistent: state['buffer'] holds {buffer.size} samples, "
                f"{expected} expected for n_samples={n_samples}, n_frames={n_frames}"
            )
        samples = check_samples(buffer, "state['buffer']")
        self._buffer = samples
        self.n_samples = n_samples
        self.n_frames = n_frames
        return self

    def __repr__(self) -> str:
        return f"FrontendStream(n_samples={self.n_samples}, n_frames={self.n_frames})"
