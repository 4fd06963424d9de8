"""Tests of ``rwkv_ts.datasets``: data home, checksums, (offline) downloads and loaders."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import types
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rwkv_ts.datasets import (
    ChecksumError,
    DownloadError,
    ForecastingData,
    _fetch,
    get_data_home,
    list_datasets,
    load_co2,
    load_csv,
    load_ett,
)
from rwkv_ts.datasets._loaders import _infer_freq, _regular_grid
from rwkv_ts.datasets._registry import DATASETS

# Tests run from a clone whose sibling folder is shared/ (read-only real data).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ETT_DIR = SHARED_DATA / "ett-small"

needs_shared = pytest.mark.skipif(
    not (ETT_DIR / "ETTh1.csv").is_file(),
    reason=f"shared real data not found at {SHARED_DATA} (expected a sibling 'shared/' folder)",
)

ETT_COLUMNS = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


@pytest.fixture(autouse=True)
def _fresh_hash_cache():
    _fetch.clear_hash_cache()
    yield
    _fetch.clear_hash_cache()


@pytest.fixture
def shared_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (ETT_DIR / "ETTh1.csv").is_file():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    monkeypatch.setenv("RWKV_TS_DATA", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the sha256 objects created by ``_fetch`` (i.e. how often a file is hashed)."""
    calls = [0]

    def sha256(*args):
        calls[0] += 1
        return hashlib.sha256(*args)

    monkeypatch.setattr(_fetch, "hashlib", types.SimpleNamespace(sha256=sha256))
    return calls


# --------------------------------------------------------------------------- data home


def test_get_data_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RWKV_TS_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home(str(tmp_path / "arg")) == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.setenv("RWKV_TS_DATA", "~/rwkv-data")
    assert get_data_home() == Path.home() / "rwkv-data"
    monkeypatch.delenv("RWKV_TS_DATA")
    import platformdirs

    assert get_data_home() == Path(platformdirs.user_cache_dir("rwkv-ts"))
    monkeypatch.setenv("RWKV_TS_DATA", "")
    assert get_data_home() == Path(platformdirs.user_cache_dir("rwkv-ts"))


def test_list_datasets() -> None:
    assert list_datasets() == ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "co2_weekly"]


def test_registry_urls_pinned() -> None:
    for name in ["ETTh1", "ETTh2", "ETTm1", "ETTm2"]:
        (url,) = DATASETS[name].urls
        assert url == (
            "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/"
            f"1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/{name}.csv"
        )


# --------------------------------------------------------------------------- ETT


@needs_shared
@pytest.mark.parametrize(
    ("name", "n_rows", "freq", "scale"),
    [
        ("ETTh1", 17420, "h", 1),
        ("ETTh2", 17420, "h", 1),
        ("ETTm1", 69680, "15min", 4),
        ("ETTm2", 69680, "15min", 4),
    ],
)
def test_load_ett(shared_home: Path, name: str, n_rows: int, freq: str, scale: int) -> None:
    data = load_ett(name, download=False)
    assert isinstance(data, ForecastingData)
    assert data.name == name
    frame = data.frame
    assert frame.shape == (n_rows, 8)
    assert list(frame.columns) == ETT_COLUMNS
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert all(frame[c].dtype == np.float64 for c in ETT_COLUMNS[1:])
    assert not frame[ETT_COLUMNS[1:]].isna().any().any()
    assert frame["date"].iloc[0] == pd.Timestamp("2016-07-01 00:00")
    assert data.time_column == "date" and data.target == "OT"
    assert data.channels == ETT_COLUMNS[1:]
    assert data.freq == freq
    assert _infer_freq(frame["date"]) == freq
    assert data.borders == {
        "train": (0, 8640 * scale),
        "val": (8640 * scale, 11520 * scale),
        "test": (11520 * scale, 14400 * scale),
    }

    start, end = data.borders["test"]
    test = data.split("test", lookback=336)
    assert len(test) == end - start + 336
    assert list(test.index) == list(range(len(test)))
    assert test["date"].iloc[0] == frame["date"].iloc[start - 336]
    assert test["date"].iloc[-1] == frame["date"].iloc[end - 1]
    pd.testing.assert_frame_equal(test, frame.iloc[start - 336 : end].reset_index(drop=True))
    # train: the lookback is clipped at row 0
    assert len(data.split("train", lookback=336)) == data.borders["train"][1]
    val = data.split("val")
    assert val["date"].iloc[0] == frame["date"].iloc[data.borders["val"][0]]


@needs_shared
def test_load_ett_data_home_argument_and_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RWKV_TS_DATA", raising=False)
    data = load_ett("etth1", data_home=SHARED_DATA, download=False)
    assert data.name == "ETTh1"
    with pytest.raises(ValueError, match="unknown ETT data set"):
        load_ett("ETTh3", data_home=SHARED_DATA, download=False)
    with pytest.raises(ValueError, match="unknown ETT data set"):
        load_ett("co2_weekly", data_home=SHARED_DATA, download=False)


