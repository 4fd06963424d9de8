"""Spoken-digit and speech-command clips, and the audio examples built from them.

* :func:`load_fsdd` -- the Free Spoken Digit Dataset (8 kHz): one row per recording, split by take
  (takes 0-4 test, 5-9 val, 10-49 train).
* :func:`load_speech_commands` -- the Speech Commands v0.01 subset (16 kHz): the word clips with
  their official split, and the 4 background-noise recordings.
* :func:`make_vad_streams` -- voice-activity streams: speech clips of one split placed at random
  offsets into noise of that split's time part, at a chosen SNR, with sample-level labels.
* :func:`frame_labels` -- sample labels turned into front-end frame labels.
* :func:`make_digit_utterances` -- connected-digit utterances of one speaker with transcripts.
* :func:`speech_activity` -- the active-speech mask of a clean clip (short-time energy).

The files live under the data home (:func:`rwkv_ts.datasets.get_data_home`):
``<data_home>/fsdd/recordings/{digit}_{speaker}_{take}.wav`` and
``<data_home>/speech_commands_subset/{labels.csv, speech/<word>/*.wav, noise/*.wav}``. They are
not downloaded automatically. Decoded clips are cached in memory per (path, sample rate).

Splits never mix: speech clips come from the asked split only, and every noise recording is cut
by time (first 70 % train, next 10 % val, last 20 % test), each stream drawing its noise from
its split's part only.

Examples
--------
The data is not shipped with the package, so these lines are not run here::

    from rwkv_ts.audio import FrontendConfig
    from rwkv_ts.datasets import frame_labels, make_digit_utterances, make_vad_streams

    streams = make_vad_streams("train", 20, data_home="../shared/datasets")
    ex = streams[0]                   # ex.audio float32, ex.speech bool per sample, ex.snr_db
    y = frame_labels(ex.speech, FrontendConfig(sample_rate=ex.sample_rate))

    utts = make_digit_utterances("test", 5, data_home="../shared/datasets")
    utts[0].transcript                # e.g. '3 9 1'
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._fetch import DATA_HOME_ENV, get_data_home

__all__ = [
    "DigitUtterance",
    "VADExample",
    "frame_labels",
    "load_fsdd",
    "load_speech_commands",
    "make_digit_utterances",
    "make_vad_streams",
    "speech_activity",
]

SPLITS = ("train", "val", "test")
#: time fractions of every noise recording used by each split (first 70 %, next 10 %, last 20 %)
NOISE_PARTS = {"train": (0.0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0)}
#: range of the noise-only gaps before and between the clips of a VAD stream (seconds)
VAD_GAP_S = (0.2, 1.5)

_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
_SC_SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def _missing(what: str, path: Path, home: Path, source: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found: looked for {path} (data home {home}, set by data_home= or the "
        f"environment variable {DATA_HOME_ENV}). It is not downloaded automatically; get it "
        f"from {source} and place it there."
    )


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    return split


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


def _check_rate(value, name: str = "sample_rate") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz); got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- loaders


def load_fsdd(*, data_home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The Free Spoken Digit Dataset recordings: one row per file.

    Parameters
    ----------
    data_home : path, optional
        See :func:`rwkv_ts.datasets.get_data_home`; the files are
        ``<data_home>/fsdd/recordings/{digit}_{speaker}_{take}.wav`` (8 kHz, mono).

    Returns
    -------
    pandas.DataFrame
        Columns ``path`` (absolute, str), ``digit`` (int), ``speaker`` (str), ``take`` (int) and
        ``split``: ``"test"`` for takes 0-4, ``"val"`` for takes 5-9, ``"train"`` for the rest;
        sorted by digit, speaker and take.

    Raises
    ------
    FileNotFoundError
        The recordings folder is missing or holds no recording.

    Examples
    --------
    >>> frame = load_fsdd(data_home="../shared/datasets")  # doctest: +SKIP
    >>> frame.groupby("split").size().to_dict()  # doctest: +SKIP
    {'test': 250, 'train': 2000, 'val': 250}
    """
    home = get_data_home(data_home)
    folder = (home / "fsdd" / "recordings").resolve()
    source = "https://github.com/Jakobovski/free-spoken-digit-dataset (folder recordings/)"
    if not folder.is_dir():
        raise _missing("FSDD", folder, home, source)
    rows = []
    for entry in os.scandir(folder):
        match = _FSDD_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        split = "test" if take < 5 else "val" if take < 10 else "train"
        rows.append((str(folder / entry.name), digit, speaker, take, split))
    if not rows:
        raise _missing("FSDD recordings ({digit}_{speaker}_{take}.wav)", folder, home, source)
    frame = pd.DataFrame(rows, columns=["path", "digit", "speaker", "take", "split"])
    frame = frame.sort_values(["digit", "speaker", "take"], ignore_index=True)
    return frame.astype({"digit": "int64", "take": "int64"})


