"""Remote read benchmark (issue "Reliability"): the read benchmark's data on a local GCS server behind a
proxy that adds 20 ms to every request, read by this project's sync and async loaders and by squirrel-core
0.20.2's `MessagepackDriver`; plus an async service issuing 1,000 concurrent `store.get` calls, once with the
store's default connection pool (aiohttp's 100) and once with ``max_connections=1000``.

One fake-gcs-server (memory backend) and the delaying proxies run on 127.0.0.1 for the whole run: byte-for-byte
copies of read_local's shards (ours uncompressed, squirrel-core's gzip) and 1,000 small records are uploaded
straight to the server; every pass is a fresh process given only a proxy's URL, so the delay sits between
client and server, never in the client. Each variant has its own proxy, which counts the bytes it carries:
the run fails unless every variant's data went through it. Passes refuse any non-loopback connection.

    python -m benchmarks.read_gcs            # full run: 20,000 samples, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.read_gcs   # smoke run: 2,000 samples, 1 round

Top-level imports are standard library only: the squirrel-core passes run this module under the core venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    cpu_seconds,
    format_table,
    measure,
    measure_async,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import CORE_VERSION, ensure_core_venv
from benchmarks.delay_proxy import DelayProxy
from benchmarks.read_local import (
    IMAGE_BYTES,
    REPO_ROOT,
    WORK,
    Config,
    _check,
    _import_core_driver,
    _weigh_dict,
    _weigh_sample,
    ensure_dataset,
    parse_run_args,
    shard_files,
)

T = TypeVar("T")

DELAY_S = 0.020
BUCKET = "bench"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "read_gcs.json"
TUNED = {"max_concurrency": 16, "prefetch": 16}
"""Knobs of ``ours-sync-tuned``; the other passes of ours run the loaders' defaults."""
GOAL_X = 5.0
"""Each of our variants must read at least this many times squirrel-core's best samples/s."""

FORMAT_OF = {
    "ours-sync": "ours",
    "ours-sync-tuned": "ours",
    "ours-async": "ours",
    "core-w4": "core",
    "core-w16": "core",
}
"""Variant -> the dataset format it reads (``<bucket>/<format>/``); ``core-wN`` runs ``max_workers=N``."""
PASSES = tuple(FORMAT_OF)
OURS = tuple(name for name in PASSES if name.startswith("ours"))
CORE = tuple(name for name in PASSES if name.startswith("core"))

GETS = "gets"
"""The concurrent-gets service, run in a fresh process after the rounds, once per round."""
RECORDS = "records"
"""Folder of the records the service gets."""
GETS_WIDE = "gets-wide"
"""The same service with `WIDE_MAX_CONNECTIONS`: one connection per concurrent get."""
WIDE_MAX_CONNECTIONS = 1_000
CONCURRENT_GETS = 1_000
RECORD_FLOATS = 128
"""float64 values per record: a 1,024 B payload."""


def record_key(index: int) -> str:
    return f"r{index:05d}"


# -- passes (fresh processes; only a proxy's URL) ---------------------------------------------------


_refused: list[str] = []


def _is_loopback(host: str | bytes) -> bool:
    name = host.decode() if isinstance(host, bytes) else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_remote_network() -> None:
    """Make every name lookup or connection of this process beyond loopback fail, and remember it."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect" and isinstance(args[1], tuple):  # not AF_UNIX, whose address is a path
            host = args[1][0]
        else:
            return
        if host is not None and not _is_loopback(host):
            _refused.append(f"{event} {host!r}")
            raise RuntimeError(f"benchmark pass refused {event} to {host!r}: loopback only")

    sys.addaudithook(hook)


def _import_gcs_filesystem() -> None:
    """Import the gs:// filesystem class before the timed region: importing gcsfs takes ~0.2 s."""
    import fsspec

    fsspec.get_filesystem_class("gs")


def _ours_pass(name: str, endpoint: str) -> PassResult:
    url = f"gs://{BUCKET}/{FORMAT_OF[name]}"
    _import_gcs_filesystem()
    if name == "ours-async":
        from squirrel.aio import AsyncMessagepackLoader

        async def run() -> PassResult:
            async with AsyncMessagepackLoader(url, endpoint_url=endpoint) as loader:
                return await measure_async(name, loader.get_iter, _weigh_sample)

        return asyncio.run(run())
    from squirrel.driver import MessagePackDataLoader

    loader = MessagePackDataLoader(url, endpoint_url=endpoint)
    knobs = TUNED if name == "ours-sync-tuned" else {}
    return measure(name, lambda: loader.get_iter(**knobs), _weigh_sample)


