"""What :class:`~rwkv_ts.RWKVClassifier` and :class:`~rwkv_ts.RWKVRegressor` share: instance
conversion, per-channel scaling, the model configuration, the validation split, training through
:func:`rwkv_ts.training.train_model`, batched inference on prefixes, streams and saving.

The model is :class:`rwkv_ts.nn.sequence.RWKVSequenceModel`: causal throughout, so the answer for
an instance is defined on its prefixes and a stream (:mod:`rwkv_ts.sequence_stream`) reproduces the
batch answer after every sample.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from torch import nn

from rwkv_ts._ensemble import load_member, member_file, member_seeds, remove_members, save_member
from rwkv_ts.data.augment import TIME_AUGMENTATIONS, AugmentedSequences, parse_augment
from rwkv_ts.data.instances import Instances, to_instances
from rwkv_ts.data.sequences import SequenceDataset, collate_sequences
from rwkv_ts.data.validation import (
    DataValidationError,
    check_memory,
    check_same_channels,
    format_list,
)
from rwkv_ts.nn.config import int_tuple
from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig, SequenceEnsemble
from rwkv_ts.training import (
    check_training_settings,
    inference_device,
    options_from,
    train_model,
)

#: Parameters of the model configuration, shared by both estimators.
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
    "norm",
    "norm_window",
    "pooling",
    "dropout",
    "conv_channels",
    "conv_kernels",
)

_SHARED_DOC = """
    patch_len, stride : int
        Patch length and stride in samples; patches start at the first sample, and an answer is
        given once ``patch_len`` samples have been seen, then after every ``stride`` samples.
    d_model, n_layers, head_size : int
        Width, number of RWKV blocks and WKV head size.
    ffn_mult : float, default 2.0
        Channel-mix hidden width as a multiple of ``d_model``.
    shift_distances : tuple of int, default (1, 2, 4)
        Token distances of the multi-scale token shift; ``(1,)`` is plain RWKV.
    tcn_dilations : tuple of int, default (1, 2, 4)
        Dilations of the causal TCN branch fused with the time-mix; ``()`` switches it off.
    decay : {"data", "static"}, default "data"
        RWKV-6 data-dependent decay or RWKV-5 static decay.
    norm : {"none", "causal"}, default "none"
        Channels are always standardised with statistics of the training data; ``"causal"``
        also normalises each instance by its trailing statistics over ``norm_window`` samples.
    norm_window : int, default 64
    pooling : str
        How the tokens seen so far are read: ``"last"``, ``"mean"``, ``"max"`` or several joined by
        ``"+"`` (e.g. ``"mean+last"``). All are causal.
    conv_channels : tuple of int, default ()
        Filters of a full-resolution convolutional branch beside the RWKV encoder (after
        LSTM-FCN: causal convolutions with batch normalisation and ReLU, their running mean
        concatenated with the pooled tokens before the head; :class:`rwkv_ts.nn.conv.ConvBranch`),
        e.g. ``(128, 256, 128)``, FCN's; ``()`` switches it off. It streams like the rest.
    conv_kernels : tuple of int, default (8, 5, 3)
        Kernel size of each convolution of that branch (one per entry of ``conv_channels``).
    dropout : float, default 0.1
    max_epochs, batch_size, learning_rate, weight_decay, patience : training settings
        AdamW with a warm-up and cosine decay; early stopping after ``patience`` epochs without
        improvement of the validation loss, restoring the best epoch's weights.
        ``batch_size="auto"`` (the classifier's default) is ``min(16, n_train // 10)``, at least
        1: the rule of Fawaz et al. (2019) for deep time-series classifiers, so that a small
        training set (UCR has many of 20-30 instances) still gets about ten optimiser steps per
        epoch instead of one.
    ema_epochs : float or None, default None
        Keep an exponential moving average of the weights with a time constant of this many
        epochs (:class:`rwkv_ts.training.AveragedWeights`): validation, early stopping and the
        fitted model use the averaged weights (the final average without a validation
        part); training goes on from the live weights.
        The average smooths out the noise of the last steps, which helps some problems and not
        others (on the ETT validation parts it did not, see
        ``benchmarks/results/ett_validation_sweep_round9.md``): compare it on your validation
        data. ``None`` (the default) keeps the weights as trained.
    augment : str or None, default None
        Random transformations of the training instances, drawn afresh in every epoch (data
        augmentation, :mod:`rwkv_ts.data.augment`): ``"jitter"``, ``"scale"``, ``"slice"``,
        ``"warp"``, or several joined by ``"+"`` (e.g. ``"slice+warp"``); each is applied to an
        instance with probability 0.5. ``"slice"`` and ``"warp"`` move samples in time, so they
        need one target per instance (not per-cycle targets). Validation instances are never
        transformed. ``None`` trains on the instances as given.
    val_fraction : float
        Share of the training instances held out for early stopping (split by instance, or by
        ``groups`` when given to ``fit``); 0 trains ``max_epochs`` epochs without validation.
    refit : float or None, default None
        After early stopping, train a fresh model (same seed) on *all* the instances, the
        validation ones included, for ``refit`` times the epochs early stopping kept, rounded
        (``refit_epochs_``; the warm-up and cosine decay spread over them), and keep that model
        instead. Early stopping then only chooses the length of training, and no instance is
        held out of the fitted model, which matters where the data are few (C-MAPSS has
        100-260 engines, a fifth of them held out by default). Its effect there was mixed
        (better on three subsets, worse on FD001; the regression guide has the numbers), so
        compare it on held-out data of your own. Needs ``val_fraction > 0``; a split
        that leaves nothing to validate on (fewer than 4 instances or 2 groups) trains on
        everything once. ``None`` keeps the early-stopped model.
    ensemble_size : int, default 1
        Number of models trained and read as one (:class:`rwkv_ts.nn.sequence.SequenceEnsemble`):
        member ``i`` has its own seed, initialisation, shuffling and validation split (member 0
        those of a single model with the same ``random_state``); the channel scaling is member
        0's. Predictions average the members' estimates (regressor) or class probabilities
        (classifier), in batch and in streams alike; training and inference cost grow with the
        size. Averaging a few members usually lowers the error of small-data problems (RUL,
        small classification sets) more than any single setting.
    impute : {None, "linear", "ffill", "zero"}, default None
        How missing values are filled; ``None`` rejects them with an error.
    id_col, time_col, value_cols : optional column names
        Columns of a long frame: instance id, time, channels.
    random_state : int or None, default None
        Seed for initialisation, the validation split and shuffling.
    accelerator, devices : Lightning settings, default "auto"
    verbose : bool, default False
        Show a progress bar while training.
    log_dir : str or None, default None
        Write Lightning CSV logs there; by default nothing is written to disk.
    on_nonfinite_loss : {"raise", "skip"}, default "raise"
        What a NaN or infinite training loss (or gradient) does: ``"raise"`` stops training with
        :class:`rwkv_ts.training.TrainingDivergedError` naming the epoch and step; ``"skip"``
        leaves that batch's optimiser step out with a ``RuntimeWarning`` naming the epoch and
        step, and counts it in ``history_[epoch]["skipped_steps"]``.
    checkpoint_dir : str or None, default None
        A folder for a training checkpoint, written at the end of every epoch (atomically, only
        the latest kept, no pickle). A ``fit`` killed part-way and run again with the same
        folder, data and parameters resumes from the last complete epoch and gives the same
        model as an uninterrupted fit (bit for bit on the CPU with a fixed ``random_state``).
        A checkpoint of other data or parameters is not resumed: a
        :class:`rwkv_ts.training.CheckpointWarning` says so and training starts afresh. The
        checkpoint is deleted when ``fit`` completes. Do not share a folder between fits that
        run at the same time.
"""


#: where a fit with ``refit`` keeps its early-stopped run until the refit ends (in the training
#: checkpoint's folder)
_STOPPED_RUN = "early_stopped_run.safetensors"


def _check_refit(refit: Any, val_fraction: float) -> None:
    if refit is None:
        return
    if isinstance(refit, bool) or not isinstance(refit, int | float | np.integer | np.floating):
        raise ValueError(
            f"refit must be None or a positive number of epochs per kept epoch, got {refit!r}"
        )
    if not (np.isfinite(refit) and refit > 0):
        raise ValueError(f"refit must be None or a positive, finite number, got {refit!r}")
    if val_fraction == 0:
        raise ValueError(
            f"refit={refit!r} scales the epochs that early stopping keeps on the validation "
            "instances, but val_fraction=0 holds none out: set val_fraction > 0 (e.g. 0.2) or "
            "refit=None"
        )


def refit_epochs(refit: float, best_epoch: int | None) -> int:
    """Epochs of the refit on all instances: ``refit`` times the epochs up to and including the
    kept one (``best_epoch`` counts from 0; -1 or ``None``, the initial weights kept, count as
    one epoch), rounded, at least 1.

    Examples
    --------
    >>> refit_epochs(1.5, 39), refit_epochs(1.0, 0), refit_epochs(2.0, -1)
    (60, 1, 2)
    """
    kept = 1 if best_epoch is None or best_epoch < 0 else best_epoch + 1
    return max(1, int(round(refit * kept)))


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class SequenceEstimator(BaseEstimator):
    """Base of the sequence classifier and regressor; not used directly."""

    #: how an ensemble combines its members' outputs (:class:`SequenceEnsemble`)
    _ensemble_combine = "mean"

    # ------------------------------------------------------------------ checks and conversion
    def _check_params(self) -> None:
        for name in ("patch_len", "stride", "max_epochs", "patience", "ensemble_size"):
            _positive_int(name, getattr(self, name))
        if self.batch_size != "auto":
            _positive_int("batch_size", self.batch_size)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        check_training_settings(self.on_nonfinite_loss, self.checkpoint_dir, self.ema_epochs)
        parse_augment(self.augment)
        _check_refit(self.refit, self.val_fraction)

    def _batch_size(self, n_train: int) -> int:
        """The training batch size for ``n_train`` training instances (see ``batch_size``)."""
        if self.batch_size == "auto":
            return max(1, min(16, n_train // 10))
        return int(self.batch_size)

    def _instances(
        self, X: Any, min_length: int | None = None, n_channels: int | None = None
    ) -> Instances:
        return to_instances(
            X,
            id_col=self.id_col,
            time_col=self.time_col,
            value_cols=self.value_cols,
            impute=self.impute,
            min_length=self.patch_len if min_length is None else min_length,
            n_channels=n_channels,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )

    def _fitted_instances(self, X: Any, min_length: int | None = None) -> Instances:
        self._check_fitted()
        inst = self._instances(X, min_length, n_channels=len(self.channels_))
        self._check_channels(inst)
        return inst

    def _check_channels(self, inst: Instances) -> None:
        """Refuse instances whose channels are not those of ``fit``: another number, or, for a
        frame given to an estimator fitted on named columns, other names or another order
        (arrays and frames fitted from arrays match by position)."""
        positional = [str(c) for c in range(len(self.channels_))]
        if inst.ids is not None and list(self.channels_) != positional:
            check_same_channels(inst.channels, self.channels_)
        if inst.n_channels != len(self.channels_):
            raise DataValidationError(
                f"X has {inst.n_channels} channel(s) but the estimator was fitted on "
                f"{len(self.channels_)}: {format_list(self.channels_, limit=10)}"
            )

    def _fit_scaler(self, inst: Instances, rows: np.ndarray) -> None:
        stacked = np.concatenate([inst.values[i] for i in rows], axis=0).astype(np.float64)
        std = stacked.std(axis=0)
        self.scale_mean_ = stacked.mean(axis=0)
        self.scale_std_ = np.where(std > 1e-12, std, 1.0)

    def _scaled(self, inst: Instances) -> list[np.ndarray]:
        return [((v - self.scale_mean_) / self.scale_std_).astype(np.float32) for v in inst.values]

    def _build_config(self, n_channels: int, n_outputs: int) -> SequenceConfig:
        params = {name: getattr(self, name) for name in _MODEL_PARAMS}
        params["shift_distances"] = int_tuple("shift_distances", params["shift_distances"])
        params["tcn_dilations"] = int_tuple(
            "tcn_dilations", params["tcn_dilations"], allow_empty=True
        )
        params["conv_channels"] = int_tuple(
            "conv_channels", params["conv_channels"], allow_empty=True
        )
        params["conv_kernels"] = int_tuple("conv_kernels", params["conv_kernels"])
        return SequenceConfig(n_channels=n_channels, n_outputs=n_outputs, **params)

    # ------------------------------------------------------------------ training
    def _split(
        self,
        n: int,
        stratify: np.ndarray | None = None,
        groups: Any = None,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation instance indices drawn with ``seed``: by group when
        ``groups`` is given (no group on both sides), else stratified by class where every class
        can spare an instance."""
        rng = np.random.default_rng(seed)
        everything = np.arange(n)
        if self.val_fraction == 0 or n < 4:
            return everything, everything[:0]
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n,):
                raise DataValidationError(
                    f"groups has shape {groups.shape}; expected one group per instance ({n},)"
                )
            unique = np.unique(groups)
            if len(unique) < 2:
                return everything, everything[:0]
            n_val = min(max(int(round(self.val_fraction * len(unique))), 1), len(unique) - 1)
            val_groups = rng.choice(unique, size=n_val, replace=False)
            is_val = np.isin(groups, val_groups)
            return everything[~is_val], everything[is_val]
        if stratify is not None:
            val = []
            for label in np.unique(stratify):
                members = rng.permutation(np.flatnonzero(stratify == label))
                k = int(round(self.val_fraction * len(members)))
                val.extend(members[: min(k, len(members) - 1)])
            is_val = np.zeros(n, dtype=bool)
            is_val[np.asarray(val, dtype=np.int64)] = True
            if not is_val.any():
                return everything, everything[:0]
            return everything[~is_val], everything[is_val]
        n_val = min(max(int(round(self.val_fraction * n)), 1), n - 1)
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.permutation(n)[:n_val]] = True
        return everything[~is_val], everything[is_val]

    def _train(
        self,
        inst: Instances,
        targets: np.ndarray | list[np.ndarray],
        n_outputs: int,
        loss: str | Callable[..., torch.Tensor],
        stratify: np.ndarray | None = None,
        groups: Any = None,
        val_loss: str | None = None,
    ) -> None:
        """Fit the scaler and the model; set the fitted attributes."""
        augment = parse_augment(self.augment)
        moved = sorted(TIME_AUGMENTATIONS.intersection(augment))
        if moved and not isinstance(targets, np.ndarray):
            raise ValueError(
                f"augment={self.augment!r}: {' and '.join(moved)} move samples in time and "
                "need one target per instance, but the targets are given per sample; use "
                "'jitter' and/or 'scale'"
            )
        lengths = inst.lengths
        n_values = int(lengths.sum()) * inst.n_channels
        # scaled float32 copies of every instance, plus one padded batch of the longest ones
        batch_size = self._batch_size(inst.n_instances)  # an upper bound before the split
        padded = batch_size * int(lengths.max()) * inst.n_channels
        check_memory(
            8.0 * n_values + 4.0 * padded * (1 + 4 * self.d_model * self.n_layers),
            f"training on {inst.n_instances} instances of up to {int(lengths.max()):,} samples "
            f"(batch_size={batch_size}, d_model={self.d_model})",
            "lower batch_size or d_model, or cut the longest instances",
        )
        seeds = member_seeds(self.random_state, self.ensemble_size)
        splits = [self._split(inst.n_instances, stratify, groups, seed) for seed in seeds]
        # The scaler sees member 0's training instances only, never its validation ones.
        self._fit_scaler(inst, splits[0][0])
        scaled = self._scaled(inst)
        config = self._build_config(inst.n_channels, n_outputs)
        members, results = [], []
        for i, (seed, (train_idx, val_idx)) in enumerate(zip(seeds, splits, strict=True)):
            model, result = self._train_member(
                i, seed, config, scaled, targets, train_idx, val_idx, loss, val_loss
            )
            members.append(model.eval())
            results.append(result)
        if self.checkpoint_dir is not None and len(members) > 1:
            remove_members(self.checkpoint_dir, len(members))
        self.model_ = self._new_model(config, members)
        self.config_ = config
        self.channels_ = list(inst.channels)
        self.history_ = results[0]["history"]
        self.best_epoch_ = results[0]["best_epoch"]
        self.n_epochs_ = results[0]["n_epochs"]
        self.member_histories_ = [r["history"] for r in results]
        self.refit_epochs_ = results[0].get("refit_epochs")
        self.n_val_instances_ = len(splits[0][1])
        self.n_train_instances_ = len(splits[0][0]) + (
            self.n_val_instances_ if self.refit_epochs_ is not None else 0
        )

    def _train_member(
        self,
        i: int,
        seed: int | None,
        config: SequenceConfig,
        scaled: list[np.ndarray],
        targets: np.ndarray | list[np.ndarray],
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        loss: str | Callable[..., torch.Tensor],
        val_loss: str | None = None,
    ) -> tuple[RWKVSequenceModel, dict]:
        """Train member ``i`` of the ensemble (the only one of a single model): early stopping on
        ``val_idx``, then, with ``refit``, a fresh model of the same seed on all the instances.
        With a ``checkpoint_dir``, an ensemble keeps each finished member there until ``fit``
        ends, and a refit keeps the early-stopped run, so that a killed fit resumes with the
        run it was training."""

        def subset(idx: np.ndarray) -> SequenceDataset:
            if isinstance(targets, np.ndarray):
                return SequenceDataset([scaled[j] for j in idx], targets[idx])
            return SequenceDataset([scaled[j] for j in idx], [targets[j] for j in idx])

        def train(idx: np.ndarray, val: np.ndarray, folder, run_tag: dict, **settings):
            """A fresh model of ``seed`` trained on ``idx`` (early stopping on ``val``)."""
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed if seed is not None else torch.seed())
                model = RWKVSequenceModel(config)
                per_token = isinstance(loss, str) and loss.startswith("masked_")
                trained = _TokenOutputs(model) if per_token else model
                train_data = subset(idx)
                if self.augment is not None:
                    train_data = AugmentedSequences(train_data, parse_augment(self.augment))
                result = train_model(
                    trained,
                    train_data,
                    subset(val) if len(val) else None,
                    options_from(
                        self,
                        batch_size=self._batch_size(len(idx)),
                        random_state=seed,
                        loss=loss,
                        val_loss=val_loss,
                        collate_fn=collate_sequences,
                        checkpoint_dir=folder,
                        checkpoint_tag=run_tag,
                        # the encoder reads nothing on the host while a graph is captured;
                        # batches of other lengths than the captured one train eagerly
                        cuda_graph=True,
                        **settings,
                    ),
                )
            summary = {
                "history": result.history,
                "best_epoch": result.best_epoch,
                "n_epochs": result.n_epochs,
            }
            return model, summary

        tag: dict = {}
        checkpoint_dir = self.checkpoint_dir
        ensemble = self.ensemble_size > 1
        keys = ("history", "best_epoch", "n_epochs")
        if checkpoint_dir is not None:
            from rwkv_ts._checkpoint import estimator_tag

            # the prepared data decide the run with the parameters (scaler, split, targets)
            tag = estimator_tag(self, scaled, targets, train_idx, val_idx)
            if ensemble:
                tag["member"] = i
                checkpoint_dir = member_file(self.checkpoint_dir, i).with_suffix("")
                finished = load_member(
                    member_file(self.checkpoint_dir, i),
                    tag,
                    lambda: RWKVSequenceModel(config),
                    (*keys, "refit_epochs"),
                )
                if finished is not None:
                    return finished
        if self.verbose and ensemble:  # the progress bar below counts epochs, not members
            print(
                f"{type(self).__name__}: ensemble member {i + 1} of {self.ensemble_size}",
                file=sys.stderr,
                flush=True,
            )
        refit = self.refit is not None and len(val_idx) > 0
        # with a refit, the early-stopped run is kept on disk until the refit ends, so that a
        # fit killed during the refit resumes there instead of training the first run again
        stopped_file = None if checkpoint_dir is None else Path(checkpoint_dir) / _STOPPED_RUN
        stopped = None
        if refit and stopped_file is not None:
            stopped = load_member(
                stopped_file, tag, lambda: RWKVSequenceModel(config), keys, "early-stopped run"
            )
        model, summary = (
            stopped if stopped is not None else train(train_idx, val_idx, checkpoint_dir, tag)
        )
        summary["refit_epochs"] = None
        if refit:
            if stopped is None and stopped_file is not None:
                save_member(stopped_file, model, {k: summary[k] for k in keys}, tag)
            epochs = refit_epochs(self.refit, summary["best_epoch"])
            everything = np.sort(np.concatenate([train_idx, val_idx]))
            if self.verbose:
                print(
                    f"{type(self).__name__}: refit on all {len(everything)} instances for "
                    f"{epochs} epochs",
                    file=sys.stderr,
                    flush=True,
                )
            folder = None if checkpoint_dir is None else Path(checkpoint_dir) / "refit"
            model, _ = train(
                everything,
                everything[:0],
                folder,
                {**tag, "refit_epochs": epochs},
                max_epochs=epochs,
            )
            summary["refit_epochs"] = epochs
            if stopped_file is not None:
                stopped_file.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if checkpoint_dir is not None and ensemble:
            save_member(member_file(self.checkpoint_dir, i), model, summary, tag)
        return model, summary

    def _new_model(
        self, config: SequenceConfig, members: list[RWKVSequenceModel] | None = None
    ) -> nn.Module:
        """The fitted model of ``config``: a single :class:`RWKVSequenceModel`, or a
        :class:`SequenceEnsemble` of ``ensemble_size`` members (``members``, or fresh ones to
        load weights into)."""
        size = getattr(self, "ensemble_size", 1)
        _positive_int("ensemble_size", size)
        if members is None:
            members = [RWKVSequenceModel(config) for _ in range(size)]
        if size == 1:
            return members[0]
        return SequenceEnsemble(members, combine=self._ensemble_combine)

    # ------------------------------------------------------------------ inference
    def _batches(self, values: list[np.ndarray], batch_size: int = 256):
        """Yield ``(indices, x, lengths)``; instances are grouped by length to limit padding."""
        order = np.argsort([len(v) for v in values], kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = torch.nn.utils.rnn.pad_sequence(
                [torch.from_numpy(values[i]) for i in idx], batch_first=True
            )
            yield idx, x, torch.tensor([len(values[i]) for i in idx])

    def _raw_outputs(self, inst: Instances) -> np.ndarray:
        """Model outputs (n, n_outputs) at the end of each instance."""
        values = self._scaled(inst)
        device = inference_device(self.accelerator)
        model = self.model_.to(device).eval()
        out = np.empty((len(values), self.config_.n_outputs), dtype=np.float32)
        with torch.inference_mode():
            for idx, x, lengths in self._batches(values):
                out[idx] = model(x.to(device), lengths.to(device)).cpu().numpy()
        self.model_.to("cpu")
        return out

    def _raw_step_outputs(self, inst: Instances) -> list[np.ndarray]:
        """Model outputs after every sample of each instance, (T_i, n_outputs); rows before the
        first complete patch are NaN, rows between patch ends repeat the last patch's output."""
        values = self._scaled(inst)
        cfg = self.config_
        model = self.model_.to("cpu").eval()
        result: list[np.ndarray] = [np.empty(0)] * len(values)
        with torch.inference_mode():
            for idx, x, lengths in self._batches(values):
                if x.shape[1] < cfg.patch_len:  # instances shorter than a patch: no answer yet
                    x = torch.nn.functional.pad(x, (0, 0, 0, cfg.patch_len - x.shape[1]))
                tokens = model.token_outputs(x).numpy()
                for row, i in enumerate(idx):
                    t = np.arange(int(lengths[row]))
                    j = (t - cfg.patch_len + 1) // cfg.stride
                    out = tokens[row, np.clip(j, 0, None)].astype(np.float64)
                    out[j < 0] = np.nan
                    result[i] = out
        return result

    # ------------------------------------------------------------------ extras
    def stream(self):
        """A stream that takes samples as they arrive and answers after each one.

        See :class:`rwkv_ts.sequence_stream.SequenceStream`.
        """
        from rwkv_ts.sequence_stream import SequenceStream

        self._check_fitted()
        return SequenceStream(self)

    def save(self, path) -> None:
        """Save the fitted estimator to one file (safetensors with a JSON header; no pickle).

        Load it with :func:`rwkv_ts.load`.
        """
        from rwkv_ts.persistence import save_sequence_estimator

        self._check_fitted()
        save_sequence_estimator(self, path)

    @property
    def n_parameters_(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.input_tags.three_d_array = True
        return tags


class _TokenOutputs(nn.Module):
    """Train on the outputs after every token (per-prefix targets); shares the model's weights."""

    def __init__(self, model: RWKVSequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.token_outputs(x, lengths)
