"""Export the streamable forecaster as an ONNX *step graph* with explicit state, and run it.

The graph advances every lane (one channel of one series) by one sample: inputs are the new scaled
sample ``x`` (L,) and the state tensors, outputs the forecast (L, horizon) in the scaled space and
the new state tensors (named ``<input>_out``). Everything a stream does per sample is in the graph:
the causal normalisation, the patch buffer, the choice of the phase whose patch completes
(GatherND / ScatterND on the phase axis) and one token step through the blocks and the head. A
host loops over samples and feeds the outputs back; :class:`OnnxStream` does that with onnxruntime.

The graph is built with ``onnx.helper`` from the saved weights (no torch, no tracing), opset 17.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rwkv_ts.runtime.weights import (
    ModelArrays,
    RuntimeConfig,
    read_model_file,
    single_model_only,
)

OPSET = 17


class _Graph:
    """A tiny builder over ``onnx.helper``: every op returns its (single) output name."""

    def __init__(self) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: Any, dtype=np.float32, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64), dtype=np.int64, hint="i")

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        output = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attrs))
        return output

    # -- shorthands
    def add(self, a, b, out=None):
        return self.op("Add", a, b, out=out)

    def mul(self, a, b):
        return self.op("Mul", a, b)

    def sub(self, a, b):
        return self.op("Sub", a, b)

    def matmul(self, a, w: np.ndarray):
        return self.op("MatMul", a, self.const(w))

    def linear(self, a, w: np.ndarray, b: np.ndarray | None = None):
        y = self.matmul(a, np.ascontiguousarray(w.T))
        return y if b is None else self.add(y, self.const(b))

    def slice(self, x, start: int, end: int, axis: int):
        return self.op("Slice", x, self.ints([start]), self.ints([end]), self.ints([axis]))

    def unsqueeze(self, x, axes):
        return self.op("Unsqueeze", x, self.ints(axes))

    def layer_norm(self, x, w, b, eps=1e-5):
        return self.op("LayerNormalization", x, self.const(w), self.const(b), axis=-1, epsilon=eps)

    def sigmoid(self, x):
        return self.op("Sigmoid", x)

    def push(self, buf, item, axis: int = 1):
        """Drop the oldest entry of ``buf`` along ``axis`` and append ``item``."""
        length = 1 << 62
        return self.op(
            "Concat", self.slice(buf, 1, length, axis), self.unsqueeze(item, [axis]), axis=axis
        )


def _zbuf_len(cfg: RuntimeConfig) -> int:
    return max(cfg.patch_len, cfg.lookback if cfg.linear_skip else 0)


def _state_specs(cfg: RuntimeConfig) -> list[tuple[str, int, tuple]]:
    """(name, onnx elem type, shape after the lane axis) of every state input, in order."""
    from onnx import TensorProto

    f, p, d = TensorProto.FLOAT, cfg.stride, cfg.d_model
    specs = [
        ("nbuf", TensorProto.DOUBLE, (cfg.norm_window,)),
        ("count", TensorProto.INT64, ()),
        ("zbuf", f, (_zbuf_len(cfg),)),
    ]
    for i in range(cfg.n_layers):
        specs.append((f"l{i}_shift", f, (p, max(cfg.distances), d)))
        specs.append((f"l{i}_wkv", f, (p, cfg.n_heads, cfg.head_size, cfg.head_size)))
        for j, dil in enumerate(cfg.dilations):
            rec = (cfg.kernel_size - 1) * dil
            if rec:
                specs.append((f"l{i}_tcn{j}", f, (p, rec, d)))
        specs.append((f"l{i}_cm", f, (p, d)))
    specs.append(("head", f, (p, cfg.head_tokens, d)))
    return specs


def build_step_graph(arrays: ModelArrays):
    """The ONNX step graph (an ``onnx.ModelProto``) of a streamable model."""
    from onnx import TensorProto

    cfg = arrays.config
    w = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.weights.items()}
    g = _Graph()
    d, n_heads, hs = cfg.d_model, cfg.n_heads, cfg.head_size
    specs = _state_specs(cfg)
    inputs = [g.helper.make_tensor_value_info("x", TensorProto.FLOAT, ["lanes"])]
    outputs = [
        g.helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["lanes", cfg.horizon])
    ]
    for name, elem, shape in specs:
        inputs.append(g.helper.make_tensor_value_info(name, elem, ["lanes", *shape]))
        outputs.append(g.helper.make_tensor_value_info(f"{name}_out", elem, ["lanes", *shape]))

    # ---- causal normalisation (float64, as the torch module)
    x64 = g.op("Cast", "x", to=TensorProto.DOUBLE)
    nbuf = g.push("nbuf", x64)
    g.op("Identity", nbuf, out="nbuf_out")
    count = g.op("Add", "count", g.ints(1), out="count_out")
    n = g.op("Cast", g.op("Min", count, g.ints(cfg.norm_window)), to=TensorProto.DOUBLE)
    axis1 = g.ints([1])
    s1 = g.op("ReduceSum", nbuf, axis1, keepdims=0)
    s2 = g.op("ReduceSum", g.mul(nbuf, nbuf), axis1, keepdims=0)
    mean = g.op("Div", s1, n)
    var = g.op("Div", s2, n)
    var = g.op("Max", g.sub(var, g.mul(mean, mean)), g.const(0.0, np.float64))
    std = g.op("Sqrt", g.add(var, g.const(1e-5, np.float64)))
    z = g.op("Cast", g.op("Div", g.sub(x64, mean), std), to=TensorProto.FLOAT)
    zbuf = g.push("zbuf", z)
    g.op("Identity", zbuf, out="zbuf_out")

    # ---- which phase completes a patch now; gather that phase's state per lane
    emit = g.op("GreaterOrEqual", count, g.ints(cfg.patch_len))
    phase = g.op(
        "Mod", g.op("Max", g.sub(count, g.ints(cfg.patch_len)), g.ints(0)), g.ints(cfg.stride)
    )
    lanes = g.op("Shape", "x")
    lane_ids = g.op("Range", g.ints(0), g.op("Squeeze", lanes, g.ints([0])), g.ints(1))
    idx = g.op("Concat", g.unsqueeze(lane_ids, [1]), g.unsqueeze(phase, [1]), axis=1)
    phase_states = [s for s in specs if s[0] not in ("nbuf", "count", "zbuf")]
    old = {name: g.op("GatherND", name, idx) for name, _, _ in phase_states}
    new: dict[str, str] = {}

    zl = _zbuf_len(cfg)
    patch = g.slice(zbuf, zl - cfg.patch_len, zl, 1)
    tok = g.linear(patch, w["patch.proj.weight"], w["patch.proj.bias"])
    h = tok
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        tm = p + "time_mix."
        hn = g.layer_norm(h, w[p + "ln1.weight"], w[p + "ln1.bias"])
        # multi-scale token shift
        buf = old[f"l{i}_shift"]
        max_d = max(cfg.distances)
        taps = [g.op("Gather", buf, g.ints(max_d - dist), axis=1) for dist in cfg.distances]
        if len(taps) == 1:
            shifted = taps[0]
        else:
            weights = g.op(
                "Softmax",
                g.linear(hn, w[tm + "shift.mixer.weight"], w[tm + "shift.mixer.bias"]),
                axis=-1,
            )
            shifted = None
            for j, tap in enumerate(taps):
                wj = g.op("Gather", weights, g.ints([j]), axis=1)
                term = g.mul(wj, tap)
                shifted = term if shifted is None else g.add(shifted, term)
        new[f"l{i}_shift"] = g.push(buf, hn)
        # data-dependent interpolation
        xx = g.sub(shifted, hn)
        lora = g.op(
            "Tanh", g.matmul(g.add(hn, g.mul(xx, g.const(w[tm + "maa_x"]))), w[tm + "maa_w1"])
        )
        lora = g.op("Reshape", lora, g.ints([0, 5, cfg.lora_rank]))
        lora = g.op("Transpose", lora, perm=[1, 0, 2])  # (5, L, R)
        mix = g.add(
            g.op("MatMul", lora, g.const(w[tm + "maa_w2"])), g.const(w[tm + "maa"][:, None, :])
        )
        parts = [g.add(hn, g.mul(xx, g.op("Gather", mix, g.ints(f), axis=0))) for f in range(5)]
        xw, xk, xv, xr, xg = parts
        r = g.linear(xr, w[tm + "receptance.weight"])
        k = g.linear(xk, w[tm + "key.weight"])
        v = g.linear(xv, w[tm + "value.weight"])
        gate = g.linear(xg, w[tm + "gate.weight"])
        gate = g.mul(gate, g.sigmoid(gate))
        if cfg.data_decay:
            dec = g.matmul(g.op("Tanh", g.matmul(xw, w[tm + "decay_w1"])), w[tm + "decay_w2"])
            dec = g.add(dec, g.const(w[tm + "time_decay"]))
        else:
            dec = g.add(g.mul(xw, g.const(0.0)), g.const(w[tm + "time_decay"]))
        heads = g.ints([0, n_heads, hs])
        r3, k3, v3, w3 = (g.op("Reshape", t, heads) for t in (r, k, v, dec))
        decay = g.op("Exp", g.op("Neg", g.op("Exp", w3)))
        kv = g.mul(g.unsqueeze(k3, [3]), g.unsqueeze(v3, [2]))  # (L, H, N, N)
        state = old[f"l{i}_wkv"]
        bonus = g.const(w[tm + "bonus"][:, :, None])
        y = g.op(
            "ReduceSum",
            g.mul(g.unsqueeze(r3, [3]), g.add(state, g.mul(bonus, kv))),
            g.ints([2]),
            keepdims=0,
        )
        new[f"l{i}_wkv"] = g.add(g.mul(g.unsqueeze(decay, [3]), state), kv)
        # group norm per head
        gm = g.op("ReduceMean", y, axes=[2], keepdims=1)
        yc = g.sub(y, gm)
        gv = g.op("ReduceMean", g.mul(yc, yc), axes=[2], keepdims=1)
        yn = g.op("Div", yc, g.op("Sqrt", g.add(gv, g.const(1e-5 * 64))))
        yn = g.op("Reshape", yn, g.ints([0, d]))
        yn = g.add(g.mul(yn, g.const(w[tm + "ln_x.weight"])), g.const(w[tm + "ln_x.bias"]))
        a = g.linear(g.mul(yn, gate), w[tm + "output.weight"])
        # causal dilated TCN branch and gated fusion
        if cfg.dilations:
            c = hn
            for j, dil in enumerate(cfg.dilations):
                q = f"{p}tcn.layers.{j}."
                rec = (cfg.kernel_size - 1) * dil
                dw = w[q + "depthwise.weight"][:, 0, :].T  # (K, D)
                if rec:
                    tb = old[f"l{i}_tcn{j}"]
                    window = g.op("Concat", tb, g.unsqueeze(c, [1]), axis=1)
                    tapped = g.op("Gather", window, g.ints(list(range(0, rec + 1, dil))), axis=1)
                    new[f"l{i}_tcn{j}"] = g.slice(window, 1, rec + 1, 1)
                else:
                    tapped = g.unsqueeze(c, [1])
                conv = g.op("ReduceSum", g.mul(tapped, g.const(dw)), g.ints([1]), keepdims=0)
                conv = g.add(conv, g.const(w[q + "depthwise.bias"]))
                gelu = g.mul(
                    g.mul(conv, g.const(0.5)),
                    g.add(g.const(1.0), g.op("Erf", g.mul(conv, g.const(0.7071067811865476)))),
                )
                c = g.add(c, g.linear(gelu, w[q + "pointwise.weight"], w[q + "pointwise.bias"]))
            fgate = g.sigmoid(
                g.linear(
                    g.op("Concat", a, c, axis=1),
                    w[p + "fusion.gate.weight"],
                    w[p + "fusion.gate.bias"],
                )
            )
            a = g.add(g.mul(fgate, a), g.mul(g.sub(g.const(1.0), fgate), c))
        h = g.add(h, a)
        # channel-mix
        cm = p + "channel_mix."
        hn2 = g.layer_norm(h, w[p + "ln2.weight"], w[p + "ln2.bias"])
        dd = g.sub(old[f"l{i}_cm"], hn2)
        new[f"l{i}_cm"] = hn2
        kk = g.op(
            "Relu", g.linear(g.add(hn2, g.mul(dd, g.const(w[cm + "maa_k"]))), w[cm + "key.weight"])
        )
        kk = g.mul(kk, kk)
        rr = g.sigmoid(
            g.linear(g.add(hn2, g.mul(dd, g.const(w[cm + "maa_r"]))), w[cm + "receptance.weight"])
        )
        h = g.add(h, g.mul(rr, g.linear(kk, w[cm + "value.weight"])))
    hf = g.layer_norm(h, w["ln_out.weight"], w["ln_out.bias"])
    head = g.push(old["head"], hf)
    new["head"] = head
    y = g.linear(
        g.op("Reshape", head, g.ints([0, cfg.head_tokens * d])),
        w["head.linear.weight"],
        w["head.linear.bias"],
    )
    if cfg.linear_skip:
        recent = g.slice(zbuf, zl - cfg.lookback, zl, 1)
        y = g.add(y, g.linear(recent, w["skip.weight"], w["skip.bias"]))
    std32 = g.unsqueeze(g.op("Cast", std, to=TensorProto.FLOAT), [1])
    mean32 = g.unsqueeze(g.op("Cast", mean, to=TensorProto.FLOAT), [1])
    g.op("Add", g.mul(y, std32), mean32, out="forecast")

    # ---- write the phase's new state back (lanes without a complete patch keep theirs)
    for name, _, shape in phase_states:
        mask = g.unsqueeze(emit, list(range(1, len(shape))))
        update = g.op("Where", mask, new[name], old[name])
        g.op("ScatterND", name, idx, update, out=f"{name}_out")

    graph = g.helper.make_graph(g.nodes, "rwkv_ts_step", inputs, outputs, g.inits)
    model = g.helper.make_model(
        graph, opset_imports=[g.helper.make_opsetid("", OPSET)], producer_name="rwkv-ts"
    )
    model.ir_version = min(model.ir_version, 9)
    g.onnx.checker.check_model(model)
    return model


def _arrays_of(source: Any) -> ModelArrays:
    if isinstance(source, ModelArrays):
        return source
    if isinstance(source, str | os.PathLike):
        return read_model_file(source)
    # a fitted RWKVForecaster (torch is loaded already)
    from rwkv_ts._ensemble import fitted_ensemble_size

    size = fitted_ensemble_size(source.model_)
    if size != 1:
        raise ValueError(single_model_only(size, "this RWKVForecaster"))
    from rwkv_ts.data.serialize import panel_to_record
    from rwkv_ts.runtime.weights import RuntimeConfig

    profile = getattr(source, "cycle_profile_", None)
    config = source.config_.to_dict()
    return ModelArrays(
        config=RuntimeConfig.from_dict(config),
        config_dict=config,
        weights={k: v.detach().cpu().numpy() for k, v in source.model_.state_dict().items()},
        scale_mean=np.asarray(source.scale_mean_, dtype=np.float64),
        scale_std=np.asarray(source.scale_std_, dtype=np.float64),
        channels=list(source.channels_),
        cycle_profile=None if profile is None else np.asarray(profile, dtype=np.float64),
        freq=panel_to_record(source.last_panel_)[0]["freq"],
    )


def export_onnx(source: Any, path: str | os.PathLike) -> Path:
    """Write the ONNX step graph of a streamable model.

    Parameters
    ----------
    source : path of a saved forecaster, or a fitted ``RWKVForecaster``
    path : where to write the ``.onnx`` file

    The scaler and channel names go into the model's metadata (``scale_mean``, ``scale_std``,
    ``channels``, ``lookback``, JSON), so a host needs nothing else. A forecaster that removes a
    cycle adds ``cycle_profile`` (JSON, period x channels, scaled space): the host subtracts
    ``cycle_profile[phase]`` from each scaled sample and adds ``cycle_profile[phase + h]`` to the
    forecast as :class:`OnnxStream` does; the graph itself is the same.
    """
    import json

    arrays = _arrays_of(source)
    model = build_step_graph(arrays)
    meta = {
        "scale_mean": json.dumps([float(v) for v in arrays.scale_mean]),
        "scale_std": json.dumps([float(v) for v in arrays.scale_std]),
        "channels": json.dumps(list(arrays.channels)),
        "lookback": str(arrays.config.lookback),
        "horizon": str(arrays.config.horizon),
    }
    if arrays.cycle_profile is not None:
        meta["cycle_profile"] = json.dumps(np.asarray(arrays.cycle_profile).tolist())
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


class OnnxStream:
    """Run an exported step graph with onnxruntime: ``update(values)`` as
    :class:`rwkv_ts.runtime.RuntimeStream` (one sample per call and series, or ``k``).

    ``phase`` (an integer, or one per series): the phase of each series' first sample in the
    removed cycle of a forecaster that has one (as :meth:`rwkv_ts.runtime.RuntimeModel.cycle_phases`
    gives it); ignored otherwise.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_series: int,
        threads: int = 1,
        phase: int | np.ndarray = 0,
    ) -> None:
        import json

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.scale_mean = np.array(json.loads(meta["scale_mean"]), dtype=np.float64)
        self.scale_std = np.array(json.loads(meta["scale_std"]), dtype=np.float64)
        self.lookback = int(meta["lookback"])
        self.horizon = int(meta["horizon"])
        self._c = len(self.scale_mean)
        profile = meta.get("cycle_profile")
        #: the removed cycle's profile (period, C), scaled space; one phase of zeros without one
        self.cycle_profile = (
            np.zeros((1, self._c)) if profile is None else np.array(json.loads(profile), np.float64)
        )
        period = self.cycle_profile.shape[0]
        #: the phase of every series' next sample
        first = np.asarray(phase)
        if not np.issubdtype(first.dtype, np.integer) or first.shape not in ((), (n_series,)):
            raise ValueError(
                f"phase must be an integer or an integer array of shape ({n_series},), one per "
                f"series, got {first.dtype} {first.shape}"
            )
        self.phases = np.mod(np.broadcast_to(first.astype(np.int64), (n_series,)), period)
        lanes = n_series * self._c
        self.state = {}
        self._names = []
        for inp in self.session.get_inputs():
            if inp.name == "x":
                continue
            dtype = {"tensor(double)": np.float64, "tensor(int64)": np.int64}.get(
                inp.type, np.float32
            )
            self.state[inp.name] = np.zeros([lanes, *inp.shape[1:]], dtype=dtype)
            self._names.append(inp.name)
        self._outputs = ["forecast"] + [f"{n}_out" for n in self._names]
        self.fc = np.zeros((lanes, self.horizon), np.float32)

    def update(self, values: np.ndarray) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[:, None, :]
        k, period = arr.shape[1], self.cycle_profile.shape[0]
        steps = np.arange(k + self.horizon)
        profile = self.cycle_profile[np.mod(self.phases[:, None] + steps, period)]
        scaled = (arr.astype(np.float32) - self.scale_mean) / self.scale_std
        scaled = (scaled - profile[:, :k]).astype(np.float32)
        x = scaled.transpose(0, 2, 1).reshape(-1, k)
        for j in range(x.shape[1]):
            feed = {"x": np.ascontiguousarray(x[:, j]), **self.state}
            out = self.session.run(self._outputs, feed)
            self.fc = out[0]
            self.state = dict(zip(self._names, out[1:], strict=True))
        n = arr.shape[0]
        y = self.fc.astype(np.float64).reshape(n, self._c, -1).transpose(0, 2, 1)
        y = (y + profile[:, k:]) * self.scale_std + self.scale_mean
        self.phases = np.mod(self.phases + k, period)
        y[self.state["count"].reshape(n, self._c)[:, 0] < self.lookback] = np.nan
        return y
