"""Local read benchmark (issue 15): our loader against the physical references, litdata and squirrel-core.

Dataset: samples ``{"key", "image": uint8 64x64x3, "label": int}``, 1,000 per shard, written once under
``benchmarks/.work/`` in five formats: ours uncompressed, ours gzip, squirrel-core's own (gzip msgpack with
msgpack-numpy, written with squirrel-core's API in its venv), plain msgpack + msgpack-numpy files (the old
serial read+decode bound), and litdata's (``optimize()`` in its venv, `benchmarks.litdata_reference`).
Every pass is a fresh process; the variants run interleaved round-robin over warm page cache. Goals are
ratios taken within each round (`benchmarks.reference_stats`): the median is checked, the spread printed.

References: ``ref``/``ref-gzip`` are one thread reading and parsing our files by hand
(`benchmarks.read_local_reference`); ``litdata``/``litdata-shuffled`` iterate litdata 0.2.x's
``StreamingDataset``; ``core-gzip`` is squirrel-core 0.20.2; ``bound-*`` are the older bounds.

    python -m benchmarks.read_local            # full run: 20,000 samples, 5 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.read_local   # smoke run: 2,000 samples, 1 round

A pass alone: ``python -m benchmarks.read_local --pass ours [--small]`` prints one JSON line. Top-level
imports are standard library only: the squirrel-core and litdata passes import this module in their venvs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    format_table,
    measure,
    measure_async,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import CORE_VERSION, ensure_core_venv
from benchmarks.litdata_reference import PASSES as LITDATA
from benchmarks.litdata_reference import chunk_files as litdata_chunk_files
from benchmarks.litdata_reference import is_written as is_litdata_written
from benchmarks.litdata_venv import LITDATA_SPEC, LitdataUnavailable, ensure_litdata_venv
from benchmarks.read_local_reference import (
    decode_bound_pass,
    read_bound_pass,
    reference_pass,
    serial_bound_pass,
)
from benchmarks.reference_dataset import (
    FORMATS,
    IMAGE_BYTES,
    IMAGE_SHAPE,
    REPO_ROOT,
    SEED,
    Config,
    _import_core_driver,
    ensure_dataset,
    mean_shard_bytes,
    shard_files,
    warm_page_cache,
    write_core,
)
from benchmarks.reference_dataset import (
    WORK as WORK,
)
from benchmarks.reference_dataset import (
    shard_key as shard_key,
)
from benchmarks.reference_dataset import (
    shard_samples as shard_samples,
)
from benchmarks.reference_dataset import size_args as _size_args
from benchmarks.reference_stats import format_spread_table, goal_over_rounds, round_ratios, round_values

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

PREFETCH = 4
"""Shards our loader holds ahead of the consumer; the RSS goal is ``PREFETCH x shard size + 30 MB``."""
KEY_BUFFER, ITEM_BUFFER = 20, 1000
CORE_MAX_WORKERS = 4
RSS_SLACK_MB = 30
SHUFFLE_COST = 0.05
FIRST_SAMPLE_MS = 20

# -- passes ----------------------------------------------------------------------------------------


def _weigh_sample(sample: Any) -> tuple[int, int]:
    return 1, sample.value["image"].nbytes


def _weigh_dict(sample: dict[str, Any]) -> tuple[int, int]:
    return 1, sample["image"].nbytes


def _ours_pass(variant: str, fmt: str, shuffled: bool) -> Callable[[Config], PassResult]:
    compression = None if fmt == "ours" else "gzip"

    def run(config: Config) -> PassResult:
        from squirrel.driver import MessagePackDataLoader

        url = str(config.data / fmt)
        shuffle = {"shuffle_key_buffer": KEY_BUFFER, "shuffle_item_buffer": ITEM_BUFFER, "seed": SEED}
        options = shuffle if shuffled else {}

        def stream() -> Iterable[Any]:
            return MessagePackDataLoader(url, compression=compression).get_iter(prefetch=PREFETCH, **options)

        return measure(variant, stream, _weigh_sample)

    return run


def _core_pass(config: Config) -> PassResult:
    driver_class = _import_core_driver()
    url = str(config.data / "core")
    return measure("core-gzip", lambda: driver_class(url).get_iter(max_workers=CORE_MAX_WORKERS), _weigh_dict)


def _async_pass(config: Config) -> PassResult:
    """Our async face: ``async for`` over `AsyncMessagepackLoader.get_iter` on a fresh event loop."""
    import asyncio

    from squirrel.aio import AsyncMessagepackLoader

    async def run() -> PassResult:
        async with AsyncMessagepackLoader(str(config.data / "ours")) as loader:
            return await measure_async("ours-async", lambda: loader.get_iter(prefetch=PREFETCH), _weigh_sample)

    return asyncio.run(run())


def _reference_pass(variant: str, fmt: str) -> Callable[[Config], PassResult]:
    def run(config: Config) -> PassResult:
        return reference_pass(variant, shard_files(config, fmt), fmt == "ours-gzip", _weigh_dict)

    return run


def _read_bound_pass(config: Config) -> PassResult:
    return read_bound_pass(shard_files(config, "ours"), (config.shard_size, config.shard_size * IMAGE_BYTES))


PASSES: dict[str, Callable[[Config], PassResult]] = {
    "ours": _ours_pass("ours", "ours", shuffled=False),
    "ours-shuffled": _ours_pass("ours-shuffled", "ours", shuffled=True),
    "ours-gzip": _ours_pass("ours-gzip", "ours-gzip", shuffled=False),
    "ours-gzip-shuffled": _ours_pass("ours-gzip-shuffled", "ours-gzip", shuffled=True),
    "ours-async": _async_pass,
    "ref": _reference_pass("ref", "ours"),
    "ref-gzip": _reference_pass("ref-gzip", "ours-gzip"),
    "core-gzip": _core_pass,
    "bound-read": _read_bound_pass,
    "bound-decode": lambda config: decode_bound_pass(shard_files(config, "plain"), _weigh_dict),
    "bound-read+decode": lambda config: serial_bound_pass(shard_files(config, "plain"), _weigh_dict),
}
"""Variant -> pass. ``core-gzip`` runs under the core venv's python: 0.20.2's MessagepackDriver is gzip-only.
litdata's passes (`benchmarks.litdata_reference.PASSES`) run under the litdata venv's python."""

OURS = [name for name in PASSES if name.startswith("ours")]


# -- driver ----------------------------------------------------------------------------------------


def _module_command(python: Path | str, *args: str, module: str = "read_local") -> list[str]:
    return [str(python), "-m", f"benchmarks.{module}", *args]


def _run_module(python: Path | str, *args: str, module: str = "read_local") -> None:
    subprocess.run(_module_command(python, *args, module=module), cwd=REPO_ROOT, check=True)


def goals(config: Config, results: dict[str, list[PassResult]]) -> list[Goal]:
    """Issue 15's goals on local reads (numbered as there), then the earlier ones; each is checked on the
    median of its per-round values. litdata's are left out when its passes did not run."""

    def ratio(name: str, numerator: str, denominator: str, target: float) -> Goal:
        return goal_over_rounds(name, round_ratios(results[numerator], results[denominator]), target)

    def cost(name: str, shuffled: str, plain: str) -> Goal:
        costs = [1 - value for value in round_ratios(results[shuffled], results[plain])]
        return goal_over_rounds(name, costs, SHUFFLE_COST, at_most=True)

    def metric(name: str, variant: str, key: str, limit: float) -> Goal:
        return goal_over_rounds(name, round_values(results[variant], key), limit, at_most=True)

    found = [
        ratio("1. loader vs single-thread reference, x", "ours", "ref", 0.9),
        ratio("1. gzip loader vs single-thread gzip reference, x", "ours-gzip", "ref-gzip", 1.5),
    ]
    if "litdata" in results:
        found.append(ratio("2. loader vs litdata, x", "ours", "litdata", 3))
        found.append(ratio("2. shuffled loader vs litdata shuffled, x", "ours-shuffled", "litdata-shuffled", 3))
    found += [metric(f"3. first sample ms, {name}", name, "first_sample_ms", FIRST_SAMPLE_MS) for name in OURS]
    for name in OURS:
        limit = PREFETCH * mean_shard_bytes(config, "ours-gzip" if "gzip" in name else "ours") / MB + RSS_SLACK_MB
        found.append(metric(f"4. peak RSS above post-import MB, {name}", name, "peak_rss_mb", limit))
    return [
        *found,
        cost("5. shuffle cost", "ours-shuffled", "ours"),
        cost("5. shuffle cost, gzip", "ours-gzip-shuffled", "ours-gzip"),
        ratio("5. async pass vs sync pass, x", "ours-async", "ours", 0.95),
        ratio("earlier: loader vs squirrel-core (gzip), x", "ours", "core-gzip", 10),
        ratio("earlier: loader vs serial read+decode bound, x", "ours", "bound-read+decode", 1.2),
        ratio("earlier: gzip loader vs squirrel-core (gzip), x", "ours-gzip", "core-gzip", 1.8),
    ]


