"""Remote read benchmark (issues "Reliability" and 15, goal 6): gs:// reads against aiohttp and squirrel-core.

read_local's data on a local GCS server, read by this project's loaders, by squirrel-core 0.20.2's
`MessagepackDriver` and by plain aiohttp.

One fake-gcs-server (memory backend) runs on 127.0.0.1 for the whole run: byte-for-byte copies of
read_local's shards (ours uncompressed, squirrel-core's gzip) and 1,000 small records are uploaded straight
to it. Every pass is a fresh process given only an endpoint URL; passes refuse any non-loopback connection.
Three groups of passes, each run interleaved round-robin (`run_rounds`); goals are ratios taken within a
round, their median checked and their spread printed:

- Behind a proxy adding 20 ms to every request (each variant its own proxy, which counts the bytes it
  carries: the run fails unless every variant's data went through it, so none went around the delay):
  ``ours-sync`` (`MessagePackDataLoader.get_iter()`, defaults), ``ours-sync-tuned`` (`TUNED`),
  ``ours-async`` (`AsyncMessagepackLoader`), ``core-w4``/``core-w16`` (squirrel-core, 4/16 workers).
- Straight to the server, no added delay (``*-direct``): ``ours-sync-direct``, ``ours-async-direct`` and
  ``aiohttp-direct``, the transport reference: one `aiohttp.ClientSession` GETting the same shard objects
  from the same server, 8 at a time (``asyncio.Semaphore(8)``), at the JSON API media URL gcsfs itself
  requests (``/download/storage/v1/b/{bucket}/o/{quoted name}?alt=media``). The reference only downloads:
  no decoding, no listing (it takes the shard names from the local files; the loaders also list the folder
  and look for an index, two more requests). No proxy here: with no delay to add, a Python proxy would only
  spend a core copying bytes on this 2-core machine and cap both sides alike, hiding the loaders' own cost.
- 1,000 concurrent gets in one asyncio service (run after the reads, fresh process each, rotated per
  round): ``store.get`` of `AsyncRecordStore` through a 20 ms proxy, with the default pool (aiohttp's 100)
  and with ``max_connections=1000``; and straight to the server with the default pool (``gets-direct``)
  against ``aiohttp-gets-direct``: 1,000 tasks GETting the same objects at once over one
  `aiohttp.ClientSession` (default pool of 100 too), downloading only.

Goals: each of ours at least `GOAL_X` times squirrel-core's best (20 ms); issue 15's goal 6: with no
delay, sync and async loader each >= 0.8x ``aiohttp-direct``; with 20 ms, sync >= async and tuned >= the
default; 1,000 direct gets >= 0.9x plain aiohttp's, the store's p99 latency <= 2x its p50. The direct passes
take under a second each, so they run `DIRECT_ROUNDS_FACTOR` times as many rounds. Other work on the machine
shows in the spreads: the ratios cancel what hits both passes of a round alike, not the rest.

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
from typing import TYPE_CHECKING, Any, TypeVar

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
from benchmarks.reference_dataset import size_args
from benchmarks.reference_stats import format_spread_table, goal_over_rounds, round_ratios

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

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

DIRECT = "-direct"
"""Suffix of the passes that talk to the server straight, with no proxy and no added delay."""
REFERENCE = "aiohttp-direct"
"""Plain aiohttp downloading the shard objects the loaders read, `REFERENCE_WIDTH` at a time."""
DIRECT_PASSES = ("ours-sync-direct", "ours-async-direct", REFERENCE)
REFERENCE_WIDTH = 8
DIRECT_ROUNDS_FACTOR = 2
"""The direct passes and gets run this many times `Config.rounds` rounds: they are short, their spread wide."""
LOADER_VS_AIOHTTP = 0.8
SYNC_VS_ASYNC = 1.0
TUNED_VS_DEFAULT = 1.0
GETS_VS_AIOHTTP = 0.9
P99_OVER_P50 = 2.0

GETS = "gets"
"""The concurrent-gets service, run in a fresh process after the rounds, once per round."""
RECORDS = "records"
"""Folder of the records the service gets."""
GETS_WIDE = "gets-wide"
"""The same service with `WIDE_MAX_CONNECTIONS`: one connection per concurrent get."""
WIDE_MAX_CONNECTIONS = 1_000
GETS_DIRECT = "gets-direct"
"""The store's gets with its default pool, straight to the server."""
AIOHTTP_GETS = "aiohttp-gets-direct"
"""The same 1,000 GETs at once over one plain aiohttp session (default pool), straight to the server."""
CONCURRENT_GETS = 1_000
RECORD_FLOATS = 128
"""float64 values per record: a 1,024 B payload."""


