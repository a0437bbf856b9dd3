"""The `squirrel` command: inspect, index, convert and benchmark stores from a shell.

Errors print one line and exit 1 (``--debug`` shows the traceback). Progress bars appear only when
standard error is a terminal, so piped output stays clean. Everything printed goes through `emit`, which
escapes non-printable characters: keys, URLs and error messages come from stores, and a key holding
``ESC[2J`` or a newline must neither drive the terminal nor forge a row of a listing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import numpy as np

from squirrel._runtime import run_sync
from squirrel.aio.bulk import DRIVERS as BULK_DRIVERS
from squirrel.bulk import write_shards
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

    from squirrel.index import Index
    from squirrel.iterstream.base import Composable

__all__ = [
    "DRIVERS",
    "build_parser",
    "cmd_bench",
    "cmd_cat",
    "cmd_convert",
    "cmd_demo",
    "cmd_index",
    "cmd_inspect",
    "cmd_ls",
    "emit",
    "index_command",
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


def index_command(store: Any) -> str:
    """The `squirrel index` command line that indexes the async `store`, with the ``--driver``,
    ``--compression`` and ``--format`` it needs (only those that differ from the defaults), for hints that
    work when pasted. `ValueError` if no driver of `DRIVERS` makes stores of `store`'s class."""
    names = [name for name, (store_class, _) in DRIVERS.items() if type(store) is store_class.async_class]
    if not names:
        raise ValueError(f"no driver of the squirrel command reads {store!r}")
    words = ["squirrel", "index", shlex.quote(store.url)]
    if names[0] != "messagepack":
        words += ["--driver", names[0]]
    if store.compression is not None:
        words += ["--compression", store.compression]
    if getattr(store, "format", "squirrel") != "squirrel":
        words += ["--format", store.format]
    return " ".join(words)


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
        raise SquirrelError(f"{store.url} has no index: build it with `{index_command(store)}`")
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


