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