def record_key(index: int) -> str:
    return f"r{index:05d}"


def record_object(index: int) -> str:
    """The object that holds record `index` in the bucket (the record store's layout: one object per key)."""
    return f"{RECORDS}/{record_key(index)}.msgpack"


def media_url(endpoint: str, name: str) -> str:
    """The JSON API download URL of object `name`, as gcsfs builds it (`GCSFileSystem.url`)."""
    from urllib.parse import quote

    return f"{endpoint}/download/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media"


# -- passes (fresh processes; only an endpoint's URL: a proxy's or the server's) -------------------


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
    """One pass of our loader `name` (a 20 ms variant, or its ``-direct`` twin), timed from `get_iter()` to the
    last sample."""
    base = name.removesuffix(DIRECT)
    url = f"gs://{BUCKET}/{FORMAT_OF[base]}"
    _import_gcs_filesystem()
    if base == "ours-async":
        from squirrel.aio import AsyncMessagepackLoader

        async def run() -> PassResult:
            async with AsyncMessagepackLoader(url, endpoint_url=endpoint) as loader:
                return await measure_async(name, loader.get_iter, _weigh_sample)

        return asyncio.run(run())
    from squirrel.driver import MessagePackDataLoader

    loader = MessagePackDataLoader(url, endpoint_url=endpoint)
    knobs = TUNED if base == "ours-sync-tuned" else {}
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


def _reference_pass(config: Config, endpoint: str) -> PassResult:
    """Plain aiohttp downloading our shard objects, `REFERENCE_WIDTH` at a time, no decoding: the transport's
    floor for the loaders' direct passes. Each object counts the samples it holds (``shard_size``) and its
    bytes; `RuntimeError` if an object's size differs from its local file's."""
    import aiohttp

    sizes = {f"{FORMAT_OF['ours-sync']}/{path.name}": path.stat().st_size for path in shard_files(config, "ours")}

    async def download(session: aiohttp.ClientSession, gate: asyncio.Semaphore, name: str) -> bytes:
        async with gate, session.get(media_url(endpoint, name)) as response:
            response.raise_for_status()
            body = await response.read()
        if len(body) != sizes[name]:
            raise RuntimeError(f"{name}: {len(body):,} B downloaded, {sizes[name]:,} B uploaded")
        return body

    async def downloads() -> AsyncIterator[bytes]:
        gate = asyncio.Semaphore(REFERENCE_WIDTH)
        async with aiohttp.ClientSession() as session:
            for done in asyncio.as_completed([download(session, gate, name) for name in sizes]):
                yield await done  # coroutines, not a task list: a body is dropped once consumed

    async def run() -> PassResult:
        return await measure_async(REFERENCE, downloads, lambda body: (config.shard_size, len(body)))

    return asyncio.run(run())


def _latency_figures(seconds: float, cpu: float, latencies: Sequence[float]) -> dict[str, float]:
    """Throughput and latency quantiles of one run of concurrent gets."""
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "gets": len(latencies),
        "seconds": seconds,
        "cpu_s": cpu,
        "gets_per_s": len(latencies) / seconds,
        "p50_ms": 1e3 * cuts[49],
        "p99_ms": 1e3 * cuts[98],
    }


