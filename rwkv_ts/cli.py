"""The ``rwkv-ts`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from rwkv_ts.demo import format_report, run_demo

    result = run_demo(args.out, max_epochs=args.max_epochs, verbose=not args.quiet)
    print(format_report(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwkv-ts", description="RWKV encoders for time series.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train on the embedded Mauna Loa CO2 data, forecast, compare with naive baselines, "
        "plot",
    )
    demo.add_argument("--out", default="forecast.png", help="where to write the plot (PNG)")
    demo.add_argument("--max-epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"rwkv-ts: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
