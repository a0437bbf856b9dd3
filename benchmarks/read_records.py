"""Record read benchmark: `RecordLoader` over 3,000 small local records against a plain serial loop.

Dataset: 3,000 samples ``Sample({"image": uint8 16x16x3, "label": i}, key="r000000"...)``, written once under
``benchmarks/.work/`` by ``RecordStore(folder).set(Shard(samples))``, which stores each sample as its own
``<key>.msgpack`` object. Two variants read it, each touching every sample the same way (its label and its
image's size):

- ``loader``: ``RecordLoader(folder).get_iter()`` with its defaults, timed from `get_iter` to the last sample;
- ``serial``: list the folder, then for each file in sorted key order ``open(path, "rb").read()`` and
  ``MessagepackCodec().decode(data, path)``, in one thread.

Every pass is a fresh process; the variants run interleaved round-robin over warm page cache. The goal is
on loader / serial samples/s, taken within each round (so both sides of a ratio ran back to back) and
reported as its median and spread over the rounds.

    python -m benchmarks.read_records            # full run: 3,000 records, 5 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.read_records   # smoke run: 3,000 records, 1 round

A pass alone: ``python -m benchmarks.read_records --pass loader`` prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import (
    MB,
    Goal,
    LabelTouch,
    PassResult,
    format_table,
    measure,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.read_local import REPO_ROOT, SEED, WORK, parse_run_args

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator
    from pathlib import Path

RESULTS = REPO_ROOT / "benchmarks" / "results" / "read_records.json"
RECORDS = 3_000
IMAGE_SHAPE = (16, 16, 3)
IMAGE_BYTES = 16 * 16 * 3
SUFFIX = ".msgpack"
"""Suffix of the record files (`MessagepackCodec.suffix`, uncompressed)."""
GOAL = 1.0
"""The issue's goal: loader / serial samples/s, median of the per-round ratios."""
PASSES = ("loader", "serial")
"""Variants, in the order of the first round."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Size of one run."""

    records: int = RECORDS
    rounds: int = 5
    small: bool = False

    @property
    def data(self) -> Path:
        return WORK / f"read_records-{self.records}" / "records"

    @property
    def marker(self) -> Path:
        return self.data.with_name("records.complete.json")

    @property
    def results(self) -> Path:
        """Where the figures go: smoke runs stay in the git-ignored work folder."""
        return WORK / "read_records-small.json" if self.small else RESULTS


# -- dataset ---------------------------------------------------------------------------------------


def record_key(index: int) -> str:
    return f"r{index:06d}"


def record_files(config: Config) -> list[Path]:
    """The record files, sorted (by key); temp files of interrupted writes left out."""
    return sorted(p for p in config.data.glob(f"*{SUFFIX}") if not p.name.startswith("."))


def is_complete(config: Config) -> bool:
    """Whether the dataset was fully written for this config (its marker is written last)."""
    try:
        marker = json.loads(config.marker.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return marker.get("records") == config.records and len(record_files(config)) == config.records


def ensure_dataset(config: Config) -> bool:
    """Write the records unless they are complete already; returns whether they were written."""
    if is_complete(config):
        return False
    import numpy as np

    from squirrel.driver import RecordStore, Sample, Shard

    shutil.rmtree(config.data, ignore_errors=True)
    config.marker.unlink(missing_ok=True)
    config.data.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, size=(config.records, *IMAGE_SHAPE), dtype=np.uint8)
    samples = [Sample({"image": images[i].copy(), "label": i}, key=record_key(i)) for i in range(config.records)]
    RecordStore(str(config.data)).set(Shard(samples, key="unused"))
    files = record_files(config)
    if len(files) != config.records:
        raise RuntimeError(f"RecordStore wrote {len(files)} files, expected {config.records}")
    info = {"records": config.records, "bytes": sum(p.stat().st_size for p in files)}
    config.marker.write_text(json.dumps(info) + "\n")
    return True


def warm_page_cache(config: Config) -> None:
    """Read every record file once, so every pass reads from the page cache."""
    for path in record_files(config):
        path.read_bytes()


# -- passes ----------------------------------------------------------------------------------------


