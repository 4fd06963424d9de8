"""Speech segments from per-frame speech probabilities: hysteresis, minimum durations, hangover
and padding, computed incrementally.

:class:`SpeechSegmenter` is a small state machine fed with the probabilities of consecutive
frames; it yields ``(start_s, end_s)`` segments as they close. The offline answer
(:func:`segments_from_probabilities`) is the same machine run over all frames and then flushed,
so a stream that feeds the machine frame by frame gives exactly the offline segments, whatever
the chunking.

The rules, in frames of ``hop`` samples:

* silence -> speech when a frame's probability reaches ``onset``;
* while in speech, any frame at or above ``offset`` (``offset <= onset``: hysteresis) is speech;
* speech ends after ``min_silence_ms`` of consecutive frames below ``offset`` (the hangover); the
  segment ends after its last speech frame;
* segments shorter than ``min_speech_ms`` are dropped;
* kept segments are widened by ``speech_pad_ms`` on both sides, clipped to the audio seen so far
  (and to the previous segment's end, so that segments never overlap).

Frame ``t`` stands for its newest hop of samples, ``[first + t * hop, first + (t + 1) * hop)``
with ``first = frame_len - hop`` (the samples it adds to what frame ``t - 1`` saw); all times are
sample counts divided by the sample rate, so offline and streaming times are bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SegmenterConfig", "SpeechSegmenter", "segments_from_probabilities"]


@dataclass(frozen=True)
class SegmenterConfig:
    """Settings of :class:`SpeechSegmenter`.

    Parameters
    ----------
    sample_rate
        Samples per second of the audio.
    hop
        Samples between consecutive frames.
    first
        Sample at which frame 0's own span starts (``frame_len - hop`` for the log-mel front end).
    onset, offset
        Probability thresholds: speech starts at ``>= onset`` and continues while ``>= offset``.
    min_speech_ms, min_silence_ms, speech_pad_ms
        Shortest kept segment, the hangover (silence needed to end a segment) and the padding
        added to both ends of a kept segment, in milliseconds.
    """

    sample_rate: int = 16000
    hop: int = 160
    first: int = 240
    onset: float = 0.5
    offset: float = 0.35
    min_speech_ms: float = 100.0
    min_silence_ms: float = 100.0
    speech_pad_ms: float = 30.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "hop"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.first, int | np.integer) or self.first < 0:
            raise ValueError(f"first must be a non-negative integer, got {self.first!r}")
        if not 0.0 < self.onset <= 1.0:
            raise ValueError(f"onset must lie in (0, 1], got {self.onset!r}")
        if not 0.0 < self.offset <= self.onset:
            raise ValueError(
                f"offset must lie in (0, onset={self.onset}] (hysteresis), got {self.offset!r}"
            )
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def _frames(self, ms: float) -> int:
        return int(round(ms * self.sample_rate / 1000.0 / self.hop))

    @property
    def min_speech_frames(self) -> int:
        return max(self._frames(self.min_speech_ms), 1)

    @property
    def min_silence_frames(self) -> int:
        return max(self._frames(self.min_silence_ms), 1)

    @property
    def pad_samples(self) -> int:
        return int(round(self.speech_pad_ms * self.sample_rate / 1000.0))

    def to_dict(self) -> dict:
        return asdict(self)


class SpeechSegmenter:
    """Turn per-frame speech probabilities into speech segments, incrementally.

    Parameters
    ----------
    config
        The thresholds and durations, see :class:`SegmenterConfig`.

    Examples
    --------
    >>> import numpy as np
    >>> seg = SpeechSegmenter(SegmenterConfig(sample_rate=100, hop=1, first=0, min_speech_ms=30,
    ...                                       min_silence_ms=20, speech_pad_ms=0))
    >>> p = np.array([0, 0.9, 0.9, 0.4, 0.9, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1])
    >>> seg.push(p[:6]), seg.push(p[6:])   # speech from frame 1 to 4; frame 8 is too short
    ([], [(0.01, 0.05)])
    >>> seg.flush(n_samples=12)
    []
    """

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config if config is not None else SegmenterConfig()
        self.reset()

    def reset(self) -> None:
        """Forget everything: frame 0 comes next."""
        self._n_frames = 0  # frames seen
        self._in_speech = False
        self._start = 0  # first frame of the open segment
        self._last = -1  # last speech frame of the open segment
        self._prev_end = 0  # end sample of the last emitted segment (no overlap)

    # ------------------------------------------------------------------ state
    @property
    def n_frames(self) -> int:
        """Frames pushed so far."""
        return self._n_frames

    def get_state(self) -> dict[str, np.ndarray]:
        """The machine's state as a few integers (restore with :meth:`set_state`)."""
        return {
            "segmenter": np.array(
                [self._n_frames, int(self._in_speech), self._start, self._last, self._prev_end],
                dtype=np.int64,
            )
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state of :meth:`get_state`."""
        values = np.asarray(state["segmenter"])
        if values.shape != (5,):
            raise ValueError(f"segmenter state must have shape (5,), got {values.shape}")
        n, speech, start, last, prev_end = (int(v) for v in values)
        self._n_frames, self._in_speech = n, bool(speech)
        self._start, self._last, self._prev_end = start, last, prev_end

    # ------------------------------------------------------------------ times
    def _frame_start(self, t: int) -> int:
        return self.config.first + t * self.config.hop

    def _segment(self, start: int, last: int, limit: int) -> tuple[float, float]:
        """Padded, clipped segment of frames ``start..last`` (inclusive) in seconds; ``limit`` is
        the number of samples known when it closes."""
        cfg = self.config
        lo = max(self._frame_start(start) - cfg.pad_samples, self._prev_end, 0)
        hi = min(self._frame_start(last + 1) + cfg.pad_samples, limit)
        self._prev_end = hi
        return lo / cfg.sample_rate, hi / cfg.sample_rate

    @property
    def open_segment(self) -> tuple[float, float] | None:
        """The segment in progress as ``(start_s, end_s so far)`` (unpadded end, before the
        minimum-duration check), or ``None`` in silence."""
        if not self._in_speech:
            return None
        cfg = self.config
        lo = max(self._frame_start(self._start) - cfg.pad_samples, self._prev_end, 0)
        return lo / cfg.sample_rate, self._frame_start(self._last + 1) / cfg.sample_rate

    # ------------------------------------------------------------------ updates
    def push(self, probabilities: Iterable[float]) -> list[tuple[float, float]]:
        """Feed the probabilities of the next frames; return the segments that closed."""
        cfg = self.config
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if p.size and not np.isfinite(p).all():
            raise ValueError("probabilities contain NaN or infinite values")
        closed: list[tuple[float, float]] = []
        min_silence = cfg.min_silence_frames
        min_speech = cfg.min_speech_frames
        for value in p.tolist():
            t = self._n_frames
            self._n_frames += 1
            if not self._in_speech:
                if value >= cfg.onset:
                    self._in_speech, self._start, self._last = True, t, t
                continue
            if value >= cfg.offset:
                self._last = t
            elif t - self._last >= min_silence:
                self._in_speech = False
                if self._last - self._start + 1 >= min_speech:
                    # the samples known now: up to the end of frame t
                    closed.append(self._segment(self._start, self._last, self._frame_start(t + 1)))
        return closed

    def flush(self, n_samples: int | None = None) -> list[tuple[float, float]]:
        """End the audio: close an open segment (clipped to ``n_samples``, default the end of the
        last frame) and return it (an empty list when none was open or it was too short)."""
        limit = self._frame_start(self._n_frames) if n_samples is None else int(n_samples)
        closed: list[tuple[float, float]] = []
        if self._in_speech:
            self._in_speech = False
            if self._last - self._start + 1 >= self.config.min_speech_frames:
                closed.append(self._segment(self._start, self._last, limit))
        return closed


def segments_from_probabilities(
    probabilities: np.ndarray, config: SegmenterConfig, n_samples: int | None = None
) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s), ...]`` of a whole recording's frame probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> cfg = SegmenterConfig(sample_rate=100, hop=1, first=0, min_speech_ms=20,
    ...                       min_silence_ms=20, speech_pad_ms=10)
    >>> segments_from_probabilities(np.array([0, 0, 0.8, 0.8, 0.8, 0, 0, 0, 0]), cfg)
    [(0.01, 0.06)]
    """
    machine = SpeechSegmenter(config)
    return machine.push(probabilities) + machine.flush(n_samples)
