"""Shared fixtures: the real-data home (../shared/datasets beside the checkout) and small real
slices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "datasets"

# Child processes started by tests (DDP ranks, fresh-process restores, the CLI) import this
# checkout, whatever rwkv_ts an environment may have installed elsewhere.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)


@pytest.fixture(scope="session")
def shared_data_home() -> Path:
    if not (SHARED_DATA / "ett-small").is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def etth1(shared_data_home):
    from rwkv_ts.datasets import load_ett

    return load_ett("ETTh1", data_home=shared_data_home, download=False)


@pytest.fixture
def etth1_slice(etth1):
    """The first 800 hours of ETTh1, three channels, as a pandas frame with a ``date`` column (a
    fresh copy)."""
    return etth1.frame[["date", "HUFL", "MUFL", "OT"]].iloc[:800].copy()
