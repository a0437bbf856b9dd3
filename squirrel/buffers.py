"""Pure buffering logic shared by the sync and async streams: shuffling, batching and seeding."""

from __future__ import annotations

import hashlib
import itertools
import operator
import random
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


def make_rng(seed: int | str | None, *salt: object) -> random.Random:
    """A random generator fixed by `seed` and `salt` (e.g. epoch and purpose); fresh entropy if seed is None."""
    if seed is None:
        return random.Random()
    return random.Random(":".join(str(part) for part in (seed, *salt)))


def make_numpy_rng(seed: int | str | None, *salt: object) -> np.random.Generator:
    """Like `make_rng`, as a numpy generator (for vectorised shuffles)."""
    if seed is None:
        return np.random.default_rng()
    text = ":".join(str(part) for part in (seed, *salt))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little"))


class ChunkShuffler(Generic[T]):
    """Bounded shuffle that takes and gives whole chunks (a shard's samples), with no Python work per item
    beyond C-level list operations. Once more than `size` items are held, each incoming chunk of k items
    releases k items drawn at random from everything held, so memory stays at `size` plus one chunk.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        if size < 1:
            raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
        self.size = size
        self.rng = rng
        self.items: list[T] = []

    def push(self, chunk: list[T]) -> list[T]:
        """Add `chunk`; return the items released (possibly none), in random order."""
        self.items.extend(chunk)
        excess = len(self.items) - self.size
        if excess <= 0:
            return []
        picks = self.rng.choice(len(self.items), excess, replace=False)
        keep = np.ones(len(self.items), dtype=bool)
        keep[picks] = False
        released = _pick(self.items, picks.tolist())
        self.items = list(itertools.compress(self.items, keep.tolist()))
        return released

    def drain(self) -> list[T]:
        """Everything still held, in random order; empties the buffer."""
        items, self.items = self.items, []
        return _pick(items, self.rng.permutation(len(items)).tolist())


def _pick(items: list[T], indices: list[int]) -> list[T]:
    if not indices:
        return []
    picked = operator.itemgetter(*indices)(items)
    return list(picked) if len(indices) > 1 else [picked]


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
