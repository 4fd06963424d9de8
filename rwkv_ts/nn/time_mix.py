"""RWKV-6 time-mix: data-dependent token shift and decay around the WKV operator."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rwkv_ts.nn.shift import MultiScaleShift
from rwkv_ts.ops import wkv

_TARGETS = ("w", "k", "v", "r", "g")


class TimeMix(nn.Module):
    """RWKV-6 ("Finch") time-mix with a multi-scale token shift.

    The shifted token is mixed into each of the five projections (decay ``w``, key, value,
    receptance, gate) with data-dependent interpolation weights (RWKV-6's low-rank "ddlerp"); the
    decay is data dependent (``decay="data"``) or a learned constant per channel
    (``decay="static"``, RWKV-5). Heads of ``head_size`` channels each run the WKV recurrence of
    :func:`rwkv_ts.ops.wkv`.

    ``scan(x, state)`` runs a whole sequence from a state and returns the final one, ``step`` one
    token; ``forward(x)`` starts from zeros.

    Examples
    --------
    >>> import torch
    >>> mix = TimeMix(d_model=16, head_size=8, layer_id=0, n_layers=1)
    >>> mix(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(
        self,
        d_model: int,
        head_size: int,
        layer_id: int,
        n_layers: int,
        shift_distances: tuple[int, ...] = (1,),
        decay: str = "data",
        lora_rank: int = 16,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.head_size = head_size
        self.n_heads = d_model // head_size
        self.data_decay = decay == "data"
        self.shift = MultiScaleShift(d_model, shift_distances)

        # RWKV-6 initialisation: earlier layers mix less of the past, decays spread over channels.
        ratio_0_to_1 = layer_id / max(n_layers - 1, 1)
        ratio_1_to_almost0 = 1.0 - layer_id / n_layers
        ddd = torch.arange(d_model, dtype=torch.float32) / d_model
        self.maa_x = nn.Parameter(1.0 - ddd.pow(ratio_1_to_almost0))
        self.maa = nn.Parameter(
            torch.stack(
                [
                    1.0 - ddd.pow(ratio_1_to_almost0),
                    1.0 - ddd.pow(ratio_1_to_almost0),
                    1.0 - (ddd.pow(ratio_1_to_almost0) + 0.3 * ratio_0_to_1),
                    1.0 - ddd.pow(0.5 * ratio_1_to_almost0),
                    1.0 - ddd.pow(0.5 * ratio_1_to_almost0),
                ]
            )
        )
        self.maa_w1 = nn.Parameter(torch.zeros(d_model, len(_TARGETS) * lora_rank))
        self.maa_w2 = nn.Parameter(
            torch.empty(len(_TARGETS), lora_rank, d_model).uniform_(-0.01, 0.01)
        )

        n = torch.arange(d_model, dtype=torch.float32)
        self.time_decay = nn.Parameter(
            -6.0 + 5.0 * (n / max(d_model - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1)
        )
        if self.data_decay:
            self.decay_w1 = nn.Parameter(torch.zeros(d_model, 2 * lora_rank))
            self.decay_w2 = nn.Parameter(torch.empty(2 * lora_rank, d_model).uniform_(-0.01, 0.01))
        zigzag = ((n + 1) % 3 - 1) * 0.1
        bonus = ratio_0_to_1 * (1.0 - n / max(d_model - 1, 1)) + zigzag
        self.bonus = nn.Parameter(bonus.view(self.n_heads, head_size))

        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)
        self.ln_x = nn.GroupNorm(self.n_heads, d_model, eps=1e-5 * 64)
        nn.init.zeros_(self.output.weight)

    # ------------------------------------------------------------------ shared projections
    def _project(self, x: torch.Tensor, shifted: torch.Tensor):
        xx = shifted - x
        lora = torch.tanh((x + xx * self.maa_x) @ self.maa_w1)
        lora = lora.unflatten(-1, (len(_TARGETS), -1))  # (..., 5, rank)
        mix = torch.einsum("...fr,frd->...fd", lora, self.maa_w2) + self.maa
        xw, xk, xv, xr, xg = (x.unsqueeze(-2) + xx.unsqueeze(-2) * mix).unbind(-2)
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        g = F.silu(self.gate(xg))
        if self.data_decay:
            w = self.time_decay + torch.tanh(xw @ self.decay_w1) @ self.decay_w2
        else:
            w = self.time_decay.expand_as(k)
        return r, k, v, w, g

    def _finish(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        shape = y.shape
        y = self.ln_x(y.reshape(-1, self.d_model)).view(shape)
        return self.output(y * g)

    # ------------------------------------------------------------------ modes
    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        shape = (batch_size, self.n_heads, self.head_size, self.head_size)
        return {
            "shift": self.shift.init_state(batch_size, self.d_model, device=device, dtype=dtype),
            "wkv": torch.zeros(shape, device=device, dtype=torch.float32),
        }

    def scan(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Run the sequence ``x`` (B, T, D) from ``state`` (zeros if ``None``); return outputs and
        final state."""
        batch, length, _ = x.shape
        previous = None if state is None else state["shift"]["buffer"]
        shifted = self.shift(x, previous)
        r, k, v, w, g = self._project(x, shifted)
        heads = (batch, length, self.n_heads, self.head_size)
        y, wkv_state = wkv(
            r.view(heads),
            k.view(heads),
            v.view(heads),
            w.reshape(heads),
            self.bonus,
            None if state is None else state["wkv"],
        )
        history = x if previous is None else torch.cat([previous, x], dim=1)
        if history.shape[1] < self.shift.max_distance:
            history = torch.cat(
                [
                    history.new_zeros(
                        batch, self.shift.max_distance - history.shape[1], self.d_model
                    ),
                    history,
                ],
                dim=1,
            )
        new_state = {
            "shift": {"buffer": history[:, history.shape[1] - self.shift.max_distance :]},
            "wkv": wkv_state,
        }
        return self._finish(y.reshape(batch, length, self.d_model), g), new_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scan(x)[0]

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token ``x_t`` (B, D)."""
        shifted, shift_state = self.shift.step(x_t, state["shift"])
        r, k, v, w, g = self._project(x_t, shifted)
        heads = (x_t.shape[0], 1, self.n_heads, self.head_size)
        y, wkv_state = wkv(
            r.view(heads), k.view(heads), v.view(heads), w.reshape(heads), self.bonus, state["wkv"]
        )
        out = self._finish(y.reshape(x_t.shape[0], self.d_model), g)
        return out, {"shift": shift_state, "wkv": wkv_state}
