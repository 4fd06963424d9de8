"""The torch-free runtime (numpy + numba) equals the torch stream, loads saved models, and runs in a
process where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_streaming_helpers import as_estimator, random_model, streamable_config

from rwkv_ts.runtime import RuntimeModel, RuntimeModelError
from rwkv_ts.runtime.weights import ModelArrays, RuntimeConfig

TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _runtime_of(est) -> RuntimeModel:
    cfg = est.config_.to_dict()
    return RuntimeModel(
        ModelArrays(
            config=RuntimeConfig.from_dict(cfg),
            config_dict=cfg,
            weights={k: v.detach().numpy() for k, v in est.model_.state_dict().items()},
            scale_mean=est.scale_mean_,
            scale_std=est.scale_std_,
            channels=est.channels_,
        )
    )


@st.composite
def cases(draw):
    patch_len = draw(st.integers(2, 6))
    stride = draw(st.integers(1, patch_len))
    head_size = draw(st.sampled_from([4, 8]))
    config = streamable_config(
        patch_len=patch_len,
        stride=stride,
        head_size=head_size,
        d_model=head_size * draw(st.integers(1, 3)),
        n_layers=draw(st.integers(1, 2)),
        lookback=draw(st.integers(patch_len + 2 * stride, 30)),
        head_tokens=draw(st.integers(1, 3)),
        norm_window=draw(st.integers(2, 16)),
        shift_distances=draw(st.sampled_from([(1,), (1, 2), (4, 1, 2)])),
        tcn_dilations=draw(st.sampled_from([(), (1,), (1, 2)])),
        tcn_kernel_size=draw(st.integers(1, 3)),
        decay=draw(st.sampled_from(["data", "static"])),
        linear_skip=draw(st.booleans()),
    )
    chunks = draw(st.lists(st.integers(1, 9), min_size=1, max_size=10))
    return config, chunks, draw(st.integers(0, 10_000))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_runtime_equals_torch_stream(case):
    config, chunks, seed = case
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(3, 70, 2)).cumsum(axis=1) * 0.5
    est = as_estimator(random_model(config, seed), data[0, :30], mean=[0.1, 1.0], std=[2.0, 0.5])
    stream = est.stream(history=None)
    stream.update_array(np.zeros((3, 0, 2)), series=[0, 1, 2])
    runtime = _runtime_of(est).stream(3)
    t, i = 0, 0
    while t < 70:
        k = min(chunks[i % len(chunks)], 70 - t)
        ref = stream.update_array(data[:, t : t + k])
        got = runtime.update(data[:, t : t + k])
        t, i = t + k, i + 1
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        if t >= config.lookback:
            assert float(np.nanmax(np.abs(got - ref))) < TOL


def test_runtime_reads_a_saved_model_and_restores_its_state(tmp_path):
    config = streamable_config(lookback=20)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(90, 1)).cumsum(axis=0)
    est = as_estimator(random_model(config, 1), y[:20], mean=[0.5], std=[2.0])
    est.save(tmp_path / "model.rwkvts")
    model = RuntimeModel.load(tmp_path / "model.rwkvts")
    runtime = model.stream(1)
    runtime.update(y[None, :60])
    saved = runtime.save_state()
    after = runtime.update(y[None, 60:90])
    assert float(np.max(np.abs(after[0] - est.predict(y)))) < TOL
    restored = model.stream().load_state(saved)
    assert np.array_equal(restored.update(y[None, 60:90]), after)
    # a state is bound to its model; truncated bytes fail clearly
    other = as_estimator(random_model(config, 2), y[:20])
    with pytest.raises(RuntimeModelError, match="another model"):
        _runtime_of(other).stream().load_state(saved)
    with pytest.raises(RuntimeModelError, match="corrupt or truncated"):
        model.stream().load_state(saved[: len(saved) // 2])
    # memory per series is independent of the history length
    assert runtime.nbytes_per_series() == model.stream(1).nbytes_per_series()


def test_bad_sample_changes_no_state():
    config = streamable_config(lookback=20)
    y = np.random.default_rng(3).normal(size=(3, 40, 1)).cumsum(axis=1)
    runtime = _runtime_of(as_estimator(random_model(config, 4), y[0, :20])).stream(3)
    runtime.update(y[:, :30])
    before = {k: v.copy() for k, v in runtime.state.items()}
    bad = y[:, 30:35].copy()
    bad[2, 4, 0] = np.nan  # the last value of the last series: the others come first
    with pytest.raises(ValueError, match="NaN or infinite"):
        runtime.update(bad)
    for name, value in runtime.state.items():
        assert np.array_equal(value, before[name]), name
    with pytest.raises(ValueError, match="series positions"):
        runtime.update(y[:1, 30], series=[3])
    with pytest.raises(ValueError, match="shape"):
        runtime.update(y[:2, 30])


def test_runtime_refuses_the_windowed_configuration(tmp_path):
    config = streamable_config(head_tokens=None)
    est = as_estimator(random_model(config, 0), np.zeros((30, 1)))
    est.save(tmp_path / "windowed.rwkvts")
    with pytest.raises(RuntimeModelError, match="streamable configuration"):
        RuntimeModel.load(tmp_path / "windowed.rwkvts")


_BLOCKED = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch.") or name == "lightning":
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    from rwkv_ts.runtime import RuntimeModel

    model = RuntimeModel.load(sys.argv[1])
    stream = model.stream(2)
    data = np.load(sys.argv[2])
    out = [stream.update(data[:, t]).tolist() for t in range(data.shape[1])]
    assert "torch" not in sys.modules
    print(json.dumps({"forecasts": out[-5:], "modules": sorted(m for m in sys.modules
                                                             if m.split(".")[0] == "torch")}))
    """
)