def _check(config: Config, results: dict[str, list[PassResult]]) -> None:
    """Every pass must have read every sample and its whole payload."""
    for name, passes in results.items():
        for result in passes:
            if (result.samples, result.payload_bytes) != (config.samples, config.samples * IMAGE_BYTES):
                raise RuntimeError(f"{name} read {result.samples} samples / {result.payload_bytes} B")


def _litdata_commands(config: Config) -> dict[str, list[str]]:
    """litdata's pass commands, its venv and dataset made first if missing; none (with a printed note) in a
    smoke run whose litdata venv cannot be built (offline). In a full run that failure is raised."""
    try:
        python = ensure_litdata_venv()
        if not is_litdata_written(config):
            _run_module(python, "--write", *_size_args(config), module="litdata_reference")
    except (LitdataUnavailable, subprocess.CalledProcessError) as exc:
        if not config.small:
            raise
        print(f"note: litdata skipped in this smoke run, its venv or dataset could not be made: {exc}", flush=True)
        return {}
    for path in litdata_chunk_files(config):
        path.read_bytes()  # warm page cache, as for every other format
    args = [*_size_args(config)]
    return {name: _module_command(python, "--pass", name, *args, module="litdata_reference") for name in LITDATA}


def run_benchmark(config: Config) -> dict[str, Any]:
    """Prepare everything, run the rounds, print the tables and goals, and write the JSON."""
    started = time.perf_counter()
    core_python = ensure_core_venv()
    written = ensure_dataset(config, core_python)
    warm_page_cache(config)
    commands = {name: _module_command(sys.executable, "--pass", name, *_size_args(config)) for name in PASSES}
    commands["core-gzip"] = _module_command(core_python, "--pass", "core-gzip", *_size_args(config))
    commands.update(_litdata_commands(config))
    loader = "MessagePackDataLoader.get_iter"
    data = f"written: {', '.join(written)}" if written else "reused"
    print(
        f"read_local: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s), "
        f"prefetch {PREFETCH}; ours read via {loader}; data {data}",
        flush=True,
    )
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    _check(config, results)

    rows = {name: medians(passes) for name, passes in results.items()}
    checked = goals(config, results)
    payload = config.samples * IMAGE_BYTES / MB
    print(f"\nmedians of {config.rounds} pass(es) each, fresh processes; payload {payload:,.2f} MB")
    print(format_table(rows))
    print(f"\nspread over the {config.rounds} round(s):")
    print(format_spread_table(results, ("samples_per_s", "first_sample_ms", "peak_rss_mb")))
    print("\ngoals (median of the per-round values; ratios are samples/s within a round):")
    for goal in checked:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "image_shape": IMAGE_SHAPE,
        "payload_mb": config.samples * IMAGE_BYTES / MB,
        "prefetch": PREFETCH,
        "shuffle_key_buffer": KEY_BUFFER,
        "shuffle_item_buffer": ITEM_BUFFER,
        "core_max_workers": CORE_MAX_WORKERS,
        "ours_reader": loader,
        "core": f"squirrel-core {CORE_VERSION} MessagepackDriver (gzip msgpack + msgpack-numpy)",
        "litdata": f"{LITDATA_SPEC} StreamingDataset" if "litdata" in results else "skipped",
        "shard_bytes": {fmt: mean_shard_bytes(config, fmt) for fmt in FORMATS},
    }
    return save_report(config.results, "read_local", settings, results, started, medians=rows, goals=checked)


