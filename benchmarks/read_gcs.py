"""Remote read benchmark (issue "Reliability"): the read benchmark's data on a local GCS server behind a
proxy that adds 20 ms to every request, read by this project's sync and async loaders and by squirrel-core
0.20.2's `MessagepackDriver`; plus an async service issuing 1,000 concurrent `store.get` calls.

The server (fake-gcs-server) and the delaying proxy run on 127.0.0.1 in this process; every pass is a fresh
process given the proxy's URL, so the delay sits between client and server, never in the client.

    python -m benchmarks.read_gcs            # full run: 20,000 samples, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.read_gcs
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    RssSampler,
    cpu_seconds,
    format_table,
    measure,
    medians,
    rss_bytes,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import ensure_core_venv
from benchmarks.delay_proxy import DelayProxy
from benchmarks.read_local import (
    IMAGE_BYTES,
    REPO_ROOT,
    WORK,
    Config,
    _import_core_driver,
    _weigh_dict,
    _weigh_sample,
    ensure_dataset,
    parse_run_args,
    shard_files,
)

DELAY_S = 0.020
BUCKET = "bench"
CONCURRENT_GETS = 1_000
RESULTS = REPO_ROOT / "benchmarks" / "results" / "read_gcs.json"
TUNED = {"max_concurrency": 32, "prefetch": 32}


def _ours_sync(config: Config, endpoint: str, tuned: bool) -> PassResult:
    from squirrel.driver import MessagePackDataLoader

    loader = MessagePackDataLoader(f"gs://{BUCKET}/ours", endpoint_url=endpoint)
    knobs = TUNED if tuned else {}
    return measure("ours-sync-tuned" if tuned else "ours-sync", lambda: loader.get_iter(**knobs), _weigh_sample)


def _ours_async(config: Config, endpoint: str) -> PassResult:
    """`async for` over the async loader on this process's own event loop, timed like `measure` does."""
    from squirrel.aio import AsyncMessagepackLoader

    async def consume() -> tuple[int, int, float | None, float]:
        samples = payload = 0
        first = None
        start = time.perf_counter()
        async with AsyncMessagepackLoader(f"gs://{BUCKET}/ours", endpoint_url=endpoint) as loader:
            async for sample in loader.get_iter(**TUNED):
                first = first if first is not None else time.perf_counter() - start
                samples += 1
                payload += sample.value["image"].nbytes
        return samples, payload, first, time.perf_counter() - start

    baseline = rss_bytes()
    with RssSampler() as sampler:
        cpu0 = cpu_seconds()
        samples, payload, first, seconds = asyncio.run(consume())
        cpu = cpu_seconds() - cpu0
    return PassResult("ours-async", samples, payload, seconds, cpu, first or seconds, baseline, sampler.peak)


def _core(config: Config, endpoint: str, workers: int) -> PassResult:
    # Before gcsfs is imported: talk to the proxy, and skip gcsfs's gRPC bucket-type lookup (it would stall
    # against a local server); anonymous credentials so nothing looks for a metadata server.
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    driver_class = _import_core_driver()
    driver = driver_class(f"gs://{BUCKET}/core", storage_options={"token": "anon"})
    return measure(f"core-w{workers}", lambda: driver.get_iter(max_workers=workers), _weigh_dict)


def _concurrent_gets(endpoint: str) -> dict[str, float]:
    """1,000 concurrent `store.get` calls from one asyncio service: throughput and latency percentiles."""
    from squirrel.aio import AsyncRecordStore

    async def serve() -> dict[str, float]:
        async with AsyncRecordStore(f"gs://{BUCKET}/records", endpoint_url=endpoint) as store:
            keys = await store.list_keys()

            async def get(key: str) -> float:
                started = time.perf_counter()
                samples = [sample async for sample in store.get(key)]
                assert len(samples) == 1
                return time.perf_counter() - started

            started = time.perf_counter()
            latencies = await asyncio.gather(*(get(key) for key in keys[:CONCURRENT_GETS]))
            seconds = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100)
        return {
            "gets": len(latencies),
            "gets_per_s": len(latencies) / seconds,
            "p50_ms": 1e3 * cuts[49],
            "p99_ms": 1e3 * cuts[98],
        }

    return asyncio.run(serve())


