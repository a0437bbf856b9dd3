"""Async loaders: stream every sample of a store, fetching objects concurrently on the running loop.

A loader lists (or is given) keys, plans this reader's share and order (`LoadPlan`: shuffled by seed and
epoch, split by rank and worker before anything is fetched), fetches up to `prefetch` objects ahead with
at most `max_concurrency` requests at once, decodes them off the loop, and yields samples, optionally
shuffled within a buffer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final

from squirrel.aio.operators import closing
from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource
from squirrel.buffers import ShardInterleaver, ShuffleBuffer, consumed_per_shard, make_numpy_rng, make_rng
from squirrel.errors import DecodeError
from squirrel.metrics import LoaderMetrics
from squirrel.sample import validate_key
from squirrel.splits import Split, current_split, equal_quota, take_share

logger = logging.getLogger("squirrel")


def plan_keys(keys: Iterable[str], shuffle_key_buffer: int, seed: int | str | None, epoch: int) -> list[str]:
    """The keys in the order they will be fetched: as given, or shuffled within `shuffle_key_buffer`.

    The order depends only on the keys, `seed` and `epoch` (a fresh random order when `seed` is None).
    """
    keys = [validate_key(key) for key in keys]
    if shuffle_key_buffer <= 1:
        return keys
    buffer = ShuffleBuffer(shuffle_key_buffer, make_rng(seed, epoch, "keys"))
    planned = [evicted for key in keys for evicted in buffer.push(key)]
    planned.extend(buffer.drain())
    return planned


CONSUMED: Final = object()
"""Stands in for a sample a resumed pass does not read again (see `LoadPlan.placeholders`)."""


@dataclasses.dataclass
class LoadPlan:
    """Every knob of a loader's `get_iter`; resolved into this reader's keys when iteration starts.

    Resolving late matters: inside a PyTorch DataLoader worker the worker id is only known there.
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
    metrics: LoaderMetrics = dataclasses.field(default_factory=LoaderMetrics)
    placeholders: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Keys a resumed pass does not fetch: each stands in for its count of already consumed samples."""
    index_counts: Sequence[tuple[str, int]] | None = None
    """On a resumed pass, each key's sample count in the index: the replay relies on them, so each
    object's samples are counted against them as they arrive."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.prefetch < 1:
            raise ValueError("max_concurrency and prefetch must be >= 1")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.equalize not in (None, "drop", "pad"):
            raise ValueError(f"equalize must be None, 'drop' or 'pad', got {self.equalize!r}")

    def skipped(self, key: str, error: Exception) -> list[Any]:
        """Handle a bad object: re-raise `error` under ``on_error="raise"``; under "skip", count it, log key
        and reason, and return no samples in its place. Call it from the ``except`` clause that caught it."""
        if self.on_error == "raise":
            raise error
        self.metrics.skipped += 1
        logger.warning("skipping %s: %s: %s", key, type(error).__name__, error)
        return []

    @property
    def reshuffles_each_pass(self) -> bool:
        """Whether this plan shuffles without a seed, drawing a new order each pass (which cannot be replayed)."""
        return self.seed is None and max(self.shuffle_key_buffer, self.shuffle_item_buffer) > 1

    @property
    def split_kinds(self) -> frozenset[str]:
        """Which splits this plan applies ("rank", "worker")."""
        return frozenset(k for k, on in (("rank", self.split_by_rank), ("worker", self.split_by_worker)) if on)

    def split(self) -> Split:
        """This reader's split, resolved now (from torch, arguments or environment)."""
        return current_split(self.split_by_rank, self.split_by_worker, self.rank, self.world_size)

    def share(self, keys: list[str], split: Split) -> list[str]:
        """This reader's keys in fetch order. Every key goes to exactly one reader.

        With a seed, all readers shuffle the same way and then split; without one, they split the
        given order first and then each shuffles its share freshly, which still partitions the keys.
        """
        if self.seed is None:
            return plan_keys(take_share([validate_key(k) for k in keys], split), self.shuffle_key_buffer, None, 0)
        return take_share(plan_keys(keys, self.shuffle_key_buffer, self.seed, self.epoch), split)

    async def reader_keys(self, store: AsyncRecordStore) -> list[str]:
        """List (or take) the keys and return this reader's share, in order."""
        if self.index_counts is not None:  # a resumed pass: the keys its replay was worked out for
            return [key for key, _ in self.index_counts]
        keys = list(self.key_iterator) if self.key_iterator is not None else await store.list_keys()
        return self.share(keys, self.split())

    async def quota(self, store: AsyncRecordStore) -> int | None:
        """How many samples this reader yields under `equalize` (None: no limit).

        Every reader's share of keys is known to every reader, and the store's index gives each key's
        sample count, so all ranks agree on the quota without talking to each other.
        """
        if self.equalize is None:
            return None
        index = await store.read_index()
        if index is None:
            raise ValueError(f"equalize={self.equalize!r} needs the store's index: build it with write_index()")
        keys = list(self.key_iterator) if self.key_iterator is not None else index.keys
        missing = [key for key in keys if key not in index]
        if missing:
            raise KeyError(f"{missing[0]!r} is not in the index {store.index_url}: rewrite it with write_index()")
        split = self.split()
        counts = [
            sum(
                index.get(key).samples
                for key in self.share(keys, Split(rank, split.world_size, worker, split.num_workers))
            )
            for rank in range(split.world_size)
            for worker in range(split.num_workers)
        ]
        return equal_quota(counts, split, self.equalize)

    async def replay_plan(self, store: AsyncRecordStore, skip: int) -> LoadPlan | None:
        """This plan for a pass resumed after `skip` samples: shards whose samples all came before are
        `placeholders`, not fetched. None when that cannot be worked out exactly (no index, a key missing
        from it, `equalize`, ``on_error="skip"``, an unseeded shuffle): then the pass must be replayed.
        """
        if self.equalize is not None or self.on_error != "raise" or self.reshuffles_each_pass:
            return None
        index = await store.read_index()
        if index is None:
            return None
        listed = list(self.key_iterator) if self.key_iterator is not None else index.keys  # as list_keys does
        keys = self.share(listed, self.split())
        if any(key not in index for key in keys):
            return None
        counts = [index.get(key).samples for key in keys]  # type: ignore[union-attr]
        rng = make_numpy_rng(self.seed, self.epoch, "items")
        taken = consumed_per_shard(counts, skip, self.shuffle_item_buffer, rng)
        done = {key: count for key, count, took in zip(keys, counts, taken, strict=True) if took == count}
        return dataclasses.replace(self, placeholders=done, index_counts=list(zip(keys, counts, strict=True)))

    def shuffle_chunks(self, chunks: Iterable[list[Any]]) -> Iterator[list[Any]]:
        """Chunks of samples shuffled within `shuffle_item_buffer` items (unchanged when it is <= 1)."""
        if self.index_counts is not None:
            chunks = _counted(chunks, self.index_counts)
        if self.shuffle_item_buffer <= 1:
            yield from chunks
            return
        shuffler = ShardInterleaver(self.shuffle_item_buffer, make_numpy_rng(self.seed, self.epoch, "items"))
        for chunk in chunks:
            yield shuffler.push(chunk)
        yield shuffler.drain()

    def fetch_objects(self, store: AsyncRecordStore, fetch: Callable[[str], Awaitable[Any]]) -> AsyncComposable:
        """A stream of ``fetch(key)`` over this reader's keys, in order, `prefetch` objects ahead at most."""
        requests = asyncio.Semaphore(self.max_concurrency)

        async def keys() -> AsyncIterator[str]:
            for key in await self.reader_keys(store):
                yield key

        metrics = self.metrics

        async def fetch_bounded(key: str) -> Any:
            if key in self.placeholders:
                return [CONSUMED] * self.placeholders[key]
            async with requests:
                metrics.in_flight += 1
                try:
                    return await fetch(key)
                except (DecodeError, KeyError) as error:
                    return self.skipped(key, error)
                finally:
                    metrics.in_flight -= 1
                    metrics.objects += 1

        return AsyncIterableSource(keys).async_map(fetch_bounded, max_concurrency=self.prefetch)


