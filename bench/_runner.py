"""Runs one workload for one system in this (fresh) process and emits its figures as JSON.

``python -m bench._runner WORKLOAD SYSTEM --dir D --sizes JSON [--loop asyncio|uvloop]``; used
by ``python -m bench``. ``--loop uvloop`` (the default): every event loop this process makes is
uvloop's (its policy installed first), the workload's and its system's alike.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import traceback
from pathlib import Path

from bench.common import Sizes, emit


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._runner")
    parser.add_argument("workload")
    parser.add_argument("system", choices=("stepline", "dbos"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = Sizes.from_json(json.loads(args.sizes))
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        module = importlib.import_module(f"bench.{args.workload}")
        result = getattr(module, f"run_{args.system}")(workdir, sizes)
    except Exception as exc:
        traceback.print_exc()
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
