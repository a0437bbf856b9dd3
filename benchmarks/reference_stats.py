"""Per-round figures of passes measured against references: ratios taken round by round, goals on their
medians with their smallest and largest, and the spread of each variant over its rounds.

Passes of one round ran back to back (`benchmarks._measure.run_rounds`), so a ratio of two passes of the
same round cancels most of what a busy machine does to both; the spread shows what it did not cancel.
Standard library only.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from benchmarks._measure import METRICS, Goal

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks._measure import PassResult


def round_values(passes: Sequence[PassResult], metric: str) -> list[float]:
    """`metric` (a name of `METRICS`) of each pass, in round order."""
    return [result.metrics()[metric] for result in passes]


def round_ratios(
    numerator: Sequence[PassResult], denominator: Sequence[PassResult], metric: str = "samples_per_s"
) -> list[float]:
    """`metric` of `numerator` over that of `denominator`, round by round (passes of one round side by side);
    `ValueError` if they ran a different number of rounds."""
    pairs = zip(round_values(numerator, metric), round_values(denominator, metric), strict=True)
    return [a / b for a, b in pairs]


def goal_over_rounds(name: str, values: Sequence[float], target: float, at_most: bool = False) -> Goal:
    """A `Goal` on the median of per-round `values`, carrying their smallest and largest."""
    return Goal(name, statistics.median(values), target, at_most, min(values), max(values))


def format_spread_table(
    results: Mapping[str, Sequence[PassResult]], metrics: Sequence[str] = ("samples_per_s", "first_sample_ms")
) -> str:
    """A plain-text table of each variant's spread over its rounds: ``min .. max`` of each of `metrics`, and the
    spread of the first one as a share of its median (``(max - min) / median``)."""
    first = metrics[0]
    rows: list[list[str]] = []
    for name, passes in results.items():
        cells = [name]
        for metric in metrics:
            spec = METRICS[metric][1]
            values = round_values(passes, metric)
            cells.append(f"{format(min(values), spec)} .. {format(max(values), spec)}")
        values = round_values(passes, first)
        cells.append(f"{(max(values) - min(values)) / statistics.median(values):.0%}")
        rows.append(cells)
    headers = ["variant", *(f"{METRICS[m][0]} min .. max" for m in metrics), f"{METRICS[first][0]} spread"]
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(cells) for cells in rows)])
