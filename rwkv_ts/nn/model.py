"""The RWKV-TS encoder-forecaster: normalisation, patching, RWKV blocks, a forecast head.

Parallel mode (``forward``) runs a whole window; recurrent mode (``step``) takes one sample per
channel at a time with an explicit state. In the causal configuration (``norm="causal"``) the two
give the same forecasts; in the windowed configuration (``norm="instance"``) ``step`` keeps the last
``lookback`` samples and recomputes the window, which is what instance normalisation demands.
"""

from __future__ import annotations

import torch
from torch import nn

from rwkv_ts.nn.block import RWKVBlock
from rwkv_ts.nn.config import RWKVTSConfig, members_config
from rwkv_ts.nn.heads import TokenHead
from rwkv_ts.nn.norm import CausalNorm, InstanceNorm, denormalise
from rwkv_ts.nn.patch import PatchEmbedding


class RWKVTSModel(nn.Module):
    """Channel-independent RWKV-TS forecaster.

    Parameters
    ----------
    config
        The hyperparameters, see :class:`RWKVTSConfig`.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel
    >>> model = RWKVTSModel(RWKVTSConfig(lookback=32, horizon=8, patch_len=8, stride=4, d_model=16,
    ...                                 head_size=8, n_layers=1))
    >>> model(torch.randn(4, 32, 3)).shape
    torch.Size([4, 8, 3])
    """

    def __init__(self, config: RWKVTSConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        if config.norm == "causal":
            self.norm = CausalNorm(config.causal_norm_window)
        else:
            self.norm = InstanceNorm(config.lookback)
        self.patch = PatchEmbedding(config.patch_len, config.stride, config.d_model)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(RWKVBlock(config, i) for i in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = TokenHead(config.n_head_tokens, config.d_model, config.horizon, config.dropout)
        self.skip = nn.Linear(config.lookback, config.horizon) if config.linear_skip else None
        if self.skip is not None:
            # The forecast starts as the linear branch alone (zero until fitted, see
            # fit_skip_least_squares); the encoder's head grows from zero like RWKV's output
            # projections.
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
            nn.init.zeros_(self.head.linear.weight)
            nn.init.zeros_(self.head.linear.bias)

    # ------------------------------------------------------------------ parallel mode
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Tokens of the normalised sequences ``z`` (B, L) after every block: (B, P, d_model)."""
        h = self.embed_dropout(self.patch(z))
        for block in self.blocks:
            h = block(h)
        return self.ln_out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast (B, horizon, C) from the window ``x`` (B, L, C)."""
        if x.ndim != 3:
            raise ValueError(
                f"expected input of shape (batch, length, channels), got {tuple(x.shape)}"
            )
        batch, length, channels = x.shape
        series = x.permute(0, 2, 1).reshape(batch * channels, length)
        z, stats = self.norm(series)
        y = self.head(self.encode(z))
        raw_skip = self.skip is not None and self.config.skip_input == "raw"
        if self.skip is not None and not raw_skip:
            y = y + self.skip_forecast(z)
        y = denormalise(y, stats)
        if raw_skip:
            y = y + self.skip_forecast(series)
        return y.view(batch, channels, -1).permute(0, 2, 1)

    def linear_forecast(self, x: torch.Tensor) -> torch.Tensor:
        """The linear branch's forecast alone (B, horizon, C) from the window ``x`` (B, L, C):
        what ``forward`` gives while the encoder's head is zero (as after
        :meth:`fit_skip_least_squares`, before training)."""
        if self.skip is None:
            raise ValueError("the model has no linear branch (linear_skip=False)")
        batch, length, channels = x.shape
        series = x.permute(0, 2, 1).reshape(batch * channels, length)
        z, (mean, std) = self.norm(series)
        if self.config.skip_input == "raw":
            y = mean[:, None] + self.skip_forecast(series)
        else:
            y = denormalise(self.skip_forecast(z), (mean, std))
        return y.view(batch, channels, -1).permute(0, 2, 1)

    def skip_forecast(self, z: torch.Tensor) -> torch.Tensor:
        """The linear branch on the last ``lookback`` samples of ``z`` (B, L): normalised or
        raw, as ``config.skip_input`` says; shorter sequences are zero-padded on the left."""
        lookback = self.config.lookback
        if z.shape[1] < lookback:
            z = nn.functional.pad(z, (lookback - z.shape[1], 0))
        return self.skip(z[:, z.shape[1] - lookback :])

    @torch.no_grad()
    def fit_skip_least_squares(self, batches, ridge: float = 1e-3) -> int:
        """Set the linear branch to the ridge least-squares forecast on the given windows.

        Fits ``skip`` (the map from the last ``lookback`` samples, normalised or raw as
        ``config.skip_input`` says, to the horizon) in closed form over ``batches`` of windows
        ``(x, y)`` with shapes ``(B, lookback, C)`` and ``(B, horizon, C)``, transformed exactly
        as ``forward`` does, so that training starts from the best linear forecast and the
        encoder learns what it misses. A normalised branch's rows are weighted by the window's
        variance: the fit minimises the squared error of the denormalised forecast, the loss
        training minimises, so that near-constant windows (whose normalised targets are huge)
        do not dominate it.
        ``ridge`` is the penalty per (unit-weight) window on the weights (not the bias).
        Returns the number of univariate windows used.

        Examples
        --------
        >>> import torch
        >>> from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel
        >>> model = RWKVTSModel(RWKVTSConfig(lookback=16, horizon=4, patch_len=4, stride=4,
        ...                                 d_model=8, head_size=8, n_layers=1, linear_skip=True))
        >>> t = torch.arange(200.0)
        >>> x = torch.stack([t[i : i + 16] for i in range(180)])[..., None]
        >>> y = torch.stack([t[i + 16 : i + 20] for i in range(180)])[..., None]
        >>> model.fit_skip_least_squares([(x, y)], ridge=1e-6)
        180
        >>> bool(torch.allclose(model.eval()(x[:3]), y[:3], atol=1e-2))
        True
        """
        if self.skip is None:
            raise ValueError("the model has no linear branch (linear_skip=False)")
        lookback, horizon = self.config.lookback, self.config.horizon
        device = self.skip.weight.device
        xtx = torch.zeros(lookback + 1, lookback + 1, dtype=torch.float64, device=device)
        xty = torch.zeros(lookback + 1, horizon, dtype=torch.float64, device=device)
        n, total_weight = 0, 0.0
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            series = x.permute(0, 2, 1).reshape(-1, x.shape[1])
            target = y.permute(0, 2, 1).reshape(-1, y.shape[1])
            z, (mean, std) = self.norm(series)
            if self.config.skip_input == "raw":
                # the branch adds to the denormalised forecast, which is the window mean
                # while the head is zero: it fits the departure from that mean
                z, target = series, target - mean[:, None]
                weight = torch.ones_like(mean, dtype=torch.float64)
            else:
                target = (target - mean[:, None]) / std[:, None]
                weight = std.double() ** 2
            if z.shape[1] < lookback:
                z = nn.functional.pad(z, (lookback - z.shape[1], 0))
            design = torch.cat([z[:, z.shape[1] - lookback :], torch.ones_like(z[:, :1])], 1)
            design = design.double()
            xtx += (design * weight[:, None]).T @ design
            xty += (design * weight[:, None]).T @ target.double()
            total_weight += float(weight.sum())
            n += design.shape[0]
        if n == 0:
            raise ValueError("no windows to fit the linear branch on")
        self.solve_skip(xtx, xty, ridge * total_weight)
        return n

    @torch.no_grad()
    def solve_skip(self, xtx: torch.Tensor, xty: torch.Tensor, penalty: float) -> None:
        """Set the linear branch to the ridge solution of the (weighted) normal equations
        ``xtx`` (lookback + 1, lookback + 1) and ``xty`` (lookback + 1, horizon), whose last row
        and column belong to the bias; ``penalty`` is added to the weights' diagonal, not the
        bias'. The shared last step of every least-squares start."""
        lookback = self.config.lookback
        diagonal = torch.full((lookback + 1,), penalty, dtype=xtx.dtype, device=xtx.device)
        diagonal[-1] = 0.0
        solution = torch.linalg.solve(xtx + torch.diag(diagonal), xty)
        self.skip.weight.copy_(solution[:lookback].T.to(self.skip.weight.dtype))
        self.skip.bias.copy_(solution[lookback].to(self.skip.bias.dtype))

    # ------------------------------------------------------------------ recurrent mode
    def init_state(
        self, batch_size: int, n_channels: int, device=None, dtype=torch.float32
    ) -> dict:
        """Zero state for ``batch_size`` series of ``n_channels`` channels."""
        n = batch_size * n_channels
        state = {"norm": self.norm.init_state(n, device, dtype)}
        if self.config.norm == "causal":
            state["patch"] = self.patch.init_state(n, device, dtype)
            state["blocks"] = {
                str(i): block.init_state(n, device, dtype) for i, block in enumerate(self.blocks)
            }
            state["head"] = self.head.init_state(n, device, dtype)
            if self.skip is not None:
                state["skip"] = {
                    "buffer": torch.zeros(n, self.config.lookback, device=device, dtype=dtype)
                }
        return state

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor | None, dict]:
        """Take one sample per channel, ``x_t`` (B, C); return the forecast (B, horizon, C) or
        ``None``.

        Causal configuration: a forecast comes whenever a patch completes (every ``stride`` samples
        once ``patch_len`` samples have been seen) and equals ``forward`` over all samples so far.
        Windowed configuration: a forecast comes after every sample once ``lookback`` samples have
        been seen and equals ``forward`` over the last ``lookback`` samples.
        """
        batch, channels = x_t.shape
        flat = x_t.reshape(batch * channels)
        if self.config.norm != "causal":
            _, norm_state = self.norm.step(flat, state["norm"])
            new_state = {"norm": norm_state}
            if int(norm_state["count"].min()) < self.config.lookback:
                return None, new_state
            window = norm_state["buffer"].view(batch, channels, -1).permute(0, 2, 1)
            return self.forward(window), new_state

        z_t, norm_state = self.norm.step(flat, state["norm"])
        token, patch_state = self.patch.step(z_t, state["patch"])
        new_state = {"norm": norm_state, "patch": patch_state}
        if self.skip is not None:
            buffer = torch.cat([state["skip"]["buffer"][:, 1:], z_t[:, None]], dim=1)
            new_state["skip"] = {"buffer": buffer}
        if token is None:
            return None, new_state | {"blocks": state["blocks"], "head": state["head"]}
        h = self.embed_dropout(token)
        new_state["blocks"] = {}
        for i, block in enumerate(self.blocks):
            h, new_state["blocks"][str(i)] = block.step(h, state["blocks"][str(i)])
        y, new_state["head"] = self.head.step(self.ln_out(h), state["head"])
        if self.skip is not None:
            y = y + self.skip(new_state["skip"]["buffer"])
        y = denormalise(y, (norm_state["mean"], norm_state["std"]))
        return y.view(batch, channels, -1).permute(0, 2, 1), new_state


class ForecastEnsemble(nn.Module):
    """Several :class:`RWKVTSModel` of one configuration read as one forecaster: the mean of the
    members' forecasts, in both modes.

    ``forward`` averages the members' forecasts over a window (or a whole history in the causal
    configuration); ``step`` keeps one member state per member and averages their forecasts,
    so stepping the ensemble equals its ``forward`` as it does for a single model.

    Parameters
    ----------
    members
        The trained models; all of the same :class:`RWKVTSConfig`.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn import ForecastEnsemble, RWKVTSConfig, RWKVTSModel
    >>> config = RWKVTSConfig(lookback=32, horizon=8, patch_len=8, stride=4, d_model=16,
    ...                       head_size=8, n_layers=1)
    >>> members = [RWKVTSModel(config).eval() for _ in range(3)]
    >>> ensemble = ForecastEnsemble(members).eval()
    >>> x = torch.randn(4, 32, 2)
    >>> mean = torch.stack([m(x) for m in members]).mean(0)
    >>> bool(torch.allclose(ensemble(x), mean, atol=1e-6))
    True
    """

    def __init__(self, members: list[RWKVTSModel]) -> None:
        super().__init__()
        self.config = members_config(members)
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' forecasts, (B, horizon, C)."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)

    def init_state(
        self, batch_size: int, n_channels: int, device=None, dtype=torch.float32
    ) -> dict:
        """Zero state of every member (keys ``"0"``, ``"1"``, ...)."""
        return {
            str(i): member.init_state(batch_size, n_channels, device, dtype)
            for i, member in enumerate(self.members)
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor | None, dict]:
        """Take one sample per channel, ``x_t`` (B, C); return the mean forecast (B, horizon, C)
        or ``None`` (the members share a configuration, so they answer at the same samples)."""
        forecasts, new_state = [], {}
        for i, member in enumerate(self.members):
            y, new_state[str(i)] = member.step(x_t, state[str(i)])
            forecasts.append(y)
        if forecasts[0] is None:
            return None, new_state
        return torch.stack(forecasts).mean(dim=0), new_state
