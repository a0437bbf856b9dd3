"""dask write benchmark (issue 14, "The dask example"): `write_shards` on a 2-worker ``distributed.LocalCluster``
(worker processes, one thread each), 100,000 samples like the README's ``make_sample``, 1,000 per shard.

- ``per-shard`` (the README's way): ``write_shards(range(n), url, executor=client, make_sample=make_sample)``;
  the driver sends each shard's ints in one task, which makes the samples and writes the shard in a worker.
- ``per-sample`` (the old README's way, for reference): ``IterableSource(range(n)).async_map(make_sample,
  executor=client, max_concurrency=256)`` feeding ``write_shards(samples, url, executor=client)``: one task
  per sample. It takes minutes at full size, so it runs on fewer samples (2,000) and its time is
  extrapolated linearly to 100,000, labelled as such.

Every pass is a fresh process that starts its own cluster, imports squirrel in the workers (both variants
alike), then times the write alone (cluster start-up is reported apart); its output is checked (sample
count from the index) and deleted. The variants run interleaved; ``per-sample`` only in the first
`REFERENCE_ROUNDS` round(s), as it is the costly one. The goal: the median ``per-shard`` pass writes 100,000
samples in under 60 s.

    python -m benchmarks.write_dask            # full run: 100,000 samples (2,000 per-sample), 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.write_dask   # smoke run: 10,000 (500 per-sample), 1 round
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import Goal, PassResult, measure, run_pass, save_report
from benchmarks.read_local import REPO_ROOT, WORK
from squirrel.driver import Sample

if TYPE_CHECKING:
    from collections.abc import Callable

    from distributed import Client

RESULTS = REPO_ROOT / "benchmarks" / "results" / "write_dask.json"
TARGET_SAMPLES = 100_000
"""The sample count the goal is about; smaller runs are extrapolated to it."""
GOAL_S = 60.0
SHARD_SIZE = 1_000
WORKERS = 2
REFERENCE_CONCURRENCY = 256
"""The old README's ``max_concurrency`` for the per-sample ``async_map``."""
REFERENCE_ROUNDS = 1


@dataclasses.dataclass(frozen=True)
class Config:
    """Size of one run: samples per variant and rounds."""

    samples: int = TARGET_SAMPLES
    reference_samples: int = 2_000
    rounds: int = 3

    @property
    def small(self) -> bool:
        return self.samples < TARGET_SAMPLES


SMALL = Config(samples=10_000, reference_samples=500, rounds=1)


def make_sample(i: int) -> Sample:
    """The README's sample: top level, so dask workers import it rather than unpickle its code."""
    return Sample({"x": i * 2}, key=f"s{i:08d}")


def write_per_shard(client: Client, samples: int, url: str) -> None:
    """One task per shard: the ints travel, each task makes its samples and writes its shard."""
    from squirrel.bulk import write_shards

    write_shards(range(samples), url, shard_size=SHARD_SIZE, executor=client, make_sample=make_sample)


def write_per_sample(client: Client, samples: int, url: str) -> None:
    """The old README's code: one task per sample makes it, then one task per shard writes the samples."""
    from squirrel.bulk import write_shards
    from squirrel.iterstream import IterableSource

    made = IterableSource(range(samples)).async_map(make_sample, executor=client, max_concurrency=REFERENCE_CONCURRENCY)
    write_shards(made, url, shard_size=SHARD_SIZE, executor=client)


PASSES: dict[str, Callable[[Client, int, str], None]] = {"per-shard": write_per_shard, "per-sample": write_per_sample}


def timed_pass(name: str, samples: int) -> PassResult:
    """Start a cluster, warm its workers, time the write of `samples`, check and delete what it wrote.

    The cluster's start-up seconds go in the result's `first_sample_s` (a write has no first sample)."""
    from distributed import Client, LocalCluster

    from squirrel.driver import MessagepackStore

    url = str(WORK / f"write_dask-{name}-{samples}")
    shutil.rmtree(url, ignore_errors=True)
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(importlib.import_module, "squirrel.aio.bulk")
        startup = time.perf_counter() - started

        def write() -> list[int]:
            PASSES[name](client, samples, url)
            return [samples]

        result = measure(name, write, lambda count: (count, 0))
    written = MessagepackStore(url).count_samples()
    shutil.rmtree(url)
    if written != samples:
        raise RuntimeError(f"{name} wrote {written} samples to {url}, expected {samples}")
    return dataclasses.replace(result, first_sample_s=startup)