def load_speech_commands(
    *, data_home: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, list[Path]]:
    """The Speech Commands v0.01 subset: word clips with their split, and the noise recordings.

    Parameters
    ----------
    data_home : path, optional
        See :func:`rwkv_ts.datasets.get_data_home`; the files are
        ``<data_home>/speech_commands_subset/labels.csv``, ``speech/<word>/*.wav`` and
        ``noise/*.wav`` (16 kHz, mono).

    Returns
    -------
    clips : pandas.DataFrame
        The word clips of ``labels.csv`` (``is_speech == 1``) with ``path`` made absolute (str),
        ``label`` (the word), ``speaker_id`` and ``split`` in {"train", "val", "test"} (from
        ``split_v001``; "validation" becomes "val"), plus the other columns of the file.
    noise : list of pathlib.Path
        The background-noise recordings, sorted by name.

    Raises
    ------
    FileNotFoundError
        ``labels.csv`` or a noise recording is missing.

    Examples
    --------
    >>> clips, noise = load_speech_commands(data_home="../shared/datasets")  # doctest: +SKIP
    >>> clips.groupby("split").size().to_dict(), [p.stem for p in noise][:1]  # doctest: +SKIP
    ({'test': 51, 'train': 205, 'val': 44}, ['doing_the_dishes'])
    """
    home = get_data_home(data_home)
    root = (home / "speech_commands_subset").resolve()
    table = root / "labels.csv"
    source = "Speech Commands v0.01 (Warden 2018); see speech_commands_subset/SOURCE.md"
    if not table.is_file():
        raise _missing("Speech Commands labels.csv", table, home, source)
    frame = pd.read_csv(table, dtype={"speaker_id": str})
    speech = frame["is_speech"].astype(int) == 1
    clips = frame[speech].copy()
    unknown = sorted(set(clips["split_v001"].astype(str)) - set(_SC_SPLITS))
    if unknown:
        raise ValueError(f"{table}: unknown split_v001 values {unknown}")
    clips["split"] = clips["split_v001"].map(_SC_SPLITS)
    clips["path"] = [str(root / p) for p in clips["path"]]
    clips = clips.reset_index(drop=True)
    noise = sorted((root / p for p in frame.loc[~speech, "path"]), key=lambda p: p.name)
    for path in noise:
        if not path.is_file():
            raise _missing("Speech Commands noise recording", path, home, source)
    return clips, noise


# --------------------------------------------------------------------------- clip cache


@functools.lru_cache(maxsize=4096)
def _clip(path: str, sample_rate: int) -> np.ndarray:
    # decoded (and resampled) samples of one file, read-only: shared by every caller
    from rwkv_ts.audio.io import read_wav, resample

    audio, sr = read_wav(path)
    if sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
    audio.setflags(write=False)
    return audio


@functools.lru_cache(maxsize=64)
def _noise_part(path: str, split: str, sample_rate: int) -> np.ndarray:
    # the split's time part of a noise recording, cut at the file's own rate, then resampled
    from rwkv_ts.audio.io import read_wav, resample

    audio, sr = read_wav(path)
    lo, hi = NOISE_PARTS[split]
    part = audio[int(lo * audio.size) : int(hi * audio.size)]
    if sr != sample_rate:
        part = resample(part, sr, sample_rate)
    part = np.ascontiguousarray(part, dtype=np.float32)
    part.setflags(write=False)
    return part


# --------------------------------------------------------------------------- labels


