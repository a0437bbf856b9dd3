"""`squirrel bench`: time reading every sample of a store, pass after pass, with a bar over each pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from squirrel.cli.measure import MEASURED, measure_read
from squirrel.cli.output import emit
from squirrel.cli.stores import open_loader, open_store, read_progress

if TYPE_CHECKING:
    import argparse

__all__ = ["FRESH_PROCESS", "cmd_bench"]

FRESH_PROCESS = (
    "pass 1 is this fresh process's first read: it pays one-off start-up (threads, memory for the first "
    "buffers) that later passes, and the demo's read right after its write, do not"
)
"""Why a first pass here reads slower than later ones, and than the demo's read."""


def cmd_bench(args: argparse.Namespace) -> None:
    """Read every sample of the store ``--passes`` times, as a training loop would, and print each pass's
    figures (`squirrel.cli.measure.ReadTiming.figures`) and what they measure. `ValueError` for fewer
    than one pass; what the read raises otherwise."""
    if args.passes < 1:
        raise ValueError(f"--passes must be at least 1, got {args.passes}")
    stream = open_loader(args).get_iter(max_concurrency=args.max_concurrency, prefetch=args.prefetch)
    store = open_store(args)
    for number in range(1, args.passes + 1):
        name = f"pass {number} of {args.passes}" if args.passes > 1 else ""
        timing = measure_read(stream, read_progress(store, stream.metrics, name or "reading"))
        emit(f"{name}: {timing.figures()}" if name else timing.figures())
    emit(f"measured: {MEASURED}")
    emit(FRESH_PROCESS)
