"""save -> load gives the same predictions; tampered or foreign files fail with a clear error."""

from __future__ import annotations

import json
import pickle
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

import rwkv_ts
from rwkv_ts import RWKVForecaster
from rwkv_ts._safefile import CHECKSUM_KEY, seal
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


def _rewrite(
    path, tmp_path, edit_tensors=None, edit_header=None, metadata_format=None, reseal=True
):
    """An edited copy; ``reseal`` recomputes the checksum, as a deliberate editor would, so that
    the checks behind the checksum are exercised; without it the copy has no checksum."""
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
    metadata.pop(CHECKSUM_KEY)
    if reseal:
        out.write_bytes(seal(lambda m: st_save(tensors, metadata=m), metadata))
    else:
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


def test_flipped_tensor_byte_fails_the_checksum(saved, tmp_path):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01  # one bit of the last tensor: a silently different model without a checksum
    bad = tmp_path / "flipped.rwkvts"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        rwkv_ts.load(bad)


def test_flipped_number_in_the_header_fails_the_checksum(saved, tmp_path):
    _, path, _ = saved
    data = path.read_bytes()
    # a digit of the stored configuration still parses as JSON: only the checksum can catch it
    at = data.index(b'\\"d_model\\": 16') + len(b'\\"d_model\\": 1')
    bad = tmp_path / "digit.rwkvts"
    bad.write_bytes(data[:at] + b"7" + data[at + 1 :])
    with pytest.raises(ModelFileError, match="checksum"):
        rwkv_ts.load(bad)


def test_edited_file_without_its_checksum_is_rejected(saved, tmp_path):
    _, path, _ = saved
    out = _rewrite(path, tmp_path, edit_header=lambda h: h.update(n_epochs=5), reseal=False)
    with pytest.raises(ModelFileError, match="checksum"):
        rwkv_ts.load(out)


def test_version_1_file_without_checksum_still_loads(saved, tmp_path):
    est, path, _ = saved
    out = _rewrite(path, tmp_path, edit_header=lambda h: h.update(format_version=1), reseal=False)
    pd.testing.assert_frame_equal(rwkv_ts.load(out).predict(), est.predict())


def test_absurd_declared_header_size(saved, tmp_path):
    _, path, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "huge-header.rwkvts"
    bad.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    with pytest.raises(ModelFileError, match="declares a 4611686018427387904-byte header"):
        rwkv_ts.load(bad)


def test_absurd_declared_tensor_size(saved, tmp_path):
    _, path, _ = saved
    n, header = _header(path)
    name = "model.head.linear.weight"
    header[name]["shape"] = [2**20, 2**20]
    header[name]["data_offsets"] = [0, 4 * 2**40]
    raw = json.dumps(header).encode()
    bad = tmp_path / "huge-tensor.rwkvts"
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + path.read_bytes()[8 + n :])
    with pytest.raises(ModelFileError, match=f"tensor '{name}' declares bytes"):
        rwkv_ts.load(bad)


def test_pickle_payload_under_our_name_names_the_danger(tmp_path):
    bad = tmp_path / "model.rwkvts"
    bad.write_bytes(pickle.dumps(RWKVForecaster(**TINY)))
    with pytest.raises(ModelFileError, match="pickle"):
        rwkv_ts.load(bad)


def test_runtime_reader_rejects_a_flipped_byte(saved, tmp_path):
    from rwkv_ts.runtime.weights import RuntimeModelError, read_model_file

    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01
    bad = tmp_path / "flipped.rwkvts"
    bad.write_bytes(bytes(data))
    with pytest.raises(RuntimeModelError, match="checksum"):
        read_model_file(bad)


# A child process that saves over an existing file and stalls half-way through the temporary file,
# so that the parent can SIGKILL it mid-save.
_SAVE_AND_STALL = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rwkv_ts
    import rwkv_ts._safefile as safefile

    def stall(fh, data):
        fh.write(data[: len(data) // 2])
        fh.flush()
        print("half written", flush=True)
        time.sleep(120)

    est = rwkv_ts.load(sys.argv[1])
    est.n_epochs_ = 12345  # the new file would differ from the old one
    safefile._write_all = stall
    if sys.argv[3] == "model":
        est.save(sys.argv[2])
    else:
        stream = est.stream()
        stream.update(np.zeros((3, len(est.channels_))))
        stream.save_state(sys.argv[2])
    """
)


@pytest.mark.parametrize("what", ["model", "state"])
def test_killed_mid_save_leaves_the_previous_file_intact(saved, tmp_path, what):
    est, path, _ = saved
    model = tmp_path / "model.rwkvts"
    model.write_bytes(path.read_bytes())
    target = model if what == "model" else tmp_path / "state.safetensors"
    if what == "state":
        est.stream().save_state(target)
    before = target.read_bytes()
    script = tmp_path / "stall.py"
    script.write_text(_SAVE_AND_STALL)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(model), str(target), what],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "half written", proc.stderr.read()[-3000:]
        temporaries = list(tmp_path.glob(f".{target.name}.*.tmp"))
        assert temporaries and temporaries[0].stat().st_size > 0  # the save was under way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    loaded = rwkv_ts.load(model)
    if what == "model":
        pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    else:
        assert loaded.stream(history=None).load_state(target).n_series == 1
