"""The CUDA sources in ``kernels/`` compile with plain ``nvcc`` (no torch, no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
SOURCES = sorted(KERNELS.glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_sources_exist():
    assert SOURCES, f"no .cu files in {KERNELS}"
    for src in SOURCES:
        text = src.read_text()
        for header in ("<torch/", "<ATen/", "<c10/", "<pybind11"):
            assert header not in text, f"{src.name} must not include {header}"


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles(src: Path, tmp_path: Path):
    obj = tmp_path / (src.stem + ".o")
    cmd = [
        NVCC,
        "-c",
        "-O3",
        "--threads",
        "2",
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        f"-I{KERNELS}",
        str(src),
        "-o",
        str(obj),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"nvcc failed:\n{proc.stdout}\n{proc.stderr}"
    assert obj.is_file() and obj.stat().st_size > 0
