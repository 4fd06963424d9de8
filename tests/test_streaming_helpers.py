"""Helpers shared by the streaming, runtime and ONNX tests: random small models wrapped as fitted
estimators (no training), so that exactness is checked for many weight draws in little time."""

from __future__ import annotations

import numpy as np
import torch

from rwkv_ts import RWKVForecaster
from rwkv_ts.data import to_panel
from rwkv_ts.nn import RWKVTSConfig, RWKVTSModel


def random_model(config: RWKVTSConfig, seed: int, scale: float = 0.1) -> RWKVTSModel:
    """A model with its (partly zero) initial weights moved by ``scale`` * N(0, 1)."""
    torch.manual_seed(seed)
    model = RWKVTSModel(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def as_estimator(model: RWKVTSModel, history, mean=None, std=None, **params) -> RWKVForecaster:
    """A fitted-looking ``RWKVForecaster`` around ``model`` whose fit data was ``history``."""
    cfg = model.config
    est = RWKVForecaster(
        horizon=cfg.horizon,
        lookback=cfg.lookback,
        patch_len=cfg.patch_len,
        stride=cfg.stride,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        head_size=cfg.head_size,
        norm=cfg.norm,
        head="flatten" if cfg.head_tokens is None else cfg.head_tokens,
        verbose=False,
        **params,
    )
    panel = to_panel(history, time_col=est.time_col, id_col=est.id_col, value_cols=est.value_cols)
    n_channels = panel.n_channels
    est.model_ = model
    est.config_ = cfg
    est.channels_ = list(panel.channels)
    est.scale_mean_ = np.zeros(n_channels) if mean is None else np.asarray(mean, float)
    est.scale_std_ = np.ones(n_channels) if std is None else np.asarray(std, float)
    est.history_, est.best_epoch_, est.n_epochs_ = [], None, 0
    est.last_panel_ = panel
    if not cfg.streamable:
        from rwkv_ts.data.serialize import panel_tail

        est.last_panel_ = panel_tail(panel, cfg.lookback)
    return est


def streamable_config(**overrides) -> RWKVTSConfig:
    base = dict(
        lookback=24,
        horizon=5,
        patch_len=6,
        stride=3,
        d_model=16,
        head_size=8,
        n_layers=2,
        norm="causal",
        head_tokens=2,
        norm_window=12,
        dropout=0.0,
        lora_rank=4,
        shift_distances=(1, 3),
        tcn_dilations=(1, 2),
    )
    base.update(overrides)
    return RWKVTSConfig(**base)


def test_random_model_is_streamable_and_moved():
    model = random_model(streamable_config(), seed=0)
    assert model.config.streamable
    # the output projection starts at zero; the helper must move it so every path is exercised
    assert float(model.blocks[0].time_mix.output.weight.detach().abs().sum()) > 0