def cmd_inspect(args: argparse.Namespace) -> None:
    """One screen about a store: its layout, objects, samples, bytes, the fields of its first sample, and
    whether its index is fresh. `FileNotFoundError` (from the store) when it holds no object."""
    store = _store(args)
    listing = store.list_objects()  # listed once: the counts and sizes below, and the index checked against it
    if not listing:
        raise run_sync(store.aio.nothing_to_read())
    index = store.read_index()
    first = next(store.get(min(listing)))
    rows = [
        ("url", store.url),
        ("driver", args.driver),
        ("compression", store.compression or "none"),
        ("format", args.format),
        ("objects (one per sample)" if store.one_object_per_sample else "shards", len(listing)),
        ("samples", _samples_line(store, index, listing)),
        ("bytes", sum(listing.values())),
        *_field_rows(first.value),
        ("index", _freshness(index, listing)),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        emit(f"{label + ':':<{width}}{value}")


def _samples_line(store: RecordStore, index: Index | None, listing: dict[str, int]) -> str:
    if index is None:
        return f"unknown (no index: run `{index_command(store.aio)}`)"
    if _differing(index, listing):
        return f"{index.num_samples} (from a stale index: run `{index_command(store.aio)}`)"
    return str(index.num_samples)


def _field_rows(value: Any) -> list[tuple[str, str]]:
    """(``field NAME``, its type) for each field of a sample's `value` (a dict), else one ``value`` row."""
    if isinstance(value, dict):
        return [(f"field {name}", _type_of(field)) for name, field in value.items()]
    return [("value", _type_of(value))]


def _type_of(value: Any) -> str:
    """An array's dtype and shape (``uint8 (64, 64, 3)``), a numpy scalar's dtype, else the type's name."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    if isinstance(value, np.generic):
        return str(value.dtype)
    if isinstance(value, bytes):
        return f"bytes ({len(value)})"
    return type(value).__name__


def _differing(index: Index, listing: dict[str, int]) -> int:
    """How many objects the index and the listing disagree on: missing from one, or of another size."""
    indexed = {entry.key: entry.size for entry in index.entries}
    return sum(indexed.get(key) != listing.get(key) for key in indexed.keys() | listing.keys())


def _freshness(index: Index | None, listing: dict[str, int]) -> str:
    if index is None:
        return "none"
    differing = _differing(index, listing)
    return f"stale: {differing} objects differ" if differing else "fresh"


def cmd_convert(args: argparse.Namespace) -> None:
    """Stream every sample of URL (read with ``--driver``/``--compression``) into shards of `--shard-size`
    in DST (written with ``--to``/``--to-compression``), with bounded memory, and index DST.

    Shard drivers go through `squirrel.bulk.write_shards` (concurrent writes, the index written once from
    what they reported, and `FileExistsError` if DST already holds anything). The others write shard by
    shard here and index DST at the end from what each write reported, without reading an object back.
    """
    _, loader_class = DRIVERS[args.driver]
    options: dict[str, Any] = {"format": args.format} if args.format != "squirrel" else {}
    source = loader_class(args.url, args.compression, **options).get_iter()
    stream = source.tqdm(disable=not _progress(), unit="sample") if _progress() else source
    if args.to in BULK_DRIVERS:
        samples = iter(stream)  # the pass opens here, off the IO loop that `write_shards` runs on
        write_shards(samples, args.dst, shard_size=args.shard_size, driver=args.to, compression=args.to_compression)
        index = _target(args).read_index()
    else:
        index = _write_one_by_one(stream, _target(args), args.shard_size)
    if index is None:  # write_shards indexes what it writes: no index is a bug, not the user's mistake
        raise RuntimeError(f"convert wrote no index at {_target(args).index_url}")
    emit(f"wrote {index.num_samples} samples in {len(index)} objects to {args.dst}, indexed", stream=sys.stderr)


def _target(args: argparse.Namespace) -> RecordStore:
    target_class, _ = DRIVERS[args.to]
    return target_class(args.dst, args.to_compression)


def _write_one_by_one(samples: Composable, target: RecordStore, shard_size: int) -> Index:
    """Write `samples` into `target` a shard of `shard_size` at a time, then index it from what the writes
    reported (so no object is read back); return the index."""
    from squirrel.sample import Shard

    written = []
    for number, batch in enumerate(samples.batched(shard_size)):
        written += target.set(Shard(batch, key=f"shard_{number:06d}"), keep_index=True)
    return target.write_index(written)


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


_COMMANDS: dict[str, tuple[str, str, str]] = {
    "ls": (
        "list shards with sample counts and sizes",
        "List every object of a store, one tab-separated line each: key, samples, stored bytes (totals go to "
        "standard error). Read from the store's index when it has one (fast), else by reading every object.",
        "squirrel ls ./data\nsquirrel ls gs://bucket/data --driver jsonl --compression gzip",
    ),
    "index": (
        "build the store's index, or check objects against it",
        "Build the store's index (every object's key, sample count, size and checksum, in one file at its "
        "root), which makes ls, inspect, counting and equalize fast. With --verify, check every object "
        "against the index instead and print each difference.",
        "squirrel index ./data\nsquirrel index ./data --verify\n"
        "squirrel index gs://bucket/data --driver jsonl --compression gzip",
    ),
    "cat": (
        "print the samples of a shard",
        "Print the samples of the object KEY (a shard, or one sample of a record store), arrays summarised "
        "as dtype and shape.",
        "squirrel cat ./data shard_000000\nsquirrel cat ./data shard_000000 --json | head",
    ),
    "convert": (
        "copy a store into another driver or compression",
        "Copy every sample of URL into new shards at DST, with bounded memory, and index DST. --driver, "
        "--compression and --format describe the source URL, as for every command; --to and "
        "--to-compression the output DST. --to messagepack or jsonl refuses a DST that already holds "
        "anything.",
        "squirrel convert ./data ./data-jsonl --to jsonl\n"
        "squirrel convert ./data ./data-gz --to messagepack --to-compression gzip   # compress the output\n"
        "squirrel convert ./data-gz ./data --compression gzip --to messagepack   # read a gzip source\n"
        "squirrel convert ./data ./data-csv --to csv --shard-size 5000",
    ),
    "bench": (
        "measure read throughput",
        "Read every sample of the store once, as a training loop would, and print the samples per second "
        "and the time to the first sample.",
        "squirrel bench ./data\nsquirrel bench gs://bucket/data --max-concurrency 64 --prefetch 32",
    ),
    "inspect": (
        "summarise a store: layout, counts, fields, index",
        "One screen about a store: its driver, compression and format, how many objects and samples it "
        "holds (samples from its index), its stored bytes, the fields of its first sample with their dtypes "
        "and shapes, and whether its index is fresh (its keys and sizes match a listing of the store; "
        "`squirrel index URL --verify` checks checksums too).",
        "squirrel inspect ./data\nsquirrel info gs://bucket/data --driver jsonl --compression gzip",
    ),
    "demo": (
        "write and read back a demo dataset",
        "Write a demo dataset into FOLDER, read it back and print how long each took (what `make demo` runs).",
        "squirrel demo\nsquirrel demo /tmp/demo-data",
    ),
}
"""Each command's one-line summary (in the top-level help), description and examples (in its own help)."""

_ALIASES = {"inspect": ["info"]}


class _TopLevelFormatter(argparse.RawDescriptionHelpFormatter):
    """The top-level help's formatter: it keeps each command's summary on the command's line.

    argparse sizes the name column without the commands' extra indent, so ``inspect (info)`` would push
    its summary to a line of its own; this widens the column by that indent.
    """

    def add_argument(self, action: argparse.Action) -> None:
        """Add `action` to the help, with room for its subcommands' names and their indent."""
        super().add_argument(action)
        if action.nargs == argparse.PARSER:  # the commands, listed one indent deeper than `action`
            for command in self._iter_indented_subactions(action):
                width = self._current_indent + len(self._format_action_invocation(command))
                self._action_max_length = max(self._action_max_length, width)


def _add_global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """The flags that work before or after the command. A subcommand's own copy defaults to SUPPRESS,
    so that leaving it out there does not overwrite what was given before the command."""
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks (before or after the command)"
    )


