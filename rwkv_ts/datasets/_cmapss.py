"""NASA C-MAPSS turbofan run-to-failure data (FD001-FD004) and the usual RUL preprocessing.

:func:`load_cmapss` reads the train and test files and the true RUL of the test units;
:meth:`CMAPSSData.prepare` turns them into instances and targets for
:class:`~rwkv_ts.RWKVRegressor`: a piecewise-linear RUL target capped at ``rul_cap``, sensor
selection, z-score normalisation fitted on the training units (per operating condition for the
six-condition subsets FD002 and FD004), and either whole unit histories (a target after every
cycle) or sliding windows of ``window`` cycles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._files import locate

__all__ = ["CMAPSS_COLUMNS", "INFORMATIVE_SENSORS", "CMAPSSData", "RULData", "load_cmapss"]

#: Column names of the train and test files.
CMAPSS_COLUMNS: tuple[str, ...] = (
    "unit",
    "cycle",
    "op_setting_1",
    "op_setting_2",
    "op_setting_3",
    *(f"sensor_{i}" for i in range(1, 22)),
)

#: The 14 sensors that vary in FD001/FD003 (1, 5, 6, 10, 16, 18 and 19 are constant there); the
#: usual selection of the deep-learning literature.
INFORMATIVE_SENSORS: tuple[int, ...] = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)

_SUBSETS = {"FD001": 1, "FD002": 6, "FD003": 1, "FD004": 6}
_SOURCE = (
    "NASA's Prognostics Center of Excellence data repository ('Turbofan Engine Degradation "
    "Simulation Data Set', Saxena et al., PHM 2008), or the copy in the GitHub repository "
    "oluies/tedsds, folder data/, commit a5dabc4656bd979070fb64c58d74cabade1384e5"
)
_OPS = ["op_setting_1", "op_setting_2", "op_setting_3"]


def _read_table(path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep=r"\s+", header=None, engine="c")
    if frame.shape[1] != len(CMAPSS_COLUMNS):
        raise ValueError(
            f"{path} has {frame.shape[1]} columns; expected {len(CMAPSS_COLUMNS)} "
            "(unit, cycle, 3 operating settings, 21 sensors)"
        )
    frame.columns = list(CMAPSS_COLUMNS)
    return frame.astype({"unit": "int64", "cycle": "int64"})


@dataclass
class RULData:
    """Instances and targets for remaining-useful-life regression (see
    :meth:`CMAPSSData.prepare`).

    Attributes
    ----------
    X_train : list of numpy.ndarray
        Training instances, each ``(n_channels, T_i)``: whole unit histories, or windows.
    y_train : list of numpy.ndarray or numpy.ndarray
        Whole histories: the capped RUL after every cycle, one ``(T_i,)`` array per unit.
        Windows: the capped RUL at the end of each window, ``(n_windows,)``.
    groups_train : numpy.ndarray
        The unit of every training instance (pass as ``groups=`` so that validation holds out
        whole units).
    X_test : list of numpy.ndarray
        Every test unit's history (its last ``window`` cycles with windows), ``(n_channels, T)``.
    y_test : numpy.ndarray
        True RUL after the last cycle of every test unit (``RUL_FD00x.txt``), not capped.
    units_test : numpy.ndarray
    channels : list of str
        Names of the channels (sensor columns, plus ``"condition_k"`` indicators when asked).
    """

    X_train: list
    y_train: list | np.ndarray
    groups_train: np.ndarray
    X_test: list
    y_test: np.ndarray
    units_test: np.ndarray
    channels: list[str]
    options: dict = field(default_factory=dict)


@dataclass
class CMAPSSData:
    """One C-MAPSS subset.

    Attributes
    ----------
    name : str
        ``"FD001"`` ... ``"FD004"``.
    train, test : pandas.DataFrame
        Columns :data:`CMAPSS_COLUMNS`; ``unit`` and ``cycle`` are int64, the rest float64. Test
        units stop some cycles before failure.
    test_rul : pandas.Series
        True RUL after the last test cycle, indexed by test unit.
    n_conditions : int
        Operating conditions of the subset (1 or 6).
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    test_rul: pd.Series
    n_conditions: int

    def train_rul(self, rul_cap: float | None = 125) -> pd.Series:
        """RUL of every training row: cycles left before the unit's last cycle, capped at
        ``rul_cap`` (the piecewise-linear target; ``None`` leaves it uncapped)."""
        last = self.train.groupby("unit")["cycle"].transform("max")
        rul = (last - self.train["cycle"]).astype(np.float64)
        return rul if rul_cap is None else rul.clip(upper=float(rul_cap))

    def conditions(self) -> tuple[np.ndarray, np.ndarray]:
        """Operating condition (0 .. n_conditions - 1) of every train and test row: k-means
        clusters of the three operating settings, fitted on the training rows."""
        if self.n_conditions == 1:
            return np.zeros(len(self.train), np.int64), np.zeros(len(self.test), np.int64)
        from sklearn.cluster import KMeans

        ops = self.train[_OPS].to_numpy()
        scale = ops.std(axis=0)
        scale[scale == 0] = 1.0
        km = KMeans(n_clusters=self.n_conditions, n_init=10, random_state=0).fit(ops / scale)
        # label the clusters by their altitude so that the numbering does not depend on k-means
        order = np.argsort(np.argsort(km.cluster_centers_[:, 0]))
        train_c = order[km.labels_]
        test_c = order[km.predict(self.test[_OPS].to_numpy() / scale)]
        return train_c.astype(np.int64), test_c.astype(np.int64)

    def prepare(
        self,
        *,
        rul_cap: float | None = 125,
        sensors: str | Sequence[int] = "informative",
        normalise: str | None = "auto",
        window: int | None = None,
        condition_features: bool = False,
        smoothing: float | None = None,
        cycle_feature: bool = False,
        baseline_cycles: int | None = None,
    ) -> RULData:
        """Instances and targets for :class:`~rwkv_ts.RWKVRegressor`.

        Parameters
        ----------
        rul_cap : float or None, default 125
            Cap of the piecewise-linear training target (``None``: the true RUL).
        sensors : "informative", "all" or sequence of int, default "informative"
            Sensor numbers (1-21) used as channels; ``"informative"`` is
            :data:`INFORMATIVE_SENSORS`.
        normalise : {"auto", "condition", "global", None}, default "auto"
            z-score of every sensor with statistics of the training rows: per operating
            condition (``"condition"``), over all rows (``"global"``), or none. ``"auto"`` is
            ``"condition"`` for FD002/FD004 and ``"global"`` otherwise.
        window : int or None, default None
            ``None``: one instance per unit (its whole history, a target after every cycle).
            An int: sliding windows of ``window`` cycles over the training units (one target at
            the end of each) and the last ``window`` cycles of each test unit (units with fewer
            cycles keep them all).
        condition_features : bool, default False
            Append one indicator channel per operating condition.
        smoothing : float or None, default None
            Exponential smoothing of every sensor along each unit's cycles (after the
            normalisation), ``s_1 = x_1``, ``s_t = a x_t + (1 - a) s_{t-1}`` with ``a =
            smoothing`` in (0, 1]: causal, so a stream can apply it cycle by cycle.
        cycle_feature : bool, default False
            Append the cycle number divided by 100 as a channel (how long the unit has run;
            every unit, train or test, starts at cycle 1).
        baseline_cycles : int or None, default None
            Append, for every sensor, its drift from the unit's own start: the value minus the
            mean of the unit's first ``baseline_cycles`` cycles (of the cycles seen so far while
            there are fewer). Engines start with different initial wear and manufacturing
            variation; the drift channels take that offset out while the sensor channels keep
            the absolute level. Computed after normalisation and smoothing; causal, so a stream
            can apply it cycle by cycle.

        Returns
        -------
        RULData

        Examples
        --------
        >>> data = load_cmapss("FD001")  # doctest: +SKIP
        >>> prep = data.prepare(window=30)  # doctest: +SKIP
        >>> prep.X_train[0].shape, len(prep.X_test), prep.channels[:2]  # doctest: +SKIP
        ((14, 30), 100, ['sensor_2', 'sensor_3'])
        """
        if sensors == "informative":
            numbers = list(INFORMATIVE_SENSORS)
        elif sensors == "all":
            numbers = list(range(1, 22))
        else:
            numbers = [int(s) for s in sensors]
            bad = [s for s in numbers if not 1 <= s <= 21]
            if bad or not numbers:
                raise ValueError(f"sensors must be numbers in 1..21, got {list(sensors)!r}")
        if normalise == "auto":
            normalise = "condition" if self.n_conditions > 1 else "global"
        if normalise not in ("condition", "global", None):
            raise ValueError(
                f"normalise must be 'auto', 'condition', 'global' or None, got {normalise!r}"
            )
        if window is not None and (not isinstance(window, int | np.integer) or window < 1):
            raise ValueError(f"window must be a positive integer or None, got {window!r}")
        if smoothing is not None and not 0.0 < float(smoothing) <= 1.0:
            raise ValueError(f"smoothing must lie in (0, 1] or be None, got {smoothing!r}")
        if baseline_cycles is not None and (
            not isinstance(baseline_cycles, int | np.integer)
            or isinstance(baseline_cycles, bool)
            or baseline_cycles < 1
        ):
            raise ValueError(
                f"baseline_cycles must be a positive integer or None, got {baseline_cycles!r}"
            )
        columns = [f"sensor_{s}" for s in numbers]
        train_x = self.train[columns].to_numpy(dtype=np.float64)
        test_x = self.test[columns].to_numpy(dtype=np.float64)
        train_c, test_c = self.conditions()
        if normalise is not None:
            groups_tr = train_c if normalise == "condition" else np.zeros_like(train_c)
            groups_te = test_c if normalise == "condition" else np.zeros_like(test_c)
            train_x, test_x = train_x.copy(), test_x.copy()
            for g in np.unique(groups_tr):
                rows = groups_tr == g
                mean = train_x[rows].mean(axis=0)
                std = train_x[rows].std(axis=0)
                std[std < 1e-8] = 1.0  # constant sensors stay constant (0)
                train_x[rows] = (train_x[rows] - mean) / std
                test_rows = groups_te == g
                test_x[test_rows] = (test_x[test_rows] - mean) / std
        train_units = self.train["unit"].to_numpy()
        test_units = self.test["unit"].to_numpy()
        if smoothing is not None:
            train_x = _smooth_per_unit(train_x, train_units, float(smoothing))
            test_x = _smooth_per_unit(test_x, test_units, float(smoothing))
        channels = list(columns)
        if baseline_cycles is not None:
            k = int(baseline_cycles)
            train_x = np.hstack([train_x, train_x - _start_mean_per_unit(train_x, train_units, k)])
            test_x = np.hstack([test_x, test_x - _start_mean_per_unit(test_x, test_units, k)])
            channels += [f"{c}_drift" for c in columns]
        if cycle_feature:
            train_x = np.hstack([train_x, self.train[["cycle"]].to_numpy(np.float64) / 100.0])
            test_x = np.hstack([test_x, self.test[["cycle"]].to_numpy(np.float64) / 100.0])
            channels.append("cycle")
        if condition_features and self.n_conditions > 1:
            eye = np.eye(self.n_conditions)
            train_x = np.hstack([train_x, eye[train_c]])
            test_x = np.hstack([test_x, eye[test_c]])
            channels += [f"condition_{k}" for k in range(self.n_conditions)]

        rul = self.train_rul(rul_cap).to_numpy()
        X_train, y_train, groups = [], [], []
        for unit in np.unique(train_units):
            rows = train_units == unit
            x, r = train_x[rows].T, rul[rows]
            if window is None:
                X_train.append(np.ascontiguousarray(x))
                y_train.append(r)
                groups.append(unit)
            else:
                for end in range(window, x.shape[1] + 1):
                    X_train.append(np.ascontiguousarray(x[:, end - window : end]))
                    y_train.append(r[end - 1])
                    groups.append(unit)
        X_test, units = [], []
        for unit in np.unique(test_units):
            x = test_x[test_units == unit].T
            X_test.append(np.ascontiguousarray(x if window is None else x[:, -window:]))
            units.append(unit)
        units = np.asarray(units)
        return RULData(
            X_train=X_train,
            y_train=y_train if window is None else np.asarray(y_train),
            groups_train=np.asarray(groups),
            X_test=X_test,
            y_test=self.test_rul.loc[units].to_numpy(dtype=np.float64),
            units_test=units,
            channels=channels,
            options={
                "rul_cap": rul_cap,
                "sensors": numbers,
                "normalise": normalise,
                "window": window,
                "condition_features": condition_features,
                "smoothing": smoothing,
                "cycle_feature": cycle_feature,
                "baseline_cycles": baseline_cycles,
            },
        )


