"""Shared by the examples: ``--quick`` (or ``RWKV_TS_EXAMPLE_QUICK=1``) runs a small slice with
few epochs, so that CI runs every example in seconds."""

from __future__ import annotations

import argparse
import os


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a small slice and few epochs (what CI runs)"
    )
    parser.add_argument("--out", default=".", help="folder for the plots and files written")
    args = parser.parse_args()
    args.quick = args.quick or os.environ.get("RWKV_TS_EXAMPLE_QUICK") == "1"
    os.makedirs(args.out, exist_ok=True)
    return args