def _examples(text: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in text.splitlines())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `squirrel` command."""
    parser = _Parser(
        prog="squirrel",
        description=__doc__.splitlines()[0],
        epilog=_examples("squirrel inspect ./data\nsquirrel COMMAND --help"),
        formatter_class=_TopLevelFormatter,
    )
    version = f"squirrel {importlib.metadata.version('squirrel')}"
    parser.add_argument("--version", action="version", version=version, help="print the version and exit")
    _add_global_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str) -> argparse.ArgumentParser:
        summary, description, examples = _COMMANDS[name]
        sub = commands.add_parser(
            name,
            aliases=_ALIASES.get(name, []),
            help=summary,
            description=textwrap.fill(description, 100),
            epilog=_examples(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_flags(sub, default=argparse.SUPPRESS)
        return sub

    def with_store(name: str) -> argparse.ArgumentParser:
        sub = command(name)
        sub.add_argument("url", metavar="URL", help="the store: a folder, memory://path or gs://bucket/path")
        sub.add_argument(
            "--driver", choices=sorted(DRIVERS), default="messagepack", help="of URL (default: messagepack)"
        )
        sub.add_argument("--compression", choices=["gzip", "zstd"], default=None, help="of URL (default: none)")
        sub.add_argument(
            "--format", choices=["squirrel", "squirrel-core"], default="squirrel", help="shard layout of URL"
        )
        return sub

    with_store("ls").set_defaults(run=cmd_ls)
    index = with_store("index")
    index.add_argument("--verify", action="store_true", help="check every object against the index")
    index.set_defaults(run=cmd_index)
    cat = with_store("cat")
    cat.add_argument("key", metavar="KEY", help="the object to print")
    cat.add_argument("--json", action="store_true", help="one JSON object per line")
    cat.set_defaults(run=cmd_cat)
    convert = with_store("convert")
    convert.add_argument("dst", metavar="DST", help="where to write: a folder, memory://path or gs://bucket/path")
    convert.add_argument("--to", choices=sorted(DRIVERS), required=True, help="the driver of DST")
    convert.add_argument("--to-compression", choices=["gzip", "zstd"], default=None, help="of DST (default: none)")
    convert.add_argument("--shard-size", type=int, default=1000, help="samples per shard of DST (default: 1000)")
    convert.set_defaults(run=cmd_convert)
    bench = with_store("bench")
    bench.add_argument("--max-concurrency", type=int, default=None)
    bench.add_argument("--prefetch", type=int, default=None)
    bench.set_defaults(run=cmd_bench)
    with_store("inspect").set_defaults(run=cmd_inspect)
    demo = command("demo")
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
