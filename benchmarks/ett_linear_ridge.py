"""Validation MSE of the forecaster's least-squares linear start per ridge penalty (ETT
*validation* parts; test parts never read).

The windowed configuration starts from a ridge least-squares linear map (``linear_skip``), and on
several ETT sets no epoch of the encoder beats that start on validation, so the map's
regularisation decides the forecast. This script builds the estimator's own training and
validation windows (the protocol of ``forecast_ett.py``: standard borders, z-score on the train
part, the daily cycle removed) and scores the map fitted with each penalty of ``--ridges`` on the
validation windows, for the raw and the normalised input. Nothing is trained by gradient.

    python benchmarks/ett_linear_ridge.py --datasets ETTh1 ETTh2 --horizons 96 336
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402
from ett_validation_sweep import fit_frame  # noqa: E402
from forecast_ett import ETT_RECIPE, patching  # noqa: E402

import rwkv_ts.forecaster as forecaster_module  # noqa: E402
from rwkv_ts import RWKVForecaster  # noqa: E402
from rwkv_ts.nn import RWKVTSModel  # noqa: E402


class _Prepared(Exception):
    """Stops ``fit`` once the estimator has built its windows."""


def prepared_windows(dataset: str, lookback: int, horizon: int, data_home):
    """The configuration and the training / validation windows ``RWKVForecaster.fit`` builds
    for the windowed ETT configuration (``forecast_ett.py``'s accurate one)."""
    frame, val_fraction = fit_frame(dataset, lookback, data_home)
    patch_len, stride = patching(dataset)
    captured = {}

    def capture(config, train_data, val_data):
        captured.update(config=config, train=train_data, val=val_data)
        raise _Prepared

    original = forecaster_module.choose_skip_input
    forecaster_module.choose_skip_input = capture
    try:
        RWKVForecaster(
            horizon=horizon,
            lookback=lookback,
            patch_len=patch_len,
            stride=stride,
            val_fraction=val_fraction,
            cycle="auto",
            linear_skip="auto",
            verbose=False,
            **ETT_RECIPE,
        ).fit(frame)
    except _Prepared:
        pass
    finally:
        forecaster_module.choose_skip_input = original
    return captured["config"], captured["train"], captured["val"]


def normal_equations(model: RWKVTSModel, data) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The weighted normal equations of ``fit_skip_least_squares`` (captured from its solve)."""
    captured = {}

    def capture(xtx, xty, penalty):
        captured.update(xtx=xtx, xty=xty, penalty=penalty)

    model.solve_skip = capture
    model.fit_skip_least_squares(DataLoader(data, batch_size=4096), ridge=1.0)
    del model.solve_skip
    return captured["xtx"], captured["xty"], captured["penalty"]  # penalty = total weight


def validation_mse(model: RWKVTSModel, data) -> float:
    squared, count = 0.0, 0
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=4096):
            squared += float(((model.linear_forecast(x) - y) ** 2).double().sum())
            count += y.numel()
    return squared / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTh2", "ETTm1", "ETTm2"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument(
        "--ridges", nargs="+", type=float, default=[1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0]
    )
    parser.add_argument("--name", default="ett_linear_ridge")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for dataset in args.datasets:
        for horizon in args.horizons:
            config, train, val = prepared_windows(
                dataset, args.lookback, horizon, default_data_home()
            )
            for skip_input in ("raw", "normalised"):
                model = RWKVTSModel(replace(config, skip_input=skip_input)).eval()
                xtx, xty, total_weight = normal_equations(model, train)
                scores = {}
                for ridge in args.ridges:
                    model.solve_skip(xtx, xty, ridge * total_weight)
                    scores[f"{ridge:g}"] = validation_mse(model, val)
                row = dict(dataset=dataset, horizon=horizon, skip_input=skip_input, mse=scores)
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {
        "title": "Validation MSE of the least-squares linear start per ridge penalty (ETT)",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "lookback": args.lookback,
        "ridges": args.ridges,
        "rows": rows,
    }
    write_json(args.out_dir / f"{args.name}.json", summary)
    lines = [
        f"# {summary['title']}",
        "",
        f"- command: `{summary['command']}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine'].get('gpu', summary['machine']['cpu'])}",
        f"- lookback {args.lookback}; validation windows only; the penalty is per unit-weight "
        "window (the estimator's default is 0.001)",
        "",
        "| dataset | horizon | input | "
        + " | ".join(f"ridge {r:g}" for r in args.ridges)
        + " | best |",
        "|---|---|---|" + "---|" * (len(args.ridges) + 1),
    ]
    for row in rows:
        best = min(row["mse"], key=row["mse"].get)
        cells = " | ".join(f"{v:.4f}" for v in row["mse"].values())
        lines.append(
            f"| {row['dataset']} | {row['horizon']} | {row['skip_input']} | {cells} | {best} |"
        )
    (args.out_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
