"""The ``rwkv-ts`` command line: help everywhere, one-line errors, fit / predict / evaluate / tune /
datasets on real data (the embedded CO2 series)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rwkv_ts.cli import build_parser, main

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["demo", "fit", "predict", "evaluate", "tune", "stream", "datasets"]
SMALL = [
    "--horizon", "8", "--lookback", "32", "--max-epochs", "2", "--quiet",
    "--param", "patch_len=8", "--param", "stride=4", "--param", "d_model=8",
    "--param", "head_size=8", "--param", "n_layers=1", "--param", "tcn_dilations=()",
    "--param", "shift_distances=1", "--param", "accelerator=cpu",
]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def co2_csv(tmp_path_factory) -> Path:
    """The first 700 weeks of the embedded CO2 series as a user's CSV (split 0.7/0.1/0.2)."""
    from rwkv_ts.datasets import load_co2

    path = tmp_path_factory.mktemp("data") / "co2.csv"
    load_co2().frame.iloc[:700].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory, co2_csv) -> Path:
    out = tmp_path_factory.mktemp("model") / "co2.rwkvts"
    assert main(["fit", str(co2_csv), "--out", str(out), *SMALL]) == 0
    return out


def _one_line_error(capsys, argv: list[str], pattern: str) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert pattern in err, err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: rwkv-ts" in out
    if command is None:
        assert all(c in out for c in COMMANDS)


def test_console_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "rwkv_ts", "datasets", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "co2_weekly" in done.stdout and "embedded" in done.stdout


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["fit", "no_such_data", "--out", "m.rwkvts"], "neither a file nor a registered"),
        (["fit", "co2_weekly"], "--out"),
        (["fit", "co2_weekly", "--out", "m", "--param", "nonsense"], "KEY=VALUE"),
        (["fit", "co2_weekly", "--out", "m", "--param", "colour=red"], "unknown estimator"),
        (["fit", "co2_weekly", "--out", "m", "--preset", "fastest"], "unknown preset 'fastest'"),
        (["fit", "co2_weekly", "--out", "m", "--channels", "OT"], "unknown channel"),
        (["fit", "co2_weekly", "--out", "m", "--horizon", "x"], "invalid int value"),
        (["fit", "co2_weekly", "--out", "m", "--horizon", "0", "--quiet"], "horizon"),
        (["predict", "missing.rwkvts"], "no model file"),
        (["evaluate", "missing.rwkvts", "co2_weekly"], "no model file"),
        (["datasets", "fetch", "nope"], "cannot be fetched"),
        (["datasets", "fetch"], "--all"),
        (["tune", "co2_weekly", "--storage", "x.log"], "study_name"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_user_mistakes_give_one_line(argv, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, argv, pattern)


def test_missing_values_in_a_csv_name_the_command_line_fix(co2_csv, tmp_path, capsys):
    """A gap in a user's CSV is named by column, row and time, with the fix as a --param."""
    import pandas as pd

    frame = pd.read_csv(co2_csv)
    frame.iloc[10, 1] = None
    path = tmp_path / "gappy.csv"
    frame.to_csv(path, index=False)
    _one_line_error(
        capsys,
        ["fit", str(path), "--out", str(tmp_path / "m.rwkvts"), "--quiet"],
        "or fill them first (on the command line: --param impute=linear, ffill or zero)",
    )


def test_a_file_that_is_not_a_model_gives_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.rwkvts"
    bad.write_bytes(b"not a model")
    _one_line_error(capsys, ["predict", str(bad)], "error")


def test_fit_predict_evaluate_round_trip(model, co2_csv, tmp_path, capsys):
    from rwkv_ts import load

    est = load(model)
    # predict continues the training data (the rows before the test border)
    assert main(["predict", str(model), "--out", str(tmp_path / "f.csv")]) == 0
    forecast = pd.read_csv(tmp_path / "f.csv", parse_dates=["date"])
    assert len(forecast) == 8
    frame = pd.read_csv(co2_csv, parse_dates=["date"])
    fit_end = 700 - int(0.2 * 700)
    assert forecast["date"].iloc[0] == frame["date"].iloc[fit_end]
    expected = est.predict(frame.iloc[:fit_end])
    assert forecast["co2"].to_numpy() == pytest.approx(expected["co2"].to_numpy(), rel=1e-6)

    capsys.readouterr()
    argv = ["evaluate", str(model), str(co2_csv), "--step", "4", "--season", "52"]
    argv += ["--plot", str(tmp_path / "e.png"), "--json", str(tmp_path / "e.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "RWKV-TS" in out and "seasonal naive" in out
    report = json.loads((tmp_path / "e.json").read_text())
    start, end = report["rows"]
    assert (start, end) == (fit_end, 700)
    assert report["n_origins"] == len(range(start, end - 8 + 1, 4))
    assert set(report["metrics"]) == {"RWKV-TS", "naive", "seasonal naive"}
    assert len(report["mae_by_horizon"]["RWKV-TS"]) == 8
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_fit_from_a_preset_with_overrides(co2_csv, tmp_path):
    from rwkv_ts import load

    out = tmp_path / "m.rwkvts"
    argv = ["fit", str(co2_csv), "--out", str(out), "--preset", "streaming", *SMALL]
    argv += ["--max-epochs", "1"]
    assert main(argv) == 0
    est = load(out)
    # the preset's settings, and the --param ones over them
    assert (est.norm, est.head, est.d_model) == ("causal", "last", 8)
    assert est.config_.streamable


def test_fit_writes_training_curves(co2_csv, tmp_path, capsys):
    out = tmp_path / "m.rwkvts"
    argv = ["fit", str(co2_csv), "--out", str(out), "--plot", str(tmp_path / "c.png"), *SMALL]
    assert main(argv) == 0
    assert "2 epochs" in capsys.readouterr().out
    assert (tmp_path / "c.png").stat().st_size > 5_000


def test_tune_reads_only_the_fit_part_and_saves_the_best(co2_csv, tmp_path, capsys):
    pytest.importorskip("optuna")
    space = json.dumps({"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})
    argv = ["tune", str(co2_csv), "--n-trials", "2", "--space", space, "--pruner", "none"]
    argv += ["--out", str(tmp_path / "best.rwkvts"), "--json", str(tmp_path / "t.json"), *SMALL]
    assert main(argv) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["rows"] == 700 - int(0.2 * 700)  # never the test part
    assert report["states"] == {"COMPLETE": 2}
    assert set(report["best_params"]) == {"learning_rate"}
    assert (tmp_path / "best.rwkvts").is_file()


def test_datasets_where_and_fetch_embedded(tmp_path, capsys):
    assert main(["datasets", "where", "--data-home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data home: {tmp_path}" in out and "--data-home" in out
    assert "missing (rwkv-ts datasets fetch ETTh1)" in out
    assert main(["datasets", "fetch", "co2_weekly"]) == 0
    assert "embedded" in capsys.readouterr().out


def test_datasets_list_shows_present_files(shared_data_home, capsys):
    assert main(["datasets", "list", "--data-home", str(shared_data_home)]) == 0
    out = capsys.readouterr().out
    assert f"present: {shared_data_home / 'ett-small'}" in out
