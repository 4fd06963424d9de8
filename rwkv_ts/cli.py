"""The ``rwkv-ts`` command line: ``demo``, ``fit``, ``predict``, ``evaluate``, ``tune`` and
``datasets``; ``rwkv-ts COMMAND --help`` for each.

A user mistake (a missing file, an unknown data set, a bad option value, bad data) prints one line,
``rwkv-ts: error: ...``, and exits with status 2; no traceback (set ``RWKV_TS_DEBUG=1`` to
see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DATA_HELP = (
    "a registered data set (see 'rwkv-ts datasets list', e.g. co2_weekly, ETTh1) or a CSV file "
    "(a time column and numeric columns; split 0.7/0.1/0.2)"
)


class UserError(Exception):
    """A mistake on the command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _load_data(name: str, *, data_home: str | None = None, download: bool = False):
    """A :class:`~rwkv_ts.datasets.ForecastingData` from a data set name or a CSV path."""
    from rwkv_ts.datasets import list_datasets, load_co2, load_csv, load_ett

    path = Path(name)
    if path.is_file():
        return load_csv(path)
    known = {n.lower(): n for n in list_datasets()}
    canonical = known.get(name.lower())
    if canonical is None:
        raise UserError(
            f"{name!r} is neither a file nor a registered data set; registered: "
            f"{', '.join(list_datasets())}"
        )
    if canonical == "co2_weekly":
        return load_co2()
    return load_ett(canonical, data_home=data_home, download=download)


def _columns(data, channels: str | None) -> list[str]:
    if not channels:
        return data.channels
    wanted = [c.strip() for c in channels.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in data.channels]
    if unknown:
        raise UserError(f"unknown channel(s) {unknown}; the data has {data.channels}")
    return wanted


