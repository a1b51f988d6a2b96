"""Benchmark dispatcher: `python bench/run.py [NAME ...] --out DIR [--quick]`.

Every `bench/bench_<name>.py` exposes `run(args) -> dict`; this script runs the named ones (all of
them when none is named) and writes `DIR/<name>.json` = the result plus the machine it ran on.
Adding a benchmark = adding one such module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in BENCH_DIR.glob("bench_*.py"))


def machine() -> dict[str, object]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})"
    )
    parser.add_argument("--out", default="bench/results", help="folder for <name>.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="device for the benchmarks that take one (default: cuda when available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
    sys.path.insert(0, str(BENCH_DIR))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names or available():
        started = time.time()
        result = importlib.import_module(f"bench_{name}").run(args)
        report = {
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.time() - started, 1),
            "machine": machine(),
            "result": result,
        }
        (out / f"{name}.json").write_text(json.dumps(report, indent=2))
        print(f"{name}: {json.dumps(result)}  -> {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
