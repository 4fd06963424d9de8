"""Shared pieces of the benchmarks: machine description, result files, peer baselines."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def default_data_home() -> Path | None:
    """``$RWKV_TS_DATA``, else ``../shared/datasets`` beside the checkout, else None (the user
    cache)."""
    if os.environ.get("RWKV_TS_DATA"):
        return Path(os.environ["RWKV_TS_DATA"])
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return shared if shared.is_dir() else None


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def command_line() -> str:
    return "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:]
    )


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def sliding_windows(
    values: np.ndarray, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every window, stride 1: x (S, lookback, C), y (S, horizon, C) as read-only views."""
    view = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon, axis=0)
    view = np.moveaxis(view, -1, 1)  # (S, lookback + horizon, C)
    return view[:, :lookback], view[:, lookback:]


def seasonal_naive(x: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Repeat the last season of every window: (S, L, C) -> (S, horizon, C)."""
    season = x[:, -period:]
    reps = -(-horizon // period)
    return np.tile(season, (1, reps, 1))[:, :horizon]


class LinearBaseline:
    """DLinear-style channel-independent linear map from the lookback to the horizon, fitted by
    ridge least squares.

    DLinear's trend and seasonal branches are each linear in the window, so their sum is one linear
    map plus a bias; least squares finds the best such map on the training windows directly instead
    of by SGD.
    """

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearBaseline:
        lookback, horizon = x.shape[1], y.shape[1]
        xs = np.moveaxis(x, 2, 1).reshape(-1, lookback).astype(np.float64)
        ys = np.moveaxis(y, 2, 1).reshape(-1, horizon).astype(np.float64)
        design = np.hstack([xs, np.ones((len(xs), 1))])
        gram = design.T @ design
        gram[np.diag_indices(lookback)] += self.ridge * len(xs)
        self.coef_ = np.linalg.solve(gram, design.T @ ys)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        s, lookback, c = x.shape
        xs = np.moveaxis(x, 2, 1).reshape(-1, lookback).astype(np.float64)
        out = np.hstack([xs, np.ones((len(xs), 1))]) @ self.coef_
        return np.moveaxis(out.reshape(s, c, -1), 1, 2)
