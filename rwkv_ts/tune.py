"""Hyper-parameter search with Optuna: default search spaces, pruning on the per-epoch validation
loss, shared storage for several processes or machines, the refitted best estimator.

``pip install "rwkv-ts[tune]"``. Importing :mod:`rwkv_ts` does not import Optuna; this module does.

The objective of a trial is the estimator's own validation loss: the chronological hold-out at the
end of every series (``val_fraction``) for a forecaster, the held-out instances for a classifier or
regressor. It is reported after every epoch, so that a pruner stops trials that are already worse
than the others at the same epoch. Only the data passed to :func:`tune` is read: pass the training
and validation part, never the test part (the command line's ``rwkv-ts tune`` cuts a registered
data set at its validation border).

Examples
--------
>>> import numpy as np, optuna
>>> from rwkv_ts import RWKVForecaster
>>> from rwkv_ts.tune import tune
>>> y = np.sin(np.arange(300) / 6) + 0.05 * np.random.default_rng(0).normal(size=300)
>>> est = RWKVForecaster(horizon=6, lookback=24, patch_len=6, stride=3, d_model=8, head_size=4,
...                      n_layers=1, max_epochs=2, verbose=False, random_state=0)
>>> space = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
>>> result = tune(est, y, n_trials=2, search_space=space)
>>> len(result.study.trials), sorted(result.best_params)
(2, ['learning_rate'])
>>> result.estimator.predict().shape
(6, 1)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sklearn.base import clone, is_classifier

from rwkv_ts.training import TrainingDivergedError, training_callbacks

__all__ = [
    "PruningCallback",
    "TuneResult",
    "decode_params",
    "default_search_space",
    "make_storage",
    "suggest_params",
    "tune",
]

#: Trial states counted towards ``n_trials`` (failed trials are retried, not counted).
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

SearchSpace = Mapping[str, Any] | Callable[[optuna.Trial], dict]


@dataclass
class TuneResult:
    """What :func:`tune` returns; unpacks as ``estimator, study``."""

    #: The estimator with the best parameters, refitted on all the data (``None`` with
    #: ``refit=False``).
    estimator: Any
    #: The study, with every trial of every worker.
    study: optuna.Study
    #: The best trial's parameters, decoded (tuple choices as tuples).
    best_params: dict

    def __iter__(self):
        return iter((self.estimator, self.study))


# ---------------------------------------------------------------------------------------------
# search spaces
# ---------------------------------------------------------------------------------------------


def _forecaster_space(est: Any) -> dict[str, Any]:
    params = est.get_params()
    lookback = int(params["lookback"])
    loss = params.get("loss", "mse")  # an estimator without the parameter trains with MSE
    val_loss = params.get("val_loss") or loss
    patch = [p for p in (8, 16) if p <= lookback // 2] or [max(lookback // 2, 1)]
    return {
        # d_model 16 with head_size 16 won on the ETT validation parts (benchmarks/
        # ett_validation_sweep.py); a head size of 16 divides every width here and the CUDA
        # kernel serves it, so no combination drawn is invalid
        "d_model": [16, 32, 64, 128],
        "n_layers": IntDistribution(1, 3),
        "head_size": [16],
        "patch_len": patch,
        "stride": sorted({max(p // 2, 1) for p in patch} | {patch[0]}),
        "shift_distances": [(1,), (1, 2, 4), "auto"],
        "tcn_dilations": [(), (1, 2, 4)],
        "decay": ["data", "static"],
        "dropout": FloatDistribution(0.0, 0.3),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        # the default batch and the "fast" preset's (the batch counts univariate windows: 896
        # is PatchTST's 128 windows of 7 channels)
        "batch_size": [128, 896],
        # the removed daily cycle of the ETT recipe; the validation loss is the same MSE either
        # way (the profile is added back to forecast and target alike), so trials compare
        "cycle": [None, "auto"],
        # the accurate preset's Huber loss beside the squared error (and the estimator's own);
        # validation goes by one loss in every trial, the estimator's val_loss (else its
        # loss), so that the trials' scores compare
        "loss": sorted({"mse", "huber", loss}),
        "val_loss": [val_loss],
        # the accurate preset's frequency term, tried on the linear stage and kept where it
        # validates better; it trains, never validates, so the trials' scores still compare
        "frequency_loss_weight": [0.0, "auto"],
    }


def _sequence_space(est: Any) -> dict[str, Any]:
    space = {
        "d_model": [32, 64, 128],
        "n_layers": IntDistribution(1, 3),
        "head_size": [16, 32],
        "patch_len": [2, 4, 8],
        "stride": [1, 2, 4],
        "shift_distances": [(1,), (1, 2, 4)],
        "tcn_dilations": [(), (1, 2, 4)],
        "decay": ["data", "static"],
        "dropout": FloatDistribution(0.0, 0.3),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
    }
    if is_classifier(est):
        # whether time warps of the training series help depends on the problem (level on
        # average over the dev sets, classification_dev_round10.md); a classifier always has
        # the one target per instance that they need
        space["augment"] = [None, "slice+warp"]
    return space


def default_search_space(estimator: Any) -> dict[str, Any]:
    """The default search space of an estimator: architecture and optimiser settings.

    A classifier's space also chooses between no augmentation and ``augment="slice+warp"``.
    ``lookback``, ``horizon``, ``val_fraction``, ``norm`` and ``head`` are left out on purpose:
    they change which windows (or which loss) the validation reads, so trials would not be
    compared on the same objective. Copy the dict, change it and pass it as ``search_space`` to
    override.

    Parameters
    ----------
    estimator : RWKVForecaster, RWKVClassifier, RWKVRegressor or an sktime adapter of them

    Returns
    -------
    dict
        Parameter name -> an Optuna distribution, or a list of choices (tuples allowed).

    Examples
    --------
    >>> from rwkv_ts import RWKVForecaster
    >>> space = default_search_space(RWKVForecaster(lookback=96))
    >>> space["d_model"], space["patch_len"]
    ([16, 32, 64, 128], [8, 16])
    """
    params = estimator.get_params()
    if "estimator" in params and "patch_len" not in params:  # an sktime sequence adapter
        inner = params["estimator"]
        if inner is None:
            adapter = type(estimator).__name__
            core = type(estimator._core()).__name__
            raise TypeError(
                f"{adapter} holds no estimator to tune: pass the core one, "
                f"e.g. {adapter}({core}(val_fraction=0.2))"
            )
        return {f"estimator__{name}": dist for name, dist in default_search_space(inner).items()}
    if "lookback" in params:
        space = _forecaster_space(estimator)
    elif "patch_len" in params:
        space = _sequence_space(estimator)
    else:
        raise TypeError(
            f"no default search space for {type(estimator).__name__}; pass search_space="
        )
    return {name: dist for name, dist in space.items() if name in params}


def _label(choice: Any) -> Any:
    # Optuna stores categorical choices of simple types only: tuples become their repr.
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return repr(tuple(choice) if isinstance(choice, list) else choice)


def suggest_params(trial: optuna.Trial, search_space: SearchSpace) -> dict:
    """Draw one set of parameters from ``search_space`` for ``trial``.

    ``search_space`` maps parameter names to an Optuna distribution (``FloatDistribution``,
    ``IntDistribution``, ``CategoricalDistribution``) or a list of choices; or it is a function
    ``trial -> dict`` for spaces with conditions.

    Examples
    --------
    >>> import optuna
    >>> trial = optuna.trial.FixedTrial({"tcn_dilations": "(1, 2)", "dropout": 0.1})
    >>> space = {"tcn_dilations": [(), (1, 2)],
    ...          "dropout": optuna.distributions.FloatDistribution(0.0, 0.3)}
    >>> suggest_params(trial, space)
    {'tcn_dilations': (1, 2), 'dropout': 0.1}
    """
    if callable(search_space):
        return dict(search_space(trial))
    params = {}
    for name, spec in search_space.items():
        if isinstance(spec, FloatDistribution):
            params[name] = trial.suggest_float(
                name, spec.low, spec.high, step=spec.step, log=spec.log
            )
        elif isinstance(spec, IntDistribution):
            params[name] = trial.suggest_int(
                name, spec.low, spec.high, step=spec.step, log=spec.log
            )
        elif isinstance(spec, CategoricalDistribution | list | tuple):
            choices = list(spec.choices if isinstance(spec, BaseDistribution) else spec)
            labels = {_label(c): c for c in choices}
            params[name] = labels[trial.suggest_categorical(name, list(labels))]
        else:
            raise TypeError(
                f"search_space[{name!r}] must be an Optuna distribution or a list of choices, "
                f"got {type(spec).__name__}"
            )
    return params


def decode_params(params: Mapping[str, Any], search_space: SearchSpace) -> dict:
    """Turn a trial's stored parameters back into estimator parameters (the labels of tuple
    choices into tuples). A callable search space stores its own values, returned as they are.

    Examples
    --------
    >>> decode_params({"tcn_dilations": "()", "d_model": 32}, {"tcn_dilations": [(), (1, 2)]})
    {'tcn_dilations': (), 'd_model': 32}
    """
    out = dict(params)
    if callable(search_space):
        return out
    for name, spec in search_space.items():
        if name in out and isinstance(spec, CategoricalDistribution | list | tuple):
            choices = list(spec.choices if isinstance(spec, BaseDistribution) else spec)
            out[name] = {_label(c): c for c in choices}.get(out[name], out[name])
    return out


# ---------------------------------------------------------------------------------------------
# pruning and storage
# ---------------------------------------------------------------------------------------------


class PruningCallback(Callback):
    """Report the validation loss to an Optuna trial after every epoch and stop the training when
    the pruner says so (the trial then ends as pruned).

    Our own small callback on ``lightning.pytorch`` (optuna-integration's needs its namespace to
    match the Trainer's). Under DDP only rank 0 talks to the storage and the decision is
    broadcast.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss") -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        epoch = trainer.current_epoch
        prune = False
        if trainer.is_global_zero:
            self.trial.report(float(score), step=epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):
            self.pruned_at = epoch
            trainer.should_stop = True


def make_storage(storage: Any) -> optuna.storages.BaseStorage | None:
    """An Optuna storage from a URL or a path.

    * ``None``: in memory (one process);
    * a URL with ``://`` (``sqlite:///study.db``, ``postgresql://user@host/db``): a database,
      with a heartbeat so that the trial of a killed worker is marked failed after two minutes
      and queued again;
    * any other string or path: a journal file (``study.log``), which several processes on one
      machine (or on a shared file system) may append to;
    * an Optuna storage object: used as is.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "study.log")
    >>> type(make_storage(path)).__name__
    'JournalStorage'
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" in text:
        import warnings

        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            # heartbeat_interval is flagged experimental by Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                text,
                heartbeat_interval=30,
                grace_period=120,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(text))


@contextmanager
def _optuna_verbosity(verbose: bool):
    previous = optuna.logging.get_verbosity()
    # failed trials are counted in the study; their tracebacks only with verbose
    optuna.logging.set_verbosity(logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


# ---------------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------------


def _single_device(estimator: Any) -> dict:
    """Trials and the refit run on one device; several GPUs are used by one worker per GPU."""
    params = estimator.get_params()
    key = next((k for k in ("devices", "estimator__devices") if k in params), None)
    if key is None:
        return {}
    devices = params[key]
    if devices == "auto":
        return {key: 1}
    if devices not in (1, [0]) and not (isinstance(devices, list) and len(devices) == 1):
        raise ValueError(
            f"tune trains each trial on one device, got devices={devices!r}; to use several "
            "GPUs start one worker per GPU (CUDA_VISIBLE_DEVICES=i) on the same storage"
        )
    return {}


#: settings a trial trains with whatever the estimator says, and why: an ensemble
#: (``ensemble_size > 1``) trains one member per trial, since the members share the tuned settings
#: and a trial's score and pruning read one training; ``refit`` on all instances is skipped,
#: since a trial is scored on the early-stopped run. The final fit of the best keeps both.
_TRIAL_SETTINGS = {"ensemble_size": 1, "refit": None}


def _trial_settings(estimator: Any, params: Mapping[str, Any]) -> dict:
    """The :data:`_TRIAL_SETTINGS` the estimator (or an sktime adapter's core, ``estimator__``)
    sets otherwise, unless the search space sets them itself."""
    names = estimator.get_params()
    out = {}
    for name, value in _TRIAL_SETTINGS.items():
        for key in (name, f"estimator__{name}"):
            if key in names and names[key] != value and key not in params:
                out[key] = value
    return out


def _val_loss(est: Any) -> float:
    history = getattr(est, "history_", None)
    for fitted in ("forecaster_", "estimator_"):  # the sktime adapters' fitted core
        if history is None:
            history = getattr(getattr(est, fitted, None), "history_", None)
    losses = [h["val_loss"] for h in history or [] if "val_loss" in h]
    if not losses:
        raise ValueError(
            f"{type(est).__name__} trained without a validation part, so a trial has nothing to "
            "be scored on: set val_fraction > 0 and pass series long enough for a validation "
            "window (lookback + 2 * horizon steps for a forecaster)"
        )
    return float(min(losses))


def tune(
    estimator: Any,
    *fit_args: Any,
    n_trials: int = 20,
    search_space: SearchSpace | None = None,
    storage: Any = None,
    study_name: str | None = None,
    timeout: float | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    refit: bool = True,
    verbose: bool = False,
    **fit_kwargs: Any,
) -> TuneResult:
    """Search hyper-parameters of ``estimator`` with Optuna, pruning on the per-epoch validation
    loss, and refit the best.

    Parameters
    ----------
    estimator : RWKVForecaster, RWKVClassifier, RWKVRegressor (or an sktime adapter)
        Its parameters outside the search space stay as they are; it is not modified. An
        ensemble (``ensemble_size > 1``) is tuned as one member per trial and refitted whole;
        a classifier's or regressor's ``refit`` on all instances is left out of the trials
        (they are scored on the early-stopped run) and done in the final fit.
    *fit_args, **fit_kwargs
        What ``estimator.fit`` takes: ``y`` for a forecaster, ``X, y`` for a classifier or
        regressor. Pass only data you may tune on: the training and validation part.
    n_trials : int, default 20
        Finished (complete or pruned) trials the *study* should have; a worker stops when the
        study reaches it, counting the trials of every worker and of earlier, interrupted runs.
        A run killed half-way resumes when started again with the same ``storage`` and
        ``study_name``.
    search_space : dict or callable, optional
        Parameter -> Optuna distribution or list of choices, or ``trial -> params``. Default:
        :func:`default_search_space`.
    storage : str, path or optuna storage, optional
        Shared storage for several processes or machines (see :func:`make_storage`): a database
        URL or a journal file path. ``None`` keeps the study in memory.
    study_name : str, optional
        The study to create or join (required with a storage, so that workers meet).
    timeout : float, optional
        Stop this worker after that many seconds.
    sampler, pruner : optional
        Default: Optuna's TPE sampler and a median pruner (5 startup trials, 1 warm-up epoch).
    refit : bool, default True
        Refit the best parameters on all the data passed.
    verbose : bool, default False
        Let Optuna log every trial.

    Returns
    -------
    TuneResult
        ``estimator`` (the refitted best), ``study`` and ``best_params``; unpacks as
        ``estimator, study``.

    Raises
    ------
    ValueError
        A storage without ``study_name``, an estimator that trains without validation data, or
        more than one device.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if storage is not None and not study_name:
        raise ValueError("a shared storage needs study_name= so that workers join one study")
    overrides = _single_device(estimator)
    space = default_search_space(estimator) if search_space is None else search_space
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, space)
        if callable(space):
            trial.set_user_attr("params", params)
        trial.set_user_attr("worker", worker)
        est = clone(estimator).set_params(
            **params,
            **overrides,
            **_trial_settings(estimator, params),
        )
        pruning = PruningCallback(trial)
        with training_callbacks(pruning):
            est.fit(*fit_args, **fit_kwargs)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        return _val_loss(est)

    with _optuna_verbosity(verbose):
        study = optuna.create_study(
            study_name=study_name,
            storage=make_storage(storage),
            sampler=sampler,
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
            direction="minimize",
            load_if_exists=True,
        )
        done = len(study.get_trials(deepcopy=False, states=_FINISHED))
        if done < n_trials:
            study.optimize(
                objective,
                n_trials=n_trials - done,
                timeout=timeout,
                catch=(TrainingDivergedError,),
                callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=_FINISHED)],
            )
    try:
        best_trial = study.best_trial
    except ValueError:
        raise ValueError(
            f"no trial of study {study.study_name!r} completed (all pruned or failed)"
        ) from None
    params = decode_params(best_trial.user_attrs.get("params", best_trial.params), space)
    best = None
    if refit:
        best = clone(estimator).set_params(**params, **overrides)
        best.fit(*fit_args, **fit_kwargs)
    return TuneResult(best, study, params)
