"""``devices=N`` trains with Lightning's DDP. Checked here with two CPU processes (gloo); the same
code path runs NCCL on GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys
import numpy as np
import torch
from rwkv_ts import RWKVForecaster
from rwkv_ts.datasets import load_co2

torch.set_num_threads(1)
est = RWKVForecaster(horizon=8, lookback=32, patch_len=8, stride=4, d_model=8, head_size=8,
                     n_layers=1, max_epochs=2, batch_size=64, verbose=False, random_state=0,
                     accelerator="cpu", devices=int(sys.argv[1]))
est.fit(load_co2().frame.iloc[:500])
weights = sum(float(p.double().abs().sum()) for p in est.model_.parameters())
rank = int(os.environ.get("LOCAL_RANK", 0))
# each rank writes its own file: the ranks share one stdout, where lines can interleave
open(f"rank{rank}.json", "w").write(json.dumps({
    "rank": rank,
    "val": [h["val_loss"] for h in est.history_],
    "best": est.best_epoch_,
    "weights": weights,
    "forecast": est.predict()["co2"].tolist(),
}))
"""


def _run(tmp_path: Path, devices: int) -> list[dict]:
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script), str(devices)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(tmp_path.glob("rank*.json"))
    return sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["rank"])


def test_two_process_ddp_agrees_across_ranks(tmp_path):
    ranks = _run(tmp_path, 2)
    assert [r["rank"] for r in ranks] == [0, 1]
    zero, one = ranks
    # the validation loss is summed over both shards, so both ranks see the same one and pick
    # the same best epoch; the weights are kept in sync by DDP
    assert zero["val"] == pytest.approx(one["val"], rel=1e-9)
    assert zero["best"] == one["best"]
    assert zero["weights"] == pytest.approx(one["weights"], rel=1e-9)
    assert zero["forecast"] == pytest.approx(one["forecast"], rel=1e-6)
    assert len(zero["val"]) == 2