def _counted(chunks: Iterable[list[Any]], index_counts: Sequence[tuple[str, int]]) -> Iterator[list[Any]]:
    """`chunks`, each checked to hold as many samples as the index says its object does."""
    for chunk, (key, count) in zip(chunks, index_counts, strict=False):
        if len(chunk) != count:
            raise DecodeError(
                f"{key!r} holds {len(chunk)} samples but the store's index says {count}: the index is stale "
                "(rewrite it with write_index()), so a resumed pass cannot replay the original order"
            )
        yield chunk


class PlannedStream:
    """What the sync and async loader streams share: a store, a `LoadPlan`, and what they expose of it."""

    def __init__(self, store: AsyncRecordStore, plan: LoadPlan) -> None:
        self.source = None
        self.store = store
        self.plan = plan

    @property
    def split_kinds(self) -> frozenset[str]:
        """Which splits this stream applies ("rank", "worker")."""
        return self.plan.split_kinds

    @property
    def metrics(self) -> LoaderMetrics:
        """Objects and bytes fetched, fetches in flight and objects skipped, so far."""
        return self.plan.metrics

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch` (with the seed) for the order of the next iteration."""
        self.plan.epoch = epoch


class AsyncLoaderStream(PlannedStream, AsyncComposable):
    """The async stream a loader's `get_iter` returns: re-iterable, with `set_epoch` for a new order."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._samples()

    async def _samples(self) -> AsyncIterator[Any]:
        quota = await self.plan.quota(self.store)
        if quota is None:
            async for sample in self.one_pass():
                yield sample
            return
        produced = 0
        while produced < quota:  # "pad" repeats this reader's own samples from the start
            before = produced
            async with closing(self.one_pass()) as samples:
                async for sample in samples:
                    if produced == quota:
                        break
                    produced += 1
                    yield sample
            if produced == before:
                return  # nothing to read at all: an empty share cannot be padded

    async def one_pass(self) -> AsyncIterator[Any]:
        """One pass over this reader's samples; subclasses for other formats override this."""
        plan = self.plan
        shuffler = None
        if plan.shuffle_item_buffer > 1:
            shuffler = ShardInterleaver(plan.shuffle_item_buffer, make_numpy_rng(plan.seed, plan.epoch, "items"))
        store = self.store

        async def fetch(key: str) -> list[Any]:
            data = await store.read_bytes(key)
            plan.metrics.bytes += len(data)
            return await asyncio.to_thread(store.decode, key, data)

        async with closing(aiter(plan.fetch_objects(store, fetch))) as chunks:
            async for chunk in chunks:
                for sample in shuffler.push(chunk) if shuffler else chunk:
                    yield sample
        for sample in shuffler.drain() if shuffler else ():
            yield sample


class AsyncRecordLoader:
    """Streams the samples of a record store; the base of the shard loaders."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncRecordStore
    stream_class: ClassVar[type[AsyncLoaderStream]] = AsyncLoaderStream
    default_max_concurrency: ClassVar[int] = 64
    default_prefetch: ClassVar[int] = 128

    def __init__(self, url: str, compression: str | None = None, **storage_options: Any) -> None:
        self.url = url
        self.compression = compression
        self.storage_options = storage_options
        self._store = self.store_class(url, compression, **storage_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get_store(self) -> AsyncRecordStore:
        """The loader's store, for map-style access."""
        return self._store

    async def aclose(self) -> None:
        """Release the store's filesystem on the running loop."""
        await self._store.aclose()

    async def __aenter__(self) -> AsyncRecordLoader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def make_plan(
        self,
        key_iterator: Iterable[str] | None = None,
        max_concurrency: int | None = None,
        prefetch: int | None = None,
        **options: Any,
    ) -> LoadPlan:
        """A `LoadPlan` with this loader's defaults filled in."""
        return LoadPlan(
            key_iterator=list(key_iterator) if key_iterator is not None else None,
            max_concurrency=max_concurrency or self.default_max_concurrency,
            prefetch=prefetch or self.default_prefetch,
            **options,
        )

    def get_iter(
        self,
        key_iterator: Iterable[str] | None = None,
        max_concurrency: int | None = None,
        prefetch: int | None = None,
        shuffle_key_buffer: int = 1,
        shuffle_item_buffer: int = 1,
        seed: int | str | None = None,
        epoch: int = 0,
        split_by_rank: bool = False,
        split_by_worker: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        on_error: str = "raise",
        equalize: str | None = None,
    ) -> AsyncLoaderStream:
        """Every sample of the store (or of the objects in `key_iterator`) as an async stream.

        Args:
            key_iterator: keys to read, in this order; all keys of the store (sorted) when None.
            max_concurrency: requests in flight at once.
            prefetch: objects held ahead of the consumer, fetching or fetched (bounds memory).
            shuffle_key_buffer: shuffle keys within a buffer of this size (1: no shuffle).
            shuffle_item_buffer: shuffle samples within a buffer of this size (1: no shuffle).
            seed, epoch: together they fix the order; a new epoch gives a new order. With shuffle
                buffers and no seed, each iteration draws a fresh random order.
            split_by_rank, split_by_worker: read only this DDP rank's / DataLoader worker's share of
                the keys (decided before anything is fetched); `rank` and `world_size` override the
                environment when torch.distributed is not initialised.
        """
        plan = self.make_plan(
            key_iterator,
            max_concurrency,
            prefetch,
            shuffle_key_buffer=shuffle_key_buffer,
            shuffle_item_buffer=shuffle_item_buffer,
            seed=seed,
            epoch=epoch,
            split_by_rank=split_by_rank,
            split_by_worker=split_by_worker,
            rank=rank,
            world_size=world_size,
            on_error=on_error,
            equalize=equalize,
        )
        return self.stream_class(self._store, plan)


class AsyncMessagepackLoader(AsyncRecordLoader):
    """Streams the samples of a messagepack shard store."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncMessagepackStore
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8


class AsyncJsonlLoader(AsyncRecordLoader):
    """Streams the samples of a jsonl shard store."""

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncJsonlStore
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8
