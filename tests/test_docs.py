"""The documentation builds with MkDocs in strict mode (every warning is an error)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="mkdocs / mkdocstrings are not installed (pip install -e '.[docs]')",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_docs_build_strictly(site):
    for page in ["index.html", "quickstart/index.html", "guides/tuning/index.html"]:
        assert (site / page).is_file(), page


def test_api_reference_comes_from_docstrings(site):
    html = (site / "api" / "estimators" / "index.html").read_text()
    assert "RWKVForecaster" in html and "lookback" in html
    assert "Forecast from many windows at once" in html  # a method's docstring
    tune_html = (site / "api" / "tune" / "index.html").read_text()
    assert "default_search_space" in tune_html


def test_every_benchmark_table_is_on_the_benchmarks_page(site):
    html = (site / "benchmarks" / "index.html").read_text()
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert results
    for path in results:
        assert f"benchmarks/results/{path.name}" in html, path.name
    assert "<table>" in html