def speech_activity(
    audio,
    sample_rate: int,
    *,
    window_ms: float = 10.0,
    threshold_db: float = 35.0,
    floor_db: float = -60.0,
    min_gap_ms: float = 100.0,
    noise_margin_db: float = 10.0,
) -> np.ndarray:
    """Active-speech mask of a clean clip from its short-time energy.

    The clip is cut into consecutive windows of ``window_ms`` (the last one may be shorter); a
    window is active when its mean power is within ``threshold_db`` of the loudest window's,
    above the absolute floor ``floor_db`` (dB re full scale, i.e. mean power ``10**(floor_db /
    10)``) and above the clip's own background: the 10th percentile of the window powers plus
    ``noise_margin_db`` (at most half the clip's range from that percentile to its loudest window,
    so that a faint word in a noisy clip keeps its louder half). Without the background rule, a
    clip recorded in a noisy room (a quarter of the Speech Commands clips are within 35 dB of
    their own background) would be labelled speech from its first sample to its last. Inactive
    runs shorter than ``min_gap_ms`` between two active runs are filled.

    Parameters
    ----------
    audio : array-like, shape (n,)
        Clean speech (no added noise), samples in [-1, 1].
    sample_rate : int
        Samples per second.
    window_ms : float, default 10.0
        Energy window length.
    threshold_db : float, default 35.0
        Active windows lie within this many dB of the loudest window.
    floor_db : float, default -60.0
        Absolute floor of an active window's mean power, in dB re full scale.
    min_gap_ms : float, default 100.0
        Shorter silences inside speech are labelled speech.
    noise_margin_db : float, default 10.0
        How far above the clip's background (10th percentile of window powers) an active window
        must be.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(n,)``.

    Examples
    --------
    >>> import numpy as np
    >>> sr = 8000
    >>> burst = 0.5 * np.sin(2 * np.pi * 300 * np.arange(800) / sr)
    >>> clip = np.concatenate([np.zeros(800), burst, np.zeros(400), burst, np.zeros(800)])
    >>> mask = speech_activity(clip, sr)
    >>> int(mask.argmax()), int(mask.sum())  # the 50 ms pause is filled
    (800, 2000)
    """
    rate = _check_rate(sample_rate)
    arr = np.asarray(audio, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"audio must be 1-D; got shape {arr.shape}")
    for name, value in (("window_ms", window_ms), ("min_gap_ms", min_gap_ms)):
        if not np.isfinite(value) or value < 0 or (name == "window_ms" and value == 0):
            raise ValueError(f"{name} must be a positive number; got {value!r}")
    n = arr.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    width = max(1, int(round(rate * window_ms / 1000.0)))
    starts = np.arange(0, n, width)
    energy = np.add.reduceat(arr * arr, starts) / np.diff(np.append(starts, n))
    loudest = energy.max()
    floor = 10.0 ** (floor_db / 10.0)
    tiny = np.finfo(np.float64).tiny
    level_db = 10.0 * np.log10(np.maximum(energy, tiny))
    background_db = float(np.percentile(level_db, 10))
    margin = min(noise_margin_db, (level_db.max() - background_db) / 2.0)
    active = (
        (energy >= loudest * 10.0 ** (-threshold_db / 10.0))
        & (energy > floor)
        & (level_db > background_db + margin)
    )
    # fill short inactive runs between active runs
    max_gap = min_gap_ms / 1000.0 * rate
    idx = np.flatnonzero(active)
    if idx.size > 1:
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            if b - a > 1 and (starts[b] - starts[a + 1]) < max_gap:
                active[a + 1 : b] = True
    return np.repeat(active, np.diff(np.append(starts, n)))


