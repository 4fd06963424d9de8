"""save -> load gives the same predictions; tampered or foreign files fail with a clear error."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from safetensors.torch import save_file

import rwkv_ts
from rwkv_ts import RWKVForecaster
from rwkv_ts.persistence import ModelFileError

TINY = dict(
    horizon=6,
    lookback=32,
    patch_len=8,
    stride=4,
    d_model=16,
    head_size=8,
    n_layers=1,
    max_epochs=1,
    verbose=False,
    random_state=0,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, etth1):
    frame = etth1.frame[["date", "HUFL", "OT"]].iloc[:300].copy()
    est = RWKVForecaster(**TINY).fit(frame)
    path = tmp_path_factory.mktemp("model") / "model.rwkvts"
    est.save(path)
    return est, path, frame


def test_round_trip_same_predictions(saved):
    est, path, frame = saved
    loaded = rwkv_ts.load(path)
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    pd.testing.assert_frame_equal(loaded.predict(frame.iloc[:100]), est.predict(frame.iloc[:100]))
    assert loaded.get_params() == est.get_params()
    assert loaded.config_ == est.config_


@pytest.mark.parametrize(
    "make",
    [
        lambda f: pl.from_pandas(f),
        lambda f: f.set_index("date")["OT"],
        lambda f: f[["HUFL", "OT"]].to_numpy(),
        lambda f: pd.concat(
            [pd.DataFrame({"unique_id": k, "ds": f["date"], "y": f[k]}) for k in ("HUFL", "OT")]
        ),
        lambda f: f.assign(date=f["date"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")),
    ],
    ids=["polars", "series", "numpy", "long", "tz"],
)
def test_round_trip_every_input_kind(etth1, tmp_path, make):
    frame = etth1.frame[["date", "HUFL", "OT"]].iloc[:300].copy()
    data = make(frame)
    est = RWKVForecaster(**TINY).fit(data)
    path = tmp_path / "m.rwkvts"
    est.save(path)
    a, b = est.predict(), rwkv_ts.load(path).predict()
    if isinstance(a, pl.DataFrame):
        assert a.equals(b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    else:
        pd.testing.assert_frame_equal(a, b)


def _header(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return n, json.loads(fh.read(n))


def test_truncated_file(saved, tmp_path):
    _, path, _ = saved
    bad = tmp_path / "truncated.rwkvts"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelFileError, match="truncated|corrupt|readable"):
        rwkv_ts.load(bad)


def test_flipped_header_bytes(saved, tmp_path):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    bad = tmp_path / "flipped.rwkvts"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        rwkv_ts.load(bad)


def test_pickle_payload_is_rejected(tmp_path):
    bad = tmp_path / "evil.rwkvts"
    bad.write_bytes(pickle.dumps({"model": "not a model"}))
    with pytest.raises(ModelFileError):
        rwkv_ts.load(bad)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        rwkv_ts.load("/nonexistent/model.rwkvts")


def _rewrite(path, tmp_path, edit_tensors=None, edit_header=None, metadata_format=None):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    header = json.loads(metadata["rwkv_ts"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_header:
        edit_header(header)
    metadata["rwkv_ts"] = json.dumps(header)
    if metadata_format is not None:
        metadata["format"] = metadata_format
    out = tmp_path / "edited.rwkvts"
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_newer_format_version(saved, tmp_path):
    _, path, _ = saved
    out = _rewrite(path, tmp_path, edit_header=lambda h: h.update(format_version=99))
    with pytest.raises(ModelFileError, match="newer"):
        rwkv_ts.load(out)


def test_missing_tensor(saved, tmp_path):
    _, path, _ = saved
    out = _rewrite(path, tmp_path, edit_tensors=lambda t: t.pop("model.head.linear.weight"))
    with pytest.raises(ModelFileError, match="head.linear.weight"):
        rwkv_ts.load(out)


def test_wrong_shape(saved, tmp_path):
    _, path, _ = saved

    def shrink(t):
        t["model.head.linear.weight"] = torch.zeros(3, 3)

    out = _rewrite(path, tmp_path, edit_tensors=shrink)
    with pytest.raises(ModelFileError, match="shape"):
        rwkv_ts.load(out)


def test_foreign_safetensors_file(tmp_path):
    out = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(out))
    with pytest.raises(ModelFileError, match="not an rwkv-ts"):
        rwkv_ts.load(out)


def test_save_unfitted_raises(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RWKVForecaster().save(tmp_path / "x.rwkvts")
