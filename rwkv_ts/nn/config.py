"""The configuration of an RWKV-TS encoder-forecaster, in one dataclass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


def int_tuple(name: str, value, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``value`` (a positive integer or a sequence of them) as a tuple; ``ValueError`` naming the
    parameter otherwise. Estimators call it on ``shift_distances`` and ``tcn_dilations``.

    Examples
    --------
    >>> int_tuple("shift_distances", 2), int_tuple("shift_distances", [1, 2, 4])
    ((2,), (1, 2, 4))
    >>> int_tuple("tcn_dilations", (), allow_empty=True)
    ()
    """
    import numbers

    items = (value,) if isinstance(value, numbers.Integral) else value
    try:
        if isinstance(items, str | bytes) or any(isinstance(v, bool) for v in items):
            raise TypeError
        if any(isinstance(v, float) and not float(v).is_integer() for v in items):
            raise TypeError
        resolved = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a positive integer or a tuple of positive integers, got {value!r}"
        ) from None
    if (not resolved and not allow_empty) or (resolved and min(resolved) < 1):
        raise ValueError(
            f"{name} must hold {'' if allow_empty else 'at least one '}positive integers, "
            f"got {value!r}"
        )
    return resolved


@dataclass
class RWKVTSConfig:
    """Hyperparameters of :class:`rwkv_ts.nn.RWKVTSModel`.

    The model is channel independent: every channel of a multivariate series is encoded as a
    separate univariate sequence with shared weights, so the number of channels is not part of the
    configuration.

    Parameters
    ----------
    lookback, horizon
        Input window length and number of steps forecast, in samples.
    patch_len, stride
        Patch length and stride, in samples. Patches are aligned so that the last one ends at the
        last sample.
    d_model, n_layers, head_size
        Width, depth, and the WKV head size (``d_model // head_size`` heads).
    ffn_mult
        Hidden width of the channel-mix as a multiple of ``d_model``.
    shift_distances
        Token distances mixed by the multi-scale token shift; ``(1,)`` is plain RWKV token shift.
    decay
        ``"data"``: RWKV-6 data-dependent decay; ``"static"``: RWKV-5 decay learned per channel,
        constant in time.
    lora_rank
        Rank of the low-rank projections of the data-dependent token shift and decay.
    tcn_dilations, tcn_kernel_size
        The causal dilated temporal-convolution branch fused with the time-mix through a learned
        gate; an empty tuple switches the branch off.
    norm
        ``"instance"``: RevIN statistics of the whole input window (most accurate; a stream must
        recompute the window). ``"causal"``: trailing statistics of the last ``norm_window`` samples
        (streams in O(1)).
    norm_window
        Window of the causal normalisation; ``None`` means ``lookback``.
    head_tokens
        Number of final tokens the head reads; ``None`` means every token of the lookback (the
        flatten head of PatchTST/RWKV-TS), ``1`` reads only the last state.
    dropout
        Dropout on the token embeddings, block outputs and head input.
    linear_skip
        Add a linear map from the last ``lookback`` normalised samples to the forecast, beside
        the encoder's head (the RLinear/DLinear baseline as a residual branch: the encoder then
        learns what a linear forecast misses).
    skip_input
        What the linear branch reads: ``"normalised"``, the window after the model's
        normalisation (its forecast is denormalised with the encoder's), or ``"raw"``, the window
        as given to the model (its forecast is added after denormalisation: a plain linear model
        of the input, as DLinear is). Which one forecasts better depends on the data: compare
        them on validation windows. ``"raw"`` needs ``norm="instance"``.
    """

    lookback: int = 336
    horizon: int = 96
    patch_len: int = 16
    stride: int = 8
    d_model: int = 128
    n_layers: int = 2
    head_size: int = 32
    ffn_mult: float = 2.0
    shift_distances: tuple[int, ...] = (1, 2, 4)
    decay: Literal["data", "static"] = "data"
    lora_rank: int = 16
    tcn_dilations: tuple[int, ...] = (1, 2, 4)
    tcn_kernel_size: int = 3
    norm: Literal["instance", "causal"] = "instance"
    norm_window: int | None = None
    head_tokens: int | None = None
    dropout: float = 0.1
    linear_skip: bool = False
    skip_input: Literal["normalised", "raw"] = "normalised"

    def __post_init__(self) -> None:
        self.shift_distances = tuple(int(d) for d in self.shift_distances)
        self.tcn_dilations = tuple(int(d) for d in self.tcn_dilations)
        self.validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_size

    @property
    def n_patches(self) -> int:
        """Number of tokens the lookback window yields."""
        return (self.lookback - self.patch_len) // self.stride + 1

    @property
    def n_head_tokens(self) -> int:
        return self.n_patches if self.head_tokens is None else self.head_tokens

    @property
    def causal_norm_window(self) -> int:
        return self.lookback if self.norm_window is None else self.norm_window

    @property
    def streamable(self) -> bool:
        """True when every output depends only on bounded state: causal norm and a bounded head."""
        return self.norm == "causal" and self.head_tokens is not None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""

        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in (
            "lookback",
            "horizon",
            "patch_len",
            "stride",
            "d_model",
            "n_layers",
            "head_size",
        ):
            positive(name)
        if self.patch_len > self.lookback:
            raise ValueError(
                f"patch_len={self.patch_len} is longer than lookback={self.lookback}; "
                "lower patch_len or raise lookback"
            )
        if self.d_model % self.head_size:
            raise ValueError(
                f"d_model={self.d_model} must be a multiple of head_size={self.head_size}"
            )
        if not self.shift_distances or min(self.shift_distances) < 1:
            raise ValueError(
                f"shift_distances must be positive integers, got {self.shift_distances!r}"
            )
        if len(set(self.shift_distances)) != len(self.shift_distances):
            raise ValueError(f"shift_distances has repeated values: {self.shift_distances!r}")
        if self.tcn_dilations and min(self.tcn_dilations) < 1:
            raise ValueError(f"tcn_dilations must be positive, got {self.tcn_dilations!r}")
        if self.tcn_kernel_size < 1:
            raise ValueError(f"tcn_kernel_size must be >= 1, got {self.tcn_kernel_size}")
        if self.decay not in ("data", "static"):
            raise ValueError(f"decay must be 'data' or 'static', got {self.decay!r}")
        if self.norm not in ("instance", "causal"):
            raise ValueError(f"norm must be 'instance' or 'causal', got {self.norm!r}")
        if self.skip_input not in ("normalised", "raw"):
            raise ValueError(f"skip_input must be 'normalised' or 'raw', got {self.skip_input!r}")
        if self.skip_input == "raw" and self.norm != "instance":
            raise ValueError(
                "skip_input='raw' needs norm='instance' (the streamable configuration's linear "
                "branch reads the causally normalised samples)"
            )
        if self.norm_window is not None and self.norm_window < 2:
            raise ValueError(f"norm_window must be >= 2, got {self.norm_window}")
        if self.head_tokens is not None and not 1 <= self.head_tokens <= self.n_patches:
            raise ValueError(
                f"head_tokens={self.head_tokens} must lie in [1, {self.n_patches}] "
                f"(the number of patches of lookback={self.lookback})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if self.ffn_mult <= 0:
            raise ValueError(f"ffn_mult must be > 0, got {self.ffn_mult}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        data = asdict(self)
        data["shift_distances"] = list(self.shift_distances)
        data["tcn_dilations"] = list(self.tcn_dilations)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RWKVTSConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys: {unknown}")
        return cls(**data)


def members_config(members: Sequence[Any]) -> Any:
    """The configuration that every member of an ensemble shares (member 0's); ``ValueError``
    naming the first member that differs, or for no members."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    first = members[0].config
    for i, member in enumerate(members):
        if member.config != first:
            raise ValueError(f"member {i} has configuration {member.config}; member 0 has {first}")
    return first