def _part(data, part: str, columns: list[str]):
    """Rows of the data the command may read: ``fit`` = before the test border (train and
    validation), ``all`` = every row."""
    frame = data.frame
    if part == "fit":
        frame = frame.iloc[: data.borders["val"][1]]
    keep = ([data.time_column] if data.time_column else []) + columns
    return frame[keep].reset_index(drop=True)


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if "," in text or lowered == "()":
        return tuple(int(v) for v in text.strip("()").split(",") if v.strip())
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _params(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = _parse_value(value)
    return out


def _estimator(args: argparse.Namespace, data) -> Any:
    from rwkv_ts.forecaster import RWKVForecaster

    params = {
        "horizon": args.horizon,
        "lookback": args.lookback,
        "max_epochs": args.max_epochs,
        "random_state": args.seed,
        "verbose": not args.quiet,
        "time_col": data.time_column,
        **_params(args.param),
    }
    valid = RWKVForecaster().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UserError(f"unknown estimator parameter(s) {unknown}; known: {sorted(valid)}")
    for key, value in params.items():
        # "--param shift_distances=1" means the one-element tuple
        if isinstance(valid[key], tuple) and isinstance(value, int) and not isinstance(value, bool):
            params[key] = (value,)
    preset = getattr(args, "preset", None)
    if preset is None:
        return RWKVForecaster(**params)
    return RWKVForecaster.from_preset(preset, **params)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--horizon", type=int, default=96, help="steps forecast (default 96)")
    p.add_argument("--lookback", type=int, default=336, help="steps read (default 336)")
    p.add_argument("--max-epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--preset",
        help="start from a named preset: accurate, streaming or fast "
        "(RWKVForecaster.from_preset; --param settings override it)",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="any other RWKVForecaster parameter, repeatable: --param d_model=64 "
        "--param shift_distances=1,2,4",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channels", help="comma-separated channels to use (default: all)")
    p.add_argument("--data-home", help="data home (default: $RWKV_TS_DATA or the user cache)")
    p.add_argument(
        "--download", action="store_true", help="download a registered data set when missing"
    )


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from rwkv_ts.demo import format_report, run_demo

    result = run_demo(args.out, max_epochs=args.max_epochs, verbose=not args.quiet)
    print(format_report(result))
    return 0


def _fit(args: argparse.Namespace) -> int:
    data = _load_data(args.data, data_home=args.data_home, download=args.download)
    columns = _columns(data, args.channels)
    frame = _part(data, args.part, columns)
    est = _estimator(args, data).fit(frame)
    est.save(args.out)
    val = [h["val_loss"] for h in est.history_ if "val_loss" in h]
    print(
        f"trained on {len(frame)} rows of {data.name} ({', '.join(columns)}): "
        f"{est.n_epochs_} epochs, best epoch {est.best_epoch_}, "
        + (f"validation MSE (scaled) {min(val):.4f}, " if val else "")
        + f"{est.n_parameters_:,} parameters; saved to {args.out}"
    )
    if args.plot:
        from rwkv_ts.plot import plot_training_curves

        plot_training_curves(
            est.history_, best_epoch=est.best_epoch_, title=f"{data.name}", path=args.plot
        )
        print(f"training curves: {args.plot}")
    return 0


def _load_model(path: str):
    from rwkv_ts.persistence import load

    if not Path(path).is_file():
        raise UserError(f"no model file at {path}")
    est = load(path)
    if not hasattr(est, "forecast_windows"):
        raise UserError(f"{path} holds a {type(est).__name__}, not a forecaster")
    est.set_params(verbose=False)
    return est


def _predict(args: argparse.Namespace) -> int:
    est = _load_model(args.model)
    if args.data is None:
        forecast = est.predict()
    else:
        data = _load_data(args.data, data_home=args.data_home, download=args.download)
        frame = _part(data, "all", list(est.channels_))
        forecast = est.predict(frame.iloc[: args.end] if args.end else frame)
    if args.out:
        forecast.to_csv(args.out, index=not _has_time_column(forecast))
        print(f"{len(forecast)} steps written to {args.out}")
    else:
        print(forecast.to_csv(index=not _has_time_column(forecast)), end="")
    return 0


def _has_time_column(frame) -> bool:
    import pandas as pd

    return isinstance(frame, pd.DataFrame) and any(
        pd.api.types.is_datetime64_any_dtype(frame[c]) for c in frame.columns
    )


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from rwkv_ts.backtest import backtest, season_of

    est = _load_model(args.model)
    data = _load_data(args.data, data_home=args.data_home, download=args.download)
    columns = list(est.channels_)
    frame = _part(data, "all", _columns(data, ",".join(columns)))
    start, end = data.borders[args.part]
    lookback = est.config_.lookback
    if start < lookback:
        raise UserError(
            f"the {args.part} part starts at row {start}, fewer than lookback={lookback} rows in"
        )
    season = args.season if args.season is not None else season_of(data.freq)
    result = backtest(est, frame[columns], start=start, end=end, step=args.step, season=season)
    metrics = result.metrics(scaled=args.scaled)
    unit = "scaled" if args.scaled else "data units"
    reference = "seasonal naive" if "seasonal naive" in metrics else "naive"
    print(
        f"{data.name}, {args.part} part rows [{start}, {end}), {result.n_origins} origins every "
        f"{args.step} step(s), horizon {result.horizon}, channels {', '.join(columns)} ({unit})"
    )
    print(f"{'method':<16}{'MSE':>12}{'MAE':>12}{'MSE vs ' + reference:>26}")
    for name, m in metrics.items():
        ratio = m["mse"] / metrics[reference]["mse"]
        print(f"{name:<16}{m['mse']:>12.4f}{m['mae']:>12.4f}{ratio:>26.3f}")
    by_step = result.errors_by_horizon(args.metric, scaled=args.scaled)
    if args.plot:
        _evaluation_plot(args, data, frame, columns, result, by_step)
        print(f"plot: {args.plot}")
    _write_json(
        args.json,
        {
            "data": data.name,
            "part": args.part,
            "rows": [start, end],
            "n_origins": result.n_origins,
            "step": args.step,
            "horizon": result.horizon,
            "scaled": args.scaled,
            "metrics": metrics,
            f"{args.metric}_by_horizon": {k: np.round(v, 6).tolist() for k, v in by_step.items()},
        },
    )
    return 0


def _evaluation_plot(args, data, frame, columns, result, by_step) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from rwkv_ts.plot import plot_backtest_errors, plot_forecast

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), dpi=110)
    channel = data.target if data.target in columns else columns[0]
    c = columns.index(channel)
    last = int(result.origins[-1])
    horizon = result.horizon
    shown = slice(max(last - 3 * horizon, 0), last)
    times = frame[data.time_column] if data.time_column else frame.index.to_series()
    plot_forecast(
        times.iloc[shown],
        frame[channel].to_numpy()[shown],
        times.iloc[last : last + horizon],
        {name: f[-1, :, c] for name, f in result.forecasts.items()},
        actual=result.actual[-1, :, c],
        title=f"{data.name} {channel}: forecast from the last origin",
        ax=top,
    )
    plot_backtest_errors(
        by_step,
        metric=args.metric.upper() + (" (scaled)" if args.scaled else ""),
        title=f"{args.metric.upper()} by horizon step over {result.n_origins} origins",
        ax=bottom,
    )
    fig.tight_layout()
    fig.savefig(args.plot)
    plt.close(fig)


