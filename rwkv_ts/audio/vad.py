"""``RWKVVoiceActivityDetector``: frame-level voice activity detection with a small causal RWKV
encoder over log-mel features, offline and streaming with the same numbers.

Audio is turned into log-mel frames (25 ms windows every 10 ms, :mod:`rwkv_ts.audio.features`),
standardised per mel band with training statistics, and read by
:class:`~rwkv_ts.nn.sequence.RWKVSequenceModel` with one token per frame (``patch_len=1``); a
linear head gives each frame's speech logit. Training minimises the per-frame binary
cross-entropy on random fixed-length crops of labelled streams.

Every part is causal, so :meth:`RWKVVoiceActivityDetector.stream` takes raw audio in chunks of any
size and returns the probabilities of the frames each chunk completes: concatenated, they equal
:meth:`RWKVVoiceActivityDetector.predict_proba` of the whole recording (float32 rounding), and the
speech segments (hysteresis, hangover and padding of :mod:`rwkv_ts.audio.segments`) are identical.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from rwkv_ts.audio._state import fingerprint, state_from_bytes, state_to_bytes
from rwkv_ts.audio._stepper import TokenStepper
from rwkv_ts.audio.features import FrontendConfig, FrontendStream, LogMelFrontend
from rwkv_ts.audio.io import check_samples, model_signal
from rwkv_ts.audio.segments import SegmenterConfig, SpeechSegmenter, segments_from_probabilities
from rwkv_ts.datasets._audio import frame_labels
from rwkv_ts.nn.state import flatten_state, restore_state

__all__ = ["RWKVVoiceActivityDetector", "VADResult", "VADStream"]

#: format tag of saved detectors (see :mod:`rwkv_ts.persistence`)
VAD_FORMAT = "rwkv-ts/vad"
#: format tag of saved stream states
VAD_STATE_FORMAT = "rwkv-ts/vad-state"
# frames per forward pass in predict_proba (bounds memory; the numbers barely depend on it)
_OFFLINE_CHUNK = 4096
# a push that completes at most this many frames runs them through the numpy frame stepper
_STEP_MAX = 4


# ---------------------------------------------------------------------- input checks
# ---------------------------------------------------------------------- model pieces
class _MaskedBCE:
    """Per-frame binary cross-entropy with logits; NaN targets are padding."""

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        mask = torch.isfinite(target)
        loss = F.binary_cross_entropy_with_logits(pred, torch.nan_to_num(target), reduction="none")
        total = torch.where(mask, loss, torch.zeros_like(loss)).sum()
        return total if reduction == "sum" else total / mask.sum().clamp(min=1)

    @staticmethod
    def n_targets(target: torch.Tensor) -> int:
        return int(torch.isfinite(target).sum())


class _FrameLogits(nn.Module):
    """The speech logit of every frame, (B, T), of standardised features (B, T, n_mels)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.token_outputs(x)[..., 0]


def _zero_state(model: nn.Module) -> dict:
    return {str(i): block.init_state(1) for i, block in enumerate(model.blocks)}


