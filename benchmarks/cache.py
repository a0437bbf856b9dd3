"""Shard cache benchmark (issue 13 §1): a messagepack store on a local GCS server behind a proxy adding 20 ms
to every request, read by the sync loader with ``get_iter(cache_dir=..., cache_limit=...)``.

Variants, each pass a fresh process, interleaved round-robin:

- ``local``: the same shards read from local disk (the reference of a warm cache);
- ``remote``: gs:// through the proxy, no cache;
- ``cold``: gs:// through the proxy with an empty cache (the first epoch: every shard fetched and cached);
- ``warm``: gs:// through the proxy with the cache a ``cold`` pass filled (a later epoch).

Each remote variant has its own proxy, which counts the HTTP requests it forwards (shard downloads apart from
the rest: index, listing). Goals: warm reaches 0.8x local and sends no shard request; cold is no slower than
remote by more than 10% (0.9x). Ratios are taken round by round and the goal checks their median.

    python -m benchmarks.cache            # 48,000 samples (~600 MB in 240 shards), 3 rounds
    python -m benchmarks.cache --small    # smoke run: 2,000 samples, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._measure import MB, Goal, PassResult, format_table, measure, medians, run_rounds, save_report
from benchmarks.delay_proxy import DelayProxy

if TYPE_CHECKING:
    import asyncio

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK = REPO_ROOT / "benchmarks" / ".work" / "cache"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "cache.json"
DELAY_S = 0.020
BUCKET = "bench-cache"
IMAGE_SHAPE = (64, 64, 3)
CACHE_LIMIT = 10 * 2**30
"""Holds the whole dataset: the benchmark measures hits, not eviction."""

PASSES = ("local", "remote", "cold", "warm")
REMOTE = ("remote", "cold", "warm")
WARM_X, COLD_X = 0.8, 0.9
SAMPLES = 48_000
"""About 600 MB in 240 shards. Every pass asks the store what it holds now (its index: one request, 20 ms
through the proxy) before a hit can be served; on the 150 MB this benchmark first used, a local pass took
80 ms, so that one round trip weighed a fifth of the ratio (warm 0.75x there, 0.89x at this size)."""

_REQUEST_LINE = re.compile(rb"(?:GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n")


# -- passes (fresh processes) -------------------------------------------------------------------------


def _weigh(sample: Any) -> tuple[int, int]:
    return 1, sample.value["image"].nbytes


def run_pass(name: str, endpoint: str, data: Path) -> PassResult:
    """One pass of variant `name`; the cache folders live beside the local copy `data`."""
    import fsspec

    from squirrel.driver import MessagePackDataLoader

    fsspec.get_filesystem_class("gs")  # imported before the timed region
    if name == "local":
        return measure(name, MessagePackDataLoader(str(data)).get_iter, _weigh)
    cache: dict[str, Any] = {}
    if name in ("cold", "warm"):
        folder = data.parent / f"cache-{name}"
        if name == "cold":
            shutil.rmtree(folder, ignore_errors=True)
        cache = {"cache_dir": str(folder), "cache_limit": CACHE_LIMIT}
    loader = MessagePackDataLoader(f"gs://{BUCKET}/data", endpoint_url=endpoint)
    return measure(name, lambda: loader.get_iter(**cache), _weigh)


# -- driver --------------------------------------------------------------------------------------------


class CountingProxy(DelayProxy):
    """A `DelayProxy` that counts the HTTP requests it forwards, shard downloads apart from the rest."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__(upstream_port, delay)
        self.shard_requests = 0
        self.other_requests = 0

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        read = client_reader.read
        tail = b""

        async def counted(size: int = -1) -> bytes:
            nonlocal tail
            chunk = await read(size)
            seen = tail + chunk
            for match in _REQUEST_LINE.finditer(seen):
                path = match.group(1)
                if b"/download/" in path and b".msgpack" in path:
                    self.shard_requests += 1
                else:
                    self.other_requests += 1
            cut = seen.rfind(b"\r\n")  # keep what follows the last line end: a request line cut between chunks
            tail = seen[cut + 2 :][-256:] if cut >= 0 else seen[-256:]
            return chunk

        client_reader.read = counted  # type: ignore[method-assign]
        await super()._serve(client_reader, client_writer)


