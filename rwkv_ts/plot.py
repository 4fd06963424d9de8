"""Plots with matplotlib (imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def plot_forecast(
    history_index,
    history: np.ndarray,
    forecast_index,
    forecasts: Mapping[str, np.ndarray],
    actual: np.ndarray | None = None,
    *,
    intervals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    title: str | None = None,
    ylabel: str | None = None,
    path: str | Path | None = None,
    ax=None,
):
    """Plot the history, the actual future (if known) and one or more forecasts.

    Parameters
    ----------
    history_index, forecast_index
        x-axis positions (timestamps or integers) of the history and of the forecast horizon.
    history : array (T,)
    forecasts : mapping of label -> array (horizon,)
    actual : array (horizon,), optional
    intervals : mapping of label -> (lower, upper) arrays (horizon,), optional
        Prediction intervals, drawn as shaded bands (e.g. ``{"80%": (q10, q90)}``).
    path : optional
        Write the figure there (PNG by extension) and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_forecast(np.arange(10), np.arange(10.0), np.arange(10, 13),
    ...                     {"model": np.array([10.0, 11.0, 12.0])})
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    else:
        fig = ax.figure
    ax.plot(history_index, history, color="0.35", lw=1.2, label="history")
    for i, (label, (lower, upper)) in enumerate((intervals or {}).items()):
        ax.fill_between(
            forecast_index,
            np.asarray(lower, dtype=float),
            np.asarray(upper, dtype=float),
            color="tab:red",
            alpha=0.25 / (i + 1),
            lw=0,
            label=label,
        )
    if actual is not None:
        ax.plot(forecast_index, actual, color="black", lw=1.6, label="actual")
    palette = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
    for i, (label, values) in enumerate(forecasts.items()):
        ax.plot(
            forecast_index,
            values,
            color=palette[i % len(palette)],
            lw=1.6,
            ls="-" if i == 0 else "--",
            label=label,
        )
    ax.axvline(np.asarray(forecast_index)[0], color="0.6", lw=0.8, ls=":")
    if title:
        ax.set_title(title)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
        plt.close(fig)
    return fig


def _figure(ax, figsize=(8, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, dpi=110)
        return fig, ax
    return ax.figure, ax


def _finish(fig, path: str | Path | None):
    if path is not None:
        import matplotlib.pyplot as plt

        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    return fig


def _use_agg(path) -> None:
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)


def _signal_over_probabilities():
    """A figure of two panels sharing the x-axis: a signal above, probabilities below."""
    import matplotlib.pyplot as plt

    return plt.subplots(
        2, 1, figsize=(9, 4.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [1, 1.2]}
    )


def _label_probabilities(top, bottom, xlabel: str, title: str | None, legend_loc: str) -> None:
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel("probability")
    bottom.legend(loc=legend_loc, fontsize=8)
    if title:
        top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)


def plot_backtest_errors(
    errors: Mapping[str, np.ndarray],
    *,
    metric: str = "MAE",
    title: str | None = None,
    path: str | Path | None = None,
    ax=None,
):
    """Plot the error at each horizon step of a backtest, one line per method.

    Parameters
    ----------
    errors : mapping of label -> array (horizon,)
        E.g. :meth:`rwkv_ts.backtest.BacktestResult.errors_by_horizon`.
    metric : str, default "MAE"
        The y-axis label.
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_backtest_errors({"model": np.array([1.0, 1.5, 2.0]),
    ...                             "naive": np.array([1.2, 2.0, 2.9])})
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['model', 'naive']
    """
    _use_agg(path)
    fig, ax = _figure(ax)
    palette = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
    for i, (label, values) in enumerate(errors.items()):
        values = np.asarray(values, dtype=float)
        ax.plot(
            np.arange(1, len(values) + 1),
            values,
            color=palette[i % len(palette)],
            lw=1.6,
            ls="-" if i == 0 else "--",
            marker="o" if len(values) <= 24 else None,
            ms=3,
            label=label,
        )
    ax.set_xlabel("horizon step")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, path)