def _scan(model: nn.Module, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """Speech probabilities (T,) of standardised frames ``x`` (T, n_mels), run from the blocks'
    ``state``; returns the new state. With ``patch_len=1`` and ``pooling="last"`` this is
    ``token_outputs`` continued from a state (dropout is off in eval mode)."""
    h = model.embed.proj(x[None])
    new = {}
    for i, block in enumerate(model.blocks):
        h, new[str(i)] = block.scan(h, state[str(i)])
    logits = model.head(model.ln_out(h))[0, :, 0]
    return torch.sigmoid(logits), new


# ---------------------------------------------------------------------- training data
class _CropDataset(Dataset):
    """Random fixed-length crops of the training streams, drawn afresh on every access (so every
    epoch sees new crops); streams shorter than a crop are padded (NaN targets).

    The crops are drawn from torch's global generator, which the estimator seeds and a training
    checkpoint saves, so a resumed fit draws the crops an uninterrupted one would."""

    def __init__(self, feats: list[np.ndarray], targets: list[np.ndarray], crop: int, n_items: int):
        self.feats = feats
        self.targets = targets
        self.crop = crop
        self.n_items = n_items
        self.n_mels = feats[0].shape[1]

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int):
        k = i % len(self.feats)
        f, y = self.feats[k], self.targets[k]
        x = np.zeros((self.crop, self.n_mels), dtype=np.float32)
        t = np.full(self.crop, np.nan, dtype=np.float32)
        if len(f) <= self.crop:
            x[: len(f)], t[: len(f)] = f, y
        else:
            start = int(torch.randint(0, len(f) - self.crop + 1, ()))
            x[:], t[:] = f[start : start + self.crop], y[start : start + self.crop]
        return torch.from_numpy(x), torch.from_numpy(t)


class _WholeDataset(Dataset):
    """Whole streams, right-padded to the longest (NaN targets)."""

    def __init__(self, feats: list[np.ndarray], targets: list[np.ndarray]):
        length = max(len(f) for f in feats)
        n_mels = feats[0].shape[1]
        self.x = torch.zeros(len(feats), length, n_mels)
        self.y = torch.full((len(feats), length), float("nan"))
        for i, (f, t) in enumerate(zip(feats, targets, strict=True)):
            self.x[i, : len(f)] = torch.from_numpy(f)
            self.y[i, : len(t)] = torch.from_numpy(t)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


