"""Sample order, pure: seeded generators, the shuffle buffers, and the key order of a pass.

Shared by both faces and by the loaders' plan (`squirrel.plan`). Nothing here does I/O: the same seed,
epoch and inputs always give the same order, which is what makes a resumed pass exact.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import random
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import numpy as np
from numpy.random import default_rng  # at import: numpy loads it lazily, 5 ms of a shuffled first sample

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "ShardInterleaver",
    "ShuffleBuffer",
    "consumed_per_shard",
    "make_numpy_rng",
    "make_rng",
    "shuffle_in_place",
    "shuffled_keys",
]

T = TypeVar("T")


def make_rng(seed: int | str | None, *salt: object) -> random.Random:
    """A random generator fixed by `seed` and `salt` (e.g. epoch and purpose); fresh entropy if seed is None."""
    if seed is None:
        return random.Random()
    return random.Random(":".join(str(part) for part in (seed, *salt)))


def make_numpy_rng(seed: int | str | None, *salt: object) -> np.random.Generator:
    """Like `make_rng`, as a numpy generator (for vectorised shuffles)."""
    if seed is None:
        return default_rng()
    text = ":".join(str(part) for part in (seed, *salt))
    return default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little"))


class ShardInterleaver(Generic[T]):
    """Shuffles samples that arrive a shard at a time, holding about `size` samples, and releases each
    shard's memory as soon as its last sample is out.

    Each shard is permuted on arrival; output is a uniform random merge of the open shards. Once `size`
    samples are held (a full buffer, as a shuffle buffer starts to draw), output runs until one open shard
    is used up, then the next shard is let in. Drawing from a random merge of permuted shards picks a
    uniformly random held sample each time, as a shuffle buffer does, but a shard never lingers: with
    zero-copy samples that keeps memory at a few shards instead of every shard a buffer still has one
    sample of. All work is vectorised per shard. (Starting only above `size`, the first sample waited for
    two shards of `size` samples: 54 ms instead of 32 on local disk.)
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        if size < 1:
            raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
        self.size = size
        self.rng = rng
        self.shards: list[list[T]] = []  # each one's remaining samples, in permuted order

    @property
    def held(self) -> int:
        """Samples held now."""
        return sum(len(shard) for shard in self.shards)

    def push(self, chunk: Sequence[T]) -> list[T]:
        """Add one shard's samples; return the samples released (possibly none), in shuffled order."""
        if chunk:  # made a list first: a `SampleChunk` indexed sample by sample costs a Python call each
            self.shards.append(_pick(list(chunk), self.rng.permutation(len(chunk)).tolist()))
        released: list[T] = []
        while self.held >= self.size:
            released.extend(self._merge(until_one_is_used_up=True))
        return released

    def drain(self) -> list[T]:
        """Everything still held, shuffled; empties the interleaver."""
        return self._merge(until_one_is_used_up=False)

    def _merge(self, until_one_is_used_up: bool) -> list[T]:
        counts = np.array([len(shard) for shard in self.shards])
        if not counts.sum():
            self.shards = []
            return []
        labels = self.rng.permutation(np.repeat(np.arange(len(counts)), counts))
        if until_one_is_used_up:
            _, first_from_end = np.unique(labels[::-1], return_index=True)
            labels = labels[: len(labels) - first_from_end.max()]  # up to the first shard's last sample
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        order = np.argsort(labels, kind="stable")
        taken = np.bincount(labels, minlength=len(counts))
        positions = np.empty(len(labels), dtype=np.int64)
        positions[order] = np.concatenate([starts[i] + np.arange(taken[i]) for i in range(len(counts))])
        combined = list(itertools.chain.from_iterable(self.shards))
        released = _pick(combined, positions.tolist())
        self.shards = [shard[taken[i] :] for i, shard in enumerate(self.shards) if taken[i] < len(shard)]
        return released


