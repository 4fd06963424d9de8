"""FreDF's frequency term in the training loss (``frequency_loss_weight``): the loss computes the
orthonormal DFT's mean absolute error over the horizon beside the time-domain loss, padding rows
are left out, and ``"auto"`` keeps the linear map that validates better and trains the encoder
with its weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_settings import TINY_FORECASTER as TINY

from rwkv_ts import RWKVForecaster
from rwkv_ts.losses import LOSSES, with_frequency_term
from rwkv_ts.training import TrainingOptions, _fingerprint


def _spectral_mae(error: np.ndarray, axis: int) -> float:
    """Mean |DFT| of ``error`` along ``axis`` (orthonormal, non-negative frequencies)."""
    n = error.shape[axis]
    return float(np.mean(np.abs(np.fft.rfft(error, axis=axis) / np.sqrt(n))))


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    horizon=st.integers(1, 17),
    channels=st.integers(1, 3),
    weight=st.floats(0.0, 1.0),
    loss=st.sampled_from(["mse", "mae", "huber"]),
    seed=st.integers(0, 2**16),
)
def test_the_mixed_loss_is_the_time_loss_plus_the_dft_mean_absolute_error(
    batch, horizon, channels, weight, loss, seed
):
    rng = np.random.default_rng(seed)
    pred, target = (rng.normal(size=(batch, horizon, channels)) for _ in range(2))
    fn = with_frequency_term(loss, weight, dim=1)
    got = float(fn(torch.tensor(pred), torch.tensor(target)))
    time_part = float(LOSSES[loss](torch.tensor(pred), torch.tensor(target)))
    expected = (1 - weight) * time_part + weight * _spectral_mae(pred - target, axis=1)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_padding_rows_are_left_out_of_both_terms():
    rng = np.random.default_rng(0)
    pred = torch.tensor(rng.normal(size=(2, 5, 8)), requires_grad=True)
    target = torch.tensor(rng.normal(size=(2, 5, 8)))
    target[0, :2] = float("nan")  # two padding rows (tokens without a full history)
    target[1, 4] = float("nan")
    kept = torch.isfinite(target).all(dim=-1)
    fn = with_frequency_term("masked_mse", 0.7, dim=-1)
    loss = fn(pred, target)
    p, t = pred.detach()[kept].numpy(), target[kept].numpy()
    expected = 0.3 * np.mean((p - t) ** 2) + 0.7 * _spectral_mae(p - t, axis=-1)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[~kept] == 0).all()


@pytest.mark.parametrize("loss", ["mse", "masked_huber"])
def test_the_summed_loss_over_its_targets_is_the_mean_loss(loss):
    # validation divides a batch's summed loss by its targets (n_targets): the same number
    rng = np.random.default_rng(1)
    pred, target = (torch.tensor(rng.normal(size=(3, 4, 10))) for _ in range(2))
    target[1, 2] = float("nan") if loss.startswith("masked_") else target[1, 2]
    fn = with_frequency_term(loss, 0.6, dim=-1)
    n_targets = fn.n_targets(target) if hasattr(fn, "n_targets") else target.numel()
    assert float(fn(pred, target, reduction="sum")) / n_targets == pytest.approx(
        float(fn(pred, target)), rel=1e-12
    )


def test_a_weight_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"weight must lie in \[0, 1\], got 1.5"):
        with_frequency_term("mse", 1.5, dim=1)


def test_a_checkpoint_names_the_mixed_loss_by_its_loss_weight_and_axis():
    options = TrainingOptions(loss=with_frequency_term("huber", 0.8, dim=1))
    data = torch.utils.data.TensorDataset(torch.zeros(4, 3), torch.zeros(4, 1))
    named = _fingerprint(torch.nn.Linear(3, 1), data, None, options)["loss"]
    assert named.endswith("with_frequency_term('huber', 0.8, dim=1)")


@pytest.mark.parametrize("weight", [-0.1, 1.01, "always", True, None])
def test_the_estimator_refuses_a_bad_weight_naming_it(etth1_slice, weight):
    before = etth1_slice.copy()
    with pytest.raises(ValueError, match=rf"frequency_loss_weight .*got {weight!r}"):
        RWKVForecaster(**TINY, frequency_loss_weight=weight).fit(etth1_slice)
    assert etth1_slice.equals(before)


def test_the_term_changes_what_the_linear_stage_and_the_encoder_learn(etth1_slice):
    plain = RWKVForecaster(**TINY).fit(etth1_slice)
    mixed = RWKVForecaster(**TINY, frequency_loss_weight=0.8).fit(etth1_slice)
    assert mixed.frequency_loss_weight_ == 0.8 and plain.frequency_loss_weight_ == 0.0
    # the least-squares start is the squared error's optimum, not the mixed loss's: with the term
    # the linear stage trains (without it, there is no linear stage for "mse")
    assert not torch.equal(plain.model_.skip.weight, mixed.model_.skip.weight)
    # validation goes by the time-domain loss alone, so the two compare
    assert [set(h) for h in plain.history_] == [set(h) for h in mixed.history_]


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_auto_keeps_the_better_validating_linear_map_and_trains_with_its_weight(
    etth1_slice, loss, monkeypatch
):
    import rwkv_ts.forecaster as forecaster

    stages = []  # (training loss, best validation loss, best epoch) of each linear stage

    def recording(model, train_data, val_data, options):
        result = forecaster.train_model.__wrapped__(model, train_data, val_data, options)
        if isinstance(model, forecaster._LinearBranch):
            stages.append((options.loss, result.best_val_loss, result.best_epoch))
        return result

    recording.__wrapped__ = forecaster.train_model
    monkeypatch.setattr(forecaster, "train_model", recording)
    auto = RWKVForecaster(**TINY, loss=loss, val_loss="mse", frequency_loss_weight="auto")
    auto.fit(etth1_slice)
    monkeypatch.undo()

    # "mse" has no plain linear stage to train (its least-squares start is the plain one)
    assert len(stages) == (1 if loss == "mse" else 2)
    best_loss, best_score, best_epoch = min(stages, key=lambda stage: stage[1])
    weight = 0.0 if isinstance(best_loss, str) or best_epoch == -1 else 0.8
    assert auto.frequency_loss_weight_ == weight
    # the same fit as with the chosen weight given: the same linear map, then the same encoder
    chosen = RWKVForecaster(**TINY, loss=loss, val_loss="mse", frequency_loss_weight=weight).fit(
        etth1_slice
    )
    np.testing.assert_allclose(
        auto.predict().iloc[:, 1:].to_numpy(), chosen.predict().iloc[:, 1:].to_numpy(), rtol=1e-6
    )


def test_auto_trains_without_the_term_where_there_is_nothing_to_choose_by(etth1_slice):
    stream = RWKVForecaster(**TINY, norm="causal", head="last", frequency_loss_weight="auto").fit(
        etth1_slice
    )
    assert stream.frequency_loss_weight_ == 0.0  # the streamable configuration has no linear stage
    unvalidated = RWKVForecaster(**TINY, val_fraction=0.0, frequency_loss_weight="auto")
    assert unvalidated.fit(etth1_slice).frequency_loss_weight_ == 0.0
