"""sktime adapters: RWKV-TS estimators as sktime forecasters (and, when present, classifiers and
regressors).

Importing this module imports sktime (``pip install "rwkv-ts[sktime]"``); ``import rwkv_ts`` never
does.

* :class:`RWKVSktimeForecaster` -- a global :class:`sktime.forecasting.base.BaseForecaster` over
  single series, panels and hierarchies, multivariate, with an ``update`` backed by the stream.
* :class:`RWKVSktimeClassifier`, :class:`RWKVSktimeRegressor` -- :class:`rwkv_ts.RWKVClassifier`
  and :class:`rwkv_ts.RWKVRegressor` as sktime classifier and regressor (multivariate, unequal
  lengths).

Examples
--------
>>> from rwkv_ts.sktime import RWKVSktimeForecaster
>>> RWKVSktimeForecaster.get_class_tag("capability:multivariate")
True
"""

from __future__ import annotations

try:
    import sktime  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("rwkv_ts.sktime needs sktime: pip install 'rwkv-ts[sktime]'") from exc

from rwkv_ts.sktime._forecaster import RWKVSktimeForecaster
from rwkv_ts.sktime._sequence import RWKVSktimeClassifier, RWKVSktimeRegressor

__all__ = ["RWKVSktimeClassifier", "RWKVSktimeForecaster", "RWKVSktimeRegressor"]
