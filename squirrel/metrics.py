"""Counters a loader keeps while it streams, read by `monitor` and logged by `log_metrics`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

__all__ = ["LoaderMetrics", "log_metrics", "report"]

logger = logging.getLogger("squirrel")


@dataclasses.dataclass
class LoaderMetrics:
    """What a loader's stream has done so far: objects and bytes fetched, fetches under way, objects skipped.

    Updated from the IO loop and the consumer's thread; plain int updates, exact enough for monitoring.
    Fields: `objects` and `bytes` fetched, fetches `in_flight`, objects `skipped` (``on_error="skip"``).
    """

    objects: int = 0
    bytes: int = 0
    in_flight: int = 0
    skipped: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict (prefixed names, ready to merge into a monitor report)."""
        return {
            "objects_fetched": self.objects,
            "bytes_fetched": self.bytes,
            "fetches_in_flight": self.in_flight,
            "objects_skipped": self.skipped,
        }


def log_metrics(report: dict[str, Any]) -> None:
    """A ready `monitor` callback: one INFO line on the "squirrel" logger per report."""
    fields = (f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in report.items())
    logger.info("stream: %s", ", ".join(fields))


def report(count: int, seconds: float, sources: list[LoaderMetrics]) -> dict[str, Any]:
    """A monitor report: `count` items in `seconds` and their rate, plus the counters (and byte rate) of the
    upstream loaders' metrics, `sources`."""
    seconds = max(seconds, 1e-9)
    result: dict[str, Any] = {"items": count, "seconds": seconds, "items_per_second": count / seconds}
    for source in sources:
        for name, value in source.snapshot().items():
            result[name] = result.get(name, 0) + value
    if sources:
        result["bytes_per_second"] = result["bytes_fetched"] / seconds
    return result