def write_dataset(samples: int, shard_size: int) -> Path:
    """The dataset in a local folder (written once per size, with its index)."""
    import numpy as np

    from squirrel.driver import MessagepackStore, Sample, Shard

    data = WORK / f"data-{samples}-{shard_size}"
    done = data / ".complete"
    if done.exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    store = MessagepackStore(str(data))
    rng = np.random.default_rng(0)
    for shard in range(samples // shard_size):
        images = rng.integers(0, 255, (shard_size, *IMAGE_SHAPE), dtype=np.uint8)
        store.set(
            Shard([Sample({"image": image, "label": i}, f"s{shard:04d}_{i:05d}") for i, image in enumerate(images)])
        )
    store.write_index()
    done.touch()
    return data


def upload(data: Path, server_url: str) -> int:
    """Copy every file of `data` (shards and index) to the bucket as they are; returns the bytes copied."""
    import gcsfs.core

    from squirrel.index import INDEX_NAME

    fs = gcsfs.core.GCSFileSystem(endpoint_url=server_url, token="anon")  # the plain class: no gRPC probe
    total = 0
    for path in [*sorted(data.glob("*.msgpack")), data / INDEX_NAME]:
        fs.pipe_file(f"{BUCKET}/data/{path.name}", path.read_bytes())
        total += path.stat().st_size
    return total


def goals(results: dict[str, list[PassResult]], warm_shard_requests: int) -> list[Goal]:
    def ratio(name: str, numerator: str, denominator: str, target: float) -> Goal:
        values = [
            a.samples_per_s / b.samples_per_s for a, b in zip(results[numerator], results[denominator], strict=True)
        ]
        return Goal(name, statistics.median(values), target, low=min(values), high=max(values))

    return [
        ratio("warm cache vs local disk, x", "warm", "local", WARM_X),
        ratio("first epoch with a cache vs without, x", "cold", "remote", COLD_X),
        Goal("shard requests of the warm epochs", warm_shard_requests, 0, at_most=True),
    ]


def run_benchmark(samples: int, shard_size: int, rounds: int) -> dict[str, Any]:
    from tests.gcs_server import GcsServer

    started = time.perf_counter()
    data = write_dataset(samples, shard_size)
    server = GcsServer()
    server.start()
    try:
        server.create_bucket(BUCKET)
        stored = upload(data, server.url)
        with contextlib.ExitStack() as stack:
            proxies = {name: stack.enter_context(CountingProxy(server.port, DELAY_S)) for name in REMOTE}
            print(
                f"cache: {samples:,} samples in {samples // shard_size} shards ({stored / MB:,.1f} MB), {rounds} "
                f"round(s); fake-gcs-server behind proxies adding {1e3 * DELAY_S:.0f} ms per request",
                flush=True,
            )
            command = [sys.executable, "-m", "benchmarks.cache", "--data", str(data)]
            run_rounds({"fill": [*command, "--pass", "cold", "--endpoint", proxies["warm"].url]}, 1, REPO_ROOT, False)
            shutil.rmtree(data.parent / "cache-warm", ignore_errors=True)
            (data.parent / "cache-cold").rename(data.parent / "cache-warm")
            filled = {"shard": proxies["warm"].shard_requests, "other": proxies["warm"].other_requests}
            commands = {
                name: [*command, "--pass", name, "--endpoint", proxies[name].url if name in REMOTE else ""]
                for name in PASSES
            }
            results = run_rounds(commands, rounds, cwd=REPO_ROOT)
            requests = {
                name: {"shard": proxy.shard_requests, "other": proxy.other_requests} for name, proxy in proxies.items()
            }
    finally:
        server.stop()
    for kind, count in filled.items():  # the fill pass's requests, before the timed rounds
        requests["warm"][kind] -= count
    found = goals(results, requests["warm"]["shard"])
    rows = {name: medians(passes) for name, passes in results.items()}
    print(f"\nmedians of {rounds} pass(es) each")
    print(format_table(rows, ("samples_per_s", "mb_per_s", "cpu_s", "first_sample_ms")))
    print("\nrequests per pass at each proxy (shard downloads / index, listing and metadata):")
    for name, counts in requests.items():
        print(f"  {name:<8} {counts['shard'] / rounds:8,.1f} / {counts['other'] / rounds:,.1f}")
    print("\ngoals:")
    for goal in found:
        print(f"  {goal}")
    settings = {"samples": samples, "shard_size": shard_size, "rounds": rounds, "delay_s": DELAY_S, "bytes": stored}
    return save_report(
        WORK / "cache-small.json" if samples < 12_000 else RESULTS,
        "cache",
        settings,
        results,
        started,
        found,
        medians=rows,
        requests=requests,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="smoke size: 2,000 samples, 1 round")
    parser.add_argument("--rounds", type=int, help="passes per variant (default 3)")
    parser.add_argument("--samples", type=int, help=f"samples in the dataset (default {SAMPLES:,})")
    parser.add_argument("--pass", dest="pass_name", choices=PASSES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pass_name:
        print(run_pass(args.pass_name, args.endpoint, args.data).to_json(), flush=True)
        return 0
    samples, shard_size = (2_000, 100) if args.small else (args.samples or SAMPLES, 200)
    run_benchmark(samples, shard_size, args.rounds or (1 if args.small else 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
