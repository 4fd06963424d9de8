"""Time-series classification benchmark: RWKVClassifier next to sktime's MiniRocket and FCN.

Every data set in ``ts_classification`` (10 UCR univariate, 2 UEA multivariate), given TRAIN/TEST
split, test accuracy, fit and predict times, all models in the same process on the same machine.
RWKVClassifier runs with its default parameters (no tuning; nothing is chosen on a test split).

Peers (sktime, installed in the benchmark's environment, not a dependency of rwkv-ts):
``RocketClassifier(rocket_transform="minirocket")`` and ``FCNClassifierTorch`` (torch; its 2000
default epochs cut to ``--fcn-epochs`` to fit a CPU run).

Usage::

    python benchmarks/classification.py --seeds 0 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, default_data_home, machine, now, write_json  # noqa: E402


def _models(
    seed: int, fcn_epochs: int, max_epochs: int | None = None, ensemble_size: int = 0
) -> dict:
    from rwkv_ts import RWKVClassifier

    ours = {} if max_epochs is None else {"max_epochs": max_epochs}
    models = {"RWKVClassifier": lambda: RWKVClassifier(random_state=seed, **ours)}
    if ensemble_size > 1:
        models[f"RWKVClassifier (ensemble_size={ensemble_size})"] = lambda: RWKVClassifier(
            random_state=seed, ensemble_size=ensemble_size, **ours
        )
    try:
        from sktime.classification.deep_learning import FCNClassifierTorch
        from sktime.classification.kernel_based import RocketClassifier
    except ImportError:
        print("sktime is not installed: peers skipped", flush=True)
        return models
    models["MiniRocket (sktime)"] = lambda: RocketClassifier(
        rocket_transform="minirocket", random_state=seed
    )
    models[f"FCN (sktime, torch, {fcn_epochs} epochs)"] = lambda: FCNClassifierTorch(
        num_epochs=fcn_epochs, random_state=seed
    )
    return models


def _set_threads(n: int) -> None:
    if not n:
        return
    import torch

    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def run(args, on_row=None) -> dict:
    import torch

    from rwkv_ts.datasets import list_classification_datasets, load_classification

    if args.threads:
        torch.set_num_threads(args.threads)
    home = default_data_home()
    names = args.datasets or list_classification_datasets()
    rows = []
    # one unmeasured fit of every model first: MiniRocket's numba kernels compile on first use
    X, y = load_classification(names[0], "train", data_home=home)
    for make in _models(0, 1).values():
        make().fit(X, y)
    for name in names:
        X, y = load_classification(name, "train", data_home=home)
        Xt, yt = load_classification(name, "test", data_home=home)
        for seed in args.seeds:
            models = _models(seed, args.fcn_epochs, args.max_epochs, args.ensemble_size)
            for model_name, make in models.items():
                # sktime's MiniRocket resets torch's thread count; every model gets the same
                _set_threads(args.threads)
                est = make()
                t0 = time.perf_counter()
                est.fit(X, y)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = np.asarray(est.predict(Xt))
                predict_s = time.perf_counter() - t0
                acc = float(np.mean(pred.astype(str) == np.asarray(yt).astype(str)))
                rows.append(
                    {
                        "dataset": name,
                        "model": model_name,
                        "seed": seed,
                        "accuracy": acc,
                        "fit_seconds": fit_s,
                        "predict_seconds": predict_s,
                    }
                )
                if on_row is not None:
                    on_row(rows)
                print(
                    f"{name:24s} {model_name:34s} seed {seed}: acc {acc:.3f}, fit {fit_s:.1f} s, "
                    f"predict {predict_s:.2f} s",
                    flush=True,
                )
    return _result(rows, names, args)


def _result(rows: list, names: list, args) -> dict:
    import sktime

    done = [n for n in names if any(r["dataset"] == n for r in rows)]
    return {
        "benchmark": "classification",
        "command": command_line(),
        "date": now(),
        "machine": machine(),
        "sktime": sktime.__version__,
        "datasets": done,
        "datasets_requested": names,
        "seeds": args.seeds,
        "max_epochs": args.max_epochs,
        "fcn_epochs": args.fcn_epochs,
        "runs": rows,
    }


def _where(m: dict) -> str:
    if m.get("gpu"):
        return (
            f"{m['gpu']} for RWKVClassifier (accelerator='auto'); MiniRocket on the CPU; FCN on "
            "sktime's default device; "
        )
    return "CPU only; "


def markdown(result: dict) -> str:
    m = result["machine"]
    runs = result["runs"]
    models = list(dict.fromkeys(r["model"] for r in runs))
    names = result["datasets"]

    def cell(name, model, key):
        vals = [r[key] for r in runs if r["dataset"] == name and r["model"] == model]
        return float(np.mean(vals)) if vals else float("nan")

    missing = [n for n in result.get("datasets_requested", names) if n not in names]
    lines = [
        "# Time-series classification (UCR x10, UEA x2)",
        "",
        f"- Command: `{result['command']}`",
        f"- Date: {result['date']}",
        f"- Machine: {_where(m)}{m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, "
        f"{m['torch_threads']} torch and numba thread(s) for every model, sktime "
        f"{result['sktime']}",
        f"- Seeds: {result['seeds']} (accuracy is the mean over seeds); RWKVClassifier with its "
        f"default parameters except max_epochs={result.get('max_epochs') or 'default'}; given "
        "TRAIN/TEST splits; every model was fitted once before the timed runs (numba "
        "compilation of MiniRocket is not timed)",
        "",
        *(
            [f"- Not run (the run was stopped before them): {', '.join(missing)}", ""]
            if missing
            else []
        ),
        "## Test accuracy",
        "",
        "| dataset | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{cell(name, mo, 'accuracy'):.3f}" for mo in models) + " |"
        )
    complete = [n for n in names if all(np.isfinite(cell(n, mo, "accuracy")) for mo in models)]
    means = [np.mean([cell(n, mo, "accuracy") for n in complete]) for mo in models]
    lines.append(
        f"| **mean ({len(complete)} data sets)** | "
        + " | ".join(f"**{v:.3f}**" for v in means)
        + " |"
    )
    ref = next((mo for mo in models if mo.startswith("MiniRocket")), models[0])
    lines += [
        "",
        f"## Times (seconds, summed over data sets) and ratios to {ref}",
        "",
        "| model | fit | predict | fit ratio | predict ratio |",
        "|---|---|---|---|---|",
    ]
    tot = {
        mo: (
            sum(cell(n, mo, "fit_seconds") for n in complete),
            sum(cell(n, mo, "predict_seconds") for n in complete),
        )
        for mo in models
    }
    for mo in models:
        f, p = tot[mo]
        lines.append(
            f"| {mo} | {f:.1f} | {p:.2f} | {f / tot[ref][0]:.1f}x | {p / tot[ref][1]:.1f}x |"
        )
    lines += [
        "",
        "Target of the issue: mean accuracy at least MiniRocket's in the same run.",
        "",
        "## Per data set times (fit / predict, seconds)",
        "",
        "| dataset | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for name in names:
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{cell(name, mo, 'fit_seconds'):.1f} / {cell(name, mo, 'predict_seconds'):.2f}"
                for mo in models
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--fcn-epochs", type=int, default=100)
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="RWKVClassifier epochs (default: its own)"
    )
    parser.add_argument(
        "--ensemble-size",
        type=int,
        default=0,
        help="also run RWKVClassifier(ensemble_size=N) beside the single model (default: not)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--out", default="classification")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="combine these result JSONs instead of running"
    )
    args = parser.parse_args()
    if args.merge:
        import json

        parts = [json.loads(p.read_text()) for p in args.merge]
        result = dict(parts[0])
        result["runs"] = [r for part in parts for r in part["runs"]]
        result["datasets"] = [d for part in parts for d in part["datasets"]]
        result["datasets_requested"] = [d for part in parts for d in part["datasets_requested"]]
        result["command"] = "; ".join(part["command"] for part in parts)
        write_json(args.out_dir / f"{args.out}.json", result)
        (args.out_dir / f"{args.out}.md").write_text(markdown(result))
        return

    def save(rows: list) -> None:
        # written after every run, so that an interrupted benchmark keeps what it measured
        from rwkv_ts.datasets import list_classification_datasets

        partial = _result(rows, args.datasets or list_classification_datasets(), args)
        write_json(args.out_dir / f"{args.out}.json", partial)
        (args.out_dir / f"{args.out}.md").write_text(markdown(partial))

    result = run(args, on_row=save)
    write_json(args.out_dir / f"{args.out}.json", result)
    (args.out_dir / f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
