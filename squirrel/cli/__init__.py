"""The `squirrel` command: inspect, index, convert and benchmark stores from a shell.

Errors print one line and exit 1 (``--debug`` shows the traceback). Progress bars appear only when
standard error is a terminal, so piped output stays clean. Everything printed goes through `emit`, which
escapes non-printable characters (see `squirrel.cli.output`).

This module holds the parser and `main` (the console script's entry point, ``squirrel.cli:main``); each
command lives in a module of its own: `listing` (ls, cat), `indexing` (index), `inspection` (inspect),
`convert`, `bench` (timed as `measure` says), `demo`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import textwrap
from typing import TYPE_CHECKING

from squirrel.cli.bench import cmd_bench
from squirrel.cli.convert import cmd_convert
from squirrel.cli.demo import cmd_demo
from squirrel.cli.help import ALIASES, COMMANDS, Parser, TopLevelFormatter, add_global_flags, examples
from squirrel.cli.indexing import cmd_index, verify_store
from squirrel.cli.inspection import cmd_inspect
from squirrel.cli.listing import cmd_cat, cmd_ls, shard_rows, summarise
from squirrel.cli.output import emit, printable
from squirrel.cli.stores import DRIVERS, index_command
from squirrel.errors import SquirrelError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DISTRIBUTION",
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

DISTRIBUTION = "squirrel-aio"
"""The name squirrel is installed under (``pip show squirrel-aio``): ``squirrel`` on PyPI is another project."""

_USER_ERRORS = (SquirrelError, KeyError, ValueError, OSError, TypeError)
"""What the library raises for a user's mistake or a bad store (missing key, corrupt object, unreachable
bucket): reported in one line. Anything else is a bug, and keeps its traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `squirrel` command; each command's ``run`` default is its ``cmd_*``
    function, looked up here when the parser is built."""
    parser = Parser(
        prog="squirrel",
        description=__doc__.splitlines()[0],
        epilog=examples("squirrel inspect ./data\nsquirrel COMMAND --help"),
        formatter_class=TopLevelFormatter,
    )
    version = f"squirrel {importlib.metadata.version(DISTRIBUTION)}"
    parser.add_argument("--version", action="version", version=version, help="print the version and exit")
    add_global_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str) -> argparse.ArgumentParser:
        summary, description, lines = COMMANDS[name]
        sub = commands.add_parser(
            name,
            aliases=ALIASES.get(name, []),
            help=summary,
            description=textwrap.fill(description, 100),
            epilog=examples(lines),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_global_flags(sub, default=argparse.SUPPRESS)
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
    convert.add_argument(
        "--to-level", type=int, default=None, help="its level: gzip 0-9, zstd 1-22 (default: chosen per shard)"
    )
    convert.add_argument("--shard-size", type=int, default=1000, help="samples per shard of DST (default: 1000)")
    convert.set_defaults(run=cmd_convert)
    bench = with_store("bench")
    bench.add_argument("--max-concurrency", type=int, default=None, help="requests in flight (default: the loader's)")
    bench.add_argument("--prefetch", type=int, default=None, help="objects read ahead (default: the loader's)")
    bench.add_argument("--passes", type=int, default=1, help="passes to time, one line each (default: 1)")
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