def frame_labels(speech, config) -> np.ndarray:
    """Frame labels of the front end from sample labels.

    Frame ``t`` is speech (1.0) when at least half of its newest hop of samples,
    ``[frame_end(t) - hop, frame_end(t))``, is speech.

    Parameters
    ----------
    speech : array-like of bool, shape (n,)
        Sample-level labels.
    config : rwkv_ts.audio.FrontendConfig
        The front end's settings.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(config.n_frames(n),)``, values 0.0 or 1.0.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts.audio import FrontendConfig
    >>> cfg = FrontendConfig(sample_rate=8000)  # frame_len 200, hop 80
    >>> speech = np.zeros(600, dtype=bool)
    >>> speech[300:] = True
    >>> frame_labels(speech, cfg)  # frames end at 200, 280, 360, 440, 520, 600
    array([0., 0., 1., 1., 1., 1.], dtype=float32)
    """
    from rwkv_ts.audio.features import FrontendConfig

    if not isinstance(config, FrontendConfig):
        raise TypeError(f"config must be a FrontendConfig; got {type(config).__name__}")
    config.validate()
    labels = np.asarray(speech)
    if labels.ndim != 1:
        raise ValueError(f"speech must be 1-D (sample labels); got shape {labels.shape}")
    if labels.dtype != np.bool_:
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isin(labels, (0, 1))):
            raise ValueError("speech must hold booleans (or 0/1 values)")
        labels = labels.astype(bool)
    n_frames = config.n_frames(labels.size)
    hop = config.hop
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)
    ends = config.frame_len + hop * np.arange(n_frames)
    counts = np.concatenate([[0], np.cumsum(labels, dtype=np.int64)])
    starts = np.maximum(ends - hop, 0)
    inside = counts[ends] - counts[starts]
    return (2 * inside >= ends - starts).astype(np.float32)


# --------------------------------------------------------------------------- VAD streams


@dataclass
class VADExample:
    """One voice-activity stream.

    Attributes
    ----------
    audio : numpy.ndarray
        float32 ``(n,)``: the noisy mixture.
    sample_rate : int
        Samples per second.
    speech : numpy.ndarray
        bool ``(n,)``: active speech per sample.
    snr_db : float
        Signal-to-noise ratio of every placed clip: mean power of the clip's active speech over
        the mean power of the stream's noise segment, in dB.
    noise : str
        Name of the noise recording (file stem, e.g. ``"running_tap"``).
    clips : list of (int, int)
        ``(start, end)`` sample offsets of the placed clips.
    """

    audio: np.ndarray
    sample_rate: int
    speech: np.ndarray
    snr_db: float
    noise: str
    clips: list[tuple[int, int]] = field(default_factory=list)


def _speech_pool(split: str, data_home) -> list[list[str]]:
    # the clip paths of the split, per source (Speech Commands, FSDD); empty sources dropped
    clips, _ = load_speech_commands(data_home=data_home)
    fsdd = load_fsdd(data_home=data_home)
    pools = [
        clips.loc[clips["split"] == split, "path"].tolist(),
        fsdd.loc[fsdd["split"] == split, "path"].tolist(),
    ]
    return [p for p in pools if p]


def _vad_streams(
    split,
    n_streams,
    *,
    duration_s,
    snrs_db,
    sample_rate,
    random_state,
    data_home,
):
    """make_vad_streams, also returning the scaled clean speech and noise of every stream."""
    split = _check_split(split)
    n_streams = _check_count(n_streams, "n_streams")
    rate = _check_rate(sample_rate)
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive number; got {duration_s!r}")
    snrs = [float(s) for s in np.atleast_1d(np.asarray(snrs_db, dtype=np.float64))]
    if not snrs or not np.all(np.isfinite(snrs)):
        raise ValueError(f"snrs_db must be a non-empty sequence of finite numbers; got {snrs_db!r}")
    n = int(round(duration_s * rate))
    _, noise_paths = load_speech_commands(data_home=data_home)
    pools = _speech_pool(split, data_home)
    if not pools:
        raise ValueError(f"no speech clips in split {split!r}")
    rng = np.random.default_rng(random_state)
    lo_gap, hi_gap = (int(round(g * rate)) for g in VAD_GAP_S)
    examples, parts = [], []
    for i in range(n_streams):
        snr = snrs[i % len(snrs)]
        noise_path = noise_paths[int(rng.integers(len(noise_paths)))]
        part = _noise_part(str(noise_path), split, rate)
        start = int(rng.integers(part.size))
        noise = np.resize(np.roll(part, -start), n).astype(np.float64)  # loops a short part
        p_noise = float(np.mean(noise * noise)) if n else 0.0
        speech_track = np.zeros(n, dtype=np.float64)
        labels = np.zeros(n, dtype=bool)
        placed = []
        pos = int(rng.integers(0, hi_gap + 1))
        while True:
            pool = pools[int(rng.integers(len(pools)))]
            clip = _clip(pool[int(rng.integers(len(pool)))], rate)
            if pos + clip.size > n:
                break
            active = speech_activity(clip, rate)
            if active.any() and p_noise > 0:
                p_speech = float(np.mean(np.square(clip[active], dtype=np.float64)))
                gain = np.sqrt(p_noise * 10.0 ** (snr / 10.0) / p_speech)
                speech_track[pos : pos + clip.size] = gain * clip.astype(np.float64)
                labels[pos : pos + clip.size] = active
                placed.append((pos, pos + clip.size))
            pos += clip.size + int(rng.integers(lo_gap, hi_gap + 1))
        mixture = speech_track + noise
        peak = float(np.max(np.abs(mixture))) if n else 0.0
        if peak > 1.0:  # scale speech and noise together: the SNR stays what was asked
            scale = 1.0 / peak
            mixture *= scale
            speech_track *= scale
            noise *= scale
        examples.append(
            VADExample(
                audio=np.clip(mixture, -1.0, 1.0).astype(np.float32),
                sample_rate=rate,
                speech=labels,
                snr_db=snr,
                noise=Path(noise_path).stem,
                clips=placed,
            )
        )
        parts.append((speech_track, noise))
    return examples, parts


