"""The exported ONNX step graph, run by onnxruntime, equals the torch stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_streaming_helpers import as_estimator, random_model, streamable_config

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from rwkv_ts.export import OnnxStream, export_onnx  # noqa: E402

TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(tcn_dilations=(), shift_distances=(1,), decay="static", head_tokens=1),
        dict(tcn_kernel_size=1, tcn_dilations=(1,), shift_distances=(2, 1, 4), head_tokens=3),
        dict(patch_len=4, stride=4, n_layers=1, d_model=8, head_size=4, norm_window=3),
        dict(linear_skip=True, head_tokens=1),
    ],
)
def test_onnx_step_graph_equals_torch_stream(tmp_path, overrides):
    config = streamable_config(**overrides)
    rng = np.random.default_rng(len(overrides))
    data = rng.normal(size=(3, 60, 2)).cumsum(axis=1)
    est = as_estimator(random_model(config, 4), data[0, :30], mean=[0.3, -2.0], std=[1.5, 4.0])
    path = export_onnx(est, tmp_path / "step.onnx")
    onnx.checker.check_model(str(path))
    session = OnnxStream(path, n_series=3)
    stream = est.stream(history=None)
    stream.update_array(np.zeros((3, 0, 2)), series=[0, 1, 2])
    for t in range(60):
        k = 1 if t % 7 else 2  # one or two samples per call
        if t % 7 == 6:
            continue
        ref = stream.update_array(data[:, t : t + k])
        got = session.update(data[:, t : t + k])
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        if not np.isnan(ref).all():
            assert float(np.nanmax(np.abs(got - ref))) < TOL


def test_onnx_export_from_a_saved_model_file(tmp_path):
    config = streamable_config(lookback=20)
    y = np.random.default_rng(1).normal(size=(50, 1)).cumsum(axis=0)
    est = as_estimator(random_model(config, 8), y[:20])
    est.save(tmp_path / "model.rwkvts")
    path = export_onnx(tmp_path / "model.rwkvts", tmp_path / "step.onnx")
    graph = onnx.load(str(path))
    names = [i.name for i in graph.graph.input]
    assert names[:4] == ["x", "nbuf", "count", "zbuf"] and "head" in names
    assert [o.name for o in graph.graph.output][:2] == ["forecast", "nbuf_out"]
    session = OnnxStream(path, n_series=1)
    got = session.update(y[None, :50])
    assert float(np.max(np.abs(got[0] - est.predict(y)))) < TOL
