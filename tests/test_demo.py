"""The README's main job: ``rwkv-ts demo`` trains, forecasts, scores against naive baselines and
writes a PNG."""

from __future__ import annotations

import pytest

from rwkv_ts.cli import main


def test_demo_command_writes_report_and_plot(tmp_path, capsys):
    out = tmp_path / "forecast.png"
    assert main(["demo", "--out", str(out), "--max-epochs", "1", "--quiet"]) == 0
    report = capsys.readouterr().out
    for method in ("RWKV-TS", "seasonal naive", "naive"):
        assert method in report
    assert "forecast origins" in report and str(out) in report
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_demo_metrics(tmp_path):
    from rwkv_ts.demo import HORIZON, run_demo

    result = run_demo(tmp_path / "f.png", max_epochs=1, verbose=False)
    metrics = result["metrics"]
    assert set(metrics) == {"RWKV-TS", "seasonal naive", "naive"}
    assert result["n_origins"] > 10 and result["n_epochs"] == 1
    for scores in metrics.values():
        assert scores["mse"] >= 0 and scores["mae"] >= 0
    # the naive forecasts do not depend on training: fixed, known values on the embedded data
    assert metrics["seasonal naive"]["mse"] == pytest.approx(3.607, abs=5e-3)
    assert HORIZON == 52


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x.png"), "--max-epochs", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rwkv-ts: error:") and "\n" not in err and "max_epochs" in err
