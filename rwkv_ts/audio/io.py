"""WAV reading and writing (standard library :mod:`wave`) and offline resampling.

* :func:`read_wav` -- float32 mono samples in [-1, 1] and the sample rate, from 8/16/24/32-bit
  PCM; several channels are averaged.
* :func:`write_wav` -- 16-bit PCM mono, written atomically.
* :func:`resample` -- polyphase resampling (:func:`scipy.signal.resample_poly`).

A file that is not a WAV, is truncated or has an unsupported encoding raises
:class:`AudioFileError` (a ``ValueError``) whose message names the path.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from rwkv_ts.audio import read_wav, write_wav
>>> t = np.arange(800) / 8000
>>> tone = 0.5 * np.sin(2 * np.pi * 440 * t)
>>> path = write_wav(os.path.join(tempfile.mkdtemp(), "tone.wav"), tone, 8000)
>>> audio, sr = read_wav(path)
>>> audio.dtype, audio.shape, sr
(dtype('float32'), (800,), 8000)
"""

from __future__ import annotations

import io
import math
import os
import struct
import wave
from pathlib import Path

import numpy as np

__all__ = ["AudioFileError", "read_wav", "resample", "write_wav"]

# full-scale divisor per PCM sample width (bytes)
_SCALE = {1: 128.0, 2: 32768.0, 3: 8388608.0, 4: 2147483648.0}


class AudioFileError(ValueError):
    """An audio file that cannot be read: not a WAV, truncated, or an unsupported encoding."""


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as float32 mono samples in [-1, 1].

    Parameters
    ----------
    path : str or os.PathLike
        The WAV file (integer PCM, 8, 16, 24 or 32 bits per sample, any number of channels).

    Returns
    -------
    audio : numpy.ndarray
        float32, shape ``(n,)``: the samples divided by the full scale (8-bit PCM is unsigned,
        centred at 128); several channels are averaged.
    sample_rate : int
        Samples per second.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    AudioFileError
        Not a WAV file, a truncated file, or an unsupported encoding (e.g. 32-bit float, which
        the standard library's :mod:`wave` does not read); the message names the path.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> target = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> path = write_wav(target, np.array([0.0, 0.5, -0.5]), 16000)
    >>> audio, sr = read_wav(path)
    >>> np.round(audio, 3).tolist(), sr
    ([0.0, 0.5, -0.5], 16000)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as handle:
            n_channels = handle.getnchannels()
            width = handle.getsampwidth()
            sample_rate = handle.getframerate()
            n_frames = handle.getnframes()
            data = handle.readframes(n_frames)
    except (wave.Error, EOFError, struct.error) as exc:
        raise AudioFileError(f"{path} is not a readable PCM WAV file: {exc}") from None
    if width not in _SCALE:
        raise AudioFileError(
            f"{path} has {8 * width}-bit samples; only 8, 16, 24 and 32-bit PCM are supported"
        )
    if n_channels < 1 or sample_rate < 1:
        raise AudioFileError(
            f"{path} has an invalid header: {n_channels} channels, {sample_rate} Hz"
        )
    expected = n_frames * n_channels * width
    if len(data) < expected:
        raise AudioFileError(
            f"{path} is truncated: its header announces {n_frames} frames ({expected} bytes), "
            f"only {len(data)} bytes follow"
        )
    samples = _decode(data[:expected], width).reshape(n_frames, n_channels)
    if n_channels == 1:
        mono = samples[:, 0]
    else:
        mono = samples.mean(axis=1)
    return (mono / _SCALE[width]).astype(np.float32), int(sample_rate)


def _decode(data: bytes, width: int) -> np.ndarray:
    # little-endian integer PCM -> float64 (8-bit PCM is unsigned, offset 128)
    if width == 1:
        return np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0
    if width == 2:
        return np.frombuffer(data, dtype="<i2").astype(np.float64)
    if width == 4:
        return np.frombuffer(data, dtype="<i4").astype(np.float64)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    value = np.where(value >= 1 << 23, value - (1 << 24), value)
    return value.astype(np.float64)


def check_samples(
    audio, where: str = "audio", *, integers: bool = True, dtype=np.float32
) -> np.ndarray:
    """A ``dtype`` copy of a 1-D finite real signal (never the caller's array); errors name
    ``where``.

    Parameters
    ----------
    audio : array-like, shape (n,)
        Mono samples (a torch tensor is read too).
    where : str
        How the errors call the input, e.g. ``"audios[3]"``.
    integers : bool, default True
        Accept integer (and boolean) arrays as they are. The estimators pass ``False``: their
        models expect samples in [-1, 1], and raw 16-bit PCM would be read 32,768 times too loud.
    dtype : numpy dtype, default float32

    Examples
    --------
    >>> check_samples([0, 1, 0]).dtype
    dtype('float32')
    >>> check_samples(np.zeros((2, 3)), "chunk")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: chunk must be 1-D (mono samples); got shape (2, 3); average the channels ...
    """
    if hasattr(audio, "detach") and hasattr(audio, "numpy"):
        audio = audio.detach().cpu().numpy()
    arr = np.asarray(audio)
    is_integer = np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or is_integer):
        raise TypeError(f"{where} must be a real numeric array of samples; got dtype {arr.dtype}")
    if is_integer and not integers:
        raise TypeError(
            f"{where} has integer dtype {arr.dtype}; pass float samples in [-1, 1] "
            "(for 16-bit PCM divide by 32768, or read files with rwkv_ts.audio.read_wav)"
        )
    if arr.ndim != 1:
        raise ValueError(
            f"{where} must be 1-D (mono samples); got shape {arr.shape}; average the channels "
            "of a multichannel recording first"
        )
    with np.errstate(over="ignore"):  # values beyond the dtype become inf, refused just below
        out = np.array(arr, dtype=dtype, copy=True)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{where} contains NaN or infinite values (or values beyond {out.dtype})")
    return out


