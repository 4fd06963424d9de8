"""Training losses: the robust losses (absolute error, Huber) and their masked forms, a validation
loss of its own (``val_loss``), and the forecaster's ``loss`` / ``val_loss`` parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_settings import TINY_FORECASTER as TINY
from torch.utils.data import TensorDataset

from rwkv_ts import RWKVForecaster
from rwkv_ts.losses import LOSSES, REGRESSION_LOSSES
from rwkv_ts.persistence import _read, load
from rwkv_ts.training import TrainingOptions, _fingerprint, train_model


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(REGRESSION_LOSSES)),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
    keep=st.floats(0.0, 1.0),
)
def test_masked_losses_are_the_loss_over_the_finite_targets(name, shape, seed, keep):
    rng = np.random.default_rng(seed)
    pred = torch.tensor(rng.normal(scale=3, size=shape), requires_grad=True)
    target = torch.tensor(rng.normal(scale=3, size=shape))
    mask = torch.tensor(rng.random(shape) < keep)
    padded = torch.where(mask, target, torch.tensor(float("nan"), dtype=target.dtype))
    masked = LOSSES[f"masked_{name}"]
    plain = REGRESSION_LOSSES[name]
    total = masked(pred, padded, reduction="sum")
    expected = plain(pred[mask], target[mask], reduction="sum")
    assert total.item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)
    mean = masked(pred, padded).item()
    if mask.any():
        assert mean == pytest.approx(plain(pred[mask], target[mask]).item(), rel=1e-12)
    else:
        assert mean == 0.0
    total.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~mask] == 0).all()


def _with_outliers(n: int, seed: int) -> TensorDataset:
    """y = 2x + small noise, and every tenth target shifted up by 20."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    y = 2 * x + 0.05 * rng.normal(size=(n, 1))
    y[::10] += 20.0
    return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))


def _options(**settings) -> TrainingOptions:
    base = dict(
        max_epochs=25,
        batch_size=32,
        learning_rate=0.05,
        patience=25,
        verbose=False,
        accelerator="cpu",
        random_state=0,
        gradient_clip=0.0,
    )
    return TrainingOptions(**(base | settings))


def _errors(model: torch.nn.Module, data: TensorDataset) -> torch.Tensor:
    x, y = data.tensors
    with torch.no_grad():
        return model(x) - y


@pytest.mark.parametrize("val_loss", [None, "mse"])
def test_absolute_error_ignores_outliers_and_validation_goes_by_its_own_loss(val_loss):
    train, val = _with_outliers(400, 0), _with_outliers(100, 1)
    fits = {}
    for loss in ("mse", "mae"):
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1)
        result = train_model(model, train, val, _options(loss=loss, val_loss=val_loss))
        fits[loss] = (model, result)
    # the squared error follows the outliers' mean shift (+2), the absolute error the median
    assert fits["mse"][0].bias.item() == pytest.approx(2.0, abs=0.4)
    assert fits["mae"][0].bias.item() == pytest.approx(0.0, abs=0.1)
    assert fits["mae"][0].weight.item() == pytest.approx(2.0, abs=0.1)
    model, result = fits["mae"]
    errors = _errors(model, val)
    # the kept epoch's validation loss is the loss validation was asked to go by
    expected = float((errors**2).mean()) if val_loss == "mse" else float(errors.abs().mean())
    assert result.best_val_loss == pytest.approx(expected, rel=1e-5)
    assert result.best_val_loss == pytest.approx(min(h["val_loss"] for h in result.history))


def test_unknown_losses_are_named():
    with pytest.raises(ValueError, match="val_loss must be one of .* got 'rmse'"):
        train_model(torch.nn.Linear(1, 1), _with_outliers(40, 0), None, _options(val_loss="rmse"))


def test_val_loss_enters_the_fingerprint_only_when_set():
    data, model = _with_outliers(40, 0), torch.nn.Linear(1, 1)
    plain = _fingerprint(model, data, data, _options(loss="mae"))
    assert "val_loss" not in plain
    validated = _fingerprint(model, data, data, _options(loss="mae", val_loss="mse"))
    assert validated["val_loss"] == "mse" and validated["loss"] == "mae"


def _frame(etth1_slice):
    return etth1_slice.iloc[:500]


@pytest.mark.parametrize("streamable", [False, True], ids=["windowed", "streamable"])
def test_forecaster_trains_with_the_loss_asked_and_validates_by_val_loss(etth1_slice, streamable):
    frame = _frame(etth1_slice)
    settings = TINY | ({"norm": "causal", "head": "last"} if streamable else {})
    fits = {
        (loss, val_loss): RWKVForecaster(**settings, loss=loss, val_loss=val_loss).fit(frame)
        for loss, val_loss in (("mse", None), ("mae", None), ("mae", "mse"), ("huber", None))
    }
    train_losses = {key: [h["train_loss"] for h in est.history_] for key, est in fits.items()}
    # the same start and batches, another loss: other training curves
    assert train_losses[("mse", None)] != train_losses[("mae", None)]
    assert train_losses[("mae", None)] != train_losses[("huber", None)]
    # the same training, validated by another loss
    assert train_losses[("mae", None)] == train_losses[("mae", "mse")]
    by_mae = [h["val_loss"] for h in fits[("mae", None)].history_]
    by_mse = [h["val_loss"] for h in fits[("mae", "mse")].history_]
    assert by_mae != by_mse
    for est in fits.values():
        assert np.isfinite(est.predict().drop(columns="date").to_numpy()).all()


