"""The convolutional branch of the sequence models (after FCN / LSTM-FCN): step equals forward,
batch normalisation leaves padding out of its training statistics, and the configuration names
bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rwkv_ts import RWKVClassifier, RWKVRegressor
from rwkv_ts.nn.conv import ConvBranch, MaskedBatchNorm1d
from rwkv_ts.nn.sequence import RWKVSequenceModel, SequenceConfig


def _trained_statistics(module: torch.nn.Module, x: torch.Tensor) -> None:
    """Give every batch norm running statistics that differ from their initial 0 / 1."""
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(x * 2 + 0.5)
    module.eval()


@settings(max_examples=20, deadline=None)
@given(
    kernels=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    length=st.integers(1, 25),
    seed=st.integers(0, 2**16),
)
def test_branch_step_equals_forward(kernels, length, seed):
    torch.manual_seed(seed)
    branch = ConvBranch(n_channels=3, channels=tuple(5 for _ in kernels), kernels=tuple(kernels))
    x = torch.randn(2, length, 3)
    _trained_statistics(branch, x)
    whole = branch(x)
    state = branch.init_state(2)
    for t in range(length):
        out, state = branch.step(x[:, t], state)
        torch.testing.assert_close(out, whole[:, t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_masked_batch_norm_ignores_padding(momentum):
    torch.manual_seed(0)
    lengths = torch.tensor([7, 4, 2])
    rows = [torch.randn(3, int(n)) for n in lengths]
    padded = torch.full((3, 3, 7), 1e3)  # padding far from the data: it would dominate the stats
    for i, row in enumerate(rows):
        padded[i, :, : row.shape[1]] = row
    valid = torch.arange(7)[None, :] < lengths[:, None]
    masked = MaskedBatchNorm1d(3, momentum=momentum)
    plain = torch.nn.BatchNorm1d(3, momentum=momentum)
    for _ in range(2):  # the second batch shows how the running statistics are averaged
        out = masked(padded, valid)
        # the plain batch norm on the valid samples alone, laid end to end
        ref = plain(torch.cat(rows, dim=1)[None])[0]
    torch.testing.assert_close(torch.cat([out[i, :, :n] for i, n in enumerate(lengths)], 1), ref)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)


def test_model_with_branch_streams_and_reads_last_patch():
    torch.manual_seed(1)
    config = SequenceConfig(
        n_channels=2,
        n_outputs=3,
        patch_len=4,
        stride=3,
        d_model=16,
        head_size=8,
        n_layers=1,
        conv_channels=(6, 5),
        conv_kernels=(4, 2),
    )
    model = RWKVSequenceModel(config)
    x = torch.randn(3, 21, 2)
    model.train()
    model(x, torch.tensor([21, 15, 9]))
    model.eval()
    tokens = model.token_outputs(x)
    state = model.init_state(3)
    outs = []
    for t in range(21):
        (out, seen), state = model.step(x[:, t], state)
        outs.append(out)
        assert bool(seen.all()) == (t >= 3)
    for j in range(tokens.shape[1]):
        end = j * 3 + 3
        torch.testing.assert_close(outs[end], tokens[:, j], atol=1e-5, rtol=0)
        # between patches the answer stays that of the last complete patch
        for t in range(end + 1, min(end + 3, 21)):
            torch.testing.assert_close(outs[t], outs[end], atol=0, rtol=0)


def test_config_names_bad_branch_settings():
    with pytest.raises(ValueError, match="conv_kernels"):
        SequenceConfig(n_channels=1, n_outputs=2, conv_channels=(8, 8))
    with pytest.raises(ValueError, match="conv_channels"):
        SequenceConfig(n_channels=1, n_outputs=2, conv_channels=(8, 0, 8))
    X = np.random.default_rng(0).normal(size=(10, 1, 16))
    with pytest.raises(ValueError, match="conv_channels"):
        RWKVClassifier(conv_channels="x", max_epochs=1).fit(X, np.arange(10) % 2)


def test_estimators_train_the_branch_and_save_it(tmp_path, synthetic_control_small):
    import rwkv_ts

    X, y = synthetic_control_small
    tiny = dict(d_model=16, head_size=8, n_layers=1, max_epochs=3, random_state=0)
    clf = RWKVClassifier(**tiny, conv_channels=(8, 8), conv_kernels=(5, 3)).fit(X, y)
    assert clf.config_.conv_channels == (8, 8)
    n_conv = sum(p.numel() for p in clf.model_.conv.parameters())
    assert clf.n_parameters_ > n_conv > 0
    clf.save(tmp_path / "clf.rwkvts")
    loaded = rwkv_ts.load(tmp_path / "clf.rwkvts")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=0)
    # regression on unequal lengths: padding takes no part in the branch's statistics
    lengths = np.random.default_rng(1).integers(20, 60, size=len(X))
    Xr = [x[:, :n] for x, n in zip(X, lengths, strict=True)]
    reg = RWKVRegressor(**tiny, conv_channels=(4,), conv_kernels=(3,)).fit(Xr, lengths / 10)
    steps = reg.predict_steps(Xr[:3])
    for x, s in zip(Xr[:3], steps, strict=True):
        np.testing.assert_allclose(reg.predict([x])[0], s[-1], atol=1e-5)


@pytest.fixture(scope="module")
def synthetic_control_small(shared_data_home):
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("SyntheticControl", "train", data_home=shared_data_home)
    return X[:60], y[:60]
