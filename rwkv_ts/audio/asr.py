"""``RWKVSpeechRecognizer``: streaming speech recognition with an RWKV encoder and greedy CTC.

Audio becomes causal log-mel frames (:mod:`rwkv_ts.audio.features`, 10 ms apart by default),
standardised per mel band with training statistics. The patch embedding of
:class:`rwkv_ts.nn.sequence.RWKVSequenceModel` subsamples the frames: a token covers
``patch_len`` frames and a new one starts every ``stride`` frames (8 and 4 by default: one token per
40 ms). The RWKV blocks read the tokens causally and a linear layer gives, for every token, logits
over the CTC blank (index 0) and the vocabulary's tokens (:mod:`rwkv_ts.audio.ctc`). Training
minimises the CTC loss; decoding takes the best index per token, collapses repeats and drops
blanks.

Everything is causal, so :meth:`RWKVSpeechRecognizer.stream` can emit text while audio arrives:
:class:`SpeechStream` runs the front end on each chunk, runs the blocks on the tokens the chunk
completes (from the recurrent state) and pushes their best indices into the same decoder state
machine as the offline path. Its per-token logits equal :meth:`RWKVSpeechRecognizer.token_logits`
of the whole recording to float32 rounding, and its text equals
:meth:`RWKVSpeechRecognizer.transcribe` for any chunking.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.utils.data import Dataset

from rwkv_ts.audio._state import fingerprint, state_from_bytes, state_to_bytes
from rwkv_ts.audio._stepper import TokenStepper
from rwkv_ts.audio.ctc import (
    CTCLoss,
    GreedyCTCDecoder,
    Vocabulary,
    best_path,
    ctc_min_tokens,
    get_vocabulary,
    greedy_decode,
)
from rwkv_ts.audio.features import FrontendConfig, LogMelFrontend
from rwkv_ts.audio.io import check_samples, model_signal
from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig
from rwkv_ts.nn.state import flatten_state, restore_state

__all__ = ["ASR_FORMAT", "RWKVSpeechRecognizer", "SpeechStream"]

#: format tag of saved recognisers (see :func:`rwkv_ts.load`)
ASR_FORMAT = "rwkv-ts/asr"
#: format tag of :meth:`SpeechStream.save_state`
ASR_STATE_FORMAT = "rwkv-ts/asr-state"

_MODEL_PARAMS = (
    "patch_len",
    "stride",
    "d_model",
    "n_layers",
    "head_size",
    "ffn_mult",
    "shift_distances",
    "tcn_dilations",
    "decay",
    "lora_rank",
    "dropout",
)


# ---------------------------------------------------------------------- input checks


#: Pushes that complete at most this many tokens run them through the numpy step.
_STEP_MAX = 4


def _is_utterance(item: Any) -> bool:
    return hasattr(item, "audio") and hasattr(item, "transcript")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------- training pieces


class _Utterances(Dataset):
    """Raw log-mel features and label indices; items are standardised (and augmented) on the
    fly: ``(features (T, n_mels) float32, labels (S,) int64)``."""

    def __init__(
        self,
        features: list[np.ndarray],
        labels: list[list[int]],
        mean: np.ndarray,
        std: np.ndarray,
        log_floor: float,
        augment: bool,
    ) -> None:
        self.features = features
        self.labels = labels
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)
        self.floor = np.float32(np.log(log_floor))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features[i]
        if self.augment:
            feats = self._augment(feats)
        z = (feats - self.mean) / self.std
        return torch.from_numpy(z.astype(np.float32)), torch.tensor(self.labels[i])

    def _augment(self, feats: np.ndarray) -> np.ndarray:
        # random gain (+-6 dB: an offset in the log-power domain, floored like the front end)
        # and SpecAugment-style masks of mel bands and short time spans (set to the band mean).
        # Drawn from torch's global generator, which the estimator seeds and a training
        # checkpoint saves: a resumed fit augments as an uninterrupted one would.
        def integer(low: int, high: int) -> int:  # uniform in [low, high)
            return int(torch.randint(low, high, ()))

        gain = np.float32(torch.empty(()).uniform_(-1.38, 1.38).item())
        out = np.maximum(feats + gain, self.floor)
        n_frames, n_mels = out.shape
        for _ in range(2):
            width = integer(0, max(n_mels // 8, 1) + 1)
            start = integer(0, n_mels - width + 1)
            out[:, start : start + width] = self.mean[start : start + width]
        for _ in range(2):
            width = integer(0, min(6, max(n_frames // 10, 1)) + 1)
            start = integer(0, n_frames - width + 1)
            out[start : start + width] = self.mean
        return out


def _collate(batch):
    """Pad features and labels: ``(x (B, T, n_mels), n_frames (B,), (labels (B, S),
    n_labels (B,)))``."""
    feats, labels = zip(*batch, strict=True)
    x = nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    n_frames = torch.tensor([len(f) for f in feats])
    targets = nn.utils.rnn.pad_sequence(list(labels), batch_first=True)
    n_labels = torch.tensor([len(y) for y in labels])
    return x, n_frames, (targets, n_labels)


class _CTCOutputs(nn.Module):
    """Training view of the model: log-probabilities per token and the valid tokens per row."""

    def __init__(self, model: RWKVSequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, n_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.model.config
        log_probs = self.model.token_outputs(x).float().log_softmax(dim=-1)
        return log_probs, (n_frames - cfg.patch_len) // cfg.stride + 1


# ---------------------------------------------------------------------- the estimator


class RWKVSpeechRecognizer(BaseEstimator):
    """Speech recognition (digits or characters) with an RWKV encoder, CTC and streaming greedy
    decoding.

    Parameters
    ----------
    vocabulary : {"digits", "characters"}, default "digits"
        ``"digits"``: transcripts are digits separated by spaces (``"3 9 1"``); ``"characters"``:
        lowercase letters, apostrophe and space.
    sample_rate : int, default 8000
        Sample rate of every recording (audio at another rate is an error; resample it with
        :func:`rwkv_ts.audio.resample`).
    n_mels, frame_ms, hop_ms : front end settings
        Log-mel bands, analysis window and hop (:class:`rwkv_ts.audio.FrontendConfig`).
    patch_len, stride : int, default 8 and 4
        Frame subsampling by the patch embedding: a token covers ``patch_len`` frames, one starts
        every ``stride`` frames (``stride * hop_ms`` milliseconds per token; ``stride`` must not
        exceed ``patch_len``).
    d_model, n_layers, head_size, ffn_mult, shift_distances, tcn_dilations, decay, lora_rank
        The RWKV blocks, as in :class:`rwkv_ts.nn.sequence.SequenceConfig`. The causal TCN branch
        is off by default (``tcn_dilations=()``): its per-token convolution costs more on a CPU
        than the rest of a block.
    dropout : float, default 0.1
    augment : bool, default True
        Random gain (+-6 dB) and masks of mel bands and short time spans on the training
        features (SpecAugment-style), drawn anew every epoch.
    max_epochs, batch_size, learning_rate, weight_decay, patience : training settings
        AdamW with warm-up and cosine decay; early stopping on the validation CTC loss (per
        label), keeping the best epoch's weights.
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
        Share of the training utterances held out for early stopping when ``fit`` gets no
        validation utterances; 0 trains ``max_epochs`` epochs without validation.
    random_state : int or None, default None
        Seed of the initialisation, the split, the shuffling and the augmentation.
    accelerator, devices : Lightning settings, default "auto" and 1
    verbose : bool, default False
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
    vocabulary_ : Vocabulary
        The output tokens (the model has ``vocabulary_.size + 1`` outputs, blank first).
    frontend_config_ : FrontendConfig
    config_ : SequenceConfig
    model_ : RWKVSequenceModel
    scale_mean_, scale_std_ : ndarray of shape (n_mels,)
        Per-mel standardisation from the training utterances.
    history_ : list of dict
        Per-epoch training and validation CTC loss (nats per label).
    best_epoch_ : int or None
    n_epochs_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts.audio.asr import RWKVSpeechRecognizer
    >>> rng = np.random.default_rng(0)
    >>> audios = [rng.normal(scale=0.1, size=8000).astype(np.float32) for _ in range(4)]
    >>> asr = RWKVSpeechRecognizer(d_model=16, head_size=8, n_layers=1, max_epochs=1,
    ...                            random_state=0).fit(audios, ["1 2", "3", "4 5 6", "7"])
    >>> asr.token_logits(audios[0]).shape    # 98 frames -> 23 tokens, blank + 10 digits
    (23, 11)
    >>> stream = asr.stream()
    >>> text = "".join(stream.push(audios[0][i : i + 80]) for i in range(0, 8000, 80))
    >>> text == stream.text == asr.transcribe(audios[0])
    True
    """

    def __init__(
        self,
        vocabulary: str = "digits",
        sample_rate: int = 8000,
        n_mels: int = 40,
        frame_ms: float = 25.0,
        hop_ms: float = 10.0,
        patch_len: int = 8,
        stride: int = 4,
        d_model: int = 160,
        n_layers: int = 2,
        head_size: int = 32,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (),
        decay: str = "data",
        lora_rank: int = 16,
        dropout: float = 0.1,
        augment: bool = True,
        max_epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        patience: int = 5,
        ema_epochs: float | None = None,
        val_fraction: float = 0.1,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = 1,
        verbose: bool = False,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.frame_ms = frame_ms
        self.hop_ms = hop_ms
        self.patch_len = patch_len
        self.stride = stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_size = head_size
        self.ffn_mult = ffn_mult
        self.shift_distances = shift_distances
        self.tcn_dilations = tcn_dilations
        self.decay = decay
        self.lora_rank = lora_rank
        self.dropout = dropout
        self.augment = augment
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.ema_epochs = ema_epochs
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ configuration
    def _check_params(self) -> None:
        from rwkv_ts.training import check_training_settings

        check_training_settings(self.on_nonfinite_loss, self.checkpoint_dir, self.ema_epochs)
        for name in ("sample_rate", "patch_len", "stride", "max_epochs", "batch_size", "patience"):
            _positive_int(name, getattr(self, name))
        if self.stride > self.patch_len:
            raise ValueError(
                f"stride ({self.stride}) must not exceed patch_len ({self.patch_len}): frames "
                "between patches would be skipped"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")

    def _build_configs(self) -> tuple[Vocabulary, FrontendConfig, SequenceConfig]:
        vocab = get_vocabulary(self.vocabulary)
        frontend = FrontendConfig(
            sample_rate=int(self.sample_rate),
            frame_ms=self.frame_ms,
            hop_ms=self.hop_ms,
            n_mels=self.n_mels,
        ).validate()
        params = {name: getattr(self, name) for name in _MODEL_PARAMS}
        params["shift_distances"] = tuple(params["shift_distances"])
        params["tcn_dilations"] = tuple(params["tcn_dilations"])
        config = SequenceConfig(
            n_channels=int(self.n_mels),
            n_outputs=vocab.size + 1,
            norm="none",
            pooling="last",
            **params,
        )
        return vocab, frontend, config

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(audios, transcripts) first"
            )

    def _frontend(self) -> LogMelFrontend:
        cached = self.__dict__.get("_frontend_cache")
        if cached is None or cached.config != self.frontend_config_:
            cached = LogMelFrontend(self.frontend_config_)
            self.__dict__["_frontend_cache"] = cached
        return cached

    # ------------------------------------------------------------------ data
    def _audio_of(self, item: Any, where: str, sample_rate: int | None = None) -> np.ndarray:
        return model_signal(item, self.sample_rate, where, sample_rate)

    def _items(
        self, audios: Any, transcripts: Any, name: str, sample_rate: int | None = None
    ) -> tuple[list[np.ndarray], list[str]]:
        if isinstance(audios, np.ndarray) and audios.dtype != object and audios.ndim == 1:
            raise TypeError(
                f"{name} must be a list of recordings (1-D arrays), got one 1-D array; "
                "wrap a single recording in a list"
            )
        if isinstance(audios, str | bytes) or not hasattr(audios, "__len__"):
            raise TypeError(f"{name} must be a list of recordings, got {type(audios).__name__}")
        audios = list(audios)
        if not audios:
            raise ValueError(f"{name} is empty")
        if transcripts is None:
            if not all(_is_utterance(a) for a in audios):
                raise TypeError(
                    f"transcripts are required unless {name} are utterances with a "
                    "`transcript` (such as rwkv_ts.datasets.DigitUtterance)"
                )
            transcripts = [a.transcript for a in audios]
        else:
            if isinstance(transcripts, str):
                raise TypeError("transcripts must be a list of strings, got one string")
            transcripts = list(transcripts)
        if len(transcripts) != len(audios):
            raise ValueError(
                f"{name} has {len(audios)} recordings but the transcripts number {len(transcripts)}"
            )
        arrays = [self._audio_of(a, f"{name}[{i}]", sample_rate) for i, a in enumerate(audios)]
        return arrays, transcripts

    def _prepare(
        self,
        audios: Any,
        transcripts: Any,
        name: str,
        vocab: Vocabulary,
        frontend: LogMelFrontend,
        config: SequenceConfig,
    ) -> tuple[list[np.ndarray], list[list[int]]]:
        arrays, texts = self._items(audios, transcripts, name)
        tname = "transcripts" if name == "audios" else name.replace("audios", "transcripts")
        features, labels = [], []
        for i, (audio, text) in enumerate(zip(arrays, texts, strict=True)):
            ids = vocab.encode(text, where=f"{tname}[{i}]")
            feats = frontend.transform(audio)
            n_tokens = config.n_tokens(len(feats))
            need = ctc_min_tokens(ids)
            if n_tokens < need:
                raise ValueError(
                    f"{name}[{i}] is too short for its transcript {text!r}: {audio.size} samples "
                    f"give {len(feats)} frames and {n_tokens} model tokens, CTC needs at least "
                    f"{need} ({len(ids)} labels plus one blank between repeated labels)"
                )
            features.append(feats)
            labels.append(ids)
        return features, labels

    def _standardised(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.scale_mean_) / self.scale_std_).astype(np.float32)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        audios: Any,
        transcripts: Sequence[str] | None = None,
        *,
        validation: Any = None,
    ) -> RWKVSpeechRecognizer:
        """Train on recordings and their transcripts.

        Parameters
        ----------
        audios : list of 1-D float arrays, or of utterances
            Mono recordings at ``sample_rate``; or objects with ``audio``, ``sample_rate`` and
            ``transcript`` (:class:`rwkv_ts.datasets.DigitUtterance`), then ``transcripts`` may
            be ``None``.
        transcripts : list of str, optional
            One transcript per recording, in the vocabulary.
        validation : list of utterances, or (audios, transcripts), optional
            Validation utterances for early stopping (the same forms as ``audios`` and
            ``transcripts``); when given, ``val_fraction`` is not used.

        Returns
        -------
        self

        Raises
        ------
        ValueError, TypeError
            A bad recording or transcript; the message names its index: a character or word
            outside the vocabulary, an empty transcript, a recording too short for its transcript
            (CTC needs a model token per label plus one between repeated labels), NaN, a 2-D
            array, another sample rate.
        """
        from rwkv_ts.training import options_from, train_model

        self._check_params()
        vocab, fe_config, config = self._build_configs()
        frontend = LogMelFrontend(fe_config)
        features, labels = self._prepare(audios, transcripts, "audios", vocab, frontend, config)
        rng = np.random.default_rng(self.random_state)
        if validation is not None:
            val_audios, val_transcripts = (
                validation if isinstance(validation, tuple) and len(validation) == 2
                else (validation, None)
            )  # fmt: skip
            val_features, val_labels = self._prepare(
                val_audios, val_transcripts, "validation", vocab, frontend, config
            )
        elif self.val_fraction > 0 and len(features) >= 4:
            n_val = min(max(int(round(self.val_fraction * len(features))), 1), len(features) - 1)
            is_val = np.zeros(len(features), dtype=bool)
            is_val[rng.permutation(len(features))[:n_val]] = True
            val_features = [f for f, v in zip(features, is_val, strict=True) if v]
            val_labels = [y for y, v in zip(labels, is_val, strict=True) if v]
            features = [f for f, v in zip(features, is_val, strict=True) if not v]
            labels = [y for y, v in zip(labels, is_val, strict=True) if not v]
        else:
            val_features, val_labels = [], []

        stacked = np.concatenate(features, axis=0).astype(np.float64)
        std = stacked.std(axis=0)
        mean = stacked.mean(axis=0)
        std = np.where(std > 1e-6, std, 1.0)
        seed = self.random_state
        train_data = _Utterances(
            features, labels, mean, std, fe_config.log_floor, bool(self.augment)
        )
        val_data = (
            _Utterances(val_features, val_labels, mean, std, fe_config.log_floor, False)
            if val_features
            else None
        )
        tag = {}
        if self.checkpoint_dir is not None:
            from rwkv_ts._checkpoint import estimator_tag

            tag = estimator_tag(self, features, labels, val_features, val_labels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else torch.seed())
            model = RWKVSequenceModel(config)
            result = train_model(
                _CTCOutputs(model),
                train_data,
                val_data,
                options_from(
                    self, random_state=seed, loss=CTCLoss(), collate_fn=_collate, checkpoint_tag=tag
                ),
            )
        model.eval()
        self.vocabulary_ = vocab
        self.frontend_config_ = fe_config
        self.config_ = config
        self.model_ = model
        self.scale_mean_ = mean
        self.scale_std_ = std
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = result.n_epochs
        self.n_train_utterances_ = len(features)
        self.n_val_utterances_ = len(val_features)
        return self

    # ------------------------------------------------------------------ inference
    def features(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """Standardised log-mel frames ``(n_frames, n_mels)`` float32 of one recording (what
        the model reads)."""
        self._check_fitted()
        samples = self._audio_of(audio, "audio", sample_rate)
        return self._standardised(self._frontend().transform(samples))

    def _logits_batch(self, feats: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
        cfg = self.config_
        model = self.model_.to("cpu").eval()
        out: list[np.ndarray] = [np.zeros((0, cfg.n_outputs), np.float32)] * len(feats)
        order = np.argsort([len(f) for f in feats], kind="stable")
        order = [i for i in order if cfg.n_tokens(len(feats[i])) > 0]
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                x = nn.utils.rnn.pad_sequence(
                    [torch.from_numpy(feats[i]) for i in idx], batch_first=True
                )
                logits = model.token_outputs(x).numpy()
                for row, i in enumerate(idx):
                    out[i] = logits[row, : cfg.n_tokens(len(feats[i]))].copy()
        return out

    def token_logits(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """Logits ``(n_tokens, vocabulary_.size + 1)`` float32 of every model token (blank at
        index 0); ``(0, V + 1)`` for audio shorter than one token."""
        feats = self.features(audio, sample_rate)
        return self._logits_batch([feats], 1)[0]

    def transcribe(self, audio: Any, sample_rate: int | None = None) -> str:
        """Greedy CTC transcript of one recording: a 1-D float array at ``sample_rate``, a WAV file
        path, or an utterance object.

        ``sample_rate``, when given, is checked against the recogniser's.
        """
        return greedy_decode(best_path(self.token_logits(audio, sample_rate)), self.vocabulary_)

    def transcribe_batch(
        self, audios: Any, sample_rate: int | None = None, batch_size: int = 64
    ) -> list[str]:
        """Transcripts of several recordings, run in padded batches (grouped by length)."""
        self._check_fitted()
        _positive_int("batch_size", batch_size)
        if isinstance(audios, np.ndarray) and audios.dtype != object and audios.ndim == 1:
            raise TypeError("audios must be a list of recordings, got one 1-D array")
        frontend = self._frontend()
        feats = [
            self._standardised(frontend.transform(self._audio_of(a, f"audios[{i}]", sample_rate)))
            for i, a in enumerate(audios)
        ]
        return [
            greedy_decode(best_path(logits), self.vocabulary_)
            for logits in self._logits_batch(feats, batch_size)
        ]

    def stream(self) -> SpeechStream:
        """A :class:`SpeechStream` that takes audio chunks as they arrive and emits text."""
        self._check_fitted()
        return SpeechStream(self)

    @property
    def n_parameters_(self) -> int:
        """Number of model parameters."""
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted recogniser to one file (safetensors with a JSON header and a checksum;
        no pickle). Load it with :func:`rwkv_ts.load`."""
        from rwkv_ts.persistence import save_scaled_model

        self._check_fitted()
        header = {
            "frontend": self.frontend_config_.to_dict(),
            "vocabulary": {"name": self.vocabulary_.name, "tokens": list(self.vocabulary_.tokens)},
        }
        return save_scaled_model(self, path, ASR_FORMAT, header)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _load_recognizer(header: dict, tensors: dict[str, torch.Tensor], path: Path):
    """Build a :class:`RWKVSpeechRecognizer` from a checked file (called by
    :func:`rwkv_ts.load`)."""
    from rwkv_ts.persistence import ModelFileError, load_scaled_model

    est = load_scaled_model(RWKVSpeechRecognizer, header, tensors, path)
    config = est.config_
    try:
        fe_config = FrontendConfig.from_dict(header["frontend"])
        vocab = get_vocabulary(header["vocabulary"]["name"])
        tokens = list(header["vocabulary"]["tokens"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} is incomplete or inconsistent: {exc!r}") from None
    if list(vocab.tokens) != tokens:
        raise ModelFileError(f"{path}: its vocabulary does not match {vocab.name!r}")
    if config.n_outputs != vocab.size + 1 or config.n_channels != fe_config.n_mels:
        raise ModelFileError(
            f"{path}: a model of {config.n_channels} inputs and {config.n_outputs} outputs "
            f"does not fit {fe_config.n_mels} mel bands and {vocab.size} tokens plus blank"
        )
    est.vocabulary_ = vocab
    est.frontend_config_ = fe_config
    return est


# ---------------------------------------------------------------------- the stream


def _fingerprint(rec: RWKVSpeechRecognizer) -> str:
    """What a stream state belongs to: weights, scaler, front end and vocabulary."""
    return fingerprint(rec, rec.frontend_config_.to_dict(), list(rec.vocabulary_.tokens))


class SpeechStream:
    """Streaming recognition: push audio chunks as they arrive, get the text they complete.

    Get one with :meth:`RWKVSpeechRecognizer.stream`. Each :meth:`push` runs the front end on the
    chunk, the RWKV blocks on the model tokens the chunk completes (one every ``stride`` frames,
    from the recurrent state) and the greedy CTC decoder on their best indices; text appears as
    soon as a token's decision is made. The state is bounded: the front end's pending samples,
    fewer than ``patch_len`` pending frames, the blocks' recurrent state and the decoder's
    previous token (plus the text written so far).

    The logits of :meth:`push_logits` equal :meth:`RWKVSpeechRecognizer.token_logits` of the
    whole recording to float32 rounding, and :attr:`text` equals
    :meth:`RWKVSpeechRecognizer.transcribe`, for any chunking.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts.audio.asr import RWKVSpeechRecognizer
    >>> audio = np.random.default_rng(1).normal(scale=0.1, size=8000).astype(np.float32)
    >>> asr = RWKVSpeechRecognizer(d_model=16, head_size=8, n_layers=1, max_epochs=1,
    ...                            random_state=0).fit([audio] * 2, ["1 2", "1 2"])
    >>> stream = asr.stream()
    >>> stream.push_logits(audio[:4000]).shape, stream.n_frames, stream.n_tokens
    ((11, 11), 48, 11)
    """

    def __init__(self, recognizer: RWKVSpeechRecognizer) -> None:
        recognizer._check_fitted()
        self.recognizer = recognizer
        self._model = recognizer.model_.to("cpu").eval()
        self._frontend = recognizer._frontend().stream()
        self._mean = np.asarray(recognizer.scale_mean_, dtype=np.float32)
        self._std = np.asarray(recognizer.scale_std_, dtype=np.float32)
        self._decoder = GreedyCTCDecoder(recognizer.vocabulary_)
        self._stepper = TokenStepper(self._model)
        self.reset()

    # ------------------------------------------------------------------ bookkeeping
    def reset(self) -> SpeechStream:
        """Start a new recording: forget all audio, state and text; return ``self``."""
        self._frontend.reset()
        self._frames = np.zeros((0, self._mean.size), dtype=np.float32)
        self._n_tokens = 0
        with torch.inference_mode():
            self._blocks = {
                str(i): block.init_state(1) for i, block in enumerate(self._model.blocks)
            }
        self._decoder.reset()
        self._finished = False
        return self

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return self._decoder.text

    @property
    def n_samples(self) -> int:
        """Samples pushed since the start."""
        return self._frontend.n_samples

    @property
    def n_frames(self) -> int:
        """Log-mel frames completed since the start."""
        return self._frontend.n_frames

    @property
    def n_tokens(self) -> int:
        """Model tokens completed (and decoded) since the start."""
        return self._n_tokens

    # ------------------------------------------------------------------ pushing
    def push_logits(self, chunk: Any) -> np.ndarray:
        """Feed the next samples; return the logits ``(k, V + 1)`` of the ``k`` model tokens they
        complete (also decoded into :attr:`text`)."""
        if self._finished:
            raise RuntimeError("this stream is finished; call reset() to start a new recording")
        samples = check_samples(chunk, "chunk", integers=False)
        cfg = self._model.config
        frames = self._frontend.push(samples)
        if len(frames):
            z = (frames - self._mean) / self._std
            self._frames = np.concatenate([self._frames, z.astype(np.float32)])
        k = cfg.n_tokens(self._frontend.n_frames) - self._n_tokens
        if k <= 0:
            return np.zeros((0, cfg.n_outputs), dtype=np.float32)
        # the pending frames start at the first frame of the next token
        pending = self._frames[: (k - 1) * cfg.stride + cfg.patch_len]
        if k <= _STEP_MAX and self._stepper.supported:
            # a token or a few (small chunks): numpy, without torch's per-operation overhead
            starts = np.arange(k) * cfg.stride
            patches = pending[starts[:, None] + np.arange(cfg.patch_len)]
            logits = self._stepper.tokens(patches, self._blocks)
        else:
            model = self._model
            with torch.inference_mode():
                h = model.embed(torch.from_numpy(pending)[None])
                for i, block in enumerate(model.blocks):
                    h, self._blocks[str(i)] = block.scan(h, self._blocks[str(i)])
                logits = model.head(model.pool(model.ln_out(h)))[0].numpy()
        self._frames = self._frames[k * cfg.stride :].copy()
        self._n_tokens += k
        self._decoder.push_many(best_path(logits).tolist())
        return logits

    def push(self, chunk: Any) -> str:
        """Feed the next samples (a 1-D float array of any length, including 0); return the text
        they add (``""`` when no new token was decided)."""
        before = len(self._decoder.text)
        self.push_logits(chunk)
        return self._decoder.text[before:]

    def flush(self) -> str:
        """Text still held back: greedy CTC decides every token at once, so always ``""``.

        Trailing samples and frames that do not complete a token stay pending (they would also be
        ignored by the offline :meth:`RWKVSpeechRecognizer.transcribe`).
        """
        return ""

    def finish(self) -> str:
        """End the recording; return the whole transcript (equal to
        :meth:`RWKVSpeechRecognizer.transcribe` of all samples pushed). Call :meth:`reset` to
        start another."""
        self.flush()
        self._finished = True
        return self.text

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """The whole state as numpy arrays (copies): front end, pending frames, model and
        decoder (with the text so far). :meth:`set_state` restores it exactly."""
        state: dict[str, np.ndarray] = {}
        for key, value in self._frontend.get_state().items():
            state[f"frontend.{key}"] = value
        state["frames"] = self._frames.copy()
        state["n_tokens"] = np.array(self._n_tokens, dtype=np.int64)
        state["finished"] = np.array(self._finished, dtype=np.bool_)
        for key, value in flatten_state(self._blocks, "model.").items():
            state[key] = value.detach().cpu().numpy().copy()
        for key, value in self._decoder.get_state().items():
            state[f"decoder.{key}"] = value
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> SpeechStream:
        """Restore a state of :meth:`get_state` (checked against this model); return ``self``."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays, got {type(state).__name__}")
        cfg = self._model.config
        with torch.inference_mode():
            template = {str(i): b.init_state(1) for i, b in enumerate(self._model.blocks)}
        for key in ("frames", "n_tokens", "finished", "decoder.counters", "decoder.text"):
            if key not in state:
                raise ValueError(f"state lacks {key!r}")
        blocks = restore_state(template, state, "model.")
        frames = np.asarray(state["frames"], dtype=np.float32)
        n_tokens = int(np.asarray(state["n_tokens"]).reshape(()))
        frontend = self._frontend.frontend.stream()
        frontend.set_state(
            {k[len("frontend.") :]: v for k, v in state.items() if k.startswith("frontend.")}
        )
        if n_tokens != cfg.n_tokens(frontend.n_frames):
            raise ValueError(
                f"state is inconsistent: {frontend.n_frames} frames give "
                f"{cfg.n_tokens(frontend.n_frames)} tokens, the state says {n_tokens}"
            )
        pending = frontend.n_frames - n_tokens * cfg.stride
        if frames.shape != (pending, self._mean.size):
            raise ValueError(
                f"state['frames'] has shape {frames.shape}, expected ({pending}, {self._mean.size})"
            )
        decoder = GreedyCTCDecoder(self.recognizer.vocabulary_)
        decoder.set_state({"counters": state["decoder.counters"], "text": state["decoder.text"]})
        self._frontend = frontend
        self._frames = frames.copy()
        self._n_tokens = n_tokens
        self._blocks = blocks
        self._decoder = decoder
        self._finished = bool(np.asarray(state["finished"]))
        return self

    @property
    def state_nbytes(self) -> int:
        """Bytes of the recurrent state (front end buffer, pending frames, blocks' state,
        decoder counters), the text excluded; bounded whatever the recording's length."""
        return sum(v.nbytes for k, v in self.get_state().items() if k != "decoder.text")

    def save_state(self) -> bytes:
        """The state of :meth:`get_state` as bytes (safetensors, no pickle) with a checksum and
        the recogniser's fingerprint; :meth:`load_state` restores it on a stream of the same
        recogniser, in any process."""
        return state_to_bytes(self.get_state(), ASR_STATE_FORMAT, _fingerprint(self.recognizer))

    def load_state(self, data: bytes) -> SpeechStream:
        """Restore a state of :meth:`save_state`; corrupt bytes and states of another
        recogniser raise ``ValueError`` and leave the stream as it was."""
        arrays = state_from_bytes(
            data,
            ASR_STATE_FORMAT,
            _fingerprint(self.recognizer),
            "a speech-stream state",
            "recogniser",
        )
        return self.set_state(arrays)

    def __repr__(self) -> str:
        return (
            f"SpeechStream(n_samples={self.n_samples}, n_tokens={self.n_tokens}, "
            f"text={self.text!r})"
        )