def _smooth_per_unit(x: np.ndarray, units: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing of the rows of ``x`` (cycles, in order within each unit), restarted
    at every unit: ``s_1 = x_1``, ``s_t = alpha x_t + (1 - alpha) s_{t-1}``."""
    out = np.empty_like(x)
    starts = np.r_[True, units[1:] != units[:-1]]
    prev = x[0]
    for t in range(len(x)):
        prev = x[t] if starts[t] else alpha * x[t] + (1.0 - alpha) * prev
        out[t] = prev
    return out


def _start_mean_per_unit(x: np.ndarray, units: np.ndarray, k: int) -> np.ndarray:
    """For every row of ``x`` (cycles, in order within each unit), the mean of its unit's first
    ``min(k, cycles so far)`` rows."""
    out = np.empty_like(x)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    for begin, end in zip(starts, np.r_[starts[1:], len(x)], strict=True):
        head = x[begin : min(begin + k, end)]
        running = np.cumsum(head, axis=0) / np.arange(1, len(head) + 1)[:, None]
        out[begin : begin + len(head)] = running
        out[begin + len(head) : end] = running[-1]
    return out


def load_cmapss(name: str, *, data_home: str | os.PathLike[str] | None = None) -> CMAPSSData:
    """Load one C-MAPSS subset (FD001, FD002, FD003 or FD004).

    The files ``cmapss/{train,test,RUL}_FD00x.txt`` (or ``.txt.gz``) are looked up in the data
    home and verified by sha256; they are not downloaded automatically (see
    ``datasets/cmapss.md``).

    Parameters
    ----------
    name : {"FD001", "FD002", "FD003", "FD004"}
        Subset (case-insensitive).
    data_home : str or os.PathLike, optional
        Default :func:`rwkv_ts.datasets.get_data_home`.

    Returns
    -------
    CMAPSSData
        ``train`` and ``test`` frames with columns ``unit, cycle, op_setting_1..3,
        sensor_1..21``, ``test_rul`` (true RUL after each test unit's last cycle).

    Raises
    ------
    ValueError
        Unknown subset, or a file that does not have the expected layout.
    FileNotFoundError, ChecksumError
        A file is missing from the data home, or differs from the registered one.

    Examples
    --------
    >>> from rwkv_ts.datasets import load_cmapss
    >>> data = load_cmapss("FD001")  # doctest: +SKIP
    >>> data.train.shape, data.test["unit"].nunique(), data.n_conditions  # doctest: +SKIP
    ((20631, 26), 100, 1)
    """
    key = str(name).upper()
    if key not in _SUBSETS:
        raise ValueError(f"unknown C-MAPSS subset {name!r}; expected one of {list(_SUBSETS)}")
    train = _read_table(locate(f"cmapss/train_{key}.txt", data_home, _SOURCE))
    test = _read_table(locate(f"cmapss/test_{key}.txt", data_home, _SOURCE))
    rul = pd.read_csv(
        locate(f"cmapss/RUL_{key}.txt", data_home, _SOURCE), sep=r"\s+", header=None
    ).iloc[:, 0]
    units = np.sort(test["unit"].unique())
    if len(rul) != len(units):
        raise ValueError(f"RUL_{key}.txt has {len(rul)} values for {len(units)} test units")
    test_rul = pd.Series(rul.to_numpy(dtype=np.float64), index=pd.Index(units, name="unit"))
    return CMAPSSData(
        name=key,
        train=train,
        test=test,
        test_rul=test_rul.rename("rul"),
        n_conditions=_SUBSETS[key],
    )
