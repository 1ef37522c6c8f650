"""``python -m benchmarks [--quick] [NAME ...]``: run the benchmarks and write benchmarks/results/*.json.

Each benchmark module has ``run(quick: bool) -> dict``; every figure it reports is a ratio
against a baseline measured in the same run, on this machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

SUITES = ("bench_features", "bench_scoring", "bench_api", "bench_spark")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    unknown = sorted(set(args.names) - set(SUITES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    for name in args.names or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        started = time.monotonic()
        result = module.run(quick=args.quick)
        result["_meta"] = {
            "seconds": round(time.monotonic() - started, 1),
            "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "quick": args.quick,
        }
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result, indent=2, default=str), flush=True)


if __name__ == "__main__":
    main()