def _loader_pass(config: Config) -> PassResult:
    """`RecordLoader` with its defaults; the loader object is made before the timed region."""
    from squirrel.driver import RecordLoader

    loader = RecordLoader(str(config.data))
    touch = LabelTouch()
    result = measure("loader", loader.get_iter, touch)
    touch.check("loader", config.records)
    return result


def _serial_pass(config: Config) -> PassResult:
    """List the folder, then read and decode each record file in sorted key order, in this thread."""
    from squirrel.codec import MessagepackCodec

    codec = MessagepackCodec()
    folder = str(config.data)
    touch = LabelTouch()

    def stream() -> Iterator[Any]:
        names = sorted(name for name in os.listdir(folder) if name.endswith(SUFFIX) and not name.startswith("."))
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                data = file.read()
            yield from codec.decode(data, path)

    result = measure("serial", stream, touch)
    touch.check("serial", config.records)
    return result


RUNNERS: dict[str, Callable[[Config], PassResult]] = {"loader": _loader_pass, "serial": _serial_pass}


# -- driver ----------------------------------------------------------------------------------------


def _check(config: Config, results: dict[str, list[PassResult]]) -> None:
    """Every pass must have read every record and its whole payload."""
    for name, passes in results.items():
        for result in passes:
            if (result.samples, result.payload_bytes) != (config.records, config.records * IMAGE_BYTES):
                raise RuntimeError(f"{name} read {result.samples} samples / {result.payload_bytes} B")


def round_ratios(results: dict[str, list[PassResult]]) -> list[float]:
    """loader / serial samples/s of each round (`run_rounds` appends one pass per variant per round)."""
    return [
        loader.samples_per_s / serial.samples_per_s
        for loader, serial in zip(results["loader"], results["serial"], strict=True)
    ]


def run_benchmark(config: Config) -> dict[str, Any]:
    """Prepare the records, run the rounds, print the table, ratio and goal, and write the JSON."""
    started = time.perf_counter()
    written = ensure_dataset(config)
    warm_page_cache(config)
    print(
        f"read_records: {config.records:,} records (one msgpack object each, {IMAGE_BYTES:,} B image), "
        f"{config.rounds} round(s); loader: RecordLoader(url).get_iter(); serial: read + MessagepackCodec.decode "
        f"per file; data {'written' if written else 'reused'}",
        flush=True,
    )
    size = ["--records", str(config.records)]
    commands = {name: [sys.executable, "-m", "benchmarks.read_records", "--pass", name, *size] for name in PASSES}
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    _check(config, results)

    rows = {name: medians(passes) for name, passes in results.items()}
    per_round = round_ratios(results)
    ratio = {
        "median": statistics.median(per_round),
        "min": min(per_round),
        "max": max(per_round),
        "per_round": per_round,
    }
    goals = [Goal("RecordLoader vs serial read+decode loop (median of per-round ratios), x", ratio["median"], GOAL)]
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.records * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print(f"\nratio loader / serial (samples/s), within each of {config.rounds} round(s):")
    print(f"  median {ratio['median']:.3f}  spread (min-max) {ratio['min']:.3f} - {ratio['max']:.3f}")
    print(f"  per round: {', '.join(f'{value:.3f}' for value in per_round)}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "image_shape": IMAGE_SHAPE,
        "payload_mb": config.records * IMAGE_BYTES / MB,
        "loader": "squirrel.driver.RecordLoader(url).get_iter() (defaults)",
        "serial": "sorted listdir; per file open(path, 'rb').read() + MessagepackCodec().decode(data, path)",
        "record_bytes": json.loads(config.marker.read_text())["bytes"] / config.records,
    }
    return save_report(
        config.results,
        "read_records",
        settings,
        results,
        started,
        medians=rows,
        ratios={"loader / serial": ratio},
        goals=goals,
    )


def main(argv: list[str] | None = None) -> int:
    def records_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--records", type=int, default=RECORDS, help=f"records to read (default {RECORDS:,})")

    args, shared = parse_run_args(argv, "read_records", __doc__, PASSES, default_rounds=5, configure=records_flag)
    # a size other than the is a smoke run too: its figures stay out of benchmarks/results
    config = Config(args.records, shared.rounds, small=shared.small or args.records != RECORDS)
    if args.pass_name:
        print(RUNNERS[args.pass_name](config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
