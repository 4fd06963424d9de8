"""Every script in ``examples/`` runs on a small slice (``--quick``), in-process to spare the
imports."""

from __future__ import annotations

import runpy
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
NEEDS = {"tune_optuna.py": "optuna", "sktime_panel.py": "sktime"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_there_is_an_example_per_task():
    assert {
        "forecast_co2.py",
        "stream_forecasts.py",
        "classify_ecg.py",
        "rul_cmapss.py",
        "tune_optuna.py",
        "sktime_panel.py",
        "vad_stream.py",
        "asr_digits.py",
    } <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_quick(script, shared_data_home, tmp_path, monkeypatch, capsys):
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    monkeypatch.setenv("RWKV_TS_DATA", str(shared_data_home))
    monkeypatch.setattr(sys, "argv", [script, "--quick", "--out", str(tmp_path)])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), "an example prints its result"
