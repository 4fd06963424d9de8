"""Torch modules of rwkv-ts; each has ``forward`` over a sequence and ``step`` with an explicit
state."""

from rwkv_ts.nn.block import RWKVBlock
from rwkv_ts.nn.channel_mix import ChannelMix
from rwkv_ts.nn.config import RWKVTSConfig
from rwkv_ts.nn.heads import TokenHead
from rwkv_ts.nn.model import ForecastEnsemble, RWKVTSModel
from rwkv_ts.nn.norm import CausalNorm, InstanceNorm
from rwkv_ts.nn.patch import PatchEmbedding
from rwkv_ts.nn.periods import dominant_periods, periods_to_distances
from rwkv_ts.nn.shift import MultiScaleShift
from rwkv_ts.nn.state import flatten_state, map_state, unflatten_state
from rwkv_ts.nn.tcn import GatedFusion, TCNBranch
from rwkv_ts.nn.time_mix import TimeMix

__all__ = [
    "CausalNorm",
    "ChannelMix",
    "ForecastEnsemble",
    "GatedFusion",
    "InstanceNorm",
    "MultiScaleShift",
    "PatchEmbedding",
    "RWKVBlock",
    "RWKVTSConfig",
    "RWKVTSModel",
    "TCNBranch",
    "TimeMix",
    "TokenHead",
    "dominant_periods",
    "flatten_state",
    "map_state",
    "periods_to_distances",
    "unflatten_state",
]