def run_rounds(config: Config) -> dict[str, list[PassResult]]:
    """Every round runs ``per-shard`` and, in the first `REFERENCE_ROUNDS`, ``per-sample``; the order
    alternates from round to round. Each pass is a fresh process."""
    results: dict[str, list[PassResult]] = {name: [] for name in PASSES}
    sizes = {"per-shard": config.samples, "per-sample": config.reference_samples}
    for round_index in range(config.rounds):
        names = ["per-shard", "per-sample"] if round_index < REFERENCE_ROUNDS else ["per-shard"]
        for name in names[round_index % 2 :] + names[: round_index % 2]:
            command = [sys.executable, "-m", "benchmarks.write_dask", "--pass", name, "--samples", str(sizes[name])]
            result = run_pass(command, cwd=REPO_ROOT)
            results[name].append(result)
            print(
                f"  round {round_index + 1}/{config.rounds} {name:<10} {result.samples:>7,} samples "
                f"in {result.seconds:7.2f} s (cluster start {result.first_sample_s:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    return results


def summarize(passes: list[PassResult]) -> dict[str, float]:
    """Median and spread of one variant's passes, and the median extrapolated to `TARGET_SAMPLES`."""
    seconds = [p.seconds for p in passes]
    median = statistics.median(seconds)
    return {
        "samples": passes[0].samples,
        "passes": len(passes),
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "samples_per_s": passes[0].samples / median,
        "target_s": median * TARGET_SAMPLES / passes[0].samples,
        "driver_cpu_s": statistics.median(p.cpu_s for p in passes),
        "cluster_start_s": statistics.median(p.first_sample_s for p in passes),
    }


def print_table(rows: dict[str, dict[str, float]]) -> None:
    """One line per variant; the 100k column says when it is extrapolated."""
    headers = f"{'variant':<11} {'samples':>8} {'median s':>9} {'min-max s':>15} {'samples/s':>10}"
    print(f"{headers}  {TARGET_SAMPLES:,} samples")
    for name, row in rows.items():
        spread = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
        label = "measured" if row["samples"] == TARGET_SAMPLES else f"extrapolated from {row['samples']:,.0f}"
        print(
            f"{name:<11} {row['samples']:>8,.0f} {row['median_s']:>9.2f} {spread:>15} {row['samples_per_s']:>10,.0f}"
            f"  {row['target_s']:,.1f} s ({label})"
        )


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run the rounds, print the table and the goal, and save them."""
    started = time.perf_counter()
    print(
        f"write_dask: {config.samples:,} samples per-shard ({config.rounds} round(s)), "
        f"{config.reference_samples:,} per-sample ({min(REFERENCE_ROUNDS, config.rounds)} round(s)); "
        f"{SHARD_SIZE:,} per shard, LocalCluster of {WORKERS} worker processes x 1 thread, {os.cpu_count()} CPUs",
        flush=True,
    )
    results = run_rounds(config)
    rows = {name: summarize(passes) for name, passes in results.items() if passes}
    print("\nwrite time only (cluster start-up apart, driver CPU excludes the workers):")
    print_table(rows)
    speedup = rows["per-sample"]["target_s"] / rows["per-shard"]["target_s"]
    print(f"\nper-shard is {speedup:,.0f}x faster than per-sample (per sample, extrapolated)")
    measured = "" if rows["per-shard"]["samples"] == TARGET_SAMPLES else " (extrapolated)"
    goals = [
        Goal(
            f"per-shard write of {TARGET_SAMPLES:,} samples{measured}, s",
            rows["per-shard"]["target_s"],
            GOAL_S,
            at_most=True,
        )
    ]
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "shard_size": SHARD_SIZE,
        "workers": WORKERS,
        "threads_per_worker": 1,
        "reference_rounds": REFERENCE_ROUNDS,
        "per-shard": "write_shards(range(n), url, executor=client, make_sample=make_sample)",
        "per-sample": "write_shards(IterableSource(range(n)).async_map(make_sample, executor=client, "
        f"max_concurrency={REFERENCE_CONCURRENCY}), url, executor=client)",
        "sample": "Sample({'x': i * 2}, key=f's{i:08d}')",
    }
    return save_report(
        WORK / "write_dask-small.json" if config.small else RESULTS,
        "write_dask",
        settings,
        results,
        started,
        goals,
        summary=rows,
        speedup=speedup,
    )


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """The flags: ``--small`` (or ``SQUIRREL_BENCH_SMALL=1``), ``--rounds``, and the hidden ``--pass``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_dask", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help=f"smoke size: {SMALL.samples:,} samples, 1 round")
    parser.add_argument("--rounds", type=int, help=f"per-shard passes (default {Config.rounds})")
    parser.add_argument("--pass", dest="pass_name", choices=list(PASSES), help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    small = args.small or os.environ.get("SQUIRREL_BENCH_SMALL", "") not in ("", "0")
    config = SMALL if small else Config()
    rounds = args.rounds or int(os.environ.get("SQUIRREL_BENCH_ROUNDS", config.rounds))
    return args, dataclasses.replace(config, rounds=rounds)


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    if args.pass_name:
        print(timed_pass(args.pass_name, args.samples or config.samples).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
