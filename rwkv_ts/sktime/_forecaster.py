"""``RWKVSktimeForecaster``: :class:`rwkv_ts.RWKVForecaster` as an sktime forecaster."""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
from sktime.forecasting.base import BaseForecaster

from rwkv_ts.sktime._convert import iter_instances, stack_output, to_long_frame

_PANDAS_MTYPES = ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"]


class RWKVSktimeForecaster(BaseForecaster):
    """RWKV-TS forecaster for sktime: global over panels and hierarchies, multivariate.

    One network is trained on every channel of every series (channel independent, shared weights,
    as :class:`rwkv_ts.RWKVForecaster`), so a panel or a hierarchy is one model, not one model per
    series. Exogenous ``X`` is ignored.

    ``update`` is backed by the model's stream (:meth:`rwkv_ts.RWKVForecaster.stream`): the new
    observations advance each series' state (new series join) and the next ``predict`` forecasts
    from the extended history with the same weights. In the streamable configuration
    (``norm="causal"`` with ``head="last"`` or a number of tokens) a new observation costs one
    recurrent step and memory per series is constant; otherwise the stream keeps the last
    ``lookback`` observations and re-encodes them. ``update`` never retrains: ``update_params``
    is accepted and has no effect; refit with ``fit`` (or sktime's ``UpdateRefitsEvery``) to
    re-estimate the weights.

    Horizons longer than the trained ``horizon`` are forecast recursively: the model's own
    forecasts are appended to the window and it forecasts again.

    Parameters
    ----------
    horizon : int or None, default None
        Number of steps the network forecasts at once. ``None``: the largest step of the ``fh``
        passed to ``fit`` (then ``fh`` is required in ``fit``).
    lookback, patch_len, stride, d_model, n_layers, head_size, ffn_mult, shift_distances, \
tcn_dilations, decay, norm, head, dropout, max_epochs, batch_size, learning_rate, \
weight_decay, patience, loss, val_loss, frequency_loss_weight, ema_epochs, val_fraction, \
ensemble_size, random_state, accelerator, devices, log_dir, on_nonfinite_loss, checkpoint_dir
        As in :class:`rwkv_ts.RWKVForecaster`. Every series needs ``lookback + horizon``
        observations.
    verbose : bool, default False
        Show Lightning's progress bar while training.

    Attributes
    ----------
    forecaster_ : rwkv_ts.RWKVForecaster
        The fitted core estimator (its ``history_`` holds the training curve).

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from rwkv_ts.sktime import RWKVSktimeForecaster
    >>> y = load_airline()
    >>> f = RWKVSktimeForecaster(lookback=36, patch_len=6, stride=3, d_model=16, head_size=8,
    ...                          max_epochs=2, random_state=0)
    >>> y_pred = f.fit(y, fh=[1, 2, 3]).predict()
    >>> y_pred.shape, str(y_pred.index[0])
    ((3,), '1961-01')
    """

    _tags = {
        "authors": ["rwkv-ts developers"],
        "maintainers": ["rwkv-ts developers"],
        "python_dependencies": ["torch", "lightning"],
        "y_inner_mtype": _PANDAS_MTYPES,
        "X_inner_mtype": _PANDAS_MTYPES,
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": False,
        "capability:missing_values": False,
        "capability:update": True,
        "capability:unequal_length": True,
        "requires-fh-in-fit": True,
        "X-y-must-have-same-index": False,
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }
    # The adapter keeps its own bounded window per series; sktime's unbounded copy is not needed.
    _config = {"remember_data": False}

    def __init__(
        self,
        horizon: int | None = None,
        lookback: int = 336,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 128,
        n_layers: int = 2,
        head_size: int = 32,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] | str = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (1, 2, 4),
        decay: str = "data",
        norm: str = "instance",
        head: str | int = "flatten",
        dropout: float = 0.1,
        max_epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 3,
        loss: str = "mse",
        val_loss: str | None = None,
        frequency_loss_weight: float | str = 0.0,
        ema_epochs: float | None = None,
        val_fraction: float = 0.2,
        ensemble_size: int = 1,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = False,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.horizon = horizon
        self.lookback = lookback
        self.patch_len = patch_len
        self.stride = stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_size = head_size
        self.ffn_mult = ffn_mult
        self.shift_distances = shift_distances
        self.tcn_dilations = tcn_dilations
        self.decay = decay
        self.norm = norm
        self.head = head
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.loss = loss
        self.val_loss = val_loss
        self.frequency_loss_weight = frequency_loss_weight
        self.ema_epochs = ema_epochs
        self.val_fraction = val_fraction
        self.ensemble_size = ensemble_size
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir
        super().__init__()
        # BaseForecaster creates these only when remember_data is on at construction; a user
        # (or sktime's suite) may switch it on later with set_config.
        self._y = None
        self._X = None
        if horizon is not None:
            self.set_tags(**{"requires-fh-in-fit": False})

    _CORE_PARAMS = (
        "lookback",
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
        "head",
        "dropout",
        "max_epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "patience",
        "loss",
        "val_loss",
        "frequency_loss_weight",
        "ema_epochs",
        "val_fraction",
        "ensemble_size",
        "random_state",
        "accelerator",
        "devices",
        "verbose",
        "log_dir",
        "on_nonfinite_loss",
        "checkpoint_dir",
    )

    # ------------------------------------------------------------------ sktime internals
    def _fit(self, y: pd.DataFrame, X=None, fh=None):
        from rwkv_ts.forecaster import RWKVForecaster

        if self.horizon is not None:
            horizon = int(self.horizon)
        else:
            horizon = int(np.max(fh.to_relative(self.cutoff)._values))
        instances = list(iter_instances(y))
        long, value_cols = to_long_frame(instances)
        params = {name: getattr(self, name) for name in self._CORE_PARAMS}
        core = RWKVForecaster(
            horizon=horizon, id_col="series", time_col="step", value_cols=value_cols, **params
        )
        try:
            core.fit(long)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: {_rename_series(exc, instances)}") from exc
        self.forecaster_ = core
        self._columns = y.columns
        self._index_names = list(y.index.names)
        self._multi = isinstance(y.index, pd.MultiIndex)
        self._freq = getattr(self.cutoff, "freq", None)
        # the stream continues every training series: codes 0..S-1 of the long frame
        self._stream = core.stream()
        self._codes = {key: code for code, (key, _) in enumerate(instances)}
        self._last = {key: frame.index[-1] for key, frame in instances}
        return self

    def _update(self, y: pd.DataFrame, X=None, update_params: bool = True):
        for key, frame in iter_instances(y):
            if key in self._codes:
                frame = frame[frame.index > self._last[key]]
            else:
                self._codes[key] = len(self._codes)
            if len(frame) == 0:
                continue
            values = frame.to_numpy(dtype=np.float64)[None]
            self._stream.update_array(values, series=[self._codes[key]])
            self._last[key] = frame.index[-1]
        freq = getattr(self.cutoff, "freq", None)
        if freq is not None:
            self._freq = freq
        return self

    def _predict(self, fh, X=None):
        keys = list(self._codes)
        cutoffs = [self._cutoff_of(key) for key in keys]
        steps = []
        for key, cutoff in zip(keys, cutoffs, strict=True):
            rel = np.asarray(fh.to_relative(cutoff)._values, dtype=np.int64)
            if rel.min() < 1:
                raise ValueError(
                    f"fh reaches back to step {rel.min()} of {_who(key)} (which ends at "
                    f"{cutoff[0]}); {type(self).__name__} forecasts out-of-sample steps only"
                )
            steps.append(rel)
        forecasts = self._forecast(keys, int(max(s.max() for s in steps)))
        pieces = []
        for key, cutoff, rel, values in zip(keys, cutoffs, steps, forecasts, strict=True):
            index = fh.to_absolute_index(cutoff)
            frame = pd.DataFrame(values[rel - 1], index=index, columns=self._columns)
            pieces.append((key, frame))
        return stack_output(pieces, self._index_names, self._multi)

    def _cutoff_of(self, key) -> pd.Index:
        last = pd.Index([self._last[key]])
        if isinstance(last, pd.DatetimeIndex) and self._freq is not None:
            return pd.DatetimeIndex(last, freq=self._freq)
        return last

    def _forecast(self, keys: list, n_steps: int) -> list[np.ndarray]:
        """Forecast ``n_steps`` for each series from the stream; beyond ``horizon``, recursively
        on a copy of the stream fed with its own forecasts."""
        codes = [self._codes[k] for k in keys]
        stream = self._stream
        out = stream.forecast_array(series=codes)
        missing = np.isnan(out).any(axis=(1, 2))
        if missing.any():
            key = keys[int(np.argmax(missing))]
            raise ValueError(
                f"{_who(key)} has fewer than lookback = {self.forecaster_.config_.lookback} "
                "observations; it cannot be forecast yet"
            )
        produced = [out]
        n_done = out.shape[1]
        if n_done < n_steps:
            stream = copy.deepcopy(stream)
        while n_done < n_steps:
            out = stream.update_array(out, series=codes)
            produced.append(out)
            n_done += out.shape[1]
        return list(np.concatenate(produced, axis=1)[:, :n_steps])

    # ------------------------------------------------------------------ test configurations
    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict]:
        """Two configurations that train in a fraction of a second on sktime's test series (10 to
        50 observations).

        Returns
        -------
        list of dict
        """
        tiny = {
            "lookback": 6,
            "patch_len": 2,
            "stride": 2,
            "d_model": 8,
            "n_layers": 1,
            "head_size": 4,
            "shift_distances": (1,),
            "tcn_dilations": (),
            "max_epochs": 1,
            "batch_size": 64,
            "accelerator": "cpu",
            "devices": 1,
            "random_state": 0,
        }
        return [
            tiny,
            {
                **tiny,
                "horizon": 2,
                "norm": "causal",
                "head": "last",
                "decay": "static",
                "tcn_dilations": (1,),
                "val_fraction": 0.0,
            },
        ]


def _who(key) -> str:
    return "the series" if key is None else f"series {key!r}"


def _rename_series(exc: Exception, instances: list) -> str:
    """The core estimator names series by their integer code in the long frame; name them by the
    sktime instance key instead."""
    keys = [key for key, _ in instances]
    if keys == [None]:
        return re.sub(r"series 0\b", "the series", str(exc))

    def name(match: re.Match) -> str:
        code = int(match.group(1))
        return f"series {keys[code]!r}" if code < len(keys) else match.group(0)

    return re.sub(r"series (\d+)\b", name, str(exc))
