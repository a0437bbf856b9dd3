"""The `squirrel` command: inspect, index, convert and benchmark stores from a shell.

Errors print one line and exit 1 (``--debug`` shows the traceback). Progress bars appear only when
standard error is a terminal, so piped output stays clean. Everything printed goes through `emit`, which
escapes non-printable characters: keys, URLs and error messages come from stores, and a key holding
``ESC[2J`` or a newline must neither drive the terminal nor forge a row of a listing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

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
    "emit",
    "main",
    "printable",
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


_USER_ERRORS = (SquirrelError, KeyError, ValueError, OSError, TypeError)
"""What the library raises for a user's mistake or a bad store (missing key, corrupt object, unreachable
bucket): reported in one line. Anything else is a bug, and keeps its traceback."""


def printable(text: object) -> str:
    """`text` (its `str`) with every non-printable character escaped as `repr` escapes it (``\\x1b``,
    ``\\n``, ``\\u202e``), printable Unicode left as is.

    Non-printable means what `str.isprintable` says: C0 and C1 controls, DEL, format characters such as
    bidi overrides and zero-width spaces, line and paragraph separators, lone surrogates, unassigned code
    points. A backslash is left alone: keys cannot hold one, so an escape in a key's output is unambiguous.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def emit(*fields: object, stream: TextIO | None = None) -> None:
    """Print `fields` as one line, tab-separated, each made `printable` (so the line stays one line and a
    field never spans a tab); to standard output unless `stream` says otherwise."""
    print("\t".join(map(printable, fields)), file=stream or sys.stdout)


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
        emit(key, samples, size)
    emit(f"{len(rows)} shards, {sum(r[1] for r in rows)} samples, {sum(r[2] for r in rows)} bytes", stream=sys.stderr)


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
    if not keys:  # a typo'd url, a missing gs://, the wrong --driver or --compression: say so
        raise await store.nothing_to_read()
    return await AsyncIterableSource(keys).async_map(row, max_concurrency=16).collect()


def cmd_index(args: argparse.Namespace) -> None:
    """Build the store's index, or with --verify check every object against it."""
    store = _store(args)
    if not args.verify:
        if not store.list_objects():  # an index that lists nothing would hide the mistake behind it
            raise run_sync(store.aio.nothing_to_read())
        index = store.write_index()
        emit(f"indexed {len(index)} objects, {index.num_samples} samples: {store.aio.index_url}", stream=sys.stderr)
        return
    problems = run_sync(verify_store(store.aio))
    for problem in problems:
        emit(problem)
    if problems:
        raise SquirrelError(f"{len(problems)} problem(s) against the index {store.aio.index_url}")
    emit("index matches every object", stream=sys.stderr)


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
        emit(json.dumps(record) if args.json else f"{sample.key}: {record['value']}")


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
    emit(f"wrote {written} samples to {args.dst}", stream=sys.stderr)


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
    emit(f"{count} samples in {elapsed:.2f} s: {count / elapsed:,.0f} samples/s, first after {first_ms:.0f} ms")


def cmd_demo(args: argparse.Namespace) -> None:
    """What `make demo` runs."""
    from squirrel.demo import main

    main(args.folder)


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose error messages are `printable`: argparse quotes some arguments with
    `repr`, but prints others (``unrecognized arguments: ...``) as the user typed them."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and `message` on standard error, and exit 2 (as argparse does)."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `squirrel` command."""
    parser = _Parser(prog="squirrel", description=__doc__.splitlines()[0])
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
    """Run the command line; return the exit code.

    A user's mistake or a bad store (`_USER_ERRORS`, alone or in an exception group) prints one line and
    returns 1; ``--debug`` re-raises it instead. Any other exception is a bug and propagates as is.
    """
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:
        error = _user_error(exc)
        if error is None or args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        emit(f"squirrel {args.command}: {type(error).__name__}: {message}", stream=sys.stderr)
        return 1
    return 0


def _user_error(exc: BaseException) -> BaseException | None:
    """The error to report for `exc` if it is a user's mistake, else None.

    A group (an `asyncio.TaskGroup` wraps what its tasks raise) counts when every error in it does, and is
    reported by its first one.
    """
    if isinstance(exc, BaseExceptionGroup):
        errors = [_user_error(inner) for inner in exc.exceptions]
        return errors[0] if all(error is not None for error in errors) else None
    return exc if isinstance(exc, _USER_ERRORS) else None