# ---------------------------------------------------------------------- the estimator
class RWKVVoiceActivityDetector(BaseEstimator):
    """Voice activity detection: a speech probability for every 10-ms frame of audio, and speech
    segments, offline or streaming.

    Parameters
    ----------
    sample_rate : int, default 16000
        Sample rate of the audio it is trained on and applied to.
    n_mels, frame_ms, hop_ms : front-end settings, default 40, 25.0, 10.0
        Log-mel bands, window length and hop (one frame, one model token, per hop).
    d_model, n_layers, head_size : int, default 32, 2, 16
        Width, number of RWKV blocks and WKV head size.
    ffn_mult : float, default 2.0
    shift_distances : tuple of int, default (1, 2, 4)
        Frame distances of the multi-scale token shift.
    tcn_dilations : tuple of int, default ()
        Dilations of the causal TCN branch; off by default (cheaper streaming).
    decay : {"data", "static"}, default "data"
    lora_rank : int, default 8
        Rank of the data-dependent mixing and decay projections.
    dropout : float, default 0.1
    crop_s : float, default 3.0
        Length of the random training crops in seconds.
    crops_per_epoch : float, default 2.0
        Crops drawn per epoch, as a multiple of the training audio's length over ``crop_s``.
    max_epochs, batch_size, learning_rate, weight_decay, patience : training settings
        AdamW, warm-up and cosine decay; early stopping on the validation loss (best weights).
    ema_epochs : float or None, default None
        Keep an exponential moving average of the weights with a time constant of this many
        epochs (:class:`rwkv_ts.training.AveragedWeights`): validation, early stopping and the
        fitted model use the averaged weights (the final average without a validation
        part); training goes on from the live weights.
        The average smooths out the noise of the last steps, which helps some problems and not
        others (on the ETT validation parts it did not, see
        ``benchmarks/results/ett_validation_sweep_round9.md``): compare it on your validation
        data. ``None`` (the default) keeps the weights as trained.
    val_fraction : float, default 0.1
        Share of the training streams held out for early stopping when ``fit`` gets no
        ``validation``; 0 trains ``max_epochs`` epochs.
    onset, offset : float, default 0.5, 0.35
        Speech starts at a probability >= ``onset`` and continues while >= ``offset``;
        :meth:`predict` thresholds at ``onset``.
    min_speech_ms, min_silence_ms, speech_pad_ms : float, default 100, 100, 30
        Shortest segment kept, silence needed to end a segment (hangover), and padding added to
        both ends of a segment.
    random_state : int or None, default None
    accelerator, devices : Lightning settings, default "auto"
    verbose : bool, default False
        Show a progress bar while training.
    log_dir : str or None, default None
    on_nonfinite_loss : {"raise", "skip"}, default "raise"
        What a NaN or infinite training loss (or gradient) does: ``"raise"`` stops training with
        :class:`rwkv_ts.training.TrainingDivergedError` naming the epoch and step; ``"skip"``
        leaves that batch's optimiser step out with a ``RuntimeWarning`` naming them.
    checkpoint_dir : str or None, default None
        A folder for a training checkpoint written at the end of every epoch; a ``fit`` killed
        part-way and run again with the same folder, data and parameters resumes from the last
        complete epoch to the model of an uninterrupted fit (bit for bit on the CPU with a fixed
        ``random_state``), as for :class:`rwkv_ts.RWKVForecaster`.

    Attributes
    ----------
    model_ : RWKVSequenceModel
    config_ : SequenceConfig
    frontend_config_ : FrontendConfig
    scale_mean_, scale_std_ : ndarray of shape (n_mels,)
        Per-band standardisation fitted on the training frames.
    history_ : list of dict
    best_epoch_, n_epochs_ : int or None
    n_train_streams_, n_val_streams_ : int
    n_parameters_ : int
        Model parameters.
    state_size_ : int
        Floats in the model's recurrent state of one stream.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sr = 16000
    >>> def example(seed):
    ...     r = np.random.default_rng(seed)
    ...     audio = 0.01 * r.normal(size=2 * sr)
    ...     speech = np.zeros(2 * sr, dtype=bool)
    ...     speech[8000:20000] = True
    ...     t = np.arange(12000) / sr
    ...     audio[8000:20000] += 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)
    ...     return audio.astype(np.float32), speech
    >>> audios, labels = zip(*[example(s) for s in range(4)])
    >>> vad = RWKVVoiceActivityDetector(d_model=16, head_size=8, n_layers=1, max_epochs=2,
    ...                                 crop_s=1.0, val_fraction=0, random_state=0)
    >>> vad = vad.fit(list(audios), list(labels))
    >>> proba = vad.predict_proba(audios[0])
    >>> proba.shape
    (198,)
    >>> stream = vad.stream()
    >>> parts = [stream.push(audios[0][i : i + 512]).probabilities for i in range(0, 2 * sr, 512)]
    >>> bool(np.allclose(np.concatenate(parts), proba, atol=1e-5))
    True
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 40,
        frame_ms: float = 25.0,
        hop_ms: float = 10.0,
        d_model: int = 32,
        n_layers: int = 2,
        head_size: int = 16,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (),
        decay: str = "data",
        lora_rank: int = 8,
        dropout: float = 0.1,
        crop_s: float = 3.0,
        crops_per_epoch: float = 2.0,
        max_epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-2,
        patience: int = 5,
        ema_epochs: float | None = None,
        val_fraction: float = 0.1,
        onset: float = 0.5,
        offset: float = 0.35,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 100.0,
        speech_pad_ms: float = 30.0,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = False,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.frame_ms = frame_ms
        self.hop_ms = hop_ms
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_size = head_size
        self.ffn_mult = ffn_mult
        self.shift_distances = shift_distances
        self.tcn_dilations = tcn_dilations
        self.decay = decay
        self.lora_rank = lora_rank
        self.dropout = dropout
        self.crop_s = crop_s
        self.crops_per_epoch = crops_per_epoch
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.ema_epochs = ema_epochs
        self.val_fraction = val_fraction
        self.onset = onset
        self.offset = offset
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.speech_pad_ms = speech_pad_ms
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ configuration
    def _frontend_config(self) -> FrontendConfig:
        return FrontendConfig(
            sample_rate=self.sample_rate,
            frame_ms=self.frame_ms,
            hop_ms=self.hop_ms,
            n_mels=self.n_mels,
        ).validate()

    def _segmenter_config(self) -> SegmenterConfig:
        cfg = getattr(self, "frontend_config_", None) or self._frontend_config()
        return SegmenterConfig(
            sample_rate=cfg.sample_rate,
            hop=cfg.hop,
            first=max(cfg.frame_len - cfg.hop, 0),
            onset=float(self.onset),
            offset=float(self.offset),
            min_speech_ms=float(self.min_speech_ms),
            min_silence_ms=float(self.min_silence_ms),
            speech_pad_ms=float(self.speech_pad_ms),
        )

    def _check_params(self) -> None:
        from rwkv_ts.training import check_training_settings

        check_training_settings(self.on_nonfinite_loss, self.checkpoint_dir, self.ema_epochs)
        for name in ("max_epochs", "batch_size", "patience", "d_model", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (self.crop_s > 0 and self.crops_per_epoch > 0):
            raise ValueError(
                f"crop_s and crops_per_epoch must be > 0, got {self.crop_s!r}, "
                f"{self.crops_per_epoch!r}"
            )
        self._segmenter_config()  # checks the thresholds and durations

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(audios, labels) first"
            )

    # ------------------------------------------------------------------ data
    def _examples(
        self, audios: Any, labels: Any, what: str
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Checked float32 signals and frame targets of ``audios`` / ``labels``."""
        if isinstance(audios, np.ndarray) and audios.ndim == 1:
            raise ValueError(f"{what} must be a list of 1-D signals, got one 1-D array")
        audios = list(audios) if audios is not None else []
        if not audios:
            raise ValueError(f"{what} is empty: give at least one labelled stream")
        if labels is None:
            if not all(hasattr(a, "speech") and hasattr(a, "audio") for a in audios):
                raise ValueError(
                    f"labels is None, so {what} must be VADExample items (with .audio and "
                    ".speech); give labels for plain arrays"
                )
            labels = [a.speech for a in audios]
            for i, a in enumerate(audios):
                rate = getattr(a, "sample_rate", self.sample_rate)
                if rate != self.sample_rate:
                    raise ValueError(
                        f"{what}[{i}] has sample_rate {rate}; this detector uses "
                        f"sample_rate={self.sample_rate} (resample it first)"
                    )
        else:
            labels = list(labels)
            if len(labels) != len(audios):
                raise ValueError(
                    f"{what} has {len(audios)} streams but labels has {len(labels)} items"
                )
        cfg = self._frontend_config()
        signals, targets = [], []
        for i, (a, y) in enumerate(zip(audios, labels, strict=True)):
            x = model_signal(a, self.sample_rate, f"{what}[{i}]")
            n_frames = cfg.n_frames(x.size)
            if n_frames == 0:
                raise ValueError(
                    f"{what}[{i}] has {x.size} samples, fewer than one frame ({cfg.frame_len})"
                )
            y = np.asarray(y)
            if y.ndim != 1:
                raise ValueError(f"labels[{i}] must be 1-D, got shape {y.shape}")
            if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
                raise TypeError(f"labels[{i}] must be boolean or 0/1, got dtype {y.dtype}")
            yf = y.astype(np.float64)
            if not np.isin(yf, (0.0, 1.0)).all():
                raise ValueError(f"labels[{i}] must hold only 0/1 (or booleans)")
            if y.size == x.size:
                t = frame_labels(yf.astype(bool), cfg)
            elif y.size == n_frames:
                t = yf.astype(np.float32)
            else:
                raise ValueError(
                    f"labels[{i}] has {y.size} values; expected one per sample ({x.size}) or "
                    f"one per frame ({n_frames}) of {what}[{i}]"
                )
            signals.append(x)
            targets.append(t)
        return signals, targets

    def _features(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        frontend = LogMelFrontend(self._frontend_config())
        return [frontend.transform(x) for x in signals]

    def _standardise(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.scale_mean_) / self.scale_std_).astype(np.float32)

    # ------------------------------------------------------------------ training
    def fit(self, audios: Any, labels: Any = None, *, validation: Any = None):
        """Train on labelled streams.

        Parameters
        ----------
        audios : list of 1-D arrays, or list of VADExample
            Mono signals at ``sample_rate`` (each at least one frame long).
        labels : list of 1-D arrays, optional
            Per stream, speech labels (bool or 0/1) per sample (same length as the signal) or
            per frame (``n_frames`` long). ``None`` when ``audios`` are
            :class:`~rwkv_ts.datasets.VADExample` items (their ``speech``).
        validation : list of VADExample, or (audios, labels), optional
            Streams for early stopping; by default ``val_fraction`` of the training streams.

        Returns
        -------
        self
        """
        from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig
        from rwkv_ts.training import options_from, train_model

        self._check_params()
        signals, targets = self._examples(audios, labels, "audios")
        every = np.concatenate(targets)
        if np.unique(every).size < 2:
            raise ValueError(
                f"labels hold a single class ({'speech' if every[0] else 'no speech'}) over all "
                "streams; a detector needs frames of both"
            )
        rng = np.random.default_rng(self.random_state)
        if validation is not None:
            if isinstance(validation, tuple) and len(validation) == 2:
                val_signals, val_targets = self._examples(*validation, "validation")
            else:
                val_signals, val_targets = self._examples(validation, None, "validation")
            train_idx = np.arange(len(signals))
        elif self.val_fraction > 0 and len(signals) >= 4:
            n_val = min(max(int(round(self.val_fraction * len(signals))), 1), len(signals) - 1)
            order = rng.permutation(len(signals))
            train_idx = np.sort(order[n_val:])
            val_signals = [signals[i] for i in np.sort(order[:n_val])]
            val_targets = [targets[i] for i in np.sort(order[:n_val])]
        else:
            train_idx = np.arange(len(signals))
            val_signals, val_targets = [], []
        self.frontend_config_ = self._frontend_config()
        train_feats = self._features([signals[i] for i in train_idx])
        train_targets = [targets[i] for i in train_idx]
        stacked = np.concatenate(train_feats).astype(np.float64)
        std = stacked.std(axis=0)
        self.scale_mean_ = stacked.mean(axis=0)
        self.scale_std_ = np.where(std > 1e-12, std, 1.0)
        train_feats = [self._standardise(f) for f in train_feats]
        val_feats = [self._standardise(f) for f in self._features(val_signals)]

        cfg = self.frontend_config_
        crop = max(int(round(self.crop_s * 1000.0 / self.hop_ms)), 1)
        n_frames = sum(len(f) for f in train_feats)
        n_items = max(int(math.ceil(self.crops_per_epoch * n_frames / crop)), len(train_feats))
        seed = self.random_state if self.random_state is not None else int(rng.integers(2**31))
        train_data = _CropDataset(train_feats, train_targets, crop, n_items)
        val_data = _WholeDataset(val_feats, val_targets) if val_feats else None
        config = SequenceConfig(
            n_channels=cfg.n_mels,
            n_outputs=1,
            patch_len=1,
            stride=1,
            d_model=self.d_model,
            n_layers=self.n_layers,
            head_size=self.head_size,
            ffn_mult=self.ffn_mult,
            shift_distances=tuple(self.shift_distances),
            decay=self.decay,
            lora_rank=self.lora_rank,
            tcn_dilations=tuple(self.tcn_dilations),
            norm="none",
            pooling="last",
            dropout=self.dropout,
        )
        tag = {}
        if self.checkpoint_dir is not None:
            from rwkv_ts._checkpoint import estimator_tag

            tag = estimator_tag(self, train_feats, train_targets, val_feats, val_targets, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = RWKVSequenceModel(config)
            result = train_model(
                _FrameLogits(model),
                train_data,
                val_data,
                options_from(self, random_state=seed, loss=_MaskedBCE(), checkpoint_tag=tag),
            )
        self.model_ = model.to("cpu").eval()
        self.config_ = config
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = result.n_epochs
        self.n_train_streams_ = len(train_feats)
        self.n_val_streams_ = len(val_feats)
        return self

    # ------------------------------------------------------------------ inference
    def predict_proba(self, audio: Any) -> np.ndarray:
        """Speech probability of every frame, float32 ``(n_frames,)``, of ``audio``: a 1-D float
        array at the detector's ``sample_rate``, a WAV file path, or a ``VADExample``.

        Frame ``t`` covers samples ``[t * hop, t * hop + frame_len)`` and its probability depends
        on no later sample; ``(0,)`` when the audio is shorter than one frame.
        """
        self._check_fitted()
        x = model_signal(audio, self.sample_rate, "audio")
        feats = self._standardise(LogMelFrontend(self.frontend_config_).transform(x))
        model = self.model_.to("cpu").eval()
        state = _zero_state(model)
        out = []
        with torch.inference_mode():
            for start in range(0, len(feats), _OFFLINE_CHUNK):
                chunk = torch.from_numpy(feats[start : start + _OFFLINE_CHUNK])
                p, state = _scan(model, chunk, state)
                out.append(p.numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict(self, audio: Any) -> np.ndarray:
        """0/1 speech decision of every frame (``predict_proba >= onset``), int8."""
        return (self.predict_proba(audio) >= self.onset).astype(np.int8)

    def predict_segments(self, audio: Any) -> list[tuple[float, float]]:
        """Speech segments ``[(start_s, end_s), ...]`` with the hysteresis, hangover and padding
        settings (see :mod:`rwkv_ts.audio.segments`)."""
        proba = self.predict_proba(audio)
        n = int(np.asarray(getattr(audio, "audio", audio)).shape[0])
        return segments_from_probabilities(proba, self._segmenter_config(), n_samples=n)

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Time (s) at which each of the first ``n_frames`` frames is known: its last sample's
        end, ``(t * hop + frame_len) / sample_rate``."""
        cfg = getattr(self, "frontend_config_", None) or self._frontend_config()
        return (np.arange(n_frames) * cfg.hop + cfg.frame_len) / cfg.sample_rate

    def stream(self) -> VADStream:
        """A stream taking raw audio chunks of any size; see :class:`VADStream`."""
        self._check_fitted()
        return VADStream(self)

    @property
    def n_parameters_(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())

    @property
    def state_size_(self) -> int:
        """Floats in the model's recurrent state (per stream; the front end adds fewer than
        ``frame_len`` buffered samples)."""
        self._check_fitted()
        return sum(t.numel() for t in flatten_state(_zero_state(self.model_)).values())

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> Path:
        """Save to one safetensors file with a JSON header (no pickle); load with
        :func:`rwkv_ts.load`."""
        from rwkv_ts.persistence import save_scaled_model

        self._check_fitted()
        header = {
            "frontend": self.frontend_config_.to_dict(),
            "n_train_streams": self.n_train_streams_,
            "n_val_streams": self.n_val_streams_,
        }
        return save_scaled_model(self, path, VAD_FORMAT, header)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _load_detector(header: dict, tensors: dict[str, torch.Tensor], path: Path):
    """Rebuild a saved detector (called by :func:`rwkv_ts.load` for the ``rwkv-ts/vad`` tag)."""
    from rwkv_ts.persistence import ModelFileError, load_scaled_model

    est = load_scaled_model(RWKVVoiceActivityDetector, header, tensors, path)
    try:
        frontend = FrontendConfig.from_dict(header["frontend"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} is incomplete or inconsistent: {exc!r}") from None
    if frontend.n_mels != est.config_.n_channels:
        raise ModelFileError(
            f"{path}: a model of {est.config_.n_channels} inputs does not fit "
            f"{frontend.n_mels} mel bands"
        )
    est.frontend_config_ = frontend
    est.n_train_streams_ = header.get("n_train_streams")
    est.n_val_streams_ = header.get("n_val_streams")
    return est


# ---------------------------------------------------------------------- streaming
@dataclass
class VADResult:
    """What one :meth:`VADStream.push` (or :meth:`VADStream.flush`) produced.

    Attributes
    ----------
    probabilities : ndarray, float32 (k,)
        Speech probabilities of the frames completed by this chunk.
    frames : ndarray, int64 (k,)
        Their frame indices since the start of the stream.
    times : ndarray, float64 (k,)
        When each frame is known: ``(t * hop + frame_len) / sample_rate`` seconds.
    segments : list of (start_s, end_s)
        Speech segments that closed with this chunk.
    open_segment : (start_s, end_s so far) or None
        The segment in progress after this chunk.
    """

    probabilities: np.ndarray
    frames: np.ndarray
    times: np.ndarray
    segments: list[tuple[float, float]] = field(default_factory=list)
    open_segment: tuple[float, float] | None = None


def _fingerprint(det: RWKVVoiceActivityDetector) -> str:
    return fingerprint(det, det.frontend_config_.to_dict(), det._segmenter_config().to_dict())


class VADStream:
    """Voice activity detection on audio as it arrives, in chunks of any size.

    Get one with ``detector.stream()``. Each :meth:`push` returns the probabilities of the frames
    the chunk completes and the segments that closed; :meth:`flush` ends the audio (closing an
    open segment as :meth:`RWKVVoiceActivityDetector.predict_segments` does at the end of a
    recording). Over any chunking, the concatenated probabilities equal ``predict_proba`` of the
    whole audio (float32 rounding) and the segments equal ``predict_segments``.

    The state (the front end's pending samples, each block's token-shift buffers and WKV state,
    the segmenter's counters) is bounded; :meth:`get_state` / :meth:`set_state` and
    :meth:`save_state` / :meth:`load_state` (bytes) restore it exactly.

    A chunk that completes a few frames (10 or 32 ms of audio) runs them one at a time through a
    numpy copy of the recurrent form; a longer chunk runs its frames in one parallel pass from the
    state. Both read and write the same state and agree to float32 rounding.
    """

    def __init__(self, detector: RWKVVoiceActivityDetector) -> None:
        detector._check_fitted()
        self._det = detector
        self._model = detector.model_.to("cpu").eval()
        self._frontend = FrontendStream(LogMelFrontend(detector.frontend_config_))
        self._segmenter = SpeechSegmenter(detector._segmenter_config())
        self._stepper = TokenStepper(self._model)
        self.reset()

    def reset(self) -> VADStream:
        """Start a new recording; return ``self``."""
        self._frontend.reset()
        self._segmenter.reset()
        self._state = _zero_state(self._model)
        self._segments: list[tuple[float, float]] = []
        self._closed = False
        return self

    # ------------------------------------------------------------------ properties
    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return self._frontend.n_samples

    @property
    def n_frames(self) -> int:
        """Frames completed so far."""
        return self._frontend.n_frames

    @property
    def segments(self) -> list[tuple[float, float]]:
        """Every segment closed so far."""
        return list(self._segments)

    @property
    def open_segment(self) -> tuple[float, float] | None:
        return self._segmenter.open_segment

    @property
    def closed(self) -> bool:
        """True after :meth:`flush` (until :meth:`reset`)."""
        return self._closed

    # ------------------------------------------------------------------ updates
    def push(self, chunk: Any) -> VADResult:
        """Feed the next samples (a 1-D array of any length, at the detector's sample rate)."""
        if self._closed:
            raise RuntimeError("the stream was flushed; call reset() to start a new recording")
        samples = check_samples(chunk, "chunk", integers=False)
        first = self._frontend.n_frames
        feats = self._frontend.push(samples)
        k = len(feats)
        if 0 < k <= _STEP_MAX and self._stepper.supported:
            # a few frames (small chunks): numpy, one frame at a time, without torch's overhead
            x = self._det._standardise(feats)
            logits = self._stepper.tokens(x, self._state)[:, 0]
            proba = np.float32(1.0) / (np.float32(1.0) + np.exp(-logits))
        elif k:
            x = torch.from_numpy(self._det._standardise(feats))
            with torch.inference_mode():
                p, self._state = _scan(self._model, x, self._state)
            proba = p.numpy().copy()
        else:
            proba = np.zeros(0, dtype=np.float32)
        closed = self._segmenter.push(proba)
        self._segments.extend(closed)
        frames = np.arange(first, first + k, dtype=np.int64)
        cfg = self._det.frontend_config_
        return VADResult(
            probabilities=proba,
            frames=frames,
            times=(frames * cfg.hop + cfg.frame_len) / cfg.sample_rate,
            segments=closed,
            open_segment=self._segmenter.open_segment,
        )

    def flush(self) -> VADResult:
        """End of audio: close an open segment (as offline) and return it; the stream then takes
        no more samples until :meth:`reset`."""
        closed = [] if self._closed else self._segmenter.flush(n_samples=self.n_samples)
        self._segments.extend(closed)
        self._closed = True
        empty = np.zeros(0, dtype=np.float32)
        return VADResult(empty, np.zeros(0, dtype=np.int64), np.zeros(0), closed, None)

    close = flush

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """The whole stream state as named arrays (copies)."""
        out = {f"frontend.{k}": v for k, v in self._frontend.get_state().items()}
        for k, v in flatten_state(self._state, "model.").items():
            out[k] = v.detach().cpu().numpy().copy()
        out.update(self._segmenter.get_state())
        flat_segments = np.asarray(self._segments, dtype=np.float64).reshape(-1, 2)
        out["segments"] = flat_segments
        out["closed"] = np.array(int(self._closed), dtype=np.int64)
        return out

    def set_state(self, state: Mapping[str, np.ndarray]) -> VADStream:
        """Restore a state of :meth:`get_state` (taken from a stream of the same detector)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of arrays, got {type(state).__name__}")
        prefix = "frontend."
        frontend = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model_flat = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        missing = sorted({"segmenter", "segments", "closed"} - set(state))
        if missing:
            raise ValueError(f"stream state lacks {missing}")
        model_state = restore_state(_zero_state(self._model), model_flat)
        self._frontend.set_state(frontend)
        self._segmenter.set_state({"segmenter": state["segmenter"]})
        self._state = model_state
        segments = np.asarray(state["segments"], dtype=np.float64).reshape(-1, 2)
        self._segments = [(float(a), float(b)) for a, b in segments]
        self._closed = bool(np.asarray(state["closed"]).reshape(-1)[0])
        return self

    @property
    def state_nbytes(self) -> int:
        """Bytes of the recurrent state (model, front-end buffer, segmenter; not the list of
        closed segments)."""
        state = self.get_state()
        return int(sum(v.nbytes for k, v in state.items() if k != "segments"))

    def save_state(self) -> bytes:
        """The state as bytes (safetensors with a checksum and the detector's fingerprint)."""
        return state_to_bytes(self.get_state(), VAD_STATE_FORMAT, _fingerprint(self._det))

    def load_state(self, data: bytes) -> VADStream:
        """Restore a state of :meth:`save_state`; rejects corrupt bytes and states of another
        detector."""
        arrays = state_from_bytes(
            data, VAD_STATE_FORMAT, _fingerprint(self._det), "a VAD stream state", "detector"
        )
        return self.set_state(arrays)
