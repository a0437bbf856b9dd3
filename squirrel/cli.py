"""The `squirrel` command: inspect, index, convert and benchmark stores from a shell.

Errors print one line and exit 1 (``--debug`` shows the traceback). Progress bars appear only when
standard error is a terminal, so piped output stays clean.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel._runtime import run_sync
from squirrel.driver import (
    CsvLoader,
    CsvStore,
    JsonlLoader,
    JsonlStore,
    MessagePackDataLoader,
    MessagepackStore,
    RecordLoader,
    RecordStore,
)
from squirrel.errors import SquirrelError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DRIVERS",
    "build_parser",
    "cmd_bench",
    "cmd_cat",
    "cmd_convert",
    "cmd_demo",
    "cmd_index",
    "cmd_ls",
    "main",
    "shard_rows",
    "summarise",
    "verify_store",
]

DRIVERS: dict[str, tuple[type[RecordStore], type[RecordLoader]]] = {
    "messagepack": (MessagepackStore, MessagePackDataLoader),
    "jsonl": (JsonlStore, JsonlLoader),
    "record": (RecordStore, RecordLoader),
    "csv": (CsvStore, CsvLoader),
}


def _progress() -> bool:
    return sys.stderr.isatty()


def _store(args: argparse.Namespace, url: str | None = None) -> RecordStore:
    store_class, _ = DRIVERS[args.driver]
    options: dict[str, Any] = {"format": args.format} if args.format != "squirrel" else {}
    return store_class(url or args.url, args.compression, **options)


def summarise(value: Any) -> Any:
    """A JSON-friendly view of a sample value: arrays become ``"uint8[64, 64, 3]"``, bytes their length."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): summarise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [summarise(v) for v in value]
    return value


def cmd_ls(args: argparse.Namespace) -> None:
    """Shards with sample counts and stored sizes."""
    from tqdm.auto import tqdm

    store = _store(args)
    rows = run_sync(shard_rows(store.aio))
    for key, samples, size in tqdm(rows, disable=not _progress(), unit="shard"):
        print(f"{key}\t{samples}\t{size}")
    print(f"{len(rows)} shards, {sum(r[1] for r in rows)} samples, {sum(r[2] for r in rows)} bytes", file=sys.stderr)


async def shard_rows(store: Any) -> list[tuple[str, int, int]]:
    """(key, sample count, stored bytes) for every object of `store`: from its index when it has one,
    else by reading the objects concurrently."""
    from squirrel.aio.stream import AsyncIterableSource

    index = await store.read_index()
    if index is not None:
        return [(entry.key, entry.samples, entry.size) for entry in index.entries]

    async def row(key: str) -> tuple[str, int, int]:
        data = await store.read_bytes(key)
        return key, len(store.decode(key, data)), len(data)

    keys = await store.list_keys()
    return await AsyncIterableSource(keys).async_map(row, max_concurrency=16).collect()


def cmd_index(args: argparse.Namespace) -> None:
    """Build the store's index, or with --verify check every object against it."""
    store = _store(args)
    if not args.verify:
        index = store.write_index()
        print(f"indexed {len(index)} objects, {index.num_samples} samples: {store.aio.index_url}", file=sys.stderr)
        return
    problems = run_sync(verify_store(store.aio))
    for problem in problems:
        print(problem)
    if problems:
        raise SquirrelError(f"{len(problems)} problem(s) against the index {store.aio.index_url}")
    print("index matches every object", file=sys.stderr)


async def verify_store(store: Any) -> list[str]:
    """Every disagreement between the store's objects and its index (missing, unlisted, changed)."""
    from squirrel.aio.stream import AsyncIterableSource
    from squirrel.index import verify_object

    index = await store.read_index()
    if index is None:
        raise SquirrelError(f"{store.url} has no index: build it with `squirrel index {store.url}`")
    listed = set(await store.list_objects())
    problems = [f"unlisted: {store.object_url(k)}" for k in sorted(listed - set(index.keys))]
    problems += [f"missing: {store.object_url(k)}" for k in index.keys if k not in listed]

    async def check(key: str) -> str | None:
        data = await store.read_bytes(key)
        try:
            verify_object(index.get(key), data, store.object_url(key), store.index_url)
        except SquirrelError as error:
            return f"changed: {error}"
        return None

    present = [k for k in index.keys if k in listed]
    results = await AsyncIterableSource(present).async_map(check, max_concurrency=16).collect()
    return problems + [r for r in results if r]


