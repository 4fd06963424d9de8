"""Registry of the known data sets: files, checksums, pinned URLs, frequency, target, borders."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATASETS", "DATA_FILES", "DataFile", "DatasetSpec", "get_spec", "list_datasets"]

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


# --------------------------------------------------------------------------- files of the
# C-MAPSS and classification loaders (``load_cmapss``, ``load_classification``): no borders or
# frequency, only where each file lives in the data home and its checksums (the shared data's
# SOURCE.md files).


@dataclass(frozen=True)
class DataFile:
    """A registered file: its path in the data home, the sha256 of the plain file and, when the
    file may be stored gzip-compressed (``gzip -9n``), of that variant."""

    path: str
    sha256: str
    gz_sha256: str | None = None


DATA_FILES: dict[str, DataFile] = {
    f.path: f
    for f in (
        DataFile(
            "cmapss/RUL_FD001.txt",
            "a19c8ec94931949d0485bdc35118206e9c81c4547b422efb9cf86f4ceddbceca",
            "ddc1ac9969bc6945fe139e982dff4e8fbbea35a6262e7d9a20a32df5e170563a",
        ),
        DataFile(
            "cmapss/RUL_FD002.txt",
            "c851dd96a6ea6998d3c4a8f834d3c8013aa90e93a6ed950dc826ad0655b2906b",
            "dcb80919263147ce3bd6dd042e3fc3620120be02382815566f05cab73f9416f1",
        ),
        DataFile(
            "cmapss/RUL_FD003.txt",
            "df1e0566306b174a2de41c67a3e7a51877889598b78643fc3e5685259091b7cb",
            "eb2240b3802e85a12a5e2c212bf8cbb8493a4983219b0eb83bb28ff9f043c781",
        ),
        DataFile(
            "cmapss/RUL_FD004.txt",
            "196b836b85a95ac7fdbbf29c5fdf1657382eafa445644d114ffaaf50dc2975e1",
            "d51e0edb6b8402ff8babb4891303d56af481640435305dc9b62ad782b7323a8f",
        ),
        DataFile(
            "cmapss/test_FD001.txt",
            "3cda7109ce17bafb5443f2ac926cfcf88154b941b8c4cf95eb55d1ddd6f52851",
            "b132843f5188d465a4b252dbbf0b6940c45af1fe12afbdf427acfa71f9618c54",
        ),
        DataFile(
            "cmapss/test_FD002.txt",
            "de7b5bf7e998a985c378488480528b7c02cff1406a46740def362dda8d9b4e02",
            "69156f4e20ad30c0c0ca93ac40ec889d595cb3b1ed60325350b9a9795c67f09d",
        ),
        DataFile(
            "cmapss/test_FD003.txt",
            "299babd63c8d987cef079c4a425429f33b3a34797d803bbe2ad48c29dbd0d790",
            "26b9116c32657b82414a5cdfb968b0f18d5834ba37bda95178ba4db91293db37",
        ),
        DataFile(
            "cmapss/test_FD004.txt",
            "1dc675fff0624bac10786927c6715b37d1297657137400d2b1a3138d777a3ba5",
            "fe6a66aaae62d6483b1fcf773a12e1c6efc05536fc84361edae0ee86bbd6d435",
        ),
        DataFile(
            "cmapss/train_FD001.txt",
            "963b5e22825b34d8b21c69e1aeb4af3e647050eb672ee8834ba4b5d91d2de0f8",
            "129645b2abec2ff391d6677af8828e9f8957164923e75a928fb1ad93b3ad5346",
        ),
        DataFile(
            "cmapss/train_FD002.txt",
            "dac6c4dbc4e7c1bdeb5747da3d313d05c395bb99801b44a002b26a2ba13d788f",
            "ebc877202ad6630f624b453d96a1c19030d97002db72791455a54756bbd20620",
        ),
        DataFile(
            "cmapss/train_FD003.txt",
            "2abbe9968cc5e8eb091980f51b20f62bb4127336d3482cb52071d53bf23329e2",
            "da3b3e5ee97d87e7c7f394d9dbf634a412fe2e2c1ad52a3f9e67b1f1363b2247",
        ),
        DataFile(
            "cmapss/train_FD004.txt",
            "27ef6160b6a1dcb2613a88de9c239f763b223f02cdc41dc5cdedc5dc189b6218",
            "00d9e88f0f72e1ed1a90386e4f2a454408040200b0975550d474a4a01f0264a5",
        ),
        DataFile(
            "ts_classification/ucr/CBF/CBF_TEST.tsv",
            "9485e783f961cbc6343f7da504fd8f6f9502e9000fd379bc60c688ff5d637965",
        ),
        DataFile(
            "ts_classification/ucr/CBF/CBF_TRAIN.tsv",
            "eb25c656d86a28328bca2a3c4bd0dcd54f27546b6a83f84a635cf581a55cead4",
        ),
        DataFile(
            "ts_classification/ucr/Coffee/Coffee_TEST.tsv",
            "07f25cedb9fd819a201e7de6abbdc444695b4b16ee70295010e401f18c38babd",
        ),
        DataFile(
            "ts_classification/ucr/Coffee/Coffee_TRAIN.tsv",
            "a722ab8acd6c18b11b8fa835fbe523fc072e6ce4434b44d7919fa95152d377bf",
        ),
        DataFile(
            "ts_classification/ucr/ECG200/ECG200_TEST.tsv",
            "c8ac02caf98be23c47c044fde026219301ceaf0b2f97bc107bd0cd96330b867c",
        ),
        DataFile(
            "ts_classification/ucr/ECG200/ECG200_TRAIN.tsv",
            "bd08b37147ebf205231ad43e02c42dd5c14bc348f4ccc7614f85634c8916bf21",
        ),
        DataFile(
            "ts_classification/ucr/ECGFiveDays/ECGFiveDays_TEST.tsv",
            "bb9706f13954be81bf9b47aa6e8634e94f11fdee93237e3c039d8822eef4439f",
        ),
        DataFile(
            "ts_classification/ucr/ECGFiveDays/ECGFiveDays_TRAIN.tsv",
            "e81cc7d1b974324b432ce50bc6e9dac88e3111ffd46dccd1df1e4863e82022c3",
        ),
        DataFile(
            "ts_classification/ucr/FaceFour/FaceFour_TEST.tsv",
            "72716dfe414e3c33255337f747c5c3aa7d8ba3073c3c62a50732c0abbfe8898f",
        ),
        DataFile(
            "ts_classification/ucr/FaceFour/FaceFour_TRAIN.tsv",
            "fc607f610415432fef99fd19df6524758c1570b9cafd2c71d5afa06f9e922b02",
        ),
        DataFile(
            "ts_classification/ucr/Lightning7/Lightning7_TEST.tsv",
            "30517c3e117197708f47b7d869560d11df2c8b1c1647612109cb1a9aef2d7d6b",
        ),
        DataFile(
            "ts_classification/ucr/Lightning7/Lightning7_TRAIN.tsv",
            "1a24ebce9a84dcf2cf2b3b304b60b26387fa5083196c6fac25ac49ecff022532",
        ),
        DataFile(
            "ts_classification/ucr/MoteStrain/MoteStrain_TEST.tsv",
            "274054773af4248858e904af818b45748374c8d092aa72c001fbc422062cf88f",
        ),
        DataFile(
            "ts_classification/ucr/MoteStrain/MoteStrain_TRAIN.tsv",
            "ebd2f254f42f7399a754fb94cbea230eaa48b21c10fc58fa5dc68eb1cd658633",
        ),
        DataFile(
            "ts_classification/ucr/SonyAIBORobotSurface1/SonyAIBORobotSurface1_TEST.tsv",
            "b65c5401130e362f6c2c26c9afdab8011664875329d48e7e514d445fd0ac932c",
        ),
        DataFile(
            "ts_classification/ucr/SonyAIBORobotSurface1/SonyAIBORobotSurface1_TRAIN.tsv",
            "71487dd296ad3ccd82c07b2f412dad54620464c01737c2936c84f794fdafd3e2",
        ),
        DataFile(
            "ts_classification/ucr/SyntheticControl/SyntheticControl_TEST.tsv",
            "cd44464b200820913f928a952af78d512ee3924f6243053d28a6d45c0aacdb76",
        ),
        DataFile(
            "ts_classification/ucr/SyntheticControl/SyntheticControl_TRAIN.tsv",
            "58af636cbd5592bdda45ba638629e40f17c08354aa545a61fd41b92582bdd176",
        ),
        DataFile(
            "ts_classification/ucr/TwoLeadECG/TwoLeadECG_TEST.tsv",
            "18dd890ee9963869e22b137aa4e54736d2b2384251a20ec831f2dc7620be2f3f",
        ),
        DataFile(
            "ts_classification/ucr/TwoLeadECG/TwoLeadECG_TRAIN.tsv",
            "63c29e3f7f0411b729c6c90732cb1c1c08f257a7130b15680f484e82d6ed17a8",
        ),
        DataFile(
            "ts_classification/uea/Epilepsy/Epilepsy_TEST.ts",
            "e68e220e31a9235fd7da23bbae2e59bd8315a3cc4c2b12f803885235b61b52ac",
        ),
        DataFile(
            "ts_classification/uea/Epilepsy/Epilepsy_TRAIN.ts",
            "e2555afb91b2484831bcc66b3b5db3a362ba0697e855cfbb041eac165e371022",
        ),
        DataFile(
            "ts_classification/uea/NATOPS/NATOPS_TEST.ts",
            "3a9a41a948c30d19db6b9e0ec44d946d42199c4f8724c2aa6e8b71b28612404e",
        ),
        DataFile(
            "ts_classification/uea/NATOPS/NATOPS_TRAIN.ts",
            "3567f0aa297e89327215ee1147537e06f7bdc51f48ac8d2c39aaa34fb1eab1b7",
        ),
    )
}
