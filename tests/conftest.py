"""Shared fixtures: the real-data home (../shared/datasets beside the checkout) and small real
slices."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


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
