"""`make demo`: ``python -m squirrel.demo [FOLDER]``, the demo of `squirrel.cli.demo` (what `squirrel demo`
runs) without the rest of the command line: write 10,000 samples as 10 messagepack shards on local disk,
stream them back, report speed. See `squirrel.cli.demo` for what it may write where.
"""

from __future__ import annotations

import sys

from squirrel.cli.demo import IMAGE_SHAPE, MARKER, SAMPLES, SHARDS, claim_folder, main, make_shards
from squirrel.cli.output import printable

__all__ = ["IMAGE_SHAPE", "MARKER", "SAMPLES", "SHARDS", "claim_folder", "main", "make_shards", "run_module"]


def run_module(argv: list[str]) -> None:
    """``python -m squirrel.demo [FOLDER]``: a folder the demo may not use exits 1 with one line."""
    if len(argv) > 1:
        raise SystemExit("usage: python -m squirrel.demo [FOLDER]")
    try:
        main(*argv)
    except OSError as error:
        raise SystemExit(f"squirrel.demo: error: {printable(error)}") from None


if __name__ == "__main__":
    run_module(sys.argv[1:])