def _space(text: str | None) -> dict | None:
    """A search space from JSON (inline or a file): name -> list of choices, or
    {"low", "high", "log", "step", "int"}."""
    if not text:
        return None
    from optuna.distributions import FloatDistribution, IntDistribution

    path = Path(text)
    raw = json.loads(path.read_text() if path.is_file() else text)
    if not isinstance(raw, dict):
        raise UserError("--space must be a JSON object: name -> choices or {low, high, ...}")
    space: dict[str, Any] = {}
    for name, spec in raw.items():
        if isinstance(spec, list):
            space[name] = [tuple(c) if isinstance(c, list) else c for c in spec]
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec):
            if spec.get("int") or (isinstance(spec["low"], int) and isinstance(spec["high"], int)):
                space[name] = IntDistribution(
                    int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False))
                )
            else:
                space[name] = FloatDistribution(
                    float(spec["low"]),
                    float(spec["high"]),
                    log=bool(spec.get("log", False)),
                    step=spec.get("step"),
                )
        else:
            raise UserError(
                f"--space entry {name!r} must be a list of choices or {{low, high[, log]}}"
            )
    return space


def _tune(args: argparse.Namespace) -> int:
    try:
        import optuna

        from rwkv_ts.tune import tune
    except ImportError as exc:
        raise UserError(f"tuning needs Optuna: pip install 'rwkv-ts[tune]' ({exc})") from None
    data = _load_data(args.data, data_home=args.data_home, download=args.download)
    columns = _columns(data, args.channels)
    # never the test part: the search reads the training and validation rows only
    frame = _part(data, "fit", columns)
    est = _estimator(args, data)
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=args.pruner_startup, n_warmup_steps=args.pruner_warmup
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    result = tune(
        est,
        frame,
        n_trials=args.n_trials,
        search_space=_space(args.space),
        storage=args.storage,
        study_name=args.study_name,
        timeout=args.timeout,
        pruner=pruners[args.pruner](),
        refit=args.out is not None,
        verbose=not args.quiet,
    )
    study = result.study
    states = [t.state.name for t in study.trials]
    print(
        f"study {study.study_name!r}: {states.count('COMPLETE')} complete, "
        f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed; best validation MSE "
        f"(scaled) {study.best_value:.4f} with {result.best_params}"
    )
    if result.estimator is not None:
        result.estimator.save(args.out)
        print(f"best model refitted on {len(frame)} rows and saved to {args.out}")
    _write_json(
        args.json,
        {
            "study": study.study_name,
            "best_value": study.best_value,
            "best_params": result.best_params,
            "rows": len(frame),
            "states": {s: states.count(s) for s in sorted(set(states))},
        },
    )
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from rwkv_ts.datasets import get_data_home
    from rwkv_ts.datasets._fetch import DATA_HOME_ENV
    from rwkv_ts.datasets._registry import DATA_FILES, DATASETS

    home = get_data_home(args.data_home)
    if args.action == "where":
        if args.data_home:
            source = "--data-home"
        elif os.environ.get(DATA_HOME_ENV, "").strip():
            source = f"${DATA_HOME_ENV}"
        else:
            source = f"the user cache (set ${DATA_HOME_ENV} to change it)"
        print(f"data home: {home}  [{source}]")
        for spec in DATASETS.values():
            print(f"  {spec.name:<12} {_status(spec, home)}")
        return 0
    if args.action == "list":
        print(f"{'name':<24}{'kind':<16}{'rows':>8}  {'freq':<7} status")
        for spec in DATASETS.values():
            print(
                f"{spec.name:<24}{'forecasting':<16}{spec.n_rows:>8}  {spec.freq:<7} "
                f"{_status(spec, home)}"
            )
        groups: dict[str, list[str]] = {}
        for path in DATA_FILES:
            parts = path.split("/")
            name = parts[-2] if parts[0] == "ts_classification" else parts[0]
            groups.setdefault(name, []).append(path)
        for name, paths in groups.items():
            kind = "classification" if paths[0].startswith("ts_classification") else "RUL"
            present = sum((home / p).is_file() or (home / (p + ".gz")).is_file() for p in paths)
            status = "present" if present == len(paths) else f"{present}/{len(paths)} files"
            print(f"{name:<24}{kind:<16}{'':>8}  {'':<7} {status} (install by hand)")
        return 0
    # fetch
    from rwkv_ts.datasets import load_ett

    names = list(DATASETS) if args.all else args.names
    if not names:
        raise UserError("name the data sets to fetch, or pass --all")
    by_lower = {n.lower(): n for n in DATASETS}
    for name in names:
        canonical = by_lower.get(name.lower())
        if canonical is None:
            raise UserError(
                f"{name!r} cannot be fetched; downloadable or embedded: {', '.join(DATASETS)}"
            )
        spec = DATASETS[canonical]
        if spec.embedded:
            print(f"{canonical}: embedded in the package, nothing to fetch")
            continue
        load_ett(canonical, data_home=home, download=True)
        print(f"{canonical}: {_status(spec, home)}")
    return 0