def model_signal(item, model_rate: int, where: str, sample_rate: int | None = None) -> np.ndarray:
    """The float32 samples an estimator working at ``model_rate`` reads from ``item``: a 1-D
    array (at ``sample_rate`` when given), a WAV file path, or an example with ``audio`` and
    ``sample_rate`` attributes (``VADExample``, ``DigitUtterance``).

    Audio at another rate is refused with an error naming both rates and how to resample; raw
    integer PCM is refused (see :func:`check_samples`).

    Examples
    --------
    >>> model_signal(np.zeros(4), 8000, "audio").dtype
    dtype('float32')
    >>> model_signal(np.zeros(4), 8000, "audio", sample_rate=16000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: audio is sampled at 16000 Hz but the model works at 8000 Hz; resample it ...
    """
    rate = sample_rate
    if isinstance(item, str | os.PathLike):
        item, rate = read_wav(item)
    elif hasattr(item, "audio") and hasattr(item, "sample_rate"):
        item, rate = item.audio, item.sample_rate
    if rate is not None and int(rate) != int(model_rate):
        raise ValueError(
            f"{where} is sampled at {int(rate)} Hz but the model works at {int(model_rate)} Hz; "
            f"resample it first with rwkv_ts.audio.resample(audio, {int(rate)}, "
            f"{int(model_rate)})"
        )
    return check_samples(item, where, integers=False)


def _check_rate(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz); got {value!r}")
    return int(value)


def write_wav(path: str | os.PathLike[str], audio, sample_rate: int) -> Path:
    """Write mono samples in [-1, 1] as a 16-bit PCM WAV file, atomically.

    Samples are scaled by 32768, rounded and clipped to the 16-bit range [-32768, 32767], so
    that :func:`read_wav` (which divides by 32768) gives them back within ``0.5 / 32768``
    (values at or beyond +1 become ``32767 / 32768``).

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its folder is created when missing. A temporary file is written beside it
        and renamed over it, so a crash never leaves a half-written file.
    audio : array-like, shape (n,)
        Real, finite samples.
    sample_rate : int
        Samples per second (positive).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        ``audio`` is not 1-D or not finite, or ``sample_rate`` is not a positive integer.
    TypeError
        ``audio`` is not numeric.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> p = write_wav(os.path.join(tempfile.mkdtemp(), "silence.wav"), np.zeros(160), 16000)
    >>> p.stat().st_size  # 44-byte header + 2 bytes per sample
    364
    """
    from rwkv_ts._safefile import write_atomic

    arr = check_samples(audio, dtype=np.float64)
    rate = _check_rate(sample_rate, "sample_rate")
    pcm = np.clip(np.round(np.clip(arr, -1.0, 1.0) * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return write_atomic(path, buffer.getvalue())


def resample(audio, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample offline with a polyphase filter (:func:`scipy.signal.resample_poly`).

    Parameters
    ----------
    audio : array-like, shape (n,)
        Real, finite samples.
    orig_sr, target_sr : int
        The current and the wanted sample rate (positive integers).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(ceil(n * target_sr / orig_sr),)``; a copy of the input (as float32)
        when the rates are equal.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 200 * np.arange(800) / 8000)
    >>> y = resample(x, 8000, 16000)
    >>> y.dtype, y.shape
    (dtype('float32'), (1600,))
    """
    arr = check_samples(audio, dtype=np.float64)
    orig = _check_rate(orig_sr, "orig_sr")
    target = _check_rate(target_sr, "target_sr")
    if orig == target:
        return arr.astype(np.float32)
    if arr.size == 0:
        return np.zeros(0, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(orig, target)
    return resample_poly(arr, target // g, orig // g).astype(np.float32)
