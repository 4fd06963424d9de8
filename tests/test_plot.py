"""Plots: forecasts with intervals, backtest errors by horizon, training curves, early
classification, remaining useful life."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from rwkv_ts.plot import (  # noqa: E402
    decision_sample,
    plot_augmentations,
    plot_backtest_errors,
    plot_class_probabilities,
    plot_forecast,
    plot_rul,
    plot_training_curves,
)


@pytest.fixture
def co2():
    from rwkv_ts.datasets import load_co2

    data = load_co2()
    return data.frame["date"], data.frame["co2"].to_numpy()


def test_forecast_with_history_actual_and_intervals(co2, tmp_path):
    times, values = co2
    hist, fut = slice(2000, 2100), slice(2100, 2152)
    model = values[fut] + 0.5
    path = tmp_path / "f.png"
    fig = plot_forecast(
        times[hist],
        values[hist],
        times[fut],
        {"model": model, "naive": np.full(52, values[2099])},
        actual=values[fut],
        intervals={"80%": (model - 1.0, model + 1.0), "95%": (model - 2.0, model + 2.0)},
    )
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:4] == ["history", "actual", "model", "naive"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [b.get_label() for b in bands] == ["80%", "95%"]
    # the 80% band spans exactly lower..upper of the forecast
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx((model - 1.0).min())
    assert ys.max() == pytest.approx((model + 1.0).max())
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 10_000


def test_forecast_without_intervals_has_no_band(co2, tmp_path):
    times, values = co2
    path = tmp_path / "f.png"
    plot_forecast(times[:50], values[:50], times[50:60], {"m": values[50:60]}, path=path)
    assert path.stat().st_size > 5_000


def test_backtest_errors_by_horizon_draws_each_method(tmp_path):
    errors = {"RWKV-TS": np.linspace(1.0, 2.0, 12), "naive": np.linspace(0.5, 4.0, 12)}
    path = tmp_path / "e.png"
    fig = plot_backtest_errors(errors, metric="MAE")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["RWKV-TS", "naive"]
    np.testing.assert_array_equal(lines[1].get_xdata(), np.arange(1, 13))
    np.testing.assert_allclose(lines[1].get_ydata(), errors["naive"])
    assert fig.axes[0].get_xlabel() == "horizon step"
    plt.close(fig)
    plot_backtest_errors(errors, path=path)
    assert path.stat().st_size > 5_000


def test_training_curves_from_a_real_fit(tmp_path):
    from rwkv_ts import RWKVForecaster
    from rwkv_ts.datasets import load_co2

    est = RWKVForecaster(
        horizon=8, lookback=32, patch_len=8, stride=4, d_model=8, head_size=8, n_layers=1,
        max_epochs=3, verbose=False, random_state=0, accelerator="cpu",
    ).fit(load_co2().frame.iloc[:400])  # fmt: skip
    fig = plot_training_curves(est.history_, best_epoch=est.best_epoch_)
    ax = fig.axes[0]
    train, val = ax.get_lines()[:2]
    assert train.get_label() == "training" and val.get_label() == "validation"
    np.testing.assert_allclose(train.get_ydata(), [h["train_loss"] for h in est.history_])
    np.testing.assert_allclose(val.get_ydata(), [h["val_loss"] for h in est.history_])
    assert ax.get_lines()[2].get_xdata()[0] == est.best_epoch_
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 5),
    st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=1, max_size=30),
)
def test_decision_sample_is_where_the_final_class_holds_from(n_unknown, rows):
    p = np.vstack([np.full((n_unknown, 3), np.nan), np.array(rows)])
    t = decision_sample(p)
    winners = np.argmax(p[n_unknown:], axis=1)
    assert n_unknown <= t < len(p)
    assert (winners[t - n_unknown :] == winners[-1]).all()
    assert t == n_unknown or winners[t - n_unknown - 1] != winners[-1]


def test_decision_sample_of_nothing_known_and_bad_shapes():
    assert decision_sample(np.full((4, 2), np.nan)) is None
    with pytest.raises(ValueError, match=r"\(samples, classes\).*\(5,\)"):
        decision_sample(np.zeros(5))


def test_class_probabilities_after_each_sample_of_a_real_fit(shared_data_home, tmp_path):
    from rwkv_ts import RWKVClassifier
    from rwkv_ts.datasets import load_classification

    X, y = load_classification("ECG200", "train", data_home=shared_data_home)
    clf = RWKVClassifier(
        d_model=8, head_size=8, n_layers=1, max_epochs=2, random_state=0, accelerator="cpu"
    ).fit(X[:40], y[:40])
    proba = clf.predict_proba_steps(X[40:41])[0]
    fig = plot_class_probabilities(X[40], proba, clf.classes_, true_class=y[40])
    top, bottom = fig.axes
    np.testing.assert_allclose(top.get_lines()[0].get_ydata(), X[40][0])
    curves = bottom.get_lines()[: len(clf.classes_)]
    assert [c.get_label() for c in curves] == [
        f"P({c})" + (" (true class)" if c == y[40] else "") for c in clf.classes_
    ]
    np.testing.assert_allclose(curves[1].get_ydata(), proba[:, 1])
    decided = decision_sample(proba)
    assert top.get_lines()[-1].get_xdata()[0] == decided
    assert bottom.get_legend().get_texts()[-1].get_text().endswith(f"from sample {decided}")
    plt.close(fig)
    path = tmp_path / "p.png"
    plot_class_probabilities(X[40], proba, clf.classes_, path=path)
    assert path.stat().st_size > 5_000


def test_class_probabilities_name_what_does_not_fit():
    series, proba = np.zeros(10), np.full((10, 2), 0.5)
    with pytest.raises(ValueError, match=r"\(10, 3\).*got shape \(10, 2\)"):
        plot_class_probabilities(series, proba, ["a", "b", "c"])
    with pytest.raises(ValueError, match="true_class 'z' is not one of"):
        plot_class_probabilities(series, proba, ["a", "b"], true_class="z")
    with pytest.raises(ValueError, match=r"\(T,\) or \(channels, T\)"):
        plot_class_probabilities(np.zeros((1, 2, 10)), proba, ["a", "b"])


def test_rul_of_a_test_unit_counts_the_truth_back_from_its_last_cycle(tmp_path):
    est = np.r_[np.full(3, np.nan), np.linspace(130, 60, 47)]
    fig = plot_rul(est, true_rul=50.0, cap=125)
    estimate, truth, capped = fig.axes[0].get_lines()
    np.testing.assert_array_equal(truth.get_xdata(), np.arange(1, 51))
    np.testing.assert_allclose(truth.get_ydata(), 50.0 + np.arange(49, -1, -1))
    np.testing.assert_allclose(capped.get_ydata(), np.minimum(50.0 + np.arange(49, -1, -1), 125))
    np.testing.assert_allclose(estimate.get_ydata(), est)
    plt.close(fig)
    fig = plot_rul(est)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["estimate"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"shape \(50,\), got shape \(3,\)"):
        plot_rul(est, true_rul=np.zeros(3))
    with pytest.raises(ValueError, match="cap must be positive"):
        plot_rul(est, true_rul=1.0, cap=0)
    path = tmp_path / "r.png"
    plot_rul(est, true_rul=50.0, cap=125, path=path)
    assert path.stat().st_size > 5_000


def test_augmentations_draw_one_panel_per_transformation(shared_data_home, tmp_path):
    import torch

    from rwkv_ts.datasets import load_classification

    X, _ = load_classification("ECG200", "train", data_home=shared_data_home)  # real heartbeats
    state = torch.random.get_rng_state()
    fig = plot_augmentations(X[0], "slice+warp+scale", n_draws=2, title="ECG200")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's draws are untouched
    assert [ax.get_title() for ax in fig.axes] == ["slice", "warp", "scale"]
    for ax in fig.axes:
        original = ax.lines[-1].get_ydata()
        assert len(ax.lines) == 3 and len(original) == X.shape[2]
        assert abs(np.mean(original)) < 1e-6 and abs(np.std(original) - 1) < 1e-6  # standardised
        assert all(not np.allclose(line.get_ydata(), original) for line in ax.lines[:-1])
    again = plot_augmentations(X[0], "slice+warp+scale", n_draws=2)
    np.testing.assert_array_equal(
        again.axes[1].lines[0].get_ydata(), fig.axes[1].lines[0].get_ydata()
    )
    plt.close("all")
    out = tmp_path / "aug.png"
    plot_augmentations(X[0], "jitter", path=out)
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"augment": "bend"}, "unknown transformation 'bend'"),
        ({"channel": 2}, "channel 2 is out of range for 1 channel"),
        ({"n_draws": 0}, "n_draws must be a positive integer"),
        ({"series": np.zeros((2, 3, 4))}, r"got shape \(2, 3, 4\)"),
    ],
)
def test_augmentations_name_bad_arguments(kwargs, message):
    args = {"series": np.arange(10.0), "augment": "slice", **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_augmentations(args.pop("series"), args.pop("augment"), **args)