def test_forecaster_refuses_unknown_losses_by_name():
    series = np.random.default_rng(0).normal(size=(200, 1))
    with pytest.raises(ValueError, match="loss must be one of .* got 'l2'"):
        RWKVForecaster(**TINY, loss="l2").fit(series)
    with pytest.raises(ValueError, match="val_loss must be one of .* got 'rmse'"):
        RWKVForecaster(**TINY, val_loss="rmse").fit(series)


def test_saved_files_keep_a_chosen_loss_and_leave_the_defaults_out(etth1_slice, tmp_path):
    frame = _frame(etth1_slice)
    plain = RWKVForecaster(**TINY).fit(frame)
    robust = RWKVForecaster(**TINY, loss="huber", val_loss="mse").fit(frame)
    plain.save(tmp_path / "plain.rwkv")
    robust.save(tmp_path / "robust.rwkv")
    params = _read(tmp_path / "plain.rwkv")[0]["params"]
    assert "loss" not in params and "val_loss" not in params
    loaded = load(tmp_path / "robust.rwkv")
    assert (loaded.loss, loaded.val_loss) == ("huber", "mse")
    np.testing.assert_array_equal(
        loaded.predict().drop(columns="date").to_numpy(),
        robust.predict().drop(columns="date").to_numpy(),
    )


def test_a_robust_loss_first_trains_the_linear_branch_alone(etth1_slice, monkeypatch):
    import rwkv_ts.forecaster as forecaster_module

    calls = []
    original = forecaster_module.train_model

    def spy(module, train_data, val_data, options):
        head = getattr(module, "head", None)
        head_at_start = None if head is None else head.linear.weight.abs().sum().item()
        result = original(module, train_data, val_data, options)
        calls.append((module, options, head_at_start, result))
        return result

    monkeypatch.setattr(forecaster_module, "train_model", spy)
    frame = _frame(etth1_slice)
    est = RWKVForecaster(**TINY, loss="mae", val_loss="mse").fit(frame)
    (branch, options, _, result), (encoder, _, head_at_start, _) = calls
    # first the linear branch alone, by the loss asked, with the least-squares start competing
    assert type(branch).__name__ == "_LinearBranch"
    assert [name for name, _ in branch.named_parameters()] == ["skip.weight", "skip.bias"]
    assert branch.skip is est.model_.skip
    assert (options.loss, options.val_loss, options.keep_initial) == ("mae", "mse", True)
    assert result.best_epoch is not None
    # then the whole model, from the refined branch and an encoder whose head is still zero
    assert encoder is est.model_ and head_at_start == 0.0
    calls.clear()
    RWKVForecaster(**TINY).fit(frame)
    assert len(calls) == 1  # the squared error: the least-squares start is its linear solution


def _rul_like(n: int, seed: int):
    """Sequences whose per-sample target is a capped countdown, as RUL targets are."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 50, size=n)
    X, y = [], []
    for length in lengths:
        life = length + rng.integers(0, 30)
        t = np.arange(length)
        wear = (t / life) ** 2
        X.append(np.stack([wear + 0.05 * rng.normal(size=length), rng.normal(size=length)]))
        y.append(np.minimum(life - t, 40.0).astype(float))
    return X, y


REG = dict(
    patch_len=2, stride=2, d_model=8, head_size=8, n_layers=1, max_epochs=3, batch_size=8,
    verbose=False, random_state=0, accelerator="cpu",
)  # fmt: skip


@pytest.mark.parametrize("per_sample", [True, False], ids=["every-cycle", "last-cycle"])
def test_regressor_trains_with_the_loss_asked_and_validates_by_val_loss(per_sample):
    from rwkv_ts import RWKVRegressor

    X, y = _rul_like(40, 0)
    targets = y if per_sample else np.array([t[-1] for t in y])
    fits = {
        (loss, val_loss): RWKVRegressor(**REG, loss=loss, val_loss=val_loss).fit(X, targets)
        for loss, val_loss in (("mse", None), ("mae", None), ("mae", "mse"), ("huber", None))
    }
    curves = {key: [h["train_loss"] for h in est.history_] for key, est in fits.items()}
    assert curves[("mse", None)] != curves[("mae", None)] != curves[("huber", None)]
    assert curves[("mae", None)] == curves[("mae", "mse")]
    by_mae = [h["val_loss"] for h in fits[("mae", None)].history_]
    by_mse = [h["val_loss"] for h in fits[("mae", "mse")].history_]
    assert by_mae != by_mse
    assert np.isfinite(fits[("huber", None)].predict(X[:5])).all()


def test_regressor_refuses_unknown_losses_and_saves_a_chosen_one(tmp_path):
    from rwkv_ts import RWKVRegressor

    X, y = _rul_like(20, 1)
    with pytest.raises(ValueError, match="loss must be one of .* got 'l1'"):
        RWKVRegressor(**REG, loss="l1").fit(X, y)
    with pytest.raises(ValueError, match="val_loss must be one of .* got 'rmse'"):
        RWKVRegressor(**REG, val_loss="rmse").fit(X, y)
    reg = RWKVRegressor(**(REG | {"max_epochs": 1}), loss="mae", val_loss="mse").fit(X, y)
    reg.save(tmp_path / "reg.rwkv")
    loaded = load(tmp_path / "reg.rwkv")
    assert (loaded.loss, loaded.val_loss) == ("mae", "mse")
    np.testing.assert_array_equal(loaded.predict(X[:3]), reg.predict(X[:3]))