def plot_training_curves(
    history: list[dict],
    *,
    best_epoch: int | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    ax=None,
):
    """Plot the training and validation loss per epoch (an estimator's ``history_``).

    Parameters
    ----------
    history : list of dict
        Entries with ``epoch``, ``train_loss`` and, when there is a validation part,
        ``val_loss``.
    best_epoch : int, optional
        Marked with a vertical line (the epoch whose weights were kept).
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> history = [{"epoch": 0, "train_loss": 1.0, "val_loss": 1.1},
    ...            {"epoch": 1, "train_loss": 0.5, "val_loss": 0.7}]
    >>> fig = plot_training_curves(history, best_epoch=1)
    >>> [line.get_label() for line in fig.axes[0].get_lines()][:2]
    ['training', 'validation']
    """
    if not history:
        raise ValueError("history is empty: nothing was trained")
    _use_agg(path)
    fig, ax = _figure(ax)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], color="tab:blue", lw=1.6, label="training")
    val = [(h["epoch"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val, strict=True), color="tab:red", lw=1.6, label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="0.5", lw=0.8, ls=":", label=f"best epoch ({best_epoch})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(h["train_loss"] > 0 for h in history):
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, path)


def plot_speech_activity(
    audio: np.ndarray,
    sample_rate: int,
    probabilities: np.ndarray,
    frame_times: np.ndarray,
    *,
    segments: list[tuple[float, float]] | None = None,
    labels: np.ndarray | None = None,
    threshold: float | None = None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Plot a recording's waveform over its speech probabilities, detected segments and (when
    known) the true speech frames.

    Parameters
    ----------
    audio : array, shape (n,)
        The samples.
    sample_rate : int
        Samples per second.
    probabilities, frame_times : arrays, shape (n_frames,)
        A detector's ``predict_proba(audio)`` and ``frame_times(n_frames)`` (seconds at which each
        frame is known).
    segments : list of (start_s, end_s), optional
        Detected speech segments, shaded.
    labels : array of 0/1, shape (n_frames,), optional
        True speech frames, drawn as a step line.
    threshold : float, optional
        The onset threshold, drawn as a dashed line.
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> sr = 16000
    >>> audio = np.random.default_rng(0).normal(scale=0.1, size=sr)
    >>> times = (np.arange(98) * 160 + 400) / sr
    >>> fig = plot_speech_activity(audio, sr, np.linspace(0, 1, 98), times,
    ...                            segments=[(0.3, 0.6)], threshold=0.5)
    >>> len(fig.axes)
    2
    """
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    frame_times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if probabilities.shape != frame_times.shape:
        raise ValueError(
            f"probabilities {probabilities.shape} and frame_times {frame_times.shape} differ"
        )
    if labels is not None and np.shape(labels) != probabilities.shape:
        raise ValueError(
            f"labels {np.shape(labels)} must match probabilities {probabilities.shape}"
        )
    _use_agg(path)
    fig, (top, bottom) = _signal_over_probabilities()
    t = np.arange(audio.size) / float(sample_rate)
    top.plot(t, audio, color="0.35", lw=0.4)
    top.set_ylabel("waveform")
    for start, end in segments or []:
        for ax in (top, bottom):
            ax.axvspan(start, end, color="tab:green", alpha=0.15, lw=0)
    bottom.plot(frame_times, probabilities, color="tab:blue", lw=1.2, label="P(speech)")
    if labels is not None:
        bottom.step(
            frame_times, np.asarray(labels, dtype=float), where="post", color="tab:red", lw=0.9,
            alpha=0.8, label="true speech",
        )  # fmt: skip
    if threshold is not None:
        bottom.axhline(threshold, color="0.4", ls="--", lw=0.8, label=f"onset {threshold:g}")
    _label_probabilities(top, bottom, "time (s)", title, legend_loc="upper right")
    return _finish(fig, path)


def decision_sample(probabilities: np.ndarray) -> int | None:
    """First sample from which the most probable class no longer changes (early classification).

    Parameters
    ----------
    probabilities : array (T, n_classes)
        Class probabilities after every sample, e.g. one entry of
        :meth:`rwkv_ts.RWKVClassifier.predict_proba_steps` (NaN rows before the first complete
        patch).

    Returns
    -------
    int or None
        The index ``t`` such that the argmax after every sample ``t, ..., T - 1`` is the final
        one; ``None`` when no row is known.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[np.nan, np.nan], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> decision_sample(p)
    2
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(
            f"probabilities must be (samples, classes), got shape {probabilities.shape}"
        )
    known = ~np.isnan(probabilities).any(axis=1)
    if not known.any():
        return None
    winners = np.where(known, np.argmax(np.nan_to_num(probabilities, nan=-1.0), axis=1), -1)
    changed = np.flatnonzero(winners != winners[-1])
    return int(changed[-1]) + 1 if changed.size else 0


