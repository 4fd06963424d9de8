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


def write_rows(path: Path, rows: list[dict]) -> None:
    """A dev script's rows so far (``<out>.rows.json``), rewritten after every run, so that a
    process killed at a call's end leaves what it finished for ``--merge``."""
    path.write_text(json.dumps({"rows": rows}))


def read_rows(paths: list[str]) -> list[dict]:
    """The rows of several ``.rows.json`` files (``--merge``), in order."""
    return [row for p in paths for row in json.loads(Path(p).read_text())["rows"]]


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


class DLinearBaseline:
    """DLinear (Zeng et al., AAAI 2023) as its authors train it: a moving-average trend/seasonal
    split (kernel 25, edges padded by repetition), one linear map per part shared by the channels,
    Adam at 0.005 halved every epoch, batch 32, MSE, at most 10 epochs with early stopping
    (patience 3) on the validation windows, the best epoch's weights kept (the settings of the
    authors' ETT scripts).
    """

    def __init__(
        self,
        kernel: int = 25,
        learning_rate: float = 0.005,
        batch_size: int = 32,
        max_epochs: int = 10,
        patience: int = 3,
        seed: int = 0,
    ) -> None:
        self.kernel, self.learning_rate, self.batch_size = kernel, learning_rate, batch_size
        self.max_epochs, self.patience, self.seed = max_epochs, patience, seed

    def _forward(self, x):
        import torch

        pad = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)
        trend = torch.nn.functional.avg_pool1d(padded.transpose(1, 2), self.kernel, stride=1)
        seasonal = x.transpose(1, 2) - trend
        return (self.seasonal_(seasonal) + self.trend_(trend)).transpose(1, 2)

    def fit(self, x, y, x_val, y_val) -> DLinearBaseline:
        import copy

        import torch

        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        lookback, horizon = x.shape[1], y.shape[1]
        self.seasonal_ = torch.nn.Linear(lookback, horizon)
        self.trend_ = torch.nn.Linear(lookback, horizon)
        params = [*self.seasonal_.parameters(), *self.trend_.parameters()]
        opt = torch.optim.Adam(params, lr=self.learning_rate)
        xt = torch.tensor(np.asarray(x, dtype=np.float32))
        yt = torch.tensor(np.asarray(y, dtype=np.float32))
        best, best_state, waited = float("inf"), None, 0
        for epoch in range(self.max_epochs):
            for group in opt.param_groups:
                group["lr"] = self.learning_rate * 0.5**epoch
            for idx in torch.randperm(len(xt), generator=generator).split(self.batch_size):
                loss = torch.nn.functional.mse_loss(self._forward(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            val = float(np.mean((self.predict(x_val) - y_val) ** 2))
            if val < best:
                best, waited = val, 0
                best_state = copy.deepcopy((self.seasonal_.state_dict(), self.trend_.state_dict()))
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.seasonal_.load_state_dict(best_state[0])
        self.trend_.load_state_dict(best_state[1])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = [
                self._forward(torch.tensor(np.asarray(x[i : i + 4096], np.float32))).numpy()
                for i in range(0, len(x), 4096)
            ]
        return np.concatenate(out).astype(np.float64)
