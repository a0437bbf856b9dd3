"""Pure buffering logic shared by the sync and async streams: shuffling, batching and seeding."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def make_rng(seed: int | str | None, *salt: object) -> random.Random:
    """A random generator fixed by `seed` and `salt` (e.g. epoch and purpose); fresh entropy if seed is None."""
    if seed is None:
        return random.Random()
    return random.Random(":".join(str(part) for part in (seed, *salt)))


class ShuffleBuffer(Generic[T]):
    """Approximate shuffle within a bounded buffer: once full, each new item evicts a random one.

    Memory is bounded by `size` items; with the same rng state the output order is the same.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 1:
            raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
        self.size = size
        self.rng = rng
        self.items: list[T] = []

    def push(self, item: T) -> Iterator[T]:
        """Add `item`; yields one evicted item once the buffer is full."""
        if len(self.items) < self.size:
            self.items.append(item)
            return
        index = self.rng.randrange(self.size)
        evicted, self.items[index] = self.items[index], item
        yield evicted

    def drain(self) -> Iterator[T]:
        """Yield what is left, in random order, emptying the buffer."""
        items, self.items = self.items, []
        self.rng.shuffle(items)
        yield from items


class Batcher(Generic[T]):
    """Groups items into lists of `size`, optionally passed through `collation_fn`."""

    def __init__(
        self, size: int, drop_last_if_not_full: bool = False, collation_fn: Callable[[list[T]], Any] | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.size = size
        self.drop_last = drop_last_if_not_full
        self.collate = collation_fn
        self.batch: list[T] = []

    def push(self, item: T) -> Iterator[Any]:
        """Add `item`; yields a batch when one is full."""
        self.batch.append(item)
        if len(self.batch) == self.size:
            batch, self.batch = self.batch, []
            yield self.collate(batch) if self.collate else batch

    def drain(self) -> Iterator[Any]:
        """Yield the last, partial batch unless it is empty or dropped."""
        batch, self.batch = self.batch, []
        if batch and not self.drop_last:
            yield self.collate(batch) if self.collate else batch
