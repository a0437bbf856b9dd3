"""``python -m benchmarks`` (``make bench``): run every benchmark module in turn."""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks import charts

BENCHMARKS = (
    "read_local",
    "read_records",
    "steady",
    "read_gcs",
    "dataloader",
    "write_bulk",
    "write_dask",
    "compression",
    "cache",
    "scale",
)
"""Modules of this package with a ``main(argv) -> int``, run in this order."""


def main() -> int:
    started = time.perf_counter()
    for name in BENCHMARKS:
        print(f"== benchmarks.{name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        if status := module.main([]):
            return status
    for path in charts.write_charts():
        print(f"chart {path}")
    print(f"== all benchmarks done in {time.perf_counter() - started:,.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