def make_vad_streams(
    split: str,
    n_streams: int,
    *,
    duration_s: float = 8.0,
    snrs_db: Sequence[float] = (-5, 0, 5, 10, 20),
    sample_rate: int = 16000,
    random_state=0,
    data_home: str | os.PathLike[str] | None = None,
) -> list[VADExample]:
    """Noisy speech streams with sample-level voice-activity labels.

    Every stream is a segment of one noise recording (chosen at random) taken from the split's
    time part (first 70 % of each recording for train, next 10 % for val, last 20 % for test; a
    part shorter than the stream is looped), into which speech clips of the split are placed
    one after the other, separated by noise-only gaps of 0.2-1.5 s (the first clip starts within
    1.5 s). A clip comes with equal probability from Speech Commands or FSDD (when the split
    has both), resampled to ``sample_rate``.

    Each clip is scaled so that the mean power of its active speech (see
    :func:`speech_activity`) is ``snr_db`` above the mean power of the stream's noise segment;
    stream ``i`` gets ``snrs_db[i % len(snrs_db)]``, so every SNR gets the same number of
    streams (up to one). Only the active speech inside a placed clip is labelled speech, not
    the silence around the word. When the mixture would exceed [-1, 1], speech and noise are
    scaled down together (the SNR is kept; nothing is clipped).

    Parameters
    ----------
    split : {"train", "val", "test"}
        Which clips and which noise part to use.
    n_streams : int
        Number of streams.
    duration_s : float, default 8.0
        Length of every stream in seconds.
    snrs_db : sequence of float, default (-5, 0, 5, 10, 20)
        The SNRs, cycled over the streams.
    sample_rate : int, default 16000
        Sample rate of the streams.
    random_state : int, numpy.random.Generator or None, default 0
        Seed of the placement, the clips, the noise and its offset (same seed, same streams).
    data_home : path, optional
        See :func:`rwkv_ts.datasets.get_data_home`.

    Returns
    -------
    list of VADExample

    Examples
    --------
    >>> streams = make_vad_streams("test", 2, data_home="../shared/datasets")  # doctest: +SKIP
    >>> [s.snr_db for s in streams], streams[0].audio.shape  # doctest: +SKIP
    ([-5.0, 0.0], (128000,))
    """
    examples, _ = _vad_streams(
        split,
        n_streams,
        duration_s=duration_s,
        snrs_db=snrs_db,
        sample_rate=sample_rate,
        random_state=random_state,
        data_home=data_home,
    )
    return examples


# --------------------------------------------------------------------------- digit utterances


@dataclass
class DigitUtterance:
    """A connected-digit utterance of one speaker.

    Attributes
    ----------
    audio : numpy.ndarray
        float32 ``(n,)``: the trimmed digit recordings joined with silent pauses.
    sample_rate : int
        Samples per second.
    digits : tuple of int
        The spoken digits, in order.
    transcript : str
        The digits separated by single spaces, e.g. ``"3 9 1"``.
    speaker : str
        The FSDD speaker.
    segments : list of (int, int)
        ``(start, end)`` sample offsets of every digit in ``audio`` (an addition to the fixed
        fields, useful for alignment checks).
    """

    audio: np.ndarray
    sample_rate: int
    digits: tuple[int, ...]
    transcript: str
    speaker: str
    segments: list[tuple[int, int]] = field(default_factory=list)