def _status(spec, home: Path) -> str:
    if spec.embedded:
        return "embedded"
    for rel in spec.relative_paths:
        if (home / rel).is_file():
            return f"present: {home / rel}"
    return f"missing (rwkv-ts datasets fetch {spec.name})"


# ---------------------------------------------------------------------------------------------
# stream
# ---------------------------------------------------------------------------------------------


def _stream_row(fields: list[str], header: list[str], spec) -> Any:
    """One CSV row as the input ``ForecastStream.update`` takes (a one-row frame, or an array
    when the model was fitted on positions)."""
    import numpy as np
    import pandas as pd

    if len(fields) != len(header):
        raise ValueError(f"the row has {len(fields)} fields, the header {len(header)}")
    if spec.time_source == "position" and spec.layout == "wide":
        return np.array([[float(v) for v in fields]])
    row: dict[str, Any] = {}
    for name, text in zip(header, fields, strict=True):
        if name == spec.time_col or name == spec.time_name:
            row[name] = pd.to_datetime(text) if spec.time_kind == "datetime" else int(text)
        elif name == spec.id_col:
            row[name] = int(text) if str(spec.id_dtype).startswith("int") else text
        else:
            row[name] = float(text)
    frame = pd.DataFrame({k: [v] for k, v in row.items()})
    if spec.time_source == "index":
        frame = frame.set_index(spec.time_name)
    return frame


