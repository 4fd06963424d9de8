"""``RWKVSktimeClassifier`` and ``RWKVSktimeRegressor``: :class:`rwkv_ts.RWKVClassifier` and
:class:`rwkv_ts.RWKVRegressor` as sktime estimators.

Each wraps a core estimator passed as ``estimator`` (its parameters are reachable as
``estimator__<name>`` through ``get_params`` / ``set_params``, so sktime's tuners and pipelines
see them all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sktime.classification.base import BaseClassifier
from sktime.regression.base import BaseRegressor

_TAGS = {
    "authors": ["rwkv-ts developers"],
    "maintainers": ["rwkv-ts developers"],
    "python_dependencies": ["torch", "lightning"],
    # equal-length panels as one 3-D array; unequal ones stay a (instance, time) multi-index
    # frame or a list of (T_i, C) frames (sktime converts to the first type otherwise)
    "X_inner_mtype": ["numpy3D", "pd-multiindex", "df-list"],
    "capability:multivariate": True,
    "capability:unequal_length": True,
    "capability:missing_values": False,
    # the seed is the wrapped estimator's random_state, not a parameter of the adapter
    "capability:random_state": False,
    "property:randomness": "stochastic",
}

_TINY = {
    "patch_len": 2,
    "stride": 2,
    "d_model": 8,
    "n_layers": 1,
    "head_size": 4,
    "shift_distances": (1,),
    "tcn_dilations": (),
    "max_epochs": 2,
    "batch_size": 64,
    "accelerator": "cpu",
    "devices": 1,
    "random_state": 0,
}


def _arrays(X) -> np.ndarray | list[np.ndarray]:
    """sktime's inner X (numpy3D, pd-multiindex or df-list) as the core estimators take it:
    (n, C, T) or a list of (C, T_i) arrays."""
    if isinstance(X, np.ndarray):
        return X
    if isinstance(X, pd.DataFrame):
        X = [frame for _, frame in X.groupby(level=0, sort=False)]
    return [frame.to_numpy(dtype=np.float64).T for frame in X]


def _randomness(adapter, estimator) -> None:
    if estimator is not None and getattr(estimator, "random_state", None) is not None:
        adapter.set_tags(**{"property:randomness": "deterministic"})


class RWKVSktimeClassifier(BaseClassifier):
    """RWKV-TS sequence classifier for sktime: multivariate, unequal lengths.

    Parameters
    ----------
    estimator : rwkv_ts.RWKVClassifier, optional
        The configured core classifier (cloned at ``fit``); default ``RWKVClassifier()``.

    Attributes
    ----------
    estimator_ : rwkv_ts.RWKVClassifier
        The fitted clone.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVClassifier
    >>> from rwkv_ts.sktime import RWKVSktimeClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2, 24)) + np.repeat([0.0, 1.0], 10)[:, None, None]
    >>> y = np.repeat(["a", "b"], 10)
    >>> clf = RWKVSktimeClassifier(RWKVClassifier(d_model=8, head_size=4, n_layers=1,
    ...                                           max_epochs=3, random_state=0)).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _tags = {**_TAGS, "capability:predict_proba": True}

    def __init__(self, estimator=None) -> None:
        self.estimator = estimator
        super().__init__()
        _randomness(self, estimator)

    def _core(self):
        from rwkv_ts.classifier import RWKVClassifier

        return clone(self.estimator) if self.estimator is not None else RWKVClassifier()

    def _fit(self, X, y):
        self.estimator_ = self._core().fit(_arrays(X), y)
        return self

    def _predict(self, X) -> np.ndarray:
        return self.estimator_.predict(_arrays(X))

    def _predict_proba(self, X) -> np.ndarray:
        # sktime orders the columns by its sorted classes_, as the core estimator does
        return self.estimator_.predict_proba(_arrays(X))

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict]:
        """Two configurations that train in a fraction of a second on sktime's test panels."""
        from rwkv_ts.classifier import RWKVClassifier

        return [
            {"estimator": RWKVClassifier(**_TINY)},
            {"estimator": RWKVClassifier(**{**_TINY, "pooling": "last", "norm": "causal"})},
        ]


class RWKVSktimeRegressor(BaseRegressor):
    """RWKV-TS sequence regressor for sktime: multivariate, unequal lengths, one target per
    instance.

    Parameters
    ----------
    estimator : rwkv_ts.RWKVRegressor, optional
        The configured core regressor (cloned at ``fit``); default ``RWKVRegressor()``.

    Attributes
    ----------
    estimator_ : rwkv_ts.RWKVRegressor
        The fitted clone.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVRegressor
    >>> from rwkv_ts.sktime import RWKVSktimeRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 1, 16)).cumsum(axis=2)
    >>> reg = RWKVSktimeRegressor(RWKVRegressor(d_model=8, head_size=4, n_layers=1,
    ...                                         max_epochs=3, random_state=0))
    >>> reg.fit(X, X[:, 0, -1]).predict(X[:3]).shape
    (3,)
    """

    _tags = dict(_TAGS)

    def __init__(self, estimator=None) -> None:
        self.estimator = estimator
        super().__init__()
        _randomness(self, estimator)

    def _core(self):
        from rwkv_ts.regressor import RWKVRegressor

        return clone(self.estimator) if self.estimator is not None else RWKVRegressor()

    def _fit(self, X, y):
        self.estimator_ = self._core().fit(_arrays(X), np.asarray(y, dtype=np.float64))
        return self

    def _predict(self, X) -> np.ndarray:
        return np.asarray(self.estimator_.predict(_arrays(X)), dtype=np.float64)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict]:
        """Two configurations that train in a fraction of a second on sktime's test panels."""
        from rwkv_ts.regressor import RWKVRegressor

        return [
            {"estimator": RWKVRegressor(**_TINY)},
            {"estimator": RWKVRegressor(**{**_TINY, "val_fraction": 0.0, "pooling": "mean"})},
        ]
