"""Time-series classification data sets: UCR (univariate, ``.tsv``) and UEA (multivariate,
``.ts``) archive files, with their given TRAIN/TEST split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._files import locate
from ._registry import DATA_FILES

__all__ = ["list_classification_datasets", "load_classification", "read_ts", "read_ucr_tsv"]

_SOURCE = (
    "the UCR archive 2018 (www.cs.ucr.edu/~eamonn/time_series_data_2018/) or the UEA "
    "multivariate archive (www.timeseriesclassification.com); see datasets/ts_classification.md"
)


def _registered() -> dict[str, str]:
    """Data set name -> archive folder (``ucr`` or ``uea``)."""
    out = {}
    for path in DATA_FILES:
        parts = Path(path).parts
        if parts[0] == "ts_classification":
            out[parts[2]] = parts[1]
    return out


def list_classification_datasets() -> list[str]:
    """Names of the registered classification data sets (UCR first, then UEA).

    Examples
    --------
    >>> names = list_classification_datasets()
    >>> len(names), names[0], names[-1]
    (12, 'CBF', 'NATOPS')
    """
    reg = _registered()
    return sorted(reg, key=lambda n: (reg[n], n))


def _labels(raw: list[str]) -> np.ndarray:
    """Labels as integers when they all are integral numbers, else as the strings of the file."""
    try:
        values = np.array([float(v) for v in raw])
    except ValueError:
        return np.array(raw, dtype=object)
    if np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def read_ucr_tsv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a UCR 2018 ``.tsv`` file: one series per line, the class label first.

    Returns
    -------
    X : numpy.ndarray of shape (n_instances, 1, n_timepoints)
        ``NaN`` where the file has no value (variable-length sets are padded with NaN).
    y : numpy.ndarray of shape (n_instances,)
    """
    rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8")]
    rows = [r for r in rows if r and r != [""]]
    length = max(len(r) for r in rows) - 1
    X = np.full((len(rows), 1, length), np.nan)
    for i, r in enumerate(rows):
        values = [float(v) if v not in ("", "NaN", "nan") else np.nan for v in r[1:]]
        X[i, 0, : len(values)] = values
    return X, _labels([r[0] for r in rows])


def read_ts(path: str | os.PathLike[str]) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """Read a ``.ts`` file (the sktime/UEA format): ``#`` comments, ``@`` header lines, then one
    case per line, dimensions separated by ``:``, values by ``,``, the class label last.

    Returns
    -------
    X : numpy.ndarray (n_instances, n_channels, n_timepoints), or a list of (n_channels, T_i)
        arrays when the lengths differ. ``?`` (missing) becomes ``NaN``.
    y : numpy.ndarray of shape (n_instances,)
    """
    cases, labels = [], []
    in_data = False
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if line.lower().startswith("@data"):
                in_data = True
            continue
        *dims, label = line.split(":")
        if not dims:
            raise ValueError(f"{path}: a data line has no dimensions: {line[:60]!r}")
        channels = [
            np.array([np.nan if v in ("?", "") else float(v) for v in d.split(",")]) for d in dims
        ]
        if len({len(c) for c in channels}) > 1:
            raise ValueError(f"{path}: case {len(cases)} has dimensions of different lengths")
        cases.append(np.stack(channels))
        labels.append(label.strip())
    if not cases:
        raise ValueError(f"{path} has no @data section or no cases")
    if len({c.shape for c in cases}) == 1:
        return np.stack(cases), _labels(labels)
    return cases, _labels(labels)


def load_classification(
    name: str, split: str = "train", *, data_home: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """Load the given TRAIN or TEST part of a registered UCR/UEA classification data set.

    The files ``ts_classification/{ucr,uea}/<name>/<name>_{TRAIN,TEST}.{tsv,ts}`` are looked up
    in the data home and verified by sha256; they are not downloaded automatically.

    Parameters
    ----------
    name : str
        One of :func:`list_classification_datasets` (case-insensitive).
    split : {"train", "test"}, default "train"
    data_home : str or os.PathLike, optional
        Default :func:`rwkv_ts.datasets.get_data_home`.

    Returns
    -------
    X : numpy.ndarray of shape (n_instances, n_channels, n_timepoints)
        (a list of ``(n_channels, T_i)`` arrays for unequal lengths), float64.
    y : numpy.ndarray of shape (n_instances,)
        Labels as in the file: integers when integral (ECG200's ``-1``/``1``), else strings
        (Epilepsy's ``"EPILEPSY"``, NATOPS's ``"1.0"`` ... are integral: ``1`` ...).

    Examples
    --------
    >>> from rwkv_ts.datasets import load_classification
    >>> X, y = load_classification("ECG200", "train")  # doctest: +SKIP
    >>> X.shape, sorted(set(y))  # doctest: +SKIP
    ((100, 1, 96), [-1, 1])
    """
    reg = _registered()
    lookup = {n.lower(): n for n in reg}
    canonical = lookup.get(str(name).lower())
    if canonical is None:
        raise ValueError(
            f"unknown classification data set {name!r}; known: {list_classification_datasets()}"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    archive = reg[canonical]
    ext = "tsv" if archive == "ucr" else "ts"
    rel = f"ts_classification/{archive}/{canonical}/{canonical}_{split.upper()}.{ext}"
    path = locate(rel, data_home, _SOURCE)
    return read_ucr_tsv(path) if ext == "tsv" else read_ts(path)
