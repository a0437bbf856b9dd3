"""Bulk write benchmark (issue "Training at scale"): `write_shards` against squirrel-core 0.20.2 writing
the same 20,000 samples (1,000 per shard) to local disk, each in a fresh process.

squirrel-core always gzips its shards, so ours-gzip / core is the like-for-like ratio; ours-uncompressed
/ core is what a user gets by default. squirrel-core writes its shards with its own `async_map` (4 threads),
as its documentation suggests; the samples are generated before the timed region on both sides.

    python -m benchmarks.write_bulk            # full run: 20,000 samples, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.write_bulk
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from typing import Any

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    format_table,
    measure,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import ensure_core_venv
from benchmarks.read_local import (
    IMAGE_BYTES,
    REPO_ROOT,
    WORK,
    Config,
    _import_core_driver,
    parse_run_args,
    shard_samples,
)

RESULTS = REPO_ROOT / "benchmarks" / "results" / "write_bulk.json"
CORE_WORKERS = 4
PASSES = ("ours", "ours-gzip", "core-gzip")


def _target(config: Config, name: str) -> str:
    folder = WORK / f"write_bulk-{config.samples}" / name
    shutil.rmtree(folder, ignore_errors=True)
    return str(folder)


def run_pass(name: str, config: Config) -> PassResult:
    """Generate the samples, then time writing all of them (one-shot iterable: one item, the whole write)."""
    url = _target(config, name)
    dicts = [sample for shard in range(config.shards) for sample in shard_samples(shard, config.shard_size)]
    if name.startswith("core"):
        driver = _import_core_driver()(url)
        from squirrel.iterstream import IterableSource as CoreSource

        shards = [
            (f"shard-{i:04d}", dicts[i * config.shard_size : (i + 1) * config.shard_size]) for i in range(config.shards)
        ]

        def write() -> list[int]:
            CoreSource(shards).async_map(lambda s: driver.store.set(s[1], key=s[0]), max_workers=CORE_WORKERS).join()
            return [len(dicts)]
    else:
        from squirrel.bulk import write_shards
        from squirrel.driver import Sample

        samples = [Sample(value, key=value["key"]) for value in dicts]

        def write() -> list[int]:
            write_shards(
                samples, url, shard_size=config.shard_size, compression="gzip" if name == "ours-gzip" else None
            )
            return [len(samples)]

    result = measure(name, write, lambda count: (count, count * IMAGE_BYTES))
    shutil.rmtree(url, ignore_errors=True)
    return result


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run the interleaved rounds, print the table, ratios and goals, and save them."""
    started = time.perf_counter()
    core_python = ensure_core_venv()
    sizes = ["--samples", str(config.samples), "--shard-size", str(config.shard_size)]
    commands = {
        name: [
            str(core_python if name.startswith("core") else sys.executable),
            "-m",
            "benchmarks.write_bulk",
            "--pass",
            name,
            *sizes,
        ]
        for name in PASSES
    }
    print(
        f"write_bulk: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s)", flush=True
    )
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    rows = {name: medians(passes) for name, passes in results.items()}
    core = rows["core-gzip"]["samples_per_s"]
    ratio = {
        "ours-gzip / core-gzip (like for like)": rows["ours-gzip"]["samples_per_s"] / core,
        "ours (uncompressed) / core-gzip": rows["ours"]["samples_per_s"] / core,
    }
    goals = [Goal(f"{name}, x", value, 3.0) for name, value in ratio.items()]
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print("\nratios (samples/s):")
    for name, value in ratio.items():
        print(f"  {name:<40} {value:8.2f}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    results_path = WORK / "write_bulk-small.json" if config.small else RESULTS
    settings = {**dataclasses.asdict(config), "core_workers": CORE_WORKERS, "cpus": os.cpu_count()}
    goal_list = [goal.to_dict() for goal in goals]
    return save_report(
        results_path, "write_bulk", settings, results, started, medians=rows, ratios=ratio, goals=goal_list
    )


def main(argv: list[str] | None = None) -> int:
    args, config = parse_run_args(argv, "write_bulk", __doc__, PASSES)
    if args.pass_name:
        print(run_pass(args.pass_name, config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
