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
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 4.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [1, 1.2]}
    )
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
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("probability")
    bottom.legend(loc="upper right", fontsize=8)
    if title:
        top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _finish(fig, path)
