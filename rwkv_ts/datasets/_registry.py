"""Registry of the known data sets: files, checksums, pinned URLs, frequency, target, borders."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATASETS", "DatasetSpec", "get_spec", "list_datasets"]

#: zhouhaoyi/ETDataset commit the ETT files are pinned to (see ``datasets/ett.md``).
ETT_COMMIT = "1d16c8f4f943005d613b5bc962e9eeb06058cf07"
_ETT_RAW = f"https://raw.githubusercontent.com/zhouhaoyi/ETDataset/{ETT_COMMIT}/ETT-small"
_ETT_COLUMNS = ("date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
_ETT_CITATION = (
    "Zhou, H., Zhang, S., Peng, J., Zhang, S., Li, J., Xiong, H., Zhang, W. (2021). Informer: "
    "Beyond Efficient Transformer for Long Sequence Time-Series Forecasting. AAAI 35(12), "
    "11106-11115."
)
_ETT_LICENSE = "CC BY-ND 4.0"

Borders = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one data set.

    Parameters
    ----------
    name : str
        Canonical name (``"ETTh1"``).
    folder : str
        Sub-folder of the data home holding the file (``"ett-small"``); ``""`` for an
        embedded data set, which lives in the package.
    filename : str
        Name of the plain file (``"ETTh1.csv"``); a gzip variant adds ``".gz"``.
    sha256 : str
        sha256 of the plain (uncompressed) file.
    gz_sha256 : str or None
        sha256 of the canonical ``gzip -9n`` variant, when known. Other gzip variants are
        verified through their decompressed content.
    urls : tuple of str
        Download URLs of the plain file, pinned to a commit; empty when embedded.
    freq : str
        Pandas offset alias.
    target : str
        Conventional target column.
    columns : tuple of str
        Expected header (time column first).
    n_rows : int
        Expected number of data rows in the file.
    borders : tuple of three (int, int)
        Train, val and test row ranges without lookback overlap.
    embedded : bool
        Shipped inside the package (no download).
    license : str
        License of the data.
    citation : str
        How to cite it.
    """

    name: str
    folder: str
    filename: str
    sha256: str
    gz_sha256: str | None
    urls: tuple[str, ...]
    freq: str
    target: str
    columns: tuple[str, ...]
    n_rows: int
    borders: Borders
    embedded: bool = False
    license: str = ""
    citation: str = ""

    @property
    def relative_paths(self) -> tuple[str, str]:
        """Accepted locations inside the data home: the plain file, then the gzip variant."""
        base = f"{self.folder}/{self.filename}" if self.folder else self.filename
        return (base, base + ".gz")

    def borders_dict(self) -> dict[str, tuple[int, int]]:
        """The borders as a fresh ``{"train": ..., "val": ..., "test": ...}`` dict."""
        return dict(zip(("train", "val", "test"), self.borders, strict=True))


def _ett(name: str, sha256: str, gz_sha256: str | None, *, minutes: bool) -> DatasetSpec:
    scale = 4 if minutes else 1
    month = 30 * 24 * scale
    return DatasetSpec(
        name=name,
        folder="ett-small",
        filename=f"{name}.csv",
        sha256=sha256,
        gz_sha256=gz_sha256,
        urls=(f"{_ETT_RAW}/{name}.csv",),
        freq="15min" if minutes else "h",
        target="OT",
        columns=_ETT_COLUMNS,
        n_rows=17420 * scale,
        borders=((0, 12 * month), (12 * month, 16 * month), (16 * month, 20 * month)),
        license=_ETT_LICENSE,
        citation=_ETT_CITATION,
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _ett(
            "ETTh1",
            "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
            None,
            minutes=False,
        ),
        _ett(
            "ETTh2",
            "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
            None,
            minutes=False,
        ),
        _ett(
            "ETTm1",
            "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
            "ca45123028f1acad120b5f971ca64594746aa9b881d56cdff589ee9aa6cdbd8f",
            minutes=True,
        ),
        _ett(
            "ETTm2",
            "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
            "40da2dc79c8f7140eab4f3456debdf85fe8baca5d626280f1ba50181be8ae4ed",
            minutes=True,
        ),
        DatasetSpec(
            name="co2_weekly",
            folder="",
            filename="co2_weekly.csv",
            sha256="16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
            gz_sha256="29e98b0e664a91de9748e9603e6f8f66a031fd502c92b73e31799e45deb93b29",
            urls=(),
            freq="W-SAT",
            target="co2",
            columns=("date", "co2"),
            n_rows=2284,
            # custom 0.7 / 0.1 / 0.2 convention on 2284 rows
            borders=((0, 1598), (1598, 1828), (1828, 2284)),
            embedded=True,
            license="Public domain",
            citation=(
                "Keeling, C.D. and T.P. Whorf (2004). Atmospheric CO2 concentrations derived "
                "from flask air samples at sites in the SIO network. In Trends: A Compendium "
                "of Data on Global Change. CDIAC, Oak Ridge National Laboratory, U.S. "
                "Department of Energy, Oak Ridge, Tennessee, U.S.A."
            ),
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """Look a data set up by name (case-insensitive); ``KeyError`` lists the known names."""
    spec = DATASETS.get(name)
    if spec is not None:
        return spec
    for key, value in DATASETS.items():
        if key.lower() == str(name).lower():
            return value
    raise KeyError(f"unknown data set {name!r}; known data sets: {list_datasets()}")


def list_datasets() -> list[str]:
    """Names of the registered data sets.

    ``ETTh1``, ``ETTh2``, ``ETTm1`` and ``ETTm2`` are loaded with
    :func:`~rwkv_ts.datasets.load_ett` (downloaded on first use); ``co2_weekly`` ships with
    the package and is loaded with :func:`~rwkv_ts.datasets.load_co2`.

    Returns
    -------
    list of str
        The names, in registry order.

    Examples
    --------
    >>> list_datasets()
    ['ETTh1', 'ETTh2', 'ETTm1', 'ETTm2', 'co2_weekly']
    """
    return list(DATASETS)