PASSES = ("ours-sync", "ours-sync-tuned", "ours-async", "core-w4", "core-w16")


def run_pass(name: str, config: Config, endpoint: str) -> PassResult:
    """One pass of variant `name` against `endpoint` (the proxy)."""
    if name.startswith("core-w"):
        return _core(config, endpoint, int(name.removeprefix("core-w")))
    if name == "ours-async":
        return _ours_async(config, endpoint)
    return _ours_sync(config, endpoint, tuned=name == "ours-sync-tuned")


def upload(config: Config, server_url: str) -> None:
    """Byte-for-byte copies of the local shards (ours and squirrel-core's) and 1,000 small records."""
    import gcsfs.core
    import numpy as np

    from squirrel.driver import RecordStore, Sample, Shard

    fs = gcsfs.core.GCSFileSystem(endpoint_url=server_url, token="anon")
    fs.mkdir(BUCKET)
    for fmt in ("ours", "core"):
        for path in shard_files(config, fmt):
            fs.pipe_file(f"{BUCKET}/{fmt}/{path.name}", path.read_bytes())
    rng = np.random.default_rng(0)
    records = Shard([Sample({"x": rng.random(128)}, key=f"r{i:05d}") for i in range(CONCURRENT_GETS)])
    RecordStore(f"gs://{BUCKET}/records", endpoint_url=server_url).set(records)  # one object each, concurrently


def _pass_command(python: Path | str, name: str, config: Config, endpoint: str) -> list[str]:
    sizes = ["--samples", str(config.samples), "--shard-size", str(config.shard_size)]
    return [str(python), "-m", "benchmarks.read_gcs", "--pass", name, "--endpoint", endpoint, *sizes]


def run_benchmark(config: Config) -> dict[str, Any]:
    """Start server and proxy, upload, run the interleaved rounds, print and save the figures."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.gcs_server import GcsServer

    started = time.perf_counter()
    core_python = ensure_core_venv()
    ensure_dataset(config, core_python)
    server = GcsServer()
    server.start()
    try:
        upload(config, server.url)
        with DelayProxy(server.port, DELAY_S) as proxy:
            print(
                f"read_gcs: {config.samples:,} samples, {config.rounds} round(s), {1e3 * DELAY_S:.0f} ms per request "
                f"via {proxy.url} -> {server.url}",
                flush=True,
            )
            commands = {
                name: _pass_command(core_python if name.startswith("core") else sys.executable, name, config, proxy.url)
                for name in PASSES
            }
            results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
            gets = _concurrent_gets(proxy.url)
    finally:
        server.stop()
    rows = {name: medians(passes) for name, passes in results.items()}
    best_core = max(rows["core-w4"]["samples_per_s"], rows["core-w16"]["samples_per_s"])
    ratio = {f"{name} / best core": rows[name]["samples_per_s"] / best_core for name in PASSES[:3]}
    goals = [Goal(f"{name} vs squirrel-core's best, x", value, 5.0) for name, value in ratio.items()]
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print("\nratios (samples/s):")
    for name, value in ratio.items():
        print(f"  {name:<28} {value:8.2f}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    print(
        f"\n{gets['gets']:,} concurrent store.get calls (async service, one loop): {gets['gets_per_s']:,.0f} gets/s, "
        f"p50 {gets['p50_ms']:.1f} ms, p99 {gets['p99_ms']:.1f} ms (each request pays {1e3 * DELAY_S:.0f} ms)"
    )
    results_path = WORK / "read_gcs-small.json" if config.small else RESULTS
    settings = {**dataclasses.asdict(config), "delay_s": DELAY_S, "tuned": TUNED}
    figures = {"medians": rows, "ratios": ratio, "goals": [goal.to_dict() for goal in goals], "concurrent_gets": gets}
    return save_report(results_path, "read_gcs", settings, results, started, **figures)


def main(argv: list[str] | None = None) -> int:
    def endpoint_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--endpoint", help=argparse.SUPPRESS)

    args, config = parse_run_args(argv, "read_gcs", __doc__, PASSES, configure=endpoint_flag)
    if args.pass_name:
        print(run_pass(args.pass_name, config, args.endpoint).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
