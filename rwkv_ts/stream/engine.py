"""Batched stream engines over "lanes" (one lane = one channel of one series), in the scaled space.

:class:`RecurrentEngine` runs the streamable configuration as the RNN it is: every new sample is
normalised with the trailing statistics, completes a patch for one of ``stride`` phase-shifted
encoder states (the phase whose patch grid ends at this sample) and costs one token step through
the blocks and the head. Its forecast after every sample is the batch model's over the whole history
with patches aligned to end at that sample. A chunk of many samples runs through the parallel scan
instead (one scan per phase), with the same result.

:class:`WindowEngine` runs any other configuration: it keeps the last ``lookback`` samples of each
lane and re-encodes that window once per update, which is what instance normalisation and a flatten
head over the window demand.

Both keep their state as tensors batched over lanes, never grow with the history, and expose it as a
flat ``{name: tensor}`` mapping for safetensors.
"""

from __future__ import annotations

import numpy as np
import torch

from rwkv_ts.nn import ForecastEnsemble, RWKVTSModel, flatten_state, map_state, unflatten_state
from rwkv_ts.nn.norm import denormalise


def _cat_lanes(old: torch.Tensor, new: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([old, new], dim=dim)


class RecurrentEngine:
    """The streamable configuration, one token step per sample per lane.

    State (``L`` lanes, ``P = stride`` phases): ``norm`` (the causal normalisation's trailing
    buffer, count and last statistics), ``zbuf`` (the last ``patch_len`` normalised samples, or
    ``lookback`` with the linear branch),
    ``phase`` (blocks' and head's states, shaped ``(P, L, ...)``) and ``forecast`` (L, horizon).
    """

    kind = "recurrent"

    def __init__(self, model: RWKVTSModel) -> None:
        if not model.config.streamable:
            raise ValueError("RecurrentEngine needs the streamable configuration")
        self.model = model.eval()
        self.config = model.config
        self.n_phases = self.config.stride
        self.skip = getattr(model, "skip", None)
        # the linear branch (linear_skip) reads the last lookback normalised samples
        self.zbuf_len = max(self.config.patch_len, self.config.lookback if self.skip else 0)
        self.state = self._zeros(0)

    # ------------------------------------------------------------------ state
    def _zeros(self, n: int) -> dict:
        m, c, p = self.model, self.config, self.n_phases
        phase = {
            "blocks": {str(i): b.init_state(p * n) for i, b in enumerate(m.blocks)},
            "head": m.head.init_state(p * n),
        }
        phase = map_state(phase, lambda t: t.reshape(p, n, *t.shape[1:]))
        return {
            "norm": m.norm.init_state(n),
            "zbuf": torch.zeros(n, self.zbuf_len),
            "phase": phase,
            "forecast": torch.zeros(n, c.horizon),
        }

    @property
    def n_lanes(self) -> int:
        return int(self.state["zbuf"].shape[0])

    def add_lanes(self, n: int) -> None:
        extra = flatten_state(self._zeros(n))
        flat = flatten_state(self.state)
        self.state = unflatten_state(
            {
                k: _cat_lanes(v, extra[k], 1 if k.startswith("phase.") else 0)
                for k, v in flat.items()
            }
        )

    def counts(self) -> np.ndarray:
        return self.state["norm"]["count"].numpy()

    def forecasts(self) -> torch.Tensor:
        return self.state["forecast"]

    # ------------------------------------------------------------------ one sample
    @torch.inference_mode()
    def step(self, lanes: torch.Tensor | None, x: torch.Tensor) -> None:
        """One new sample ``x`` (m,) for each lane of ``lanes`` (None: all lanes, in order)."""
        m, c, st = self.model, self.config, self.state

        def take(t: torch.Tensor) -> torch.Tensor:
            return t if lanes is None else t[lanes]

        z, norm_new = m.norm.step(x, map_state(st["norm"], take))
        zbuf = torch.cat([take(st["zbuf"])[:, 1:], z[:, None]], dim=1)
        count = norm_new["count"]
        emit = count >= c.patch_len
        lane_ids = torch.arange(len(x)) if lanes is None else lanes
        if bool(emit.any()):
            phases = torch.remainder(count - c.patch_len, c.stride)
            uniform = lanes is None and bool(emit.all()) and bool((phases == phases[0]).all())
            if uniform:
                p = int(phases[0])
                sub = map_state(st["phase"], lambda t: t[p])
                rows = slice(None)
            else:
                rows = torch.nonzero(emit).squeeze(1)
                idx = (phases[rows], lane_ids[rows])
                sub = map_state(st["phase"], lambda t: t[idx])
            h = m.patch.proj(zbuf[rows][:, self.zbuf_len - c.patch_len :])
            new_blocks = {}
            for i, block in enumerate(m.blocks):
                h, new_blocks[str(i)] = block.step(h, sub["blocks"][str(i)])
            y, new_head = m.head.step(m.ln_out(h), sub["head"])
            if self.skip is not None:
                y = y + self.skip(zbuf[rows][:, self.zbuf_len - c.lookback :])
            y = denormalise(y, (norm_new["mean"][rows], norm_new["std"][rows]))
            new_sub = flatten_state({"blocks": new_blocks, "head": new_head})
            for name, t in flatten_state(st["phase"]).items():
                if uniform:
                    t[p] = new_sub[name]
                else:
                    t[idx] = new_sub[name]
            st["forecast"][lane_ids[rows]] = y
        self._write(lanes, norm_new, zbuf)

    def _write(self, lanes, norm_new: dict, zbuf: torch.Tensor) -> None:
        st = self.state
        if lanes is None:
            st["norm"] = norm_new
            st["zbuf"] = zbuf
            return
        for name, t in st["norm"].items():
            t[lanes] = norm_new[name]
        st["zbuf"][lanes] = zbuf

    # ------------------------------------------------------------------ many samples
    @torch.inference_mode()
    def scan(self, lanes: torch.Tensor, x: torch.Tensor) -> None:
        """``k`` new samples ``x`` (m, k) for lanes that have all seen the same number of
        samples, through the parallel form (one scan per phase)."""
        m, c, st = self.model, self.config, self.state
        counts = st["norm"]["count"][lanes]
        c0 = int(counts[0])
        if bool((counts != c0).any()):
            raise ValueError("scan needs lanes with equal sample counts")
        k = x.shape[1]
        window = m.norm.window
        buffer = st["norm"]["buffer"][lanes]
        valid = min(c0, window)
        full = torch.cat([buffer[:, window - valid :], x.double()], dim=1)
        mean, std = m.norm.statistics(full)
        mean, std = mean[:, valid:], std[:, valid:]
        z = ((x.double() - mean) / std).to(x.dtype)
        zfull = torch.cat([st["zbuf"][lanes], z], dim=1)
        # the patch ending at each new sample
        patches = zfull[:, self.zbuf_len - c.patch_len :].unfold(1, c.patch_len, 1)[:, 1:]
        n_seen = c0 + 1 + np.arange(k)
        emit = n_seen >= c.patch_len
        phase_of = np.remainder(n_seen - c.patch_len, c.stride)
        last_mean, last_std = mean[:, -1].to(x.dtype), std[:, -1].to(x.dtype)
        for p in np.unique(phase_of[emit]):
            positions = np.flatnonzero(emit & (phase_of == p))
            sub = map_state(st["phase"], lambda t, p=p: t[int(p)][lanes])
            h = m.patch.proj(patches[:, torch.from_numpy(positions)])
            new_blocks = {}
            for i, block in enumerate(m.blocks):
                h, new_blocks[str(i)] = block.scan(h, sub["blocks"][str(i)])
            h = m.ln_out(h)
            n_tok = m.head.n_tokens
            head_buf = torch.cat([sub["head"]["buffer"], h], dim=1)[:, -n_tok:]
            new_sub = flatten_state({"blocks": new_blocks, "head": {"buffer": head_buf}})
            for name, t in flatten_state(st["phase"]).items():
                t[int(p), lanes] = new_sub[name]
            if positions[-1] == k - 1:
                y = m.head.linear(head_buf.flatten(1))
                if self.skip is not None:
                    y = y + self.skip(zfull[:, zfull.shape[1] - c.lookback :])
                st["forecast"][lanes] = denormalise(y, (last_mean, last_std))
        norm_new = {
            "buffer": torch.cat([buffer, x.double()], dim=1)[:, -window:],
            "count": counts + k,
            "mean": last_mean,
            "std": last_std,
        }
        self._write(lanes, norm_new, zfull[:, zfull.shape[1] - self.zbuf_len :])

    def push(self, lanes: np.ndarray, x: np.ndarray) -> None:
        """New samples ``x`` (m, k) (scaled, float32) for the lanes ``lanes`` (m,)."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        k = xt.shape[1]
        all_lanes = len(lanes) == self.n_lanes and bool(np.all(lanes == np.arange(len(lanes))))
        lane_t = None if all_lanes else torch.from_numpy(np.asarray(lanes, dtype=np.int64))
        if k <= self.config.stride:
            for j in range(k):
                self.step(lane_t, xt[:, j])
            return
        counts = self.counts()[lanes]
        for c0 in np.unique(counts):
            rows = np.flatnonzero(counts == c0)
            self.scan(torch.from_numpy(np.asarray(lanes[rows], dtype=np.int64)), xt[rows])


class WindowEngine:
    """Any configuration: keep the last ``lookback`` samples per lane, re-encode on update.

    State: ``buffer`` (L, lookback) scaled samples, ``count`` (L,), ``forecast`` (L, horizon).
    """

    kind = "window"

    def __init__(self, model: RWKVTSModel, batch_size: int = 4096) -> None:
        self.model = model.eval()
        self.config = model.config
        self.batch_size = batch_size
        self.state = self._zeros(0)

    def _zeros(self, n: int) -> dict:
        c = self.config
        return {
            "buffer": torch.zeros(n, c.lookback),
            "count": torch.zeros(n, dtype=torch.long),
            "forecast": torch.zeros(n, c.horizon),
        }

    @property
    def n_lanes(self) -> int:
        return int(self.state["count"].shape[0])

    def add_lanes(self, n: int) -> None:
        extra = self._zeros(n)
        self.state = {k: torch.cat([v, extra[k]], dim=0) for k, v in self.state.items()}

    def counts(self) -> np.ndarray:
        return self.state["count"].numpy()

    def forecasts(self) -> torch.Tensor:
        return self.state["forecast"]

    @torch.inference_mode()
    def push(self, lanes: np.ndarray, x: np.ndarray) -> None:
        st, lookback = self.state, self.config.lookback
        idx = torch.from_numpy(np.asarray(lanes, dtype=np.int64))
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        buffer = torch.cat([st["buffer"][idx], xt], dim=1)[:, -lookback:]
        st["buffer"][idx] = buffer
        st["count"][idx] += xt.shape[1]
        ready = torch.nonzero(st["count"][idx] >= lookback).squeeze(1)
        for start in range(0, len(ready), self.batch_size):
            rows = ready[start : start + self.batch_size]
            y = self.model(buffer[rows][:, :, None])[:, :, 0]
            st["forecast"][idx[rows]] = y


def make_engine(model: RWKVTSModel, backend: str = "auto"):
    """The engine a model's configuration streams with: ``backend`` ``"torch"`` (the nn modules'
    step), ``"numba"`` (the runtime's kernel; streamable configuration only) or ``"auto"`` (numba
    for the streamable configuration, the torch window engine otherwise). An ensemble in the
    streamable configuration gets one engine per member (:class:`EnsembleEngine`); in the
    windowed one the window engine re-encodes the window with every member."""
    if backend not in ("auto", "torch", "numba"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    if backend == "auto":
        backend = "numba" if model.config.streamable else "torch"
    if isinstance(model, ForecastEnsemble) and model.config.streamable:
        return EnsembleEngine([make_engine(member, backend) for member in model.members])
    if not model.config.streamable:
        if backend == "numba":
            raise ValueError(
                "backend='numba' runs the streamable configuration (norm='causal' with "
                "head='last' or a number of tokens); this model re-encodes windows"
            )
        return WindowEngine(model)
    return NumbaEngine(model) if backend == "numba" else RecurrentEngine(model)


class NumbaEngine:
    """The streamable configuration on the torch-free runtime's numba kernel
    (:mod:`rwkv_ts.runtime.kernel`): the same step as :class:`RecurrentEngine`, without a torch
    operation per layer, so one sample of one series costs microseconds instead of a millisecond.

    Its state (the runtime's arrays, lanes first) is exposed as tensors sharing their memory.
    """

    kind = "numba"

    def __init__(self, model: RWKVTSModel) -> None:
        from rwkv_ts.runtime.stream import RuntimeModel, RuntimeStream
        from rwkv_ts.runtime.weights import ModelArrays, RuntimeConfig

        config = model.config.to_dict()
        arrays = ModelArrays(
            config=RuntimeConfig.from_dict(config),
            config_dict=config,
            weights={k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
            scale_mean=np.zeros(1),
            scale_std=np.ones(1),
            channels=["lane"],
        )
        self.config = model.config
        self._runtime = RuntimeStream(RuntimeModel(arrays), 0)

    @property
    def state(self) -> dict:
        return {k: torch.from_numpy(v) for k, v in self._runtime.state.items()}

    @state.setter
    def state(self, tensors: dict) -> None:
        self._runtime.state = {k: np.ascontiguousarray(v.numpy()) for k, v in tensors.items()}

    @property
    def n_lanes(self) -> int:
        return int(self._runtime.state["count"].shape[0])

    def add_lanes(self, n: int) -> None:
        self._runtime.add_series(n)

    def counts(self) -> np.ndarray:
        return self._runtime.state["count"]

    def forecasts(self) -> torch.Tensor:
        return torch.from_numpy(self._runtime.state["fc"])

    def push(self, lanes: np.ndarray, x: np.ndarray) -> None:
        self._runtime.advance(lanes, x)


class EnsembleEngine:
    """An ensemble in the streamable configuration: one engine per member, fed the same samples;
    the forecasts are the mean of the members'. The state holds each member engine's state under
    its index (``"0"``, ``"1"``, ...), so it saves and restores as one.
    """

    def __init__(self, engines: list) -> None:
        self.engines = engines
        self.kind = engines[0].kind
        self.config = engines[0].config

    @property
    def state(self) -> dict:
        return {str(i): engine.state for i, engine in enumerate(self.engines)}

    @state.setter
    def state(self, tensors: dict) -> None:
        for i, engine in enumerate(self.engines):
            engine.state = tensors[str(i)]

    @property
    def n_lanes(self) -> int:
        return self.engines[0].n_lanes

    def add_lanes(self, n: int) -> None:
        for engine in self.engines:
            engine.add_lanes(n)

    def counts(self) -> np.ndarray:
        return self.engines[0].counts()

    def forecasts(self) -> torch.Tensor:
        return torch.stack([engine.forecasts() for engine in self.engines]).mean(dim=0)

    def push(self, lanes: np.ndarray, x: np.ndarray) -> None:
        for engine in self.engines:
            engine.push(lanes, x)
