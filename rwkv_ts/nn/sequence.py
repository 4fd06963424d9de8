"""Sequence-level models: the RWKV-TS encoder read out after every patch, for classification and
regression.

:class:`RWKVSequenceModel` embeds patches of all channels together (channel-mixing), runs the
RWKV blocks of :mod:`rwkv_ts.nn.block` and reads a causal pooling of the tokens seen so far through
a linear head. Every part is causal, so the batch output for a sequence is defined on its prefixes:
``forward(x[:, :t])`` equals the output of ``step`` after sample ``t`` (whenever a patch completes
at ``t``; between patches the output stays that of the last complete patch). Patches are aligned to
the first sample: token ``j`` covers samples ``j * stride .. j * stride + patch_len - 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import nn

from rwkv_ts.nn.block import RWKVBlock
from rwkv_ts.nn.config import RWKVTSConfig, members_config
from rwkv_ts.nn.conv import ConvBranch
from rwkv_ts.nn.norm import CausalNorm
from rwkv_ts.nn.pooling import CausalPooling

POOLINGS = ("last", "mean", "max")


def parse_pooling(pooling: str) -> tuple[str, ...]:
    """Split ``"mean+last"`` into ``("mean", "last")``; ``ValueError`` names an unknown part.

    Examples
    --------
    >>> parse_pooling("mean+max")
    ('mean', 'max')
    """
    if not isinstance(pooling, str) or not pooling:
        raise ValueError(f"pooling must be a string such as 'mean' or 'mean+last', got {pooling!r}")
    parts = tuple(p.strip() for p in pooling.split("+"))
    for part in parts:
        if part not in POOLINGS:
            raise ValueError(
                f"pooling part {part!r} is unknown; use {POOLINGS} or several joined by '+'"
            )
    if len(set(parts)) != len(parts):
        raise ValueError(f"pooling {pooling!r} repeats a part")
    return parts


@dataclass
class SequenceConfig:
    """Hyperparameters of :class:`RWKVSequenceModel`.

    Parameters
    ----------
    n_channels, n_outputs
        Input channels and outputs (classes, or regression targets).
    patch_len, stride
        Patch length and stride in samples; the first patch starts at the first sample.
    d_model, n_layers, head_size, ffn_mult, shift_distances, decay, lora_rank, tcn_dilations,
    tcn_kernel_size, dropout
        The RWKV blocks, as in :class:`rwkv_ts.nn.RWKVTSConfig`.
    norm
        ``"none"``: the input is used as given (the estimators standardise each channel with
        training statistics); ``"causal"``: each channel is normalised by its trailing statistics
        over ``norm_window`` samples.
    norm_window
        Window of the causal normalisation.
    pooling
        How the tokens seen so far are read: ``"last"`` (the last token), ``"mean"`` (running
        mean), ``"max"`` (running maximum), or several joined by ``"+"`` (concatenated).
    conv_channels, conv_kernels
        A full-resolution convolutional branch beside the RWKV encoder (after LSTM-FCN; see
        :class:`rwkv_ts.nn.conv.ConvBranch`): the filters and kernel size of each causal
        convolution. Its running mean over the samples so far is concatenated with the pooled
        tokens before the head. ``()`` (the default): no such branch.
    """

    n_channels: int
    n_outputs: int
    patch_len: int = 8
    stride: int = 4
    d_model: int = 64
    n_layers: int = 2
    head_size: int = 16
    ffn_mult: float = 2.0
    shift_distances: tuple[int, ...] = (1, 2, 4)
    decay: Literal["data", "static"] = "data"
    lora_rank: int = 16
    tcn_dilations: tuple[int, ...] = (1, 2, 4)
    tcn_kernel_size: int = 3
    norm: Literal["none", "causal"] = "none"
    norm_window: int = 64
    pooling: str = "mean"
    dropout: float = 0.1
    conv_channels: tuple[int, ...] = ()
    conv_kernels: tuple[int, ...] = (8, 5, 3)

    def __post_init__(self) -> None:
        self.shift_distances = tuple(int(d) for d in self.shift_distances)
        self.tcn_dilations = tuple(int(d) for d in self.tcn_dilations)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.conv_kernels = tuple(int(k) for k in self.conv_kernels)
        self.validate()

    def block_config(self) -> RWKVTSConfig:
        """The block hyperparameters as an :class:`RWKVTSConfig` (what :class:`RWKVBlock` reads).

        Its ``lookback`` and ``horizon`` are not used by the blocks; ``lookback=patch_len`` only
        satisfies that configuration's own checks.
        """
        return RWKVTSConfig(
            lookback=self.patch_len,
            horizon=self.n_outputs,
            patch_len=self.patch_len,
            stride=self.stride,
            d_model=self.d_model,
            n_layers=self.n_layers,
            head_size=self.head_size,
            ffn_mult=self.ffn_mult,
            shift_distances=self.shift_distances,
            decay=self.decay,
            lora_rank=self.lora_rank,
            tcn_dilations=self.tcn_dilations,
            tcn_kernel_size=self.tcn_kernel_size,
            norm="causal",
            dropout=self.dropout,
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        for name in ("n_channels", "n_outputs", "norm_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.norm not in ("none", "causal"):
            raise ValueError(f"norm must be 'none' or 'causal', got {self.norm!r}")
        if self.norm == "causal" and self.norm_window < 2:
            raise ValueError(f"norm_window must be >= 2, got {self.norm_window}")
        parse_pooling(self.pooling)
        if self.conv_channels:
            if len(self.conv_channels) != len(self.conv_kernels):
                raise ValueError(
                    f"conv_channels {self.conv_channels} and conv_kernels {self.conv_kernels} "
                    "must have the same length (one kernel size per convolution)"
                )
            for name in ("conv_channels", "conv_kernels"):
                bad = [v for v in getattr(self, name) if v < 1]
                if bad:
                    raise ValueError(f"{name} must hold positive integers, got {bad[0]}")
        self.block_config()  # checks every block setting

    @property
    def pooling_parts(self) -> tuple[str, ...]:
        return parse_pooling(self.pooling)

    def n_tokens(self, length: int) -> int:
        """Tokens of a sequence of ``length`` samples (0 when shorter than a patch)."""
        if length < self.patch_len:
            return 0
        return (length - self.patch_len) // self.stride + 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shift_distances"] = list(self.shift_distances)
        data["tcn_dilations"] = list(self.tcn_dilations)
        data["conv_channels"] = list(self.conv_channels)
        data["conv_kernels"] = list(self.conv_kernels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SequenceConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys: {unknown}")
        return cls(**data)


class ChannelPatchEmbedding(nn.Module):
    """Linear embedding of multichannel patches: ``patch_len`` samples of all ``n_channels``
    channels become one token.

    ``forward`` cuts patches from the first sample on (trailing samples that do not complete a
    patch are dropped); ``step`` keeps the last ``patch_len`` samples and a per-row sample count,
    so rows of one batch may be at different positions.

    Examples
    --------
    >>> import torch
    >>> embed = ChannelPatchEmbedding(n_channels=3, patch_len=4, stride=2, d_model=8)
    >>> embed(torch.randn(5, 11, 3)).shape
    torch.Size([5, 4, 8])
    """

    def __init__(self, n_channels: int, patch_len: int, stride: int, d_model: int) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.patch_len = patch_len
        self.stride = stride
        self.proj = nn.Linear(n_channels * patch_len, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, P, d_model) of ``x`` (B, L, C)."""
        if x.shape[1] < self.patch_len:
            raise ValueError(
                f"sequence of length {x.shape[1]} is shorter than patch_len={self.patch_len}"
            )
        # unfold gives (B, P, C, patch_len): channel-major patches, as in ``step``
        patches = x.unfold(dimension=1, size=self.patch_len, step=self.stride)
        return self.proj(patches.flatten(2))

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        return {
            "buffer": torch.zeros(
                batch_size, self.patch_len, self.n_channels, device=device, dtype=dtype
            ),
            "count": torch.zeros(batch_size, dtype=torch.long, device=device),
        }

    def step(
        self, x_t: torch.Tensor, state: dict
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
        """Take one sample per row, ``x_t`` (B, C); return ``(token, ready)`` and the new state.

        ``token`` (B, d_model) is meaningful only where ``ready`` (B,) is true, i.e. where a patch
        completed with this sample.
        """
        buffer = torch.cat([state["buffer"][:, 1:], x_t[:, None]], dim=1)
        count = state["count"] + 1
        ready = (count >= self.patch_len) & ((count - self.patch_len) % self.stride == 0)
        token = self.proj(buffer.transpose(1, 2).flatten(1))
        return (token, ready), {"buffer": buffer, "count": count}


def _where_state(mask: torch.Tensor, new: dict, old: dict) -> dict:
    """Per row: ``new`` where ``mask``, else ``old`` (nested states, batch first)."""
    out = {}
    for key, value in new.items():
        if isinstance(value, dict):
            out[key] = _where_state(mask, value, old[key])
        else:
            m = mask.view(-1, *([1] * (value.ndim - 1)))
            out[key] = torch.where(m, value, old[key])
    return out


def _capturing(x: torch.Tensor) -> bool:
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


class RWKVSequenceModel(nn.Module):
    """RWKV-TS encoder with a causal read-out: class logits or values after every patch.

    Parameters
    ----------
    config
        The hyperparameters, see :class:`SequenceConfig`.

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig
    >>> model = RWKVSequenceModel(SequenceConfig(n_channels=2, n_outputs=3, patch_len=4, stride=2,
    ...                                          d_model=16, head_size=8, n_layers=1)).eval()
    >>> x = torch.randn(5, 20, 2)
    >>> model(x).shape, model.token_outputs(x).shape
    (torch.Size([5, 3]), torch.Size([5, 9, 3]))
    >>> bool(torch.allclose(model(x[:, :12]), model.token_outputs(x)[:, 4], atol=1e-5))
    True
    """

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        block_config = config.block_config()
        self.norm = CausalNorm(config.norm_window) if config.norm == "causal" else None
        self.embed = ChannelPatchEmbedding(
            config.n_channels, config.patch_len, config.stride, config.d_model
        )
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(RWKVBlock(block_config, i) for i in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.pool = CausalPooling(config.d_model, config.pooling_parts)
        self.conv = (
            ConvBranch(config.n_channels, config.conv_channels, config.conv_kernels)
            if config.conv_channels
            else None
        )
        head_in = self.pool.out_features + (self.conv.out_features if self.conv else 0)
        self.head_dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(head_in, config.n_outputs)

    # ------------------------------------------------------------------ parallel mode
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return x
        batch, length, channels = x.shape
        z, _ = self.norm(x.permute(0, 2, 1).reshape(batch * channels, length))
        return z.view(batch, channels, length).permute(0, 2, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[2] != self.config.n_channels:
            raise ValueError(
                f"expected input of shape (batch, length, {self.config.n_channels} channels), "
                f"got {tuple(x.shape)}"
            )

    def _encode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        h = self.embed_dropout(self.embed(z))
        for block in self.blocks:
            h = block(h)
        return self.ln_out(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the blocks, (B, P, d_model), of ``x`` (B, L, C)."""
        self._check_input(x)
        return self._encode_normalised(self._normalise(x))

    def token_outputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs after every token, (B, P, n_outputs): position ``j`` is the output for the
        prefix that ends with patch ``j``. ``lengths`` (right padding) matters only to the
        convolutional branch's batch normalisation while training."""
        self._check_input(x)
        z = self._normalise(x)
        features = self.pool(self._encode_normalised(z))
        if self.conv is not None:
            cfg = self.config
            ends = torch.arange(features.shape[1], device=x.device) * cfg.stride + cfg.patch_len - 1
            features = torch.cat([features, self.conv(z, lengths)[:, ends]], dim=-1)
        return self.head(self.head_dropout(features))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs (B, n_outputs) for ``x`` (B, L, C), right-padded sequences of ``lengths``
        samples (all ``L`` when ``None``); each row is read at its last complete patch."""
        outputs = self.token_outputs(x, lengths)
        if lengths is None:
            return outputs[:, -1]
        last = (lengths.to(outputs.device) - self.config.patch_len) // self.config.stride
        # (not while a CUDA graph is being captured: reading a value on the host is not allowed
        # there; the estimators check the lengths when the data come in)
        if not _capturing(outputs) and int(last.min()) < 0:
            raise ValueError(
                f"a sequence has {int(lengths.min())} samples, fewer than "
                f"patch_len={self.config.patch_len}"
            )
        return outputs[torch.arange(len(outputs), device=outputs.device), last]

    # ------------------------------------------------------------------ recurrent mode
    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        """Zero state for ``batch_size`` sequences."""
        state = {
            "embed": self.embed.init_state(batch_size, device, dtype),
            "blocks": {
                str(i): block.init_state(batch_size, device, dtype)
                for i, block in enumerate(self.blocks)
            },
            "pool": self.pool.init_state(batch_size, device, dtype),
        }
        if self.norm is not None:
            state["norm"] = self.norm.init_state(batch_size * self.config.n_channels, device, dtype)
        if self.conv is not None:
            state["conv"] = self.conv.init_state(batch_size, device, dtype)
            # the branch's running mean as of the last complete patch, which the head reads
            state["conv_read"] = torch.zeros(
                batch_size, self.conv.out_features, device=device, dtype=dtype
            )
        return state

    def step(
        self, x_t: torch.Tensor, state: dict
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
        """Take one sample per sequence, ``x_t`` (B, C); return ``(outputs, seen)`` and the new
        state.

        ``outputs`` (B, n_outputs) equals ``forward`` over all samples so far; ``seen`` (B,) is
        false for rows that have not completed a patch yet (their outputs are meaningless).
        """
        batch, channels = x_t.shape
        new_state = {}
        if self.norm is not None:
            z, new_state["norm"] = self.norm.step(x_t.reshape(batch * channels), state["norm"])
            x_t = z.view(batch, channels)
        (token, ready), new_state["embed"] = self.embed.step(x_t, state["embed"])
        h = self.embed_dropout(token)
        new_state["blocks"] = {}
        for i, block in enumerate(self.blocks):
            h, block_state = block.step(h, state["blocks"][str(i)])
            # rows without a new token keep their state
            new_state["blocks"][str(i)] = _where_state(ready, block_state, state["blocks"][str(i)])
        pooled, new_state["pool"] = self.pool.step(self.ln_out(h), ready, state["pool"])
        if self.conv is not None:
            conv_mean, new_state["conv"] = self.conv.step(x_t, state["conv"])
            new_state["conv_read"] = torch.where(ready[:, None], conv_mean, state["conv_read"])
            pooled = torch.cat([pooled, new_state["conv_read"]], dim=-1)
        outputs = self.head(self.head_dropout(pooled))
        return (outputs, new_state["pool"]["count"] > 0), new_state


#: How :class:`SequenceEnsemble` combines its members' outputs.
ENSEMBLE_COMBINES = ("mean", "probability")


class SequenceEnsemble(nn.Module):
    """Several :class:`RWKVSequenceModel` of one configuration read as one model.

    ``combine="mean"`` averages the members' outputs (regression: the mean estimate);
    ``combine="probability"`` returns ``log(mean_i softmax(z_i))``, whose softmax is the mean of
    the members' class probabilities (the usual way to ensemble classifiers). Both modes of the
    members carry over: ``forward`` and ``token_outputs`` over a sequence, ``step`` with a state
    that holds one member state per member, so a stream of the ensemble equals its batch output.

    Parameters
    ----------
    members
        The trained models; all of the same :class:`SequenceConfig`.
    combine : {"mean", "probability"}

    Examples
    --------
    >>> import torch
    >>> from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig, SequenceEnsemble
    >>> config = SequenceConfig(n_channels=2, n_outputs=3, patch_len=4, stride=2, d_model=16,
    ...                         head_size=8, n_layers=1)
    >>> members = [RWKVSequenceModel(config).eval() for _ in range(3)]
    >>> ensemble = SequenceEnsemble(members, combine="probability").eval()
    >>> x = torch.randn(5, 20, 2)
    >>> mean_proba = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
    >>> bool(torch.allclose(ensemble(x).softmax(-1), mean_proba, atol=1e-6))
    True
    """

    def __init__(self, members: list[RWKVSequenceModel], combine: str = "mean") -> None:
        super().__init__()
        if combine not in ENSEMBLE_COMBINES:
            raise ValueError(f"combine must be one of {ENSEMBLE_COMBINES}, got {combine!r}")
        self.config = members_config(members)
        self.members = nn.ModuleList(members)
        self.combine = combine

    def _combined(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(outputs)
        if self.combine == "mean":
            return stacked.mean(dim=0)
        log_proba = torch.log_softmax(stacked, dim=-1)
        return torch.logsumexp(log_proba, dim=0) - math.log(len(outputs))

    def token_outputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Combined outputs after every token, (B, P, n_outputs)."""
        return self._combined([member.token_outputs(x, lengths) for member in self.members])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Combined outputs (B, n_outputs), each row read at its last complete patch."""
        return self._combined([member(x, lengths) for member in self.members])

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> dict:
        """Zero state for ``batch_size`` sequences: one member state per member."""
        return {
            str(i): member.init_state(batch_size, device, dtype)
            for i, member in enumerate(self.members)
        }

    def step(
        self, x_t: torch.Tensor, state: dict
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
        """Take one sample per sequence; see :meth:`RWKVSequenceModel.step`."""
        outputs, new_state = [], {}
        for i, member in enumerate(self.members):
            (out, seen), new_state[str(i)] = member.step(x_t, state[str(i)])
            outputs.append(out)
        # the members share the patching, so they complete their first patch together
        return (self._combined(outputs), seen), new_state