def consumed_per_shard(
    counts: Sequence[int], skip: int, shuffle_item_buffer: int, rng: np.random.Generator
) -> list[int]:
    """How many samples of each shard are among a pass's first `skip` samples, for shards of `counts`
    samples arriving in this order: in order without an item shuffle, else as a `ShardInterleaver` with
    `rng` releases them. Its order depends only on the counts and the generator, so labels stand in for
    the samples and nothing needs to be read.
    """
    if shuffle_item_buffer <= 1:
        starts = np.cumsum(counts, dtype=np.int64) - np.asarray(counts, dtype=np.int64)
        in_order: list[int] = np.clip(skip - starts, 0, counts).tolist()
        return in_order
    interleaver: ShardInterleaver[int] = ShardInterleaver(shuffle_item_buffer, rng)
    released: list[int] = []
    for shard, count in enumerate(counts):
        if len(released) >= skip:
            break
        released += interleaver.push([shard] * count)
    if len(released) < skip:
        released += interleaver.drain()
    shuffled: list[int] = np.bincount(released[:skip], minlength=len(counts)).tolist()
    return shuffled


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

    @classmethod
    def seeded(cls, size: int, seed: int | str | None) -> Self:
        """A buffer of `size` drawing from a fresh rng for `seed` (None: a new order each time)."""
        return cls(size, make_rng(seed, "shuffle"))

    def push(self, item: T) -> Iterator[T]:
        """Add `item`; yields one evicted item once the buffer is full."""
        if len(self.items) < self.size:
            self.items.append(item)
            return
        index = self.rng.randrange(self.size)
        evicted, self.items[index] = self.items[index], item
        yield evicted

    def push_all(self, items: Iterable[T]) -> list[T]:
        """Add each of `items` in turn, as `push` does with the same draws; returns the items evicted, in order.

        One loop, with the draws of ``rng.randrange(size)`` written out (words of the size's bit length from
        ``getrandbits``, drawn again while they reach it), so the order is the one `push` makes: 3 ms for
        50,000 keys through a buffer of 1,000, against 12 ms calling randrange; a pass's first sample waits
        for it (`shuffled_keys`).
        """
        evicted: list[T] = []
        held, size = self.items, self.size
        bits, width = self.rng.getrandbits, size.bit_length()
        rest = iter(items)
        held.extend(itertools.islice(rest, size - len(held)))  # no draws until the buffer is full
        for item in rest:
            index = bits(width)
            while index >= size:
                index = bits(width)
            evicted.append(held[index])
            held[index] = item
        return evicted

    def drain(self) -> Iterator[T]:
        """What is left, in random order (`shuffle_in_place`), emptying the buffer."""
        items, self.items = self.items, []
        shuffle_in_place(items, self.rng)
        return iter(items)  # shuffled now, not when first asked (a generator would wait); no frame per item


def shuffle_in_place(items: list[T], rng: random.Random) -> None:
    """Shuffle `items` in place with the draws of ``rng.shuffle(items)`` (Fisher-Yates from the last item,
    each swap's partner drawn as ``rng.randrange`` draws), so the order for a seed is the one earlier
    versions made (a resumed pass depends on it).

    Indices are taken in runs that share a bit length, so no call is made per item but the draw itself:
    4 ms rather than 10-11 for 50,000 keys, which a pass's first sample waits for with a whole-store key
    shuffle (`shuffled_keys`).
    """
    bits = rng.getrandbits
    last = len(items) - 1
    while last > 0:
        width = (last + 1).bit_length()  # the bit length of the draws for every index down to `lowest`
        lowest = max(1 << (width - 1), 2) - 1
        for index in range(last, lowest - 1, -1):
            other = bits(width)
            while other > index:
                other = bits(width)
            items[index], items[other] = items[other], items[index]
        last = lowest - 1


def shuffled_keys(keys: Iterable[str], buffer: int, seed: int | str | None, epoch: int) -> list[str]:
    """`keys` in the order a pass fetches them: as given, or shuffled within a buffer of `buffer` keys.

    The order depends only on the keys, `seed` and `epoch` (a fresh random order when `seed` is None).
    """
    keys = list(keys)
    if buffer <= 1:
        return keys
    shuffler: ShuffleBuffer[str] = ShuffleBuffer(buffer, make_rng(seed, epoch, "keys"))
    planned = shuffler.push_all(keys)
    planned.extend(shuffler.drain())
    return planned
