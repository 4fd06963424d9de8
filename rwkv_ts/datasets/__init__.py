"""Data set loaders: a data home with checksums and downloads, plus an embedded default.

* :func:`load_ett` -- the ETT-small benchmarks (ETTh1, ETTh2, ETTm1, ETTm2), looked up in
  the data home (:func:`get_data_home`), verified by sha256 and downloaded on first use.
* :func:`load_co2` -- Mauna Loa weekly CO2, shipped with the package (no download).
* :func:`load_csv` -- any CSV of your own, with the "custom" 0.7 / 0.1 / 0.2 split.
* :func:`load_cmapss` -- NASA C-MAPSS turbofan run-to-failure data (remaining useful life).
* :func:`load_classification` -- UCR (``.tsv``) and UEA (``.ts``) classification data sets.
* :func:`load_fsdd`, :func:`load_speech_commands` -- spoken digits and speech commands (audio),
  with :func:`make_vad_streams` (noisy voice-activity streams, :class:`VADExample`),
  :func:`frame_labels` and :func:`make_digit_utterances` (:class:`DigitUtterance`).

Every time-series loader returns a :class:`ForecastingData`: a pandas frame (time column + float64
channels), the target, the frequency and the train/val/test borders, with
:meth:`ForecastingData.split` for the rows of one part including the lookback overlap.

Examples
--------
>>> from rwkv_ts.datasets import list_datasets, load_co2
>>> "ETTh1" in list_datasets()
True
>>> train = load_co2().split("train")
>>> train.shape
(1598, 2)
"""

from ._audio import (
    DigitUtterance,
    VADExample,
    frame_labels,
    load_fsdd,
    load_speech_commands,
    make_digit_utterances,
    make_vad_streams,
)
from ._base import ForecastingData
from ._classification import list_classification_datasets, load_classification
from ._cmapss import CMAPSSData, RULData, load_cmapss
from ._fetch import ChecksumError, DownloadError, get_data_home
from ._loaders import load_co2, load_csv, load_ett
from ._registry import list_datasets

__all__ = [
    "CMAPSSData",
    "ChecksumError",
    "DigitUtterance",
    "DownloadError",
    "ForecastingData",
    "frame_labels",
    "get_data_home",
    "RULData",
    "list_classification_datasets",
    "list_datasets",
    "load_classification",
    "load_cmapss",
    "load_co2",
    "load_csv",
    "load_ett",
    "load_fsdd",
    "load_speech_commands",
    "make_digit_utterances",
    "make_vad_streams",
    "VADExample",
]
