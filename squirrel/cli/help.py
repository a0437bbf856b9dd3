"""What the `squirrel` command says about itself: each command's summary, description and examples, and
the argparse pieces that print them (and its errors) as intended."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from squirrel.cli.output import printable

__all__ = ["ALIASES", "COMMANDS", "Parser", "TopLevelFormatter", "add_global_flags", "examples"]

COMMANDS: dict[str, tuple[str, str, str]] = {
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
        "against the index instead and print each difference. On a terminal, a bar counts the objects.",
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
        "anything. On a terminal, a bar counts the samples (the objects, when URL has no index).",
        "squirrel convert ./data ./data-jsonl --to jsonl\n"
        "squirrel convert ./data ./data-gz --to messagepack --to-compression gzip   # compress the output\n"
        "squirrel convert ./data-gz ./data --compression gzip --to messagepack   # read a gzip source\n"
        "squirrel convert ./data ./data-csv --to csv --shard-size 5000",
    ),
    "bench": (
        "measure read throughput",
        "Read every sample of the store, as a training loop would, --passes times, and print for each pass "
        "the samples and stored MB per second, the time to the first sample and the rate after it, measured "
        "as `squirrel demo` measures its read. The first pass of this fresh process also pays its start-up; "
        "later passes do not. On a terminal, a bar counts the samples (the objects, when there is no index).",
        "squirrel bench ./data\nsquirrel bench ./data --passes 3\n"
        "squirrel bench gs://bucket/data --max-concurrency 64 --prefetch 32",
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
        "Write a demo dataset into FOLDER, read it back and print how long each took (what `make demo` runs); "
        "the read is timed as `squirrel bench` times a pass.",
        "squirrel demo\nsquirrel demo /tmp/demo-data",
    ),
}
"""Each command's one-line summary (in the top-level help), description and examples (in its own help)."""

ALIASES = {"inspect": ["info"]}
"""Other names of a command."""


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose error messages are `printable`: argparse quotes some arguments with
    `repr`, but prints others (``unrecognized arguments: ...``) as the user typed them."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and `message` on standard error, and exit 2 (as argparse does)."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


class TopLevelFormatter(argparse.RawDescriptionHelpFormatter):
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


def add_global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """The flags that work before or after the command. A subcommand's own copy defaults to SUPPRESS,
    so that leaving it out there does not overwrite what was given before the command."""
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks (before or after the command)"
    )


def examples(text: str) -> str:
    """An epilog listing the lines of `text` as examples, indented."""
    return "examples:\n" + "\n".join(f"  {line}" for line in text.splitlines())