def config_from(args: argparse.Namespace) -> Config:
    """The run's size: the flags, else ``SQUIRREL_BENCH_SMALL=1`` (2,000 samples, 1 round), else the full size."""
    small = args.small or os.environ.get("SQUIRREL_BENCH_SMALL", "") not in ("", "0")
    default = Config(samples=2_000, rounds=1) if small else Config()
    rounds = args.rounds or int(os.environ.get("SQUIRREL_BENCH_ROUNDS", default.rounds))
    return Config(args.samples or default.samples, args.shard_size or default.shard_size, rounds)


def parse_run_args(
    argv: list[str] | None,
    module: str,
    doc: str,
    passes: Iterable[str],
    default_rounds: int = 3,
    configure: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> tuple[argparse.Namespace, Config]:
    """The command line every benchmark module shares (size, rounds, one hidden ``--pass``), parsed;
    `configure` adds a module's own flags."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="smoke size: 2,000 samples, 1 round")
    parser.add_argument("--rounds", type=int, help=f"passes per variant (default {default_rounds})")
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shard-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pass", dest="pass_name", choices=list(passes), help=argparse.SUPPRESS)
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    config = config_from(args)
    if not args.rounds and not os.environ.get("SQUIRREL_BENCH_ROUNDS") and not config.small:
        config = dataclasses.replace(config, rounds=default_rounds)
    return args, config


def main(argv: list[str] | None = None) -> int:
    def write_core_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--write-core", action="store_true", help=argparse.SUPPRESS)

    args, config = parse_run_args(argv, "read_local", __doc__, PASSES, default_rounds=5, configure=write_core_flag)
    if args.pass_name:
        print(PASSES[args.pass_name](config).to_json(), flush=True)
    elif args.write_core:
        write_core(config)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