def _stream(args: argparse.Namespace) -> int:
    import csv

    import numpy as np

    from rwkv_ts import load

    est = load(args.model)
    stream = est.stream(history=None if args.from_scratch else "fit")
    if args.state and Path(args.state).is_file():
        stream.load_state(args.state)
    spec = est.last_panel_.spec
    reader = csv.reader(iter(sys.stdin.readline, ""))
    header = next(reader, None)
    if header is None:
        raise UserError("no CSV header on standard input")
    first = True
    for line_no, fields in enumerate(reader, start=2):
        if not fields:
            continue
        try:
            out = stream.update(_stream_row(fields, header, spec))
        except (ValueError, TypeError) as exc:
            print(f"rwkv-ts stream: line {line_no}: {_message(exc)}", file=sys.stderr, flush=True)
            continue
        if isinstance(out, np.ndarray):
            for step, values in enumerate(out, start=1):
                if first:
                    print(",".join(["step", *stream.channels]))
                    first = False
                print(",".join([str(step)] + [repr(float(v)) for v in values]))
        elif out is not None and len(out):
            out.to_csv(sys.stdout, header=first, index=spec.time_source == "index")
            first = False
        sys.stdout.flush()
    if args.state:
        stream.save_state(args.state)
    return 0


def _add_stream_parser(sub) -> None:
    stream = sub.add_parser(
        "stream",
        help="read CSV rows from standard input, write each forecast as soon as it is computed",
        description="Feed a saved model's stream with CSV rows from standard input (a header "
        "line, then one row per sample: the columns the model was fitted on) and write the "
        "forecast after each row to standard output (CSV, flushed per row). Series continue the "
        "training data unless --from-scratch; a forecast appears once a series has lookback "
        "samples. A bad row is reported on standard error and skipped.",
    )
    stream.add_argument("model", help="a model file written by 'rwkv-ts fit' or est.save()")
    stream.add_argument(
        "--from-scratch", action="store_true", help="start with no history (not the fit data)"
    )
    stream.add_argument(
        "--state",
        help="stream-state file: restored at start when it exists, written at end of input",
    )
    stream.set_defaults(func=_stream)