def _aiohttp_gets_pass(endpoint: str) -> dict[str, float]:
    """1,000 tasks each GETting one record object at once over one plain aiohttp session (aiohttp's default pool,
    as the store's), downloading only; adds ``bytes``, the bodies' total. `aiohttp.ClientResponseError` on a
    failed GET."""
    import aiohttp

    async def get(session: aiohttp.ClientSession, index: int) -> tuple[float, int]:
        started = time.perf_counter()
        async with session.get(media_url(endpoint, record_object(index))) as response:
            response.raise_for_status()
            body = await response.read()
        return time.perf_counter() - started, len(body)

    async def serve() -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            cpu0, started = cpu_seconds(), time.perf_counter()
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(get(session, i)) for i in range(CONCURRENT_GETS)]
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
        figures = _latency_figures(seconds, cpu, [task.result()[0] for task in tasks])
        return {**figures, "bytes": sum(task.result()[1] for task in tasks)}

    return asyncio.run(serve())


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

    return _latency_figures(*asyncio.run(serve()))


def run_pass(name: str, endpoint: str, config: Config) -> str:
    """One pass of `name` against `endpoint` (a proxy or the server), as a JSON line; `RuntimeError` if it
    reached beyond loopback."""
    refuse_remote_network()
    if name in (GETS, GETS_DIRECT):
        line = json.dumps(_gets_pass(endpoint))
    elif name == GETS_WIDE:
        line = json.dumps(_gets_pass(endpoint, WIDE_MAX_CONNECTIONS))
    elif name == AIOHTTP_GETS:
        line = json.dumps(_aiohttp_gets_pass(endpoint))
    elif name == REFERENCE:
        line = _reference_pass(config, endpoint).to_json()
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


def _pass_command(name: str, endpoint: str, core_python: Path, config: Config) -> list[str]:
    python = core_python if name in CORE else Path(sys.executable)
    return [str(python), "-m", "benchmarks.read_gcs", "--pass", name, "--endpoint", endpoint, *size_args(config)]


