"""What the `squirrel` command prints: lines made safe for a terminal, and progress bars on a terminal only.

Everything printed goes through `emit`, which escapes non-printable characters: keys, URLs and error
messages come from stores, and a key holding ``ESC[2J`` or a newline must neither drive the terminal nor
forge a row of a listing. Progress bars go to standard error, and only when it is a terminal, so piped
output stays clean.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from tqdm import tqdm

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.metrics import LoaderMetrics

T = TypeVar("T")

__all__ = ["UPDATE_EVERY", "Progress", "emit", "printable", "progress_bar", "show_progress"]

UPDATE_EVERY = 256
"""Samples between two updates of a bar driven per sample: a call per sample would cost a reader's rate."""


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


def show_progress() -> bool:
    """Whether progress bars are shown: only when standard error is a terminal (never when piped)."""
    return sys.stderr.isatty()


def progress_bar(total: int | None, unit: str, description: str) -> tqdm[Any]:
    """A tqdm bar on standard error counting `unit`s up to `total` (with an ETA when `total` is known),
    disabled (drawing nothing) unless `show_progress`."""
    return tqdm(total=total, unit=unit, desc=description, disable=not show_progress(), file=sys.stderr)


class Progress:
    """A bar over a stream of samples whose total is in samples (from an index) or in objects (from a
    listing): `show` moves it to the samples seen so far, or to the objects the stream's `metrics` say
    were fetched since the bar started."""

    def __init__(self, bar: tqdm[Any], metrics: LoaderMetrics | None = None) -> None:
        """`bar` counts samples, or with `metrics` the objects fetched (counted from now on)."""
        self.bar = bar
        self.metrics = metrics
        self.objects_before = metrics.objects if metrics is not None else 0

    def show(self, samples: int) -> None:
        """Move the bar to `samples` samples seen (or the objects fetched meanwhile)."""
        done = samples if self.metrics is None else self.metrics.objects - self.objects_before
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self, samples: int) -> None:
        """Show the final count (`samples` seen) and close the bar."""
        self.show(samples)
        self.bar.close()

    def follow(self, samples: Iterator[T]) -> Iterator[T]:
        """`samples`, moving the bar every `UPDATE_EVERY` of them, and closing it when they end or fail."""
        count = 0
        try:
            for count, sample in enumerate(samples, start=1):
                if not count % UPDATE_EVERY:
                    self.show(count)
                yield sample
        finally:
            self.close(count)
