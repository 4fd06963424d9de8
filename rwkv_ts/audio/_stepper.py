"""A numpy step of the sequence encoder's blocks, for audio streams that complete one token or a
few per push: torch pays a dispatch cost per operation that dwarfs the arithmetic of one token.

The torch-free runtime (:mod:`rwkv_ts.runtime`) has a numba step of the same blocks for the
forecaster's model layout; this one reads an :class:`~rwkv_ts.nn.sequence.RWKVSequenceModel`
directly and shares its state tensors with ``block.scan``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TokenStepper:
    """Tokens through an :class:`~rwkv_ts.nn.sequence.RWKVSequenceModel` read per token
    (``pooling="last"``) in numpy float32: the blocks' recurrent step without torch's
    per-operation overhead, for streams that complete a token or a few per push (10 ms of audio).

    It reads the model's weights and updates the blocks' state tensors in place (the layout of
    ``{str(i): block.init_state(1)}``), so it mixes freely with ``block.scan`` on the same
    state; the numbers agree to float32 rounding. ``supported`` is False for models this does not
    cover (a TCN branch, another pooling): use the torch modules then.
    """

    def __init__(self, model: nn.Module) -> None:
        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)

        self.supported = all(block.tcn is None for block in model.blocks) and tuple(
            model.pool.parts
        ) == ("last",)
        self.patch_len = model.embed.patch_len
        self.embed_w, self.embed_b = a(model.embed.proj.weight).T.copy(), a(model.embed.proj.bias)
        self.blocks = []
        for block in model.blocks:
            tm, cm = block.time_mix, block.channel_mix
            mixer = tm.shift.mixer
            self.blocks.append(
                {
                    "ln1": (a(block.ln1.weight), a(block.ln1.bias), block.ln1.eps),
                    "ln2": (a(block.ln2.weight), a(block.ln2.bias), block.ln2.eps),
                    "distances": tm.shift.distances,
                    "mixer": None if mixer is None else (a(mixer.weight).T.copy(), a(mixer.bias)),
                    "maa_x": a(tm.maa_x),
                    "maa": a(tm.maa),
                    "maa_w1": a(tm.maa_w1),
                    "maa_w2": a(tm.maa_w2),
                    "decay": a(tm.time_decay),
                    "decay_w": (a(tm.decay_w1), a(tm.decay_w2)) if tm.data_decay else None,
                    "u": a(tm.bonus),
                    "rkvg": np.stack(
                        [a(tm.receptance.weight).T, a(tm.key.weight).T, a(tm.value.weight).T]
                    ),
                    "gate": a(tm.gate.weight).T.copy(),
                    "out": a(tm.output.weight).T.copy(),
                    "gn": (a(tm.ln_x.weight), a(tm.ln_x.bias), tm.ln_x.eps, tm.n_heads),
                    "cm_maa": (a(cm.maa_k), a(cm.maa_r)),
                    "cm_key": a(cm.key.weight).T.copy(),
                    "cm_rec": a(cm.receptance.weight).T.copy(),
                    "cm_val": a(cm.value.weight).T.copy(),
                }
            )
        self.ln_out = (a(model.ln_out.weight), a(model.ln_out.bias), model.ln_out.eps)
        self.head_w, self.head_b = a(model.head.weight).T.copy(), a(model.head.bias)

    @staticmethod
    def _ln(x: np.ndarray, p) -> np.ndarray:
        w, b, eps = p
        # np.add.reduce: ndarray.mean's Python wrapper costs more than the sum itself here
        c = x - np.add.reduce(x) / np.float32(x.size)
        var = np.add.reduce(c * c) / np.float32(x.size)
        return c / np.sqrt(var + np.float32(eps)) * w + b

    def tokens(self, patches: np.ndarray, state: dict) -> np.ndarray:
        """Outputs (k, n_outputs) of ``k`` patches (k, patch_len, n_channels) of standardised
        inputs (or (k, n_channels) when ``patch_len`` is 1), one token each, in order; updates
        ``state`` in place."""
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim == 2:
            patches = patches[:, None, :]
        # the patch embedding reads patches channel-major, as ChannelPatchEmbedding unfolds them
        flat = patches.transpose(0, 2, 1).reshape(len(patches), -1)
        return np.stack([self._token(row, state) for row in flat]).astype(np.float32, copy=False)

    def _token(self, embedded_in: np.ndarray, state: dict) -> np.ndarray:
        x = embedded_in @ self.embed_w + self.embed_b
        for i, blk in enumerate(self.blocks):
            st = state[str(i)]
            buf = st["time_mix"]["shift"]["buffer"].numpy()  # (1, max_d, D), shares memory
            S = st["time_mix"]["wkv"].numpy()[0]  # (H, N, N)
            last = st["channel_mix"]["last"].numpy()  # (1, D)
            h = self._ln(x, blk["ln1"])
            maxd = buf.shape[1]
            if blk["mixer"] is None:
                shifted = buf[0, maxd - blk["distances"][0]]
            else:
                z = h @ blk["mixer"][0] + blk["mixer"][1]
                e = np.exp(z - z.max())
                wts = e / e.sum()
                shifted = sum(wts[j] * buf[0, maxd - d] for j, d in enumerate(blk["distances"]))
            buf[0, :-1] = buf[0, 1:].copy()
            buf[0, -1] = h
            xx = shifted - h
            lora = np.tanh((h + xx * blk["maa_x"]) @ blk["maa_w1"])
            lora = lora.reshape(blk["maa"].shape[0], -1)
            mix = np.einsum("fr,frd->fd", lora, blk["maa_w2"]) + blk["maa"]
            xs = h + xx * mix  # (5, D): w, k, v, r, g
            r = xs[3] @ blk["rkvg"][0]
            k = xs[1] @ blk["rkvg"][1]
            v = xs[2] @ blk["rkvg"][2]
            xg = xs[4] @ blk["gate"]
            g = xg / (1.0 + np.exp(-xg))
            w = blk["decay"]
            if blk["decay_w"] is not None:
                w = w + np.tanh(xs[0] @ blk["decay_w"][0]) @ blk["decay_w"][1]
            H, N = blk["u"].shape
            r, k, v = r.reshape(H, N), k.reshape(H, N), v.reshape(H, N)
            d = np.exp(-np.exp(np.minimum(w, np.float32(40.0)))).reshape(H, N)
            y = ((r * blk["u"]) * k).sum(-1, keepdims=True) * v + np.einsum("hn,hnm->hm", r, S)
            S *= d[:, :, None]
            S += k[:, :, None] * v[:, None, :]
            gw, gb, geps, _ = blk["gn"]
            c = y - np.add.reduce(y, axis=-1, keepdims=True) / np.float32(N)
            var = np.add.reduce(c * c, axis=-1, keepdims=True) / np.float32(N)
            y = (c / np.sqrt(var + np.float32(geps))).reshape(-1) * gw + gb
            x = x + (y * g) @ blk["out"]
            h2 = self._ln(x, blk["ln2"])
            xx = last[0] - h2
            last[0] = h2
            kk = np.maximum((h2 + xx * blk["cm_maa"][0]) @ blk["cm_key"], 0) ** 2
            rr = (h2 + xx * blk["cm_maa"][1]) @ blk["cm_rec"]
            x = x + (kk @ blk["cm_val"]) / (1.0 + np.exp(-rr))
        return self._ln(x, self.ln_out) @ self.head_w + self.head_b
