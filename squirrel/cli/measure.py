"""How `squirrel bench` and the demo time a read, one way for both, so their figures compare.

They once disagreed six-fold on the same data (10,488 against 66,777 samples/s) while measuring the same
pass: the demo reads in the process that has just written the data, so the one-off costs of a first read
(starting the IO loop and thread pools, fresh memory faulted in for the first buffers) were already paid,
and 10,000 small samples take a tenth of a second, so those costs and a busy machine swing a single
samples/s figure several-fold. `ReadTiming.figures` therefore gives the time to the first sample apart
from the rate after it, and `MEASURED` says on screen what is timed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from squirrel.cli.output import UPDATE_EVERY

if TYPE_CHECKING:
    from squirrel.cli.output import Progress
    from squirrel.driver.loader import LoaderStream

__all__ = ["MEASURED", "ReadTiming", "measure_read"]

MEASURED = (
    "one pass of get_iter(), as a training loop reads it: every object fetched and decoded, every sample "
    "handed over, timed from the call to the last sample; MB/s counts the stored bytes fetched"
)
"""What `measure_read` times, printed under its figures."""

_END = object()


@dataclasses.dataclass(frozen=True)
class ReadTiming:
    """One timed pass: `samples` read, `stored_bytes` fetched, `seconds` from the call to the last sample,
    `first_seconds` to the first one (opening the pass, the first fetch and decode, any start-up), and the
    `first` sample itself (None if the pass was empty)."""

    samples: int
    stored_bytes: int
    seconds: float
    first_seconds: float
    first: Any

    def figures(self) -> str:
        """``N samples in S s: R samples/s, M MB/s; first sample after F ms, then R' samples/s``: the
        whole pass, then the start-up apart from the rate after it."""
        seconds = max(self.seconds, 1e-9)
        after_first = self.seconds - self.first_seconds
        rest = (self.samples - 1) / after_first if self.samples > 1 and after_first > 0 else 0.0
        return (
            f"{self.samples:,} samples in {self.seconds:.2f} s: {self.samples / seconds:,.0f} samples/s, "
            f"{self.stored_bytes / seconds / 1e6:,.1f} MB/s; first sample after {1000 * self.first_seconds:.0f} ms, "
            f"then {rest:,.0f} samples/s"
        )


def measure_read(stream: LoaderStream, progress: Progress | None = None) -> ReadTiming:
    """Time one pass over `stream` (a loader's `get_iter()`), as `MEASURED` says, moving `progress` (if
    given) every `UPDATE_EVERY` samples and closing it at the end. Raises what the pass raises."""
    show = progress.show if progress is not None else _ignore
    bytes_before = stream.metrics.bytes
    count = 0
    started = time.perf_counter()
    try:
        samples = iter(stream)
        first = next(samples, _END)
        first_seconds = time.perf_counter() - started
        if first is not _END:
            count = 1
            for count, _ in enumerate(samples, start=2):
                if not count % UPDATE_EVERY:
                    show(count)
        seconds = time.perf_counter() - started
    finally:
        if progress is not None:
            progress.close(count)
    return ReadTiming(
        count, stream.metrics.bytes - bytes_before, seconds, first_seconds, None if first is _END else first
    )


def _ignore(samples: int) -> None:
    """No progress to show."""