def cmd_cat(args: argparse.Namespace) -> None:
    """The samples of one shard, arrays summarised as dtype and shape."""
    for sample in _store(args).get(args.key):
        record = {"key": sample.key, "value": summarise(sample.value)}
        print(json.dumps(record) if args.json else f"{sample.key}: {record['value']}")


def cmd_convert(args: argparse.Namespace) -> None:
    """Stream every sample of SRC into shards of `--shard-size` in DST, with bounded memory."""
    from squirrel.sample import Shard

    _, loader_class = DRIVERS[args.driver]
    options: dict[str, Any] = {"format": args.format} if args.format != "squirrel" else {}
    source = loader_class(args.url, args.compression, **options).get_iter()
    target_class, _ = DRIVERS[args.to]
    target = target_class(args.dst, args.to_compression)
    stream = source.tqdm(disable=not _progress(), unit="sample") if _progress() else source
    written = 0
    for index, batch in enumerate(stream.batched(args.shard_size)):
        target.set(Shard(batch, key=f"shard_{index:06d}"))
        written += len(batch)
    print(f"wrote {written} samples to {args.dst}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> None:
    """Read throughput of a store with the given knobs."""
    _, loader_class = DRIVERS[args.driver]
    options: dict[str, Any] = {"format": args.format} if args.format != "squirrel" else {}
    loader = loader_class(args.url, args.compression, **options)
    started = time.perf_counter()
    first = None
    count = 0
    for _ in loader.get_iter(max_concurrency=args.max_concurrency, prefetch=args.prefetch):
        count += 1
        first = first or time.perf_counter() - started
    elapsed = time.perf_counter() - started
    first_ms = 1000 * (first or 0)
    print(f"{count} samples in {elapsed:.2f} s: {count / elapsed:,.0f} samples/s, first after {first_ms:.0f} ms")


def cmd_demo(args: argparse.Namespace) -> None:
    """What `make demo` runs."""
    from squirrel.demo import main

    main(args.folder)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `squirrel` command."""
    parser = argparse.ArgumentParser(prog="squirrel", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_store(name: str, help: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("url")
        command.add_argument("--driver", choices=sorted(DRIVERS), default="messagepack")
        command.add_argument("--compression", choices=["gzip"], default=None)
        command.add_argument("--format", choices=["squirrel", "squirrel-core"], default="squirrel")
        return command

    with_store("ls", "list shards with sample counts and sizes").set_defaults(run=cmd_ls)
    index = with_store("index", "build the store's index, or check objects against it")
    index.add_argument("--verify", action="store_true", help="check every object against the index")
    index.set_defaults(run=cmd_index)
    cat = with_store("cat", "print the samples of a shard")
    cat.add_argument("key")
    cat.add_argument("--json", action="store_true", help="one JSON object per line")
    cat.set_defaults(run=cmd_cat)
    convert = with_store("convert", "copy a store into another driver or compression")
    convert.add_argument("dst")
    convert.add_argument("--to", choices=sorted(DRIVERS), required=True)
    convert.add_argument("--to-compression", choices=["gzip"], default=None)
    convert.add_argument("--shard-size", type=int, default=1000)
    convert.set_defaults(run=cmd_convert)
    bench = with_store("bench", "measure read throughput")
    bench.add_argument("--max-concurrency", type=int, default=None)
    bench.add_argument("--prefetch", type=int, default=None)
    bench.set_defaults(run=cmd_bench)
    demo = commands.add_parser("demo", help="write and read back a demo dataset")
    demo.add_argument("folder", nargs="?", default="demo-data")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (SquirrelError, KeyError, ValueError, OSError, TypeError) as exc:
        if args.debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"squirrel {args.command}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0
