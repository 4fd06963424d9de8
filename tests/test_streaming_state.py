"""Stream state: save -> load in a new process gives identical outputs; corrupt, truncated and
mismatched states fail clearly; the ``rwkv-ts stream`` command pipes forecasts line by line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from test_streaming_helpers import as_estimator, random_model, streamable_config

from rwkv_ts.stream import StreamStateError


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _long(values: dict, start: int, stop: int, times) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"unique_id": sid, "ds": times[start:stop], "y": v[start:stop]})
            for sid, v in values.items()
        ],
        ignore_index=True,
    )


@pytest.fixture
def fitted(tmp_path):
    rng = np.random.default_rng(0)
    times = pd.date_range("2025-01-01", periods=120, freq="D")
    values = {sid: rng.normal(size=120).cumsum() for sid in ["north", "south"]}
    est = as_estimator(
        random_model(streamable_config(), 6), _long(values, 0, 40, times), mean=[0.4], std=[3.0]
    )
    est.save(tmp_path / "model.rwkvts")
    return est, values, times, tmp_path


_CONTINUE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import pandas as pd
    import rwkv_ts

    est = rwkv_ts.load(sys.argv[1])
    new = pd.read_csv(sys.argv[3], parse_dates=["ds"])
    results = []
    for source in (sys.argv[2], Path(sys.argv[2]).read_bytes()):  # a file, then bytes
        stream = est.stream(history=None).load_state(source)
        out = stream.update(new)
        results.append({"y": out["y"].tolist(), "ds": out["ds"].astype(str).tolist(),
                        "ids": stream.series_ids, "n": stream.n_samples()})
    print(json.dumps(results))
    """
)


def test_state_restored_in_a_new_process_gives_identical_outputs(fitted):
    est, values, times, tmp = fitted
    stream = est.stream()
    stream.update(_long(values, 40, 75, times))
    state_path = tmp / "state.safetensors"
    stream.save_state(state_path)
    new = _long(values, 75, 80, times)
    new.to_csv(tmp / "new.csv", index=False)
    here = stream.update(new)
    script = tmp / "continue.py"
    script.write_text(_CONTINUE)
    args = [str(tmp / "model.rwkvts"), str(state_path), str(tmp / "new.csv")]
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for there in json.loads(result.stdout.strip().splitlines()[-1]):
        assert there["y"] == here["y"].tolist()  # bit for bit
        assert there["ds"] == here["ds"].astype(str).tolist()
        assert there["ids"] == ["north", "south"] and there["n"] == {"north": 80, "south": 80}


def test_bad_states_fail_with_clear_errors(fitted):
    est, values, times, tmp = fitted
    stream = est.stream()
    stream.update(_long(values, 40, 50, times))
    good = stream.save_state()
    fresh = est.stream(history=None)
    with pytest.raises(StreamStateError, match="truncated"):
        fresh.load_state(good[: len(good) - 100])
    with pytest.raises(StreamStateError, match="truncated"):
        fresh.load_state(good[:5])
    corrupt = bytearray(good)
    corrupt[-7] ^= 0xFF  # a flipped byte in the tensor data
    with pytest.raises(StreamStateError, match="checksum"):
        fresh.load_state(bytes(corrupt))
    header_len = int.from_bytes(good[:8], "little")
    garbled = bytearray(good)
    garbled[8 + header_len // 2] = ord("}")
    with pytest.raises(StreamStateError, match="corrupt|truncated|unreadable|not an rwkv-ts"):
        fresh.load_state(bytes(garbled))
    with pytest.raises(StreamStateError, match="different model"):
        other = as_estimator(random_model(streamable_config(), 7), _long(values, 0, 40, times))
        other.stream(history=None).load_state(good)
    with pytest.raises(StreamStateError, match="not an rwkv-ts stream state"):
        fresh.load_state((tmp / "model.rwkvts").read_bytes())
    with pytest.raises(FileNotFoundError):
        fresh.load_state(tmp / "missing.safetensors")
    with pytest.raises(TypeError, match="bytes or a path"):
        fresh.load_state(123)
    # nothing was replaced by the failed loads: the stream is still empty and usable
    assert fresh.n_series == 0
    assert fresh.load_state(good).n_samples() == {"north": 50, "south": 50}


def test_stream_command_pipes_forecasts_line_by_line(fitted):
    est, values, times, tmp = fitted
    rows = _long(values, 40, 43, times).sort_values(["ds", "unique_id"])
    csv = rows.to_csv(index=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rwkv_ts", "stream", str(tmp / "model.rwkvts")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = csv.splitlines()
    proc.stdin.write(lines[0] + "\n" + lines[1] + "\n")
    proc.stdin.flush()
    # the first forecast arrives while the input is still open: line-buffered output
    header = proc.stdout.readline().strip()
    assert header == "unique_id,ds,y"
    first = [proc.stdout.readline().strip() for _ in range(est.horizon)]
    proc.stdin.write("\n".join(lines[2:]) + "\nnorth,2025-03-30,1.0\n")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "line 8" in err and "continue the stream" in err  # the bad row is reported, skipped
    got = pd.read_csv(pd.io.common.StringIO("\n".join([header, *first, out])), parse_dates=["ds"])
    ref = est.predict(_long({"north": values["north"]}, 0, 41, times))
    assert np.allclose(got["y"].to_numpy()[: est.horizon], ref["y"].to_numpy(), atol=1e-5)
    assert len(got) == 6 * est.horizon


def test_hostile_states_are_rejected(fitted):
    import pickle
    import struct

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from rwkv_ts._safefile import CHECKSUM_KEY, check_bytes, seal
    from rwkv_ts.stream.stream import _digest

    est, values, times, tmp = fitted
    stream = est.stream()
    stream.update(_long(values, 40, 50, times))
    good = stream.save_state()
    fresh = est.stream(history=None)
    with pytest.raises(StreamStateError, match="pickle"):
        fresh.load_state(pickle.dumps({"engine.state": np.zeros(3)}))
    with pytest.raises(StreamStateError, match="declares a 1152921504606846976-byte header"):
        fresh.load_state(struct.pack("<Q", 2**60) + good[8:])
    # wrong shapes behind valid checksums: the structural checks still hold
    _, metadata = check_bytes(good, "good", ValueError)
    header = json.loads(metadata["rwkv_ts"])
    tensors = st_load(good)
    name = sorted(k for k, v in tensors.items() if v.ndim >= 2)[0]
    tensors[name] = tensors[name][..., :1].contiguous()
    header["sha256"] = _digest(tensors)
    meta = {"format": metadata["format"], "rwkv_ts": json.dumps(header)}
    assert CHECKSUM_KEY not in meta
    bad = seal(lambda m: st_save(tensors, metadata=m), meta)
    with pytest.raises(StreamStateError, match=f"tensor '{name}' is .* needs"):
        fresh.load_state(bad)
    # a series registry edited without its checksum (ids, last timestamps)
    edited = good.replace(b"north", b"nortH")
    with pytest.raises(StreamStateError, match="checksum"):
        fresh.load_state(edited)
    assert fresh.n_series == 0
