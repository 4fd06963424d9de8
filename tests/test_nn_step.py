"""Every module: stepping through a sequence gives ``forward``'s outputs (fp32, max abs error <
1e-5)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rwkv_ts.nn import (
    CausalNorm,
    ChannelMix,
    InstanceNorm,
    MultiScaleShift,
    PatchEmbedding,
    RWKVBlock,
    RWKVTSConfig,
    RWKVTSModel,
    TCNBranch,
    TimeMix,
    TokenHead,
    flatten_state,
    unflatten_state,
)

TOL = 1e-5


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


def _step_tokens(module, x: torch.Tensor, state: dict) -> torch.Tensor:
    outputs = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Move parameters away from their (partly zero) initialisation so that every path is
    exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("distances", [(1,), (1, 2, 4), (3, 1)])
def test_multiscale_shift_step_equals_forward(distances):
    shift = MultiScaleShift(8, distances)
    _perturb(shift, 1)
    x = torch.randn(3, 11, 8)
    expected = shift(x)
    got = _step_tokens(shift, x, shift.init_state(3, 8))
    assert _max_err(got, expected) < TOL


def test_single_distance_is_plain_token_shift():
    shift = MultiScaleShift(8, (1,))
    x = torch.randn(2, 6, 8)
    y = shift(x)
    assert torch.equal(y[:, 0], torch.zeros(2, 8))
    assert torch.equal(y[:, 1:], x[:, :-1])


@pytest.mark.parametrize("decay", ["data", "static"])
@pytest.mark.parametrize("distances", [(1,), (1, 2, 4)])
def test_time_mix_step_equals_forward(decay, distances):
    mix = TimeMix(
        16, 8, layer_id=1, n_layers=2, shift_distances=distances, decay=decay, lora_rank=4
    )
    _perturb(mix, 2)
    x = torch.randn(2, 13, 16)
    expected = mix(x)
    got = _step_tokens(mix, x, mix.init_state(2))
    assert _max_err(got, expected) < TOL


def test_channel_mix_step_equals_forward():
    ffn = ChannelMix(8, 16, layer_id=0, n_layers=1)
    _perturb(ffn, 3)
    x = torch.randn(3, 9, 8)
    assert _max_err(_step_tokens(ffn, x, ffn.init_state(3)), ffn(x)) < TOL


@pytest.mark.parametrize("kernel_size,dilations", [(3, (1, 2, 4)), (2, (3,)), (1, (1,))])
def test_tcn_step_equals_forward(kernel_size, dilations):
    tcn = TCNBranch(8, dilations, kernel_size)
    _perturb(tcn, 4)
    x = torch.randn(2, 17, 8)
    assert _max_err(_step_tokens(tcn, x, tcn.init_state(2)), tcn(x)) < TOL


@pytest.mark.parametrize("tcn", [(), (1, 2)])
def test_block_step_equals_forward(tcn):
    config = RWKVTSConfig(
        d_model=16, head_size=8, tcn_dilations=tcn, shift_distances=(1, 2), dropout=0.0
    )
    block = RWKVBlock(config, layer_id=0).eval()
    _perturb(block, 5)
    x = torch.randn(2, 10, 16)
    assert _max_err(_step_tokens(block, x, block.init_state(2)), block(x)) < TOL


@pytest.mark.parametrize("tcn", [(), (1, 2)])
def test_block_scan_split_equals_whole(tcn):
    config = RWKVTSConfig(
        d_model=16, head_size=8, tcn_dilations=tcn, shift_distances=(1, 3), dropout=0.0
    )
    block = RWKVBlock(config, layer_id=1).eval()
    _perturb(block, 6)
    x = torch.randn(2, 12, 16)
    whole, final = block.scan(x)
    first, state = block.scan(x[:, :5])
    second, state = block.scan(x[:, 5:], state)
    assert _max_err(torch.cat([first, second], dim=1), whole) < TOL
    for key, value in flatten_state(final).items():
        assert _max_err(flatten_state(state)[key], value) < TOL, key


def test_token_head_step_equals_forward():
    head = TokenHead(n_tokens=3, d_model=8, horizon=5)
    x = torch.randn(2, 7, 8)
    state = head.init_state(2)
    for t in range(x.shape[1]):
        y, state = head.step(x[:, t], state)
        if t >= 2:
            assert _max_err(y, head(x[:, : t + 1])) < TOL


def test_patch_step_emits_forward_tokens():
    embed = PatchEmbedding(patch_len=4, stride=3, d_model=8)
    x = torch.randn(2, 16)  # (16 - 4) % 3 == 0: start- and end-aligned patches coincide
    expected = embed(x)
    state = embed.init_state(2)
    tokens = []
    for t in range(x.shape[1]):
        token, state = embed.step(x[:, t], state)
        if token is not None:
            tokens.append(token)
    assert _max_err(torch.stack(tokens, dim=1), expected) < TOL


def test_patches_end_at_last_sample():
    embed = PatchEmbedding(patch_len=4, stride=3, d_model=2)
    x = torch.randn(1, 14)  # offset (14 - 4) % 3 = 1: the first sample is dropped
    torch.testing.assert_close(embed(x), embed(x[:, 1:]))


def test_causal_norm_step_equals_forward():
    norm = CausalNorm(window=5)
    x = torch.randn(3, 20) * 10 + 3
    z, (mean, std) = norm(x)
    state = norm.init_state(3)
    for t in range(x.shape[1]):
        z_t, state = norm.step(x[:, t], state)
        assert _max_err(z_t, z[:, t]) < TOL
        window = x[:, max(0, t - 4) : t + 1].double()
        torch.testing.assert_close(state["mean"].double(), window.mean(1), rtol=0, atol=1e-5)
    assert _max_err(state["mean"], mean) < TOL and _max_err(state["std"], std) < TOL


def test_instance_norm_step_uses_window_ending_at_each_sample():
    norm = InstanceNorm(window=6)
    x = torch.randn(2, 15) * 4 - 1
    state = norm.init_state(2)
    for t in range(x.shape[1]):
        z_t, state = norm.step(x[:, t], state)
        window = x[:, max(0, t - 5) : t + 1]
        z, _ = norm(window)
        assert _max_err(z_t, z[:, -1]) < TOL


def _tiny_config(**overrides) -> RWKVTSConfig:
    base = dict(
        lookback=40,
        horizon=6,
        patch_len=8,
        stride=4,
        d_model=16,
        head_size=8,
        n_layers=2,
        lora_rank=4,
        dropout=0.0,
        norm="causal",
        head_tokens=2,
    )
    base.update(overrides)
    return RWKVTSConfig(**base)


@settings(max_examples=12, deadline=None)
@given(
    distances=st.sampled_from([(1,), (1, 2), (1, 2, 4)]),
    tcn=st.sampled_from([(), (1,), (1, 2, 4)]),
    decay=st.sampled_from(["data", "static"]),
    patch=st.sampled_from([(8, 4), (4, 4), (6, 2)]),
    head_tokens=st.integers(1, 3),
    n_extra_patches=st.integers(0, 6),
    channels=st.integers(1, 3),
    linear_skip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_encoder_causal_step_equals_forward(
    distances, tcn, decay, patch, head_tokens, n_extra_patches, channels, linear_skip, seed
):
    patch_len, stride = patch
    config = _tiny_config(
        shift_distances=distances,
        tcn_dilations=tcn,
        decay=decay,
        patch_len=patch_len,
        stride=stride,
        head_tokens=head_tokens,
        norm_window=12,
        linear_skip=linear_skip,
        lookback=24,
    )
    torch.manual_seed(seed)
    model = RWKVTSModel(config).eval()
    _perturb(model, seed, scale=0.1)
    length = patch_len + stride * (head_tokens - 1 + n_extra_patches)
    x = torch.randn(2, length, channels) + 0.5
    state = model.init_state(2, channels)
    with torch.no_grad():
        for t in range(length):
            y, state = model.step(x[:, t], state)
            n = t + 1
            ready = (
                n >= patch_len
                and (n - patch_len) % stride == 0
                and ((n - patch_len) // stride + 1 >= head_tokens)
            )
            if ready:
                assert y is not None
                assert _max_err(y, model(x[:, :n])) < TOL
        assert y is not None


def test_encoder_windowed_step_equals_forward_on_last_window():
    config = _tiny_config(norm="instance", head_tokens=None, linear_skip=True)
    model = RWKVTSModel(config).eval()
    _perturb(model, 7, scale=0.1)
    x = torch.randn(1, 50, 2)
    state = model.init_state(1, 2)
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = model.step(x[:, t], state)
            if t + 1 < config.lookback:
                assert y is None
            else:
                assert _max_err(y, model(x[:, t + 1 - config.lookback : t + 1])) < TOL


def test_state_flatten_round_trip():
    model = RWKVTSModel(_tiny_config())
    state = model.init_state(3, 2)
    flat = flatten_state(state)
    assert all(isinstance(v, torch.Tensor) for v in flat.values())
    assert flatten_state(unflatten_state(flat)).keys() == flat.keys()


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="d_model"):
        RWKVTSConfig(d_model=30, head_size=8)
    with pytest.raises(ValueError, match="patch_len"):
        RWKVTSConfig(lookback=8, patch_len=16)
    with pytest.raises(ValueError, match="head_tokens"):
        RWKVTSConfig(lookback=32, patch_len=16, stride=8, head_tokens=9)
    with pytest.raises(ValueError, match="norm"):
        RWKVTSConfig(norm="batch")


def test_config_dict_round_trip():
    config = _tiny_config(shift_distances=(1, 3))
    assert RWKVTSConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        RWKVTSConfig.from_dict({"bogus": 1})
