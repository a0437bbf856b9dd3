"""Bulk write benchmark (issue "Training at scale"): `write_shards` against squirrel-core 0.20.2 writing the
same samples (the read benchmark's: 20,000 of them, 1,000 per shard) to local disk, each pass a fresh process.

Every pass generates the samples first (`read_local.shard_samples`, numpy only, the same in both venvs) and
times the write alone; its output is deleted before and after. Ours: ``write_shards(samples, url,
shard_size=1000)``, uncompressed and gzip. squirrel-core: ``MessagepackDriver(url).store.set(shard, key=...)``
per shard, run by its own ``IterableSource.async_map`` on 4 threads (faster than a serial loop: its gzip
releases the GIL). squirrel-core always gzips (`gzip.GzipFile`, level 9), so ours-gzip / core is the
like-for-like ratio; ours / core is what our default (no compression) gives. On these random pixels ours
stores the gzip stream's blocks uncompressed (its probes find nothing to gain), core deflates them in vain.

    python -m benchmarks.write_bulk            # full run: 20,000 samples, 5 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.write_bulk   # smoke run: 2,000 samples, 1 round
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._measure import MB, Goal, PassResult, format_table, measure, medians, run_rounds, save_report
from benchmarks.core_venv import CORE_VERSION, ensure_core_venv
from benchmarks.read_local import (
    IMAGE_BYTES,
    REPO_ROOT,
    WORK,
    Config,
    _import_core_driver,
    _size_args,
    parse_run_args,
    shard_key,
    shard_samples,
)

if TYPE_CHECKING:
    from collections.abc import Callable

RESULTS = REPO_ROOT / "benchmarks" / "results" / "write_bulk.json"
CORE_WORKERS = 4
PASSES = ("ours", "ours-gzip", "core-gzip")
"""Variants; ``core-gzip`` runs under the squirrel-core venv's python."""
GOAL = 3.0
COLUMNS = ("samples_per_s", "mb_per_s", "cpu_s", "peak_rss_mb")
"""Table columns: a write is one timed call, so there is no first sample to report."""


def _core_writer(config: Config, url: str, samples: list[dict[str, Any]]) -> Callable[[], object]:
    """squirrel-core writing `samples` shard by shard with its own API and thread pool."""
    driver = _import_core_driver()(url)
    from squirrel.iterstream import IterableSource  # squirrel-core's: `_import_core_driver` checked the venv

    size = config.shard_size
    shards = [(shard_key(i), samples[i * size : (i + 1) * size]) for i in range(config.shards)]

    def write() -> None:
        IterableSource(shards).async_map(
            lambda shard: driver.store.set(shard[1], key=shard[0]), max_workers=CORE_WORKERS
        ).join()

    return write


def _ours_writer(
    config: Config, url: str, samples: list[dict[str, Any]], compression: str | None
) -> Callable[[], object]:
    """`write_shards` writing `samples` (as `Sample`s keyed like core's dicts) with its defaults."""
    from squirrel.bulk import write_shards
    from squirrel.driver import Sample

    wrapped = [Sample(value, key=value["key"]) for value in samples]

    def write() -> list[str]:
        return write_shards(wrapped, url, shard_size=config.shard_size, compression=compression)

    return write


def run_pass(name: str, config: Config) -> PassResult:
    """Generate the samples, then time writing all of them; the timed stream is that one write."""
    url = str(WORK / f"write_bulk-{config.samples}" / name)
    shutil.rmtree(url, ignore_errors=True)
    samples = [sample for index in range(config.shards) for sample in shard_samples(index, config.shard_size)]
    if name == "core-gzip":
        write = _core_writer(config, url, samples)
    else:
        write = _ours_writer(config, url, samples, "gzip" if name == "ours-gzip" else None)

    def stream() -> list[int]:
        write()
        return [len(samples)]

    result = measure(name, stream, lambda count: (count, count * IMAGE_BYTES))
    written = len(list(Path(url).glob("shard*.gz" if "gzip" in name else "shard*.msgpack")))
    shutil.rmtree(url)
    if written != config.shards:
        raise RuntimeError(f"{name} wrote {written} shard files, expected {config.shards}")
    return result


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run the interleaved rounds, print the table, ratios and goals, and save them."""
    started = time.perf_counter()
    core_python = ensure_core_venv()
    print(
        f"write_bulk: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s); "
        f"squirrel-core {CORE_VERSION} on {CORE_WORKERS} threads",
        flush=True,
    )
    pythons = {name: core_python if name == "core-gzip" else sys.executable for name in PASSES}
    commands = {
        name: [str(pythons[name]), "-m", "benchmarks.write_bulk", "--pass", name, *_size_args(config)]
        for name in PASSES
    }
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    rows = {name: medians(passes) for name, passes in results.items()}
    core = rows["core-gzip"]["samples_per_s"]
    ratios = {
        "ours-gzip / core-gzip (like for like)": rows["ours-gzip"]["samples_per_s"] / core,
        "ours (uncompressed) / core-gzip": rows["ours"]["samples_per_s"] / core,
    }
    goals = [Goal(f"{name}, x", value, GOAL) for name, value in ratios.items()]
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows, COLUMNS))
    print("\nratios (samples/s; squirrel-core always gzips, so ours-gzip / core-gzip is the like-for-like one):")
    for name, value in ratios.items():
        print(f"  {name:<40} {value:8.3f}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "payload_mb": config.samples * IMAGE_BYTES / MB,
        "ours": "squirrel.bulk.write_shards(samples, url, shard_size) with compression None / gzip",
        "core": f"squirrel-core {CORE_VERSION} MessagepackDriver.store.set per shard (gzip level 9)",
        "core_workers": CORE_WORKERS,
    }
    return save_report(
        WORK / "write_bulk-small.json" if config.small else RESULTS,
        "write_bulk",
        settings,
        results,
        started,
        medians=rows,
        ratios=ratios,
        goals=goals,
    )


def main(argv: list[str] | None = None) -> int:
    args, config = parse_run_args(argv, "write_bulk", __doc__, PASSES, default_rounds=5)
    if args.pass_name:
        print(run_pass(args.pass_name, config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