@needs_shared
def test_split_returns_a_copy(shared_home: Path) -> None:
    data = load_ett("ETTh2", download=False)
    part = data.split("val", lookback=10)
    before = data.frame["OT"].iloc[8630]
    part.loc[0, "OT"] = -1e9
    assert data.frame["OT"].iloc[8630] == before
    with pytest.raises(ValueError, match="unknown part"):
        data.split("holdout")
    with pytest.raises(ValueError, match="lookback"):
        data.split("test", lookback=-1)


@needs_shared
def test_hash_is_cached_by_path_mtime_size(
    tmp_path: Path, count_hashing: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RWKV_TS_DATA", raising=False)
    (tmp_path / "ett-small").mkdir()
    dest = tmp_path / "ett-small" / "ETTh1.csv"
    shutil.copyfile(ETT_DIR / "ETTh1.csv", dest)
    load_ett("ETTh1", data_home=tmp_path, download=False)
    assert count_hashing[0] == 1
    load_ett("ETTh1", data_home=tmp_path, download=False)
    assert count_hashing[0] == 1  # cached
    st = dest.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_ett("ETTh1", data_home=tmp_path, download=False)
    assert count_hashing[0] == 2  # new mtime: hashed again


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@needs_shared
def test_checksum_mismatch_plain(tmp_path: Path) -> None:
    (tmp_path / "ett-small").mkdir()
    dest = tmp_path / "ett-small" / "ETTh1.csv"
    shutil.copyfile(ETT_DIR / "ETTh1.csv", dest)
    _flip_byte(dest, 1000)
    actual = hashlib.sha256(dest.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as info:
        load_ett("ETTh1", data_home=tmp_path, download=False)
    msg = str(info.value)
    assert str(dest) in msg
    assert DATASETS["ETTh1"].sha256 in msg
    assert actual in msg
    assert "Delete" in msg and "download=True" in msg


@needs_shared
def test_checksum_mismatch_gzip(tmp_path: Path) -> None:
    (tmp_path / "ett-small").mkdir()
    dest = tmp_path / "ett-small" / "ETTm1.csv.gz"
    shutil.copyfile(ETT_DIR / "ETTm1.csv.gz", dest)
    _flip_byte(dest, 5000)
    with pytest.raises(ChecksumError) as info:
        load_ett("ETTm1", data_home=tmp_path, download=False)
    msg = str(info.value)
    assert str(dest) in msg
    assert DATASETS["ETTm1"].gz_sha256 in msg
    assert hashlib.sha256(dest.read_bytes()).hexdigest() in msg


@needs_shared
def test_gzip_variant_verified_through_content(tmp_path: Path) -> None:
    """A .csv.gz compressed differently from the registered one is accepted by content."""
    (tmp_path / "ett-small").mkdir()
    dest = tmp_path / "ett-small" / "ETTh2.csv.gz"
    dest.write_bytes(gzip.compress((ETT_DIR / "ETTh2.csv").read_bytes(), compresslevel=1))
    data = load_ett("ETTh2", data_home=tmp_path, download=False)
    assert data.frame.shape == (17420, 8)
    # a gzip of other content is rejected
    dest.write_bytes(gzip.compress(b"date,OT\n2016-07-01 00:00:00,1.0\n"))
    with pytest.raises(ChecksumError, match="decompressed content"):
        load_ett("ETTh2", data_home=tmp_path, download=False)


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_ett("ETTm2", data_home=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "ett-small" / "ETTm2.csv") in msg
    assert str(tmp_path / "ett-small" / "ETTm2.csv.gz") in msg
    assert "RWKV_TS_DATA" in msg
    assert not (tmp_path / "ett-small").exists()


# --------------------------------------------------------------------------- download (offline)


def _serve(monkeypatch: pytest.MonkeyPatch, payload: bytes | Exception) -> list[str]:
    """Replace urllib's opener with one that serves `payload` (or raises it)."""
    requested: list[str] = []

    def fake_urlopen(url, *args, **kwargs):
        requested.append(url)
        if isinstance(payload, Exception):
            raise payload
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


@needs_shared
def test_download_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, (ETT_DIR / "ETTh1.csv").read_bytes())
    data = load_ett("ETTh1", data_home=tmp_path)
    assert requested == list(DATASETS["ETTh1"].urls)
    dest = tmp_path / "ett-small" / "ETTh1.csv"
    assert dest.is_file()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == DATASETS["ETTh1"].sha256
    assert sorted(p.name for p in dest.parent.iterdir()) == ["ETTh1.csv"]  # no temp file
    assert data.frame.shape == (17420, 8)
    # second call: found in place, no new request
    load_ett("ETTh1", data_home=tmp_path)
    assert len(requested) == 1


@needs_shared
def test_download_corrupt_payload_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = bytearray((ETT_DIR / "ETTh2.csv").read_bytes())
    payload[123] ^= 0x01
    _serve(monkeypatch, bytes(payload))
    with pytest.raises(DownloadError) as info:
        load_ett("ETTh2", data_home=tmp_path)
    msg = str(info.value)
    dest = tmp_path / "ett-small" / "ETTh2.csv"
    assert "checksum mismatch" in msg
    assert DATASETS["ETTh2"].sha256 in msg
    assert str(dest) in msg and "by hand" in msg
    assert list(tmp_path.iterdir()) == []


def test_download_network_error_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, urllib.error.URLError("no network"))
    with pytest.raises(DownloadError, match="no network") as info:
        load_ett("ETTm1", data_home=tmp_path)
    assert str(tmp_path / "ett-small" / "ETTm1.csv") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_truncated_stream_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset")
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: Broken(b"x" * 100))
    with pytest.raises(DownloadError, match="connection reset"):
        load_ett("ETTh1", data_home=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- CO2


def test_embedded_co2_file_checksum() -> None:
    spec = DATASETS["co2_weekly"]
    raw = (resources.files("rwkv_ts.datasets") / "data" / "co2_weekly.csv.gz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == spec.gz_sha256
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == spec.sha256
    assert len(raw) < 50_000


def test_load_co2_filled() -> None:
    data = load_co2()
    frame = data.frame
    assert data.name == "co2_weekly"
    assert frame.shape == (2284, 2)
    assert list(frame.columns) == ["date", "co2"]
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert frame["co2"].dtype == np.float64
    assert not frame["co2"].isna().any()
    assert data.freq == "W-SAT" and data.target == "co2" and data.time_column == "date"
    assert _infer_freq(frame["date"]) == "W-SAT"
    assert (frame["date"].dt.day_of_week == 5).all()  # Saturdays
    assert frame["date"].iloc[0] == pd.Timestamp("1958-03-29")
    assert frame["date"].iloc[-1] == pd.Timestamp("2001-12-29")
    assert data.borders == {"train": (0, 1598), "val": (1598, 1828), "test": (1828, 2284)}
    assert len(data.split("test", lookback=52)) == 2284 - 1828 + 52


def test_load_co2_missing_and_interpolation() -> None:
    raw = load_co2(fill_missing=False).frame
    filled = load_co2().frame
    missing = raw["co2"].isna()
    assert int(missing.sum()) == 59
    # observed values are untouched
    np.testing.assert_array_equal(filled["co2"][~missing], raw["co2"][~missing])
    # 1958-05-10 (row 6) is a single missing week between two observed ones
    assert missing.iloc[6] and not missing.iloc[5] and not missing.iloc[7]
    expected = (raw["co2"].iloc[5] + raw["co2"].iloc[7]) / 2
    assert filled["co2"].iloc[6] == pytest.approx(expected)
    # every filled value is a time-linear interpolation between the observed neighbours
    obs = ~missing.to_numpy()
    t = filled["date"].to_numpy().astype("int64")
    interp = np.interp(t, t[obs], raw["co2"].to_numpy()[obs])
    np.testing.assert_allclose(filled["co2"].to_numpy(), interp)


def test_regular_grid_reindexes_gaps_and_rejects_off_grid() -> None:
    dates = pd.date_range("2000-01-01", periods=6, freq="W-SAT")
    frame = pd.DataFrame({"date": dates.delete([2, 3]), "y": [1.0, 2.0, 5.0, 6.0]})
    out = _regular_grid(frame, "date", "W-SAT")
    assert list(out.columns) == ["date", "y"]
    assert list(out["date"]) == list(dates)
    assert out["y"].isna().tolist() == [False, False, True, True, False, False]
    same = pd.DataFrame({"date": dates, "y": np.arange(6.0)})
    assert _regular_grid(same, "date", "W-SAT") is same
    off = pd.DataFrame({"date": [dates[0], dates[1] + pd.Timedelta(days=1)], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="off the regular"):
        _regular_grid(off, "date", "W-SAT")
    with pytest.raises(ValueError, match="strictly increasing"):
        _regular_grid(same.iloc[::-1], "date", "W-SAT")


# --------------------------------------------------------------------------- CSV


def _write_csv(path: Path, n: int = 50, *, freq: str = "h") -> Path:
    dates = pd.date_range("2024-01-01", periods=n, freq=freq)
    frame = pd.DataFrame(
        {"timestamp": dates.strftime("%Y-%m-%d %H:%M:%S"), "a": np.arange(n), "b": np.ones(n)}
    )
    frame.to_csv(path, index=False)
    return path


def test_load_csv_defaults(tmp_path: Path) -> None:
    data = load_csv(_write_csv(tmp_path / "sensor.csv", n=50))
    assert data.name == "sensor"
    assert data.time_column == "timestamp"
    assert list(data.frame.columns) == ["timestamp", "a", "b"]
    assert data.frame["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert data.frame["a"].dtype == np.float64
    assert data.freq == "h"
    assert data.target == "b"
    # custom convention: int(0.7 * 50) = 35, int(0.2 * 50) = 10, val = 5
    assert data.borders == {"train": (0, 35), "val": (35, 40), "test": (40, 50)}
    assert len(data.split("test", lookback=12)) == 22


def test_load_csv_custom_borders_rounding(tmp_path: Path) -> None:
    data = load_csv(_write_csv(tmp_path / "x.csv", n=97, freq="15min"))
    assert data.freq == "15min"
    # int(67.9) = 67, int(19.4) = 19, val = 97 - 67 - 19 = 11
    assert data.borders == {"train": (0, 67), "val": (67, 78), "test": (78, 97)}


def test_load_csv_options(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "x.csv.gz", n=20, freq="D")
    data = load_csv(
        path,
        time_column="timestamp",
        freq="D",
        borders={"train": (0, 10), "val": (10, 15), "test": (15, 20)},
        target="a",
        name="mine",
    )
    assert data.name == "mine" and data.freq == "D" and data.target == "a"
    assert data.borders["val"] == (10, 15)
    assert data.split("val", lookback=3)["a"].tolist() == list(np.arange(7.0, 15.0))
    assert load_csv(path).name == "x"
    assert load_csv(path, borders=(0.5, 0.25, 0.25)).borders["test"] == (15, 20)


def test_load_csv_without_time_column(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("u,v\n1,2\n3,4\n5,\n")
    data = load_csv(path)
    assert data.time_column is None and data.freq is None
    assert data.channels == ["u", "v"]
    assert np.isnan(data.frame["v"].iloc[2])


def test_load_csv_irregular_freq_is_none(tmp_path: Path) -> None:
    path = tmp_path / "irr.csv"
    path.write_text("date,y\n2024-01-01,1\n2024-01-02,2\n2024-01-05,3\n2024-01-06,4\n")
    assert load_csv(path).freq is None


def test_load_csv_errors(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "x.csv", n=10)
    with pytest.raises(ValueError, match="'when' not found") as info:
        load_csv(path, time_column="when")
    assert "timestamp" in str(info.value)

    bad = tmp_path / "bad.csv"
    bad.write_text("date,y,label\n2024-01-01,1,up\n2024-01-02,2,down\n2024-01-03,3,up\n")
    with pytest.raises(ValueError, match=r"non-numeric channel column\(s\) \['label'\]"):
        load_csv(bad)

    notime = tmp_path / "notime.csv"
    notime.write_text("when,y\nmonday,1\ntuesday,2\n")
    with pytest.raises(ValueError, match="pass time_column='when'"):
        load_csv(notime)
    with pytest.raises(ValueError, match="time column 'when' .* does not parse as dates"):
        load_csv(notime, time_column="when")

    holes = tmp_path / "holes.csv"
    holes.write_text("date,y\n2024-01-01,1\n,2\n2024-01-03,3\n")
    with pytest.raises(ValueError, match="1 empty or unparseable"):
        load_csv(holes)

    with pytest.raises(ValueError, match="not a valid pandas offset alias"):
        load_csv(path, freq="fortnightly-ish")
    with pytest.raises(ValueError, match="summing to 1"):
        load_csv(path, borders=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="not within"):
        load_csv(path, borders={"train": (0, 5), "val": (5, 8), "test": (8, 11)})
    with pytest.raises(ValueError, match="target 'zz'"):
        load_csv(path, target="zz")
    only_time = tmp_path / "only_time.csv"
    only_time.write_text("date\n2024-01-01\n2024-01-02\n")
    with pytest.raises(ValueError, match="no channel column"):
        load_csv(only_time)


def test_to_polars_and_polars_split() -> None:
    pl = pytest.importorskip("polars")
    data = load_co2()
    frame = data.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == ["date", "co2"] and frame.height == 2284
    assert frame.schema["date"] == pl.Datetime("ns")
    part = data.split("test", lookback=4, backend="polars")
    assert part.height == 2284 - 1828 + 4
    np.testing.assert_array_equal(part["co2"].to_numpy(), data.split("test", 4)["co2"].to_numpy())


def test_download_unwritable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, b"unused")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DownloadError, match="cannot create") as info:
        load_ett("ETTh1", data_home=blocker)
    assert "by hand" in str(info.value)
    assert requested == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