# ---------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rwkv-ts", description="RWKV encoders for time series.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser(
        "demo",
        help="train on the embedded Mauna Loa CO2 data, forecast, compare with naive baselines, "
        "plot",
    )
    demo.add_argument("--out", default="forecast.png", help="where to write the plot (PNG)")
    demo.add_argument("--max-epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    fit = sub.add_parser(
        "fit",
        help="train a forecaster on the training and validation part of a data set and save it",
        description="Train an RWKVForecaster and save it (safetensors, no pickle). On a "
        "registered data set or CSV the rows before the test border are used (--part all: every "
        "row); the last val_fraction of them drives early stopping.",
    )
    fit.add_argument("data", help=DATA_HELP)
    fit.add_argument("--out", required=True, help="model file to write (e.g. model.rwkvts)")
    fit.add_argument(
        "--part", choices=["fit", "all"], default="fit", help="rows to train on (default fit)"
    )
    fit.add_argument("--plot", help="also write the training curves (PNG)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(fit)
    _add_data_options(fit)
    fit.set_defaults(func=_fit)

    predict = sub.add_parser(
        "predict",
        help="forecast the next horizon steps with a saved model",
        description="Forecast after the end of DATA (default: after the data the model was "
        "trained on) and print CSV (or write it with --out).",
    )
    predict.add_argument("model", help="a model file written by 'rwkv-ts fit' or est.save()")
    predict.add_argument("data", nargs="?", help=DATA_HELP + "; default: the training data")
    predict.add_argument("--end", type=int, help="use the rows before this one as the history")
    predict.add_argument("--out", help="CSV file to write (default: standard output)")
    _add_data_options(predict)
    predict.set_defaults(func=_predict)

    evaluate = sub.add_parser(
        "evaluate",
        help="rolling-origin backtest of a saved model on a data set's test part, with metrics "
        "and a plot",
        description="Forecast from every --step-th origin of the test (or validation) part, "
        "each forecast inside the part and read only from rows before its origin; print MSE and "
        "MAE next to the naive and seasonal-naive baselines from the same origins.",
    )
    evaluate.add_argument("model", help="a model file written by 'rwkv-ts fit' or est.save()")
    evaluate.add_argument("data", help=DATA_HELP)
    evaluate.add_argument(
        "--part", choices=["test", "val"], default="test", help="part to backtest (default test)"
    )
    evaluate.add_argument("--step", type=int, default=1, help="steps between origins (default 1)")
    evaluate.add_argument(
        "--season", type=int, help="seasonal-naive period (default: from the data's frequency)"
    )
    evaluate.add_argument(
        "--metric", choices=["mae", "mse", "rmse"], default="mae", help="metric by horizon"
    )
    evaluate.add_argument(
        "--scaled", action="store_true", help="errors in units of the training std per channel"
    )
    evaluate.add_argument("--plot", help="write the forecast and errors-by-horizon plot (PNG)")
    evaluate.add_argument("--json", help="write the metrics as JSON")
    _add_data_options(evaluate)
    evaluate.set_defaults(func=_evaluate)

    tune_p = sub.add_parser(
        "tune",
        help="search hyper-parameters with Optuna (shared storage for several workers)",
        description="Each trial trains on the rows before the test border and is scored by its "
        "validation loss, reported every epoch so that bad trials are pruned. Workers started "
        "with the same --storage and --study-name share one study; a killed run resumes.",
    )
    tune_p.add_argument("data", help=DATA_HELP)
    tune_p.add_argument("--n-trials", type=int, default=20, help="trials of the study (default 20)")
    tune_p.add_argument(
        "--storage", help="journal file (study.log) or database URL (sqlite:///study.db)"
    )
    tune_p.add_argument("--study-name", help="the study to create or join (needed with --storage)")
    tune_p.add_argument(
        "--space", help="search space as JSON or a JSON file (default: the built-in space)"
    )
    tune_p.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median")
    tune_p.add_argument(
        "--pruner-startup", type=int, default=5, help="trials before pruning starts (default 5)"
    )
    tune_p.add_argument(
        "--pruner-warmup", type=int, default=1, help="epochs before a trial can be pruned"
    )
    tune_p.add_argument("--timeout", type=float, help="stop this worker after SECONDS")
    tune_p.add_argument("--out", help="refit the best parameters and save the model here")
    tune_p.add_argument("--json", help="write the best parameters and the trial counts as JSON")
    tune_p.add_argument("--quiet", action="store_true", help="no progress bars or trial logs")
    _add_model_options(tune_p)
    _add_data_options(tune_p)
    tune_p.set_defaults(func=_tune)

    datasets = sub.add_parser(
        "datasets",
        help="list the registered data sets, fetch them, show where they are",
        description="list: every registered data set and whether it is present; where: the "
        "data home and each file's location; fetch: download forecasting data sets.",
    )
    datasets.add_argument("action", choices=["list", "fetch", "where"])
    datasets.add_argument("names", nargs="*", help="data sets to fetch")
    datasets.add_argument("--all", action="store_true", help="fetch every downloadable data set")
    datasets.add_argument("--data-home", help="data home (default: $RWKV_TS_DATA or user cache)")
    datasets.set_defaults(func=_datasets)
    _add_stream_parser(sub)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    if "impute=" in text:
        # the library's advice names the parameter; here it is set with --param
        text += " (on the command line: --param impute=linear, ffill or zero)"
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, TypeError, KeyError, OSError) as exc:
        if os.environ.get("RWKV_TS_DEBUG"):
            raise
        print(f"rwkv-ts: error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rwkv-ts {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