def plot_class_probabilities(
    series: np.ndarray,
    probabilities: np.ndarray,
    classes,
    *,
    true_class=None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Plot one instance over the class probabilities after each of its samples (early
    classification), with the sample from which the decision no longer changes.

    Parameters
    ----------
    series : array (T,) or (n_channels, T)
        The instance, as given to the classifier.
    probabilities : array (T, n_classes)
        Its :meth:`rwkv_ts.RWKVClassifier.predict_proba_steps` entry (NaN before the first
        complete patch; those samples are left blank).
    classes : sequence
        The class labels in column order (the classifier's ``classes_``).
    true_class : optional
        The instance's label, named in the legend and drawn thicker.
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0, 1, 50)
    >>> p1 = np.clip(t, 0.05, 0.95)
    >>> fig = plot_class_probabilities(np.sin(6 * t), np.c_[1 - p1, p1], ["a", "b"],
    ...                                true_class="b")
    >>> len(fig.axes)
    2
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[None]
    if series.ndim != 2:
        raise ValueError(f"series must be (T,) or (channels, T), got shape {series.shape}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = list(classes)
    if probabilities.shape != (series.shape[1], len(classes)):
        raise ValueError(
            f"probabilities must be (samples, classes) = ({series.shape[1]}, {len(classes)}) "
            f"for a series of {series.shape[1]} samples and {len(classes)} classes, got shape "
            f"{probabilities.shape}"
        )
    if true_class is not None and true_class not in classes:
        raise ValueError(f"true_class {true_class!r} is not one of the classes {classes}")
    _use_agg(path)
    fig, (top, bottom) = _signal_over_probabilities()
    samples = np.arange(series.shape[1])
    for channel, values in enumerate(series):
        top.plot(samples, values, lw=1.0, label=f"channel {channel}" if len(series) > 1 else None)
    top.set_ylabel("series")
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10")
    for k, label in enumerate(classes):
        is_true = true_class is not None and label == true_class
        bottom.plot(
            samples,
            probabilities[:, k],
            color=palette(k % 10),
            lw=2.2 if is_true else 1.2,
            label=f"P({label})" + (" (true class)" if is_true else ""),
        )
    decided = decision_sample(probabilities)
    if decided is not None:
        final = classes[int(np.argmax(probabilities[-1]))]
        for ax in (top, bottom):
            ax.axvline(decided, color="0.4", ls="--", lw=0.8)
        bottom.plot(
            [], [], color="0.4", ls="--", lw=0.8, label=f"decision {final!s} from sample {decided}"
        )
    _label_probabilities(top, bottom, "sample", title, legend_loc="best")
    if len(series) > 1:
        top.legend(loc="upper right", fontsize=8)
    return _finish(fig, path)


def plot_rul(
    estimates: np.ndarray,
    true_rul: np.ndarray | float | None = None,
    *,
    cap: float | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    ax=None,
):
    """Plot a unit's remaining-useful-life estimate after each of its cycles against the truth.

    Parameters
    ----------
    estimates : array (T,)
        The estimate after every cycle, e.g. one entry of
        :meth:`rwkv_ts.RWKVRegressor.predict_steps` (NaN before the first complete patch).
    true_rul : array (T,) or float, optional
        The true RUL after every cycle, or only after the last one (a C-MAPSS test unit: the
        value of ``RUL_FD00x.txt``), from which the earlier cycles' truth is counted back.
    cap : float, optional
        The cap of the training target (125 in the usual protocol): the capped truth is drawn
        as well, since it is what a model trained on capped targets can answer.
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> est = np.r_[np.full(4, np.nan), np.linspace(120, 40, 96)]
    >>> fig = plot_rul(est, true_rul=35.0, cap=125)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['estimate', 'true RUL', 'true RUL capped at 125']
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    if estimates.ndim != 1:
        raise ValueError(f"estimates must be one unit's (cycles,) array, got {estimates.shape}")
    cycles = np.arange(1, estimates.size + 1)
    truth = None
    if true_rul is not None:
        truth = np.asarray(true_rul, dtype=np.float64)
        if truth.ndim == 0:
            truth = float(truth) + (estimates.size - cycles).astype(np.float64)
        elif truth.shape != estimates.shape:
            raise ValueError(
                f"true_rul must be a number or an array of the estimates' shape "
                f"{estimates.shape}, got shape {truth.shape}"
            )
    if cap is not None and not cap > 0:
        raise ValueError(f"cap must be positive, got {cap}")
    _use_agg(path)
    fig, ax = _figure(ax)
    ax.plot(cycles, estimates, color="tab:red", lw=1.6, label="estimate")
    if truth is not None:
        ax.plot(cycles, truth, color="black", lw=1.2, label="true RUL")
        if cap is not None:
            ax.plot(
                cycles, np.minimum(truth, cap), color="0.45", lw=1.0, ls="--",
                label=f"true RUL capped at {cap:g}",
            )  # fmt: skip
    ax.set_xlabel("cycle")
    ax.set_ylabel("remaining useful life (cycles)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, path)


def plot_augmentations(
    series: np.ndarray,
    augment: str,
    *,
    n_draws: int = 3,
    channel: int = 0,
    random_state: int | None = 0,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Plot what the estimators' ``augment`` setting does to a series: one panel per named
    transformation, the series and ``n_draws`` random draws of it, before choosing the setting.

    Every draw applies the panel's transformation (in training each is applied with probability
    0.5). The series is standardised per channel first, as the estimators standardise channels,
    since the magnitudes of ``"jitter"`` and ``"scale"`` are defined on that scale.

    Parameters
    ----------
    series : array (T,) or (n_channels, T)
        One instance, as given to the estimator.
    augment : str
        Transformations joined by ``"+"`` (:func:`rwkv_ts.data.augment.parse_augment`).
    n_draws : int, default 3
    channel : int, default 0
        The channel drawn (every channel is transformed together).
    random_state : int or None, default 0
        Seed of the draws; torch's global generator is left as it was.
    path : optional
        Write the figure there and close it.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_augmentations(np.sin(np.linspace(0, 12, 150)), "slice+warp", n_draws=2)
    >>> [ax.get_title() for ax in fig.axes], len(fig.axes[0].lines)
    (['slice', 'warp'], 3)
    """
    import matplotlib.pyplot as plt
    import torch

    from rwkv_ts.data.augment import AUGMENTATIONS, parse_augment

    names = parse_augment(augment)
    if not names:
        raise ValueError("augment names no transformation to plot")
    values = np.asarray(series, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(
            f"series must be (T,) or (channels, T) with T >= 2, got shape {np.shape(series)}"
        )
    if not 0 <= channel < len(values):
        raise ValueError(f"channel {channel} is out of range for {len(values)} channel(s)")
    if not (isinstance(n_draws, int | np.integer) and n_draws >= 1):
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    std = values.std(axis=1, keepdims=True)
    scaled = (values - values.mean(axis=1, keepdims=True)) / np.where(std > 1e-12, std, 1.0)
    x = torch.from_numpy(scaled.T.astype(np.float32))
    _use_agg(path)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(8, 2.2 * len(names)), dpi=110, sharex=True, squeeze=False
    )
    samples = np.arange(x.shape[0])
    with torch.random.fork_rng(devices=[]):
        if random_state is not None:
            torch.manual_seed(random_state)
        for ax, name in zip(axes[:, 0], names, strict=True):
            for k in range(n_draws):
                drawn = AUGMENTATIONS[name](x)[:, channel].numpy()
                ax.plot(samples, drawn, lw=0.9, alpha=0.8, label=f"draw {k + 1}")
            ax.plot(samples, x[:, channel].numpy(), color="black", lw=1.6, label="series")
            ax.set_title(name)
            ax.set_ylabel("standardised")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="best", fontsize=8, ncol=n_draws + 1)
    axes[-1, 0].set_xlabel("sample")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
