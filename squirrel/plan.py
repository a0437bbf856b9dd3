"""What one reader of a loader reads, and in which order. Pure: no I/O, no asyncio.

A `LoadPlan` holds every knob of a loader's ``get_iter``. When a pass starts, the loader gives it the
store's keys (and index, when it has one) and the plan answers: this reader's keys in fetch order
(shuffled by seed and epoch, split by rank and worker before anything is fetched), how many samples it
yields under ``equalize``, how samples are reordered (`SampleOrder`), and, for a resumed pass, which
objects need not be fetched at all (`LoadPlan.replay`). Both faces run the same plan.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from squirrel.errors import DecodeError
from squirrel.order import ShardInterleaver, consumed_per_shard, make_numpy_rng, shuffled_keys
from squirrel.sample import validate_key
from squirrel.splits import Split, current_split, equal_quota, take_share
from squirrel.stages import UnknownLength

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from squirrel.index import Index

__all__ = ["CONSUMED", "ON_ERROR", "LoadPlan", "SampleOrder", "check_cache_options"]

T = TypeVar("T")

CONSUMED: Final = object()
"""Stands in for a sample a resumed pass does not read again (see `LoadPlan.replay`)."""

ON_ERROR = ("raise", "skip")
"""What a loader does with a bad object: raise its error, or log it, count it and go on."""

EQUALIZE = (None, "drop", "pad")
"""How readers are evened out: not at all, down to the fewest samples, or up to the most."""


@dataclasses.dataclass
class LoadPlan:
    """Every knob of a loader's `get_iter`, resolved into this reader's keys when a pass starts.

    Resolving late matters: inside a PyTorch DataLoader worker the worker id is only known there.
    `ValueError` for a knob out of range.
    """

    key_iterator: list[str] | None = None
    max_concurrency: int = 8
    prefetch: int = 8
    shuffle_key_buffer: int = 1
    shuffle_item_buffer: int = 1
    seed: int | str | None = None
    epoch: int = 0
    split_by_rank: bool = False
    split_by_worker: bool = False
    rank: int | None = None
    world_size: int | None = None
    on_error: str = "raise"
    equalize: str | None = None
    allow_empty: bool = False
    """Whether a store with no object to read is read as empty, rather than refused (a typo'd url)."""
    cache_dir: str | None = None
    """The folder of the local cache of remote objects (`squirrel.aio.shard_cache`); None: no cache."""
    cache_limit: int | None = None
    """The most bytes the cache holds on disk (given with `cache_dir`)."""
    placeholders: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Keys a resumed pass does not fetch: each stands in for its count of already consumed samples."""
    index_counts: Sequence[tuple[str, int]] | None = None
    """On a resumed pass, each key's sample count in the index: the replay relies on them, so each
    object's samples are counted against them as they arrive."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.prefetch < 1:
            raise ValueError(
                f"max_concurrency and prefetch must be >= 1, got {self.max_concurrency} and {self.prefetch}"
            )
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got {self.on_error!r}")
        if self.equalize not in EQUALIZE:
            raise ValueError(f"equalize must be one of {list(EQUALIZE)}, got {self.equalize!r}")
        check_cache_options(self.cache_dir, self.cache_limit)
        if self.key_iterator is not None:  # the store's own keys (listed, or from its index) need no check
            for key in self.key_iterator:
                validate_key(key)

    @property
    def reshuffles_each_pass(self) -> bool:
        """Whether this plan shuffles without a seed, drawing a new order each pass (which cannot be replayed)."""
        return self.seed is None and max(self.shuffle_key_buffer, self.shuffle_item_buffer) > 1

    @property
    def split_kinds(self) -> frozenset[str]:
        """Which splits this plan applies ("rank", "worker")."""
        return frozenset(k for k, on in (("rank", self.split_by_rank), ("worker", self.split_by_worker)) if on)

    def split(self) -> Split:
        """This reader's split, resolved now (from torch, the arguments or the environment)."""
        return current_split(self.split_by_rank, self.split_by_worker, self.rank, self.world_size)

    def share(self, keys: Sequence[str], split: Split) -> list[str]:
        """The keys of reader `split` in fetch order. Every key goes to exactly one reader.

        With a seed, all readers shuffle the same way and then split; without one, they split the
        given order first and then each shuffles its share freshly, which still partitions the keys.
        """
        if self.seed is None:
            return shuffled_keys(take_share(keys, split), self.shuffle_key_buffer, None, 0)
        return take_share(shuffled_keys(keys, self.shuffle_key_buffer, self.seed, self.epoch), split)

    def reader_keys(self, stored: Sequence[str]) -> list[str]:
        """This reader's keys in fetch order, given the store's keys (listed, or from its index)."""
        if self.index_counts is not None:  # a resumed pass: the keys its replay was worked out for
            return [key for key, _ in self.index_counts]
        return self.share(self.key_iterator if self.key_iterator is not None else stored, self.split())

    def quota(self, index: Index | None, where: str) -> int | None:
        """How many samples this reader yields under `equalize` (None: no limit).

        Every reader's share of keys is known to every reader, and the index gives each key's sample
        count, so all ranks agree on the quota without talking to each other. `ValueError` without an
        index, `KeyError` for a key the index (at `where`) does not list.
        """
        if self.equalize is None:
            return None
        if index is None:
            raise ValueError(
                f"equalize={self.equalize!r} needs the store's index ({where}): build it with write_index()"
            )
        keys = self.key_iterator if self.key_iterator is not None else index.keys
        missing = [key for key in keys if key not in index]
        if missing:
            raise KeyError(f"{missing[0]!r} is not in the index {where}: rewrite it with write_index()")
        split = self.split()
        counts = [
            sum(
                _count(index, key) for key in self.share(keys, Split(rank, split.world_size, worker, split.num_workers))
            )
            for rank in range(split.world_size)
            for worker in range(split.num_workers)
        ]
        return equal_quota(counts, split, self.equalize)

    def length(self, index: Index | None, where: str) -> int:
        """How many samples this reader yields in a pass, from the store's `index` (at `where`): the samples
        of its share of the keys (split by rank and worker, in this epoch's order), or its `equalize` quota
        (0 for an empty share, which "pad" cannot fill).

        The index is trusted: a pass that skips objects on error (``on_error="skip"``) yields fewer, and one
        over objects changed since indexing yields what they now hold; neither is known before reading.
        Raises `UnknownLength` without an index, or for a key the index does not list: counting would then
        mean reading every object.
        """
        if index is None:
            raise UnknownLength(f"no index at {where}: build one with write_index() to know the stream's length")
        listed = self.key_iterator or ()  # the index lists its own keys
        missing = next((key for key in listed if key not in index), None)
        if missing is not None:
            raise UnknownLength(f"{missing!r} is not in the index {where}: rewrite it with write_index()")
        own = sum(_count(index, key) for key in self.reader_keys(index.keys))
        quota = self.quota(index, where) if own else None
        return own if quota is None else quota

    def replay(self, index: Index | None, skip: int) -> LoadPlan | None:
        """This plan for a pass resumed after `skip` samples, where objects whose samples all came before
        are `placeholders`, not fetched. None when that cannot be worked out exactly (no index, a key
        missing from it, `equalize`, ``on_error="skip"``, an unseeded shuffle): the pass is then replayed.
        """
        if self.equalize is not None or self.on_error != "raise" or self.reshuffles_each_pass or index is None:
            return None
        listed = self.key_iterator if self.key_iterator is not None else index.keys
        keys = self.share(listed, self.split())
        if any(key not in index for key in keys):
            return None
        counts = [_count(index, key) for key in keys]
        taken = consumed_per_shard(
            counts, skip, self.shuffle_item_buffer, make_numpy_rng(self.seed, self.epoch, "items")
        )
        done = {key: count for key, count, took in zip(keys, counts, taken, strict=True) if took == count}
        return dataclasses.replace(self, placeholders=done, index_counts=list(zip(keys, counts, strict=True)))

    def order(self) -> SampleOrder[Any]:
        """The item order of one pass: a fresh shuffler with this plan's seed and epoch."""
        return SampleOrder(self.shuffle_item_buffer, self.seed, self.epoch, self.index_counts)


def check_cache_options(cache_dir: object, cache_limit: object) -> None:
    """Refuse a cache without a bound, or a bound without a cache: `ValueError` unless `cache_limit` is a
    positive int of bytes given with `cache_dir`, or both are None."""
    if cache_dir is None:
        if cache_limit is not None:
            raise ValueError(f"cache_limit={cache_limit!r} was given without cache_dir (the folder it bounds)")
        return
    if isinstance(cache_limit, bool) or not isinstance(cache_limit, int) or cache_limit < 1:
        raise ValueError(
            f"cache_dir={cache_dir!r} needs cache_limit, the most bytes the cache may hold on disk, as a positive "
            f"int (e.g. cache_limit=50 * 2**30), got {cache_limit!r}"
        )


def _count(index: Index, key: str) -> int:
    entry = index.get(key)
    assert entry is not None  # callers checked that the index lists `key`
    return entry.samples


class SampleOrder(Generic[T]):
    """Reorders the samples of one pass, arriving an object's worth (a chunk) at a time.

    Without an item shuffle chunks pass through; with one, a `ShardInterleaver` of `size` samples mixes
    them. On a resumed pass (`index_counts`), each chunk is checked to hold as many samples as the index
    says, since the replay of the order was worked out from those counts (`DecodeError` if not).
    """

    def __init__(
        self, size: int, seed: int | str | None, epoch: int, index_counts: Sequence[tuple[str, int]] | None = None
    ) -> None:
        self._shuffler = ShardInterleaver[T](size, make_numpy_rng(seed, epoch, "items")) if size > 1 else None
        self._expected = iter(index_counts) if index_counts is not None else None

    def push(self, chunk: Sequence[T]) -> Sequence[T]:
        """Add the samples of one object; return the samples now released, in order."""
        if self._expected is not None:
            _check_count(chunk, next(self._expected, None))
        return self._shuffler.push(chunk) if self._shuffler is not None else chunk

    def drain(self) -> Sequence[T]:
        """The samples still held, at the end of the pass."""
        return self._shuffler.drain() if self._shuffler is not None else []


def _check_count(chunk: Sequence[Any], expected: tuple[str, int] | None) -> None:
    if expected is not None and len(chunk) != expected[1]:
        raise DecodeError(
            f"{expected[0]!r} holds {len(chunk)} samples but the store's index says {expected[1]}: the index is "
            "stale (rewrite it with write_index()), so a resumed pass cannot replay the original order"
        )