def _core_pass(name: str, endpoint: str) -> PassResult:
    # Before gcsfs and google-auth are imported: the emulator endpoint is the proxy; gcsfs's plain class (its
    # default one asks Google's gRPC control API about each bucket). squirrel-core's own gs class drops the `token`
    # option, so gcsfs tries google-auth's default credentials: NO_GCE_CHECK keeps those from probing the metadata
    # server (169.254.169.254), and gcsfs then falls back to anonymous access.
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    os.environ["NO_GCE_CHECK"] = "true"
    driver = _import_core_driver()(f"gs://{BUCKET}/{FORMAT_OF[name]}")
    _import_gcs_filesystem()  # after the core driver: this loads squirrel-core's gs class
    workers = int(name.removeprefix("core-w"))
    return measure(name, lambda: driver.get_iter(max_workers=workers), _weigh_dict)


def _gets_pass(endpoint: str, max_connections: int | None = None) -> dict[str, float]:
    """An asyncio service: 1,000 tasks each running ``[s async for s in store.get(key)]`` at once.

    `max_connections` is the store's storage option (None: its default, aiohttp's 100 connections).
    """
    from squirrel.aio import AsyncRecordStore

    _import_gcs_filesystem()

    async def get(store: AsyncRecordStore, key: str) -> float:
        started = time.perf_counter()
        samples = [sample async for sample in store.get(key)]
        if len(samples) != 1 or samples[0].value["x"].size != RECORD_FLOATS:
            raise RuntimeError(f"store.get({key!r}) returned {samples!r}")
        return time.perf_counter() - started

    async def serve() -> tuple[float, float, list[float]]:
        limit = {} if max_connections is None else {"max_connections": max_connections}
        async with AsyncRecordStore(f"gs://{BUCKET}/{RECORDS}", endpoint_url=endpoint, **limit) as store:
            cpu0, started = cpu_seconds(), time.perf_counter()
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(get(store, record_key(i))) for i in range(CONCURRENT_GETS)]
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
        return seconds, cpu, [task.result() for task in tasks]

    seconds, cpu, latencies = asyncio.run(serve())
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "gets": len(latencies),
        "seconds": seconds,
        "cpu_s": cpu,
        "gets_per_s": len(latencies) / seconds,
        "p50_ms": 1e3 * cuts[49],
        "p99_ms": 1e3 * cuts[98],
    }


def run_pass(name: str, endpoint: str) -> str:
    """One pass of `name` against `endpoint` (a proxy), as a JSON line; fails if it reached beyond loopback."""
    refuse_remote_network()
    if name == GETS:
        line = json.dumps(_gets_pass(endpoint))
    elif name == GETS_WIDE:
        line = json.dumps(_gets_pass(endpoint, WIDE_MAX_CONNECTIONS))
    else:
        line = (_core_pass if name in CORE else _ours_pass)(name, endpoint).to_json()
    if _refused:
        raise RuntimeError(f"pass {name} tried to reach beyond loopback: {_refused}")
    return line


# -- driver ----------------------------------------------------------------------------------------


class MeteredProxy(DelayProxy):
    """A `DelayProxy` that counts the connections it serves and the reply bytes it carries to its clients."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__(upstream_port, delay)
        self.connections = 0
        self.reply_bytes = 0

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        write = client_writer.write

        def counted(data: bytes) -> None:
            self.reply_bytes += len(data)
            write(data)

        client_writer.write = counted  # type: ignore[method-assign]
        await super()._serve(client_reader, client_writer)


def upload(config: Config, server_url: str) -> dict[str, int]:
    """Copy ours and squirrel-core's shard files as they are and write the records; returns stored bytes per folder."""
    import gcsfs.core
    import numpy as np

    from squirrel.driver import RecordStore, Sample, Shard

    fs = gcsfs.core.GCSFileSystem(endpoint_url=server_url, token="anon")
    formats = sorted(set(FORMAT_OF.values()))
    for fmt in formats:
        for path in shard_files(config, fmt):
            fs.pipe_file(f"{BUCKET}/{fmt}/{path.name}", path.read_bytes())
    rng = np.random.default_rng(0)
    records = [Sample({"x": rng.random(RECORD_FLOATS)}, key=record_key(i)) for i in range(CONCURRENT_GETS)]
    RecordStore(f"gs://{BUCKET}/{RECORDS}", endpoint_url=server_url).set(Shard(records))  # one object each, at once
    return {folder: fs.du(f"{BUCKET}/{folder}") for folder in (*formats, RECORDS)}


def _pass_command(name: str, endpoint: str, core_python: Path) -> list[str]:
    python = core_python if name in CORE else Path(sys.executable)
    return [str(python), "-m", "benchmarks.read_gcs", "--pass", name, "--endpoint", endpoint]


def _run_gets(command: list[str]) -> dict[str, float]:
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_traffic(config: Config, sizes: dict[str, int], traffic: dict[str, dict[str, int]]) -> None:
    """Every pass must have read all its data through its own proxy: none went around the delay."""
    for name, folder in {**FORMAT_OF, GETS: RECORDS, GETS_WIDE: RECORDS}.items():
        expected = config.rounds * sizes[folder]
        if traffic[name]["reply_bytes"] < expected:
            raise RuntimeError(f"{name}: {traffic[name]} through its proxy, expected >= {expected:,} reply bytes")


