"""How a pass paces its reads so that its first object arrives early: keys in groups that double in size
(`groups_of`), and a window of reads in flight that opens as reads end (`SlowStart`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SlowStart", "groups_of"]


class SlowStart:
    """A limit on the reads in flight that starts at one and grows by one as each read ends, up to `limit`
    (so the window doubles each round: 1, 2, 4, 8), for reads that compete for the cores.

    The first object then has the machine to itself: with `prefetch` reads started at once, each got a
    share of two cores and the first sample waited for all of them (measured on 12 MB shards from the page
    cache: first sample 30-45 ms with 4-8 reads at once, 15-25 ms read alone); later reads overlap the
    consumer's work as before. Object stores keep their full window from the start: there a read waits on
    the network, and slow start would cost round trips.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 1
        self.slots = asyncio.Semaphore(1)

    async def __aenter__(self) -> None:
        await self.slots.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.slots.release()
        if self.open < self.limit:
            self.open += 1
            self.slots.release()


def groups_of(keys: Sequence[str], largest: int) -> list[Sequence[str]]:
    """`keys` in consecutive groups that double from 8 up to `largest`: the first objects arrive soon, and
    later ones share a thread hop between many (a hop costs 100-300 µs of wake-ups on a busy machine)."""
    groups: list[Sequence[str]] = []
    start, size = 0, min(8, largest)
    while start < len(keys):
        groups.append(keys[start : start + size])
        start += size
        size = min(size * 2, largest)
    return groups
