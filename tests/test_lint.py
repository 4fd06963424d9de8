"""The code base is ruff-clean (lint and format), as CI demands of every change."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    paths = [p for p in ("rwkv_ts", "tests", "benchmarks", "examples") if (ROOT / p).is_dir()]
    done = subprocess.run(
        ["ruff", *command, *paths], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