def test_runtime_runs_where_torch_cannot_be_imported(tmp_path):
    config = streamable_config(lookback=20)
    rng = np.random.default_rng(5)
    data = rng.normal(size=(2, 50, 1)).cumsum(axis=1)
    est = as_estimator(random_model(config, 9), data[0, :20], mean=[1.0], std=[3.0])
    est.save(tmp_path / "model.rwkvts")
    np.save(tmp_path / "data.npy", data)
    script = tmp_path / "blocked.py"
    script.write_text(_BLOCKED)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model.rwkvts"), str(tmp_path / "data.npy")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    stream = est.stream(history=None)
    stream.update_array(np.zeros((2, 0, 1)), series=[0, 1])
    ref = [stream.update_array(data[:, t]) for t in range(50)][-5:]
    assert float(np.max(np.abs(np.array(report["forecasts"]) - np.array(ref)))) < TOL


def test_estimator_stream_on_the_numba_backend_equals_the_torch_stream():
    config = streamable_config(linear_skip=True, lookback=20)
    rng = np.random.default_rng(12)
    data = {sid: rng.normal(size=(90, 2)).cumsum(axis=0) for sid in ["p", "q", "r"]}
    est = as_estimator(random_model(config, 13), data["p"][:25], mean=[0.5, 0.0], std=[2, 1])
    fast = est.stream()  # "auto": numba for the streamable configuration
    slow = est.stream(backend="torch")
    assert fast.kind == "numba" and slow.kind == "recurrent"
    seen = {"p": 25, "q": 0, "r": 0}
    for step, sizes in enumerate([(1, 30, 3), (2, 1, 40), (1, 1, 1), (17, 5, 0), (0, 9, 1)]):
        batch = {}
        for sid, k in zip("pqr", sizes, strict=True):
            if k:
                batch[sid] = data[sid][seen[sid] : seen[sid] + k]
                seen[sid] += k
        got, ref = fast.update(batch), slow.update(batch)
        assert got.keys() == ref.keys()
        for sid in ref:
            assert float(np.max(np.abs(got[sid] - ref[sid]))) < TOL
        if step == 2:  # the numba state saves and restores like the torch one
            fast = est.stream(history=None, backend="numba").load_state(fast.save_state())
    with pytest.raises(ValueError, match="re-encodes windows"):
        as_estimator(random_model(streamable_config(head_tokens=None), 0), data["p"]).stream(
            backend="numba"
        )


def test_kernel_exp_and_erf_are_exact_to_float32():
    # the kernel's own exp and erf (libm's do not vectorise here); torch computes in float32,
    # whose resolution near 1 is 6e-8
    import math

    from rwkv_ts.runtime import kernel

    x = np.concatenate([np.linspace(-87, 88, 200_001), [-1e-9, 0.0, 1e-9]])
    ref = np.exp(x)
    assert float(np.max(np.abs(kernel.exp(x) / ref - 1))) < 1e-11
    assert kernel.exp(np.array([-1000.0]))[0] < 1e-37  # clamped, no overflow or NaN
    assert np.isfinite(kernel.exp(np.array([1000.0]))[0])
    z = np.concatenate([np.linspace(-8, 8, 200_001), [-50.0, 50.0, -1e-12, 1e-12]])
    ref = np.array([math.erf(v) for v in z])
    assert float(np.max(np.abs(kernel.erf(z) - ref))) < 1e-9


def test_static_decay_and_single_distance_equal_the_torch_stream():
    # the weight-only decay factor is computed at load time; one shift distance skips the mixer
    config = streamable_config(
        decay="static", shift_distances=(1,), tcn_dilations=(), lookback=20, linear_skip=True
    )
    rng = np.random.default_rng(21)
    data = rng.normal(size=(2, 60, 1)).cumsum(axis=1)
    est = as_estimator(random_model(config, 22), data[0, :20], mean=[0.3], std=[1.5])
    stream = est.stream(history=None, backend="torch")
    stream.update_array(np.zeros((2, 0, 1)), series=[0, 1])
    runtime = _runtime_of(est).stream(2)
    for t in range(0, 60, 7):
        ref = stream.update_array(data[:, t : t + 7])
        got = runtime.update(data[:, t : t + 7])
        if t + 7 >= 20:
            assert float(np.nanmax(np.abs(got - ref))) < TOL


def test_kernel_parameter_indices_follow_the_packed_order():
    from rwkv_ts.runtime import kernel
    from rwkv_ts.runtime.weights import PARAM_NAMES

    for i, name in enumerate(PARAM_NAMES):
        assert getattr(kernel, "_" + name.upper()) == i, name
    assert kernel._DECAY_STATIC == len(PARAM_NAMES)  # the extra row of weights.flatten's table