def _run_gets(command: list[str]) -> dict[str, float]:
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gets_rounds(commands: dict[str, list[str]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Run each gets service `rounds` times in fresh processes, interleaved round-robin as `run_rounds` does
    (each round starting one later), so the services of a round see the same machine."""
    names = list(commands)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(_run_gets(commands[name]))
    return runs


def check_traffic(config: Config, sizes: dict[str, int], traffic: dict[str, dict[str, int]]) -> None:
    """Every proxied pass must have read all its data through its own proxy: none went around the delay."""
    for name, folder in {**FORMAT_OF, GETS: RECORDS, GETS_WIDE: RECORDS}.items():
        expected = config.rounds * sizes[folder]
        if traffic[name]["reply_bytes"] < expected:
            raise RuntimeError(f"{name}: {traffic[name]} through its proxy, expected >= {expected:,} reply bytes")


def check_direct(
    config: Config,
    sizes: dict[str, int],
    direct: dict[str, list[PassResult]],
    aiohttp_gets: Sequence[dict[str, float]],
) -> None:
    """Every direct loader pass read every sample; every reference pass downloaded every shard and record byte."""
    _check(config, {name: passes for name, passes in direct.items() if name != REFERENCE})
    for result in direct[REFERENCE]:
        if (result.samples, result.payload_bytes) != (config.samples, sizes["ours"]):
            raise RuntimeError(f"{REFERENCE} downloaded {result.samples} samples / {result.payload_bytes:,} B")
    for run in aiohttp_gets:
        if run["bytes"] != sizes[RECORDS]:
            raise RuntimeError(f"{AIOHTTP_GETS} downloaded {run['bytes']:,} B of {sizes[RECORDS]:,}")


def goal6(
    results: dict[str, list[PassResult]],
    direct: dict[str, list[PassResult]],
    direct_gets: dict[str, list[dict[str, float]]],
) -> tuple[list[Goal], dict[str, list[float]]]:
    """Issue 15's goal 6, each figure taken round by round (median checked, smallest and largest kept), and the
    per-round values by goal name."""
    store, plain = direct_gets[GETS_DIRECT], direct_gets[AIOHTTP_GETS]
    per_round = {
        "6. no delay: sync loader vs plain aiohttp, x": (
            round_ratios(direct["ours-sync-direct"], direct[REFERENCE]),
            LOADER_VS_AIOHTTP,
        ),
        "6. no delay: async loader vs plain aiohttp, x": (
            round_ratios(direct["ours-async-direct"], direct[REFERENCE]),
            LOADER_VS_AIOHTTP,
        ),
        "6. 20 ms: sync pass vs async pass, x": (
            round_ratios(results["ours-sync"], results["ours-async"]),
            SYNC_VS_ASYNC,
        ),
        "6. 20 ms: tuned sync vs default sync, x": (
            round_ratios(results["ours-sync-tuned"], results["ours-sync"]),
            TUNED_VS_DEFAULT,
        ),
        f"6. no delay: {CONCURRENT_GETS:,} store.get vs plain aiohttp GETs, x": (
            [ours["gets_per_s"] / ref["gets_per_s"] for ours, ref in zip(store, plain, strict=True)],
            GETS_VS_AIOHTTP,
        ),
    }
    found = [goal_over_rounds(name, values, target) for name, (values, target) in per_round.items()]
    p99_name = "6. no delay: store.get p99 / p50 latency"
    p99_values = [run["p99_ms"] / run["p50_ms"] for run in store]
    found.append(goal_over_rounds(p99_name, p99_values, P99_OVER_P50, at_most=True))
    return found, {**{name: values for name, (values, _) in per_round.items()}, p99_name: p99_values}


def _median_figures(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    return {figure: statistics.median(run[figure] for run in runs) for figure in runs[0]}


def _print_gets(label: str, runs: Sequence[dict[str, float]]) -> None:
    figures = _median_figures(runs)
    tails = [run["p99_ms"] / run["p50_ms"] for run in runs]
    print(
        f"  {label:<28} {figures['gets_per_s']:8,.0f} gets/s, p50 {figures['p50_ms']:6.1f} ms, "
        f"p99 {figures['p99_ms']:6.1f} ms, p99/p50 {statistics.median(tails):.2f} "
        f"({min(tails):.2f} .. {max(tails):.2f})"
    )


def run_benchmark(config: Config) -> dict[str, Any]:
    """Start server and proxies, upload, run the interleaved rounds and the gets, print and save the figures."""
    from tests.gcs_server import GcsServer

    started = time.perf_counter()
    core_python = ensure_core_venv()
    written = ensure_dataset(config, core_python)
    direct_rounds = config.rounds * DIRECT_ROUNDS_FACTOR
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
                f"read_gcs: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s) "
                f"({direct_rounds} of the direct passes); fake-gcs-server {server.url}, {len(proxies)} proxies "
                f"adding {1e3 * DELAY_S:.0f} ms per request; data "
                f"{'written: ' + ', '.join(written) if written else 'reused'}",
                flush=True,
            )

            def command(name: str, endpoint: str) -> list[str]:
                return _pass_command(name, endpoint, core_python, config)

            results = run_rounds({name: command(name, proxies[name].url) for name in PASSES}, config.rounds, REPO_ROOT)
            direct = run_rounds({name: command(name, server.url) for name in DIRECT_PASSES}, direct_rounds, REPO_ROOT)
            gets = gets_rounds({name: command(name, proxies[name].url) for name in (GETS, GETS_WIDE)}, config.rounds)
            direct_gets = gets_rounds(
                {name: command(name, server.url) for name in (GETS_DIRECT, AIOHTTP_GETS)}, direct_rounds
            )
            traffic = {
                name: {"connections": proxy.connections, "reply_bytes": proxy.reply_bytes}
                for name, proxy in proxies.items()
            }
    finally:
        server.stop()
    _check(config, results)
    check_traffic(config, sizes, traffic)
    check_direct(config, sizes, direct, direct_gets[AIOHTTP_GETS])

    rows = {name: medians(passes) for name, passes in results.items()}
    direct_rows = {name: medians(passes) for name, passes in direct.items()}
    best_core = max(CORE, key=lambda name: rows[name]["samples_per_s"])
    ratio = {f"{name} / {best_core}": rows[name]["samples_per_s"] / rows[best_core]["samples_per_s"] for name in OURS}
    ratio["ours-sync-tuned / ours-sync"] = rows["ours-sync-tuned"]["samples_per_s"] / rows["ours-sync"]["samples_per_s"]
    ratio["core-w16 / core-w4"] = rows["core-w16"]["samples_per_s"] / rows["core-w4"]["samples_per_s"]
    goals, goal6_rounds = goal6(results, direct, direct_gets)
    goals = [
        Goal(f"{name} vs squirrel-core's best ({best_core}), 20 ms, x", ratio[f"{name} / {best_core}"], GOAL_X)
        for name in OURS
    ] + goals

    print(
        f"\n20 ms proxy: medians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB"
    )
    print(format_table(rows))
    print(f"\nno added delay, straight to the server: medians of {direct_rounds} pass(es) each")
    print(format_table(direct_rows))
    print(f"({REFERENCE}: MB/s of whole objects, msgpack framing included; the loaders count image bytes)")
    print(format_spread_table({**results, **direct}))
    print("\nratios of medians (samples/s):")
    for name, value in ratio.items():
        print(f"  {name:<28} {value:8.2f}")
    print("\nthrough each variant's own proxy, all rounds (checked: every pass's data came this way):")
    for name, seen in traffic.items():
        print(f"  {name:<16} {seen['reply_bytes'] / MB:8,.1f} MB in {seen['connections']:5,} connections")
    print(f"\n{CONCURRENT_GETS:,} concurrent gets (one asyncio service, fresh process, medians; rounds min .. max):")
    print(f"  through a {1e3 * DELAY_S:.0f} ms proxy, {config.rounds} round(s), store.get:")
    _print_gets("default pool (100)", gets[GETS])
    _print_gets(f"max_connections={WIDE_MAX_CONNECTIONS:,}", gets[GETS_WIDE])
    print(f"  no added delay, {direct_rounds} round(s), default pool (100):")
    _print_gets("store.get", direct_gets[GETS_DIRECT])
    _print_gets("plain aiohttp GET", direct_gets[AIOHTTP_GETS])
    print("\ngoals (median of the per-round values; rounds min .. max):")
    for goal in goals:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "direct_rounds": direct_rounds,
        "delay_s": DELAY_S,
        "ours_sync_tuned": TUNED,
        "core": f"squirrel-core {CORE_VERSION} MessagepackDriver (gzip msgpack + msgpack-numpy), anonymous",
        "reference": f"plain aiohttp, {REFERENCE_WIDTH} GETs at a time, no decoding, straight to the server",
        "dataset_bytes": sizes,
        "concurrent_gets": CONCURRENT_GETS,
        "concurrent_gets_wide_max_connections": WIDE_MAX_CONNECTIONS,
        "record_payload_bytes": RECORD_FLOATS * 8,
    }
    return save_report(
        WORK / "read_gcs-small.json" if config.small else RESULTS,
        "read_gcs",
        settings,
        {**results, **direct},
        started,
        medians={**rows, **direct_rows},
        ratios=ratio,
        goal6_rounds=goal6_rounds,
        goals=goals,
        concurrent_gets={"median": _median_figures(gets[GETS]), "runs": gets[GETS]},
        concurrent_gets_wide={
            "max_connections": WIDE_MAX_CONNECTIONS,
            "median": _median_figures(gets[GETS_WIDE]),
            "runs": gets[GETS_WIDE],
        },
        concurrent_gets_direct={
            name: {"median": _median_figures(runs), "runs": runs} for name, runs in direct_gets.items()
        },
        proxy_traffic=traffic,
    )


def main(argv: list[str] | None = None) -> int:
    def endpoint_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--endpoint", help=argparse.SUPPRESS)

    every_pass = (*PASSES, *DIRECT_PASSES, GETS, GETS_WIDE, GETS_DIRECT, AIOHTTP_GETS)
    args, config = parse_run_args(argv, "read_gcs", __doc__, every_pass, configure=endpoint_flag)
    if args.pass_name:
        print(run_pass(args.pass_name, args.endpoint, config), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
