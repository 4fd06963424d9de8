"""A built wheel carries what an installed package needs beyond its Python modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_kernel_sources(tmp_path: Path):
    """The CUDA sources travel inside the package, where ``_build.kernel_dir`` finds them once
    ``kernels/`` beside the package is gone; so does the embedded demo data."""
    pytest.importorskip("setuptools")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("rwkv_ts-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"rwkv_ts/kernels/{p.name}" for p in (ROOT / "kernels").iterdir()}
    wanted = {n for n in wanted if n.rsplit(".", 1)[-1] in {"cu", "h", "cpp"}}
    assert {"rwkv_ts/kernels/wkv6.cu", "rwkv_ts/kernels/wkv6_binding.cpp"} <= wanted
    assert wanted <= names, sorted(wanted - names)
    assert any(n.startswith("rwkv_ts/datasets/data/") and n.endswith(".csv.gz") for n in names)


def test_kernel_dir_falls_back_to_the_package(tmp_path: Path, monkeypatch):
    """Without ``kernels/`` beside the package, the sources are looked up inside it."""
    from rwkv_ts.ops import _build

    fake = tmp_path / "site" / "rwkv_ts" / "ops" / "_build.py"
    fake.parent.mkdir(parents=True)
    (tmp_path / "site" / "rwkv_ts" / "kernels").mkdir()
    (tmp_path / "site" / "rwkv_ts" / "kernels" / "wkv6.cu").write_text("// stub\n")
    monkeypatch.setattr(_build, "__file__", str(fake))
    assert _build.kernel_dir() == (tmp_path / "site" / "rwkv_ts" / "kernels").resolve()