def run_benchmark(config: Config) -> dict[str, Any]:
    """Start server and proxies, upload, run the interleaved rounds and the gets, print and save the figures."""
    from tests.gcs_server import GcsServer

    started = time.perf_counter()
    core_python = ensure_core_venv()
    written = ensure_dataset(config, core_python)
    server = GcsServer()
    server.start()
    try:
        server.create_bucket(BUCKET)
        sizes = upload(config, server.url)
        with contextlib.ExitStack() as stack:
            proxies = {
                name: stack.enter_context(MeteredProxy(server.port, DELAY_S)) for name in (*PASSES, GETS, GETS_WIDE)
            }
            print(
                f"read_gcs: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s); "
                f"fake-gcs-server {server.url} behind {len(proxies)} proxies adding {1e3 * DELAY_S:.0f} ms per "
                f"request; data {'written: ' + ', '.join(written) if written else 'reused'}",
                flush=True,
            )
            commands = {name: _pass_command(name, proxies[name].url, core_python) for name in PASSES}
            results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
            gets_runs: list[dict[str, float]] = []
            gets_wide_runs: list[dict[str, float]] = []
            for _ in range(config.rounds):  # interleaved, so both see the same machine
                gets_runs.append(_run_gets(_pass_command(GETS, proxies[GETS].url, core_python)))
                gets_wide_runs.append(_run_gets(_pass_command(GETS_WIDE, proxies[GETS_WIDE].url, core_python)))
            traffic = {
                name: {"connections": proxy.connections, "reply_bytes": proxy.reply_bytes}
                for name, proxy in proxies.items()
            }
    finally:
        server.stop()
    _check(config, results)
    check_traffic(config, sizes, traffic)

    rows = {name: medians(passes) for name, passes in results.items()}
    best_core = max(CORE, key=lambda name: rows[name]["samples_per_s"])
    ratio = {f"{name} / {best_core}": rows[name]["samples_per_s"] / rows[best_core]["samples_per_s"] for name in OURS}
    ratio["ours-sync-tuned / ours-sync"] = rows["ours-sync-tuned"]["samples_per_s"] / rows["ours-sync"]["samples_per_s"]
    ratio["core-w16 / core-w4"] = rows["core-w16"]["samples_per_s"] / rows["core-w4"]["samples_per_s"]
    goals = [
        Goal(f"{name} vs squirrel-core's best ({best_core}), x", ratio[f"{name} / {best_core}"], GOAL_X)
        for name in OURS
    ]
    gets = {figure: statistics.median(run[figure] for run in gets_runs) for figure in gets_runs[0]}
    gets_wide = {figure: statistics.median(run[figure] for run in gets_wide_runs) for figure in gets_wide_runs[0]}

    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print("\nratios (samples/s):")
    for name, value in ratio.items():
        print(f"  {name:<28} {value:8.2f}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    print("\nthrough each variant's own proxy, all rounds (checked: every pass's data came this way):")
    for name, seen in traffic.items():
        print(f"  {name:<16} {seen['reply_bytes'] / MB:8,.1f} MB in {seen['connections']:5,} connections")
    print(
        f"\n{CONCURRENT_GETS:,} concurrent store.get calls (one asyncio service, fresh process, median of "
        f"{len(gets_runs)}; floor: {1e3 * DELAY_S:.0f} ms per request):"
    )
    for label, figures in (("default (100)", gets), (f"max_connections={WIDE_MAX_CONNECTIONS:,}", gets_wide)):
        print(
            f"  {label:<22} {figures['gets_per_s']:8,.0f} gets/s, p50 {figures['p50_ms']:6.1f} ms, "
            f"p99 {figures['p99_ms']:6.1f} ms"
        )
    settings = {
        **dataclasses.asdict(config),
        "delay_s": DELAY_S,
        "ours_sync_tuned": TUNED,
        "core": f"squirrel-core {CORE_VERSION} MessagepackDriver (gzip msgpack + msgpack-numpy), anonymous",
        "dataset_bytes": sizes,
        "concurrent_gets": CONCURRENT_GETS,
        "concurrent_gets_wide_max_connections": WIDE_MAX_CONNECTIONS,
        "record_payload_bytes": RECORD_FLOATS * 8,
    }
    return save_report(
        WORK / "read_gcs-small.json" if config.small else RESULTS,
        "read_gcs",
        settings,
        results,
        started,
        medians=rows,
        ratios=ratio,
        goals=goals,
        concurrent_gets={"median": gets, "runs": gets_runs},
        concurrent_gets_wide={"max_connections": WIDE_MAX_CONNECTIONS, "median": gets_wide, "runs": gets_wide_runs},
        proxy_traffic=traffic,
    )


def main(argv: list[str] | None = None) -> int:
    def endpoint_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--endpoint", help=argparse.SUPPRESS)

    args, config = parse_run_args(argv, "read_gcs", __doc__, (*PASSES, GETS, GETS_WIDE), configure=endpoint_flag)
    if args.pass_name:
        print(run_pass(args.pass_name, args.endpoint), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