def _trimmed(path: str, rate: int) -> np.ndarray:
    clip = _clip(path, rate)
    active = np.flatnonzero(speech_activity(clip, rate))
    if active.size == 0:
        return clip
    return clip[active[0] : active[-1] + 1]


def make_digit_utterances(
    split: str,
    n: int,
    *,
    min_digits: int = 2,
    max_digits: int = 7,
    sample_rate: int = 8000,
    pause_s: tuple[float, float] = (0.05, 0.4),
    random_state=0,
    data_home: str | os.PathLike[str] | None = None,
) -> list[DigitUtterance]:
    """Connected-digit utterances made of FSDD recordings of one speaker.

    For every utterance: a speaker drawn at random; a length drawn uniformly from
    ``min_digits..max_digits``; digits drawn uniformly from 0-9; for each digit a random take of
    that speaker and digit in ``split``, with its leading and trailing silence trimmed (see
    :func:`speech_activity`); the recordings joined with silent pauses (zeros) of a length drawn
    uniformly from ``pause_s`` (none before the first or after the last digit).

    Parameters
    ----------
    split : {"train", "val", "test"}
        FSDD takes 10-49, 5-9 or 0-4.
    n : int
        Number of utterances.
    min_digits, max_digits : int, default 2 and 7
        Range of the number of digits (inclusive).
    sample_rate : int, default 8000
        Sample rate of the audio (FSDD is recorded at 8 kHz).
    pause_s : (float, float), default (0.05, 0.4)
        Range of the pauses between digits, in seconds.
    random_state : int, numpy.random.Generator or None, default 0
        Seed (same seed, same utterances).
    data_home : path, optional
        See :func:`rwkv_ts.datasets.get_data_home`.

    Returns
    -------
    list of DigitUtterance

    Examples
    --------
    >>> utts = make_digit_utterances("test", 3, data_home="../shared/datasets")  # doctest: +SKIP
    >>> utts[0].transcript == " ".join(map(str, utts[0].digits))  # doctest: +SKIP
    True
    """
    split = _check_split(split)
    n = _check_count(n, "n")
    rate = _check_rate(sample_rate)
    for name, value in (("min_digits", min_digits), ("max_digits", max_digits)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if max_digits < min_digits:
        raise ValueError(f"max_digits ({max_digits}) must be >= min_digits ({min_digits})")
    try:
        lo_pause, hi_pause = (float(v) for v in pause_s)
    except (TypeError, ValueError):
        raise ValueError(f"pause_s must be a pair of numbers (seconds); got {pause_s!r}") from None
    if not (np.isfinite(lo_pause) and np.isfinite(hi_pause) and 0 <= lo_pause <= hi_pause):
        raise ValueError(f"pause_s must satisfy 0 <= low <= high; got {pause_s!r}")
    fsdd = load_fsdd(data_home=data_home)
    fsdd = fsdd[fsdd["split"] == split]
    takes = {key: grp["path"].tolist() for key, grp in fsdd.groupby(["speaker", "digit"])}
    speakers = sorted(fsdd["speaker"].unique())
    if not speakers:
        raise ValueError(f"no FSDD recordings in split {split!r}")
    rng = np.random.default_rng(random_state)
    out = []
    for _ in range(n):
        speaker = speakers[int(rng.integers(len(speakers)))]
        length = int(rng.integers(min_digits, max_digits + 1))
        available = [d for d in range(10) if (speaker, d) in takes]
        digits = tuple(available[int(i)] for i in rng.integers(len(available), size=length))
        pieces, segments, pos = [], [], 0
        for j, digit in enumerate(digits):
            if j:
                pause = int(round(rng.uniform(lo_pause, hi_pause) * rate))
                pieces.append(np.zeros(pause, dtype=np.float32))
                pos += pause
            paths = takes[(speaker, digit)]
            clip = _trimmed(paths[int(rng.integers(len(paths)))], rate)
            pieces.append(clip)
            segments.append((pos, pos + clip.size))
            pos += clip.size
        out.append(
            DigitUtterance(
                audio=np.concatenate(pieces).astype(np.float32),
                sample_rate=rate,
                digits=digits,
                transcript=" ".join(str(d) for d in digits),
                speaker=str(speaker),
                segments=segments,
            )
        )
    return out
