"""Async loaders: a store, a `LoadPlan` and the pipeline, as a re-iterable async stream of samples.

``async for sample in AsyncMessagepackLoader(url).get_iter(shuffle_item_buffer=1000, seed=0): ...``.
The functions `open_pass`, `quota` and `replay` are the I/O a plan needs when a pass starts (listing
keys, reading the index); the sync loaders (`squirrel.driver.loader`) run the very same ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.operators import closing
from squirrel.aio.pipeline import Pass
from squirrel.aio.releasable import Releasable
from squirrel.aio.stores.caching import cache_options, expectations, shard_cache, source_for
from squirrel.aio.stores.csv import AsyncCsvStore
from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.aio.stores.shard import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncComposable
from squirrel.arguments import named_for_caller
from squirrel.errors import DecodeError
from squirrel.metrics import LoaderMetrics
from squirrel.plan import LoadPlan
from squirrel.sample import Sample
from squirrel.stages import PlannedStage, UnknownLength

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Iterable

    from squirrel.codec.csv import Dtypes
    from squirrel.index import Index

__all__ = [
    "AsyncCsvLoader",
    "AsyncJsonlLoader",
    "AsyncLoaderStream",
    "AsyncMessagepackLoader",
    "AsyncRecordLoader",
    "open_pass",
    "quota",
    "replay",
]


async def open_pass(
    store: AsyncRecordStore, plan: LoadPlan, metrics: LoaderMetrics, pool: BufferPool | None = None
) -> Pass:
    """A pass of `plan` over `store`: the store's keys are listed (or read from its index) unless the
    plan names them, and this reader's share is taken in fetch order.

    With the plan's cache (remote stores only), objects are read through it, matched against what the
    store's index (or the listing) says they hold now: see `squirrel.aio.shard_cache`.

    `FileNotFoundError` (see `IndexedStore.nothing_to_read`) when the store holds no object at all, unless
    the plan allows an empty store: a typo'd url, a missing ``gs://`` or the wrong driver or compression
    must not read as zero samples. `pool` recycles the read buffers of large objects (a stream's, across
    its passes; a fresh one when None).
    """
    named = plan.key_iterator is not None or plan.index_counts is not None
    cache = shard_cache(store, plan.cache_dir, plan.cache_limit)
    if cache is None:
        source, stored = source_for(store, None), [] if named else await store.list_keys()
    else:
        expected = await expectations(store, listing=not named)
        source, stored = source_for(store, cache, expected), [] if named else sorted(expected or ())
    if not stored and not named and not plan.allow_empty:
        raise await store.nothing_to_read()
    keys = plan.reader_keys(stored)
    return Pass(source, plan, metrics, keys, await source.group_reader(keys), pool)


async def quota(store: AsyncRecordStore, plan: LoadPlan) -> int | None:
    """How many samples this reader yields under the plan's ``equalize`` (None: no limit)."""
    if plan.equalize is None:
        return None
    return plan.quota(await store.read_index(), store.index_url)


async def replay(store: AsyncRecordStore, plan: LoadPlan, skip: int) -> LoadPlan | None:
    """The plan of a pass resumed after `skip` samples, when the store's index lets it skip whole objects
    (see `LoadPlan.replay`); None when the pass must be read again and its first samples dropped."""
    if not skip or not store.whole_objects:
        return None
    return plan.replay(await store.read_index(), skip)


class AsyncLoaderStream(PlannedStage, AsyncComposable[Sample]):
    """The async stream a loader's `get_iter` returns: re-iterable, with `set_epoch` for a new order."""

    def __init__(self, store: AsyncRecordStore, plan: LoadPlan, pool: BufferPool | None = None) -> None:
        super().__init__(None)
        self.store = store
        self.plan = plan
        self.metrics = LoaderMetrics()
        self.pool = pool or BufferPool()
        """The read buffers of this stream's passes, kept from one pass to the next (the loader's, shared by
        the streams of its `get_iter` calls: a training loop makes one per epoch)."""
        self.pool.max_buffers = max(self.pool.max_buffers, plan.prefetch + 4)
        self._length_index: Index | None = None
        self._length_problem: str | None = (
            f"the index of {store.url} is not read yet: `await stream.load_length()` reads it (a sync len() "
            "cannot wait for the event loop)"
        )

    def __aiter__(self) -> AsyncIterator[Sample]:
        # without `equalize`, a pass is all there is: no generator in between re-yields every sample
        return self.one_pass() if self.plan.equalize is None else self._equalized()

    async def load_length(self) -> int | None:
        """Read the store's index for `known_length` and return `length`. The index is the one the store
        read last (each pass reads it anew), read now if it has found none yet (so one written since is
        found). An index that cannot be read makes the length unknown (the pass raises the error, if it
        reads the index)."""
        store = self.store
        try:
            index = store._index if store._index is not None else await store.read_index()
        except (DecodeError, OSError) as exc:
            self._length_problem = f"the index {store.index_url} could not be read ({exc})"
        else:
            self._length_index, self._length_problem = index, None
        return self.length()

    def known_length(self) -> int:
        """How many samples this reader yields in a pass, from the store's index (see `LoadPlan.length`:
        objects a pass skips on error are counted). Reads nothing: `UnknownLength` until `load_length` has
        read the index, and without one."""
        if self._length_problem is not None:
            raise UnknownLength(self._length_problem)
        return self.plan.length(self._length_index, self.store.index_url)

    async def _equalized(self) -> AsyncIterator[Sample]:
        """This reader's quota of samples (see `quota`): cut short, or padded with its own from the start."""
        limit = await quota(self.store, self.plan)
        produced = 0
        while limit is not None and produced < limit:  # "pad" repeats this reader's own samples from the start
            before = produced
            async with closing(self.one_pass()) as samples:
                async for sample in samples:
                    if produced == limit:
                        break
                    produced += 1
                    yield sample
            if produced == before:
                return  # nothing to read at all: an empty share cannot be padded

    async def one_pass(self, plan: LoadPlan | None = None) -> AsyncIterator[Sample]:
        """One pass over this reader's samples (of `plan`, by default the stream's own)."""
        plan = plan or self.plan
        order = plan.order()
        run = await open_pass(self.store, plan, self.metrics, self.pool)
        async with closing(run.chunks()) as chunks:
            async for chunk in chunks:
                for sample in order.push(chunk):
                    yield sample
        for sample in order.drain():
            yield sample


class AsyncRecordLoader(Releasable):
    """Streams the samples of a record store; the base of every loader of a store of objects.

    Args:
        url: the store's folder (local path, ``memory://...``, ``gs://bucket/prefix``).
        compression: None, "gzip" or "zstd", as the store was written.
        **storage_options: as for the store (see `AsyncRecordStore`).
    """

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncRecordStore
    default_max_concurrency: ClassVar[int] = 64
    default_prefetch: ClassVar[int] = 256

    def __init__(self, url: str, compression: str | None = None, **storage_options: Any) -> None:
        self._store = self.store_class(url, compression, **storage_options)
        self._buffers = BufferPool()  # the read buffers of every pass, from epoch to epoch

    @property
    def url(self) -> str:
        """The store's root URL."""
        return self._store.url

    @property
    def compression(self) -> str | None:
        """The compression of the store's objects."""
        return self._store.compression

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get_store(self) -> AsyncRecordStore:
        """The loader's store, for map-style access."""
        return self._store

    async def aclose(self) -> None:
        """Release the store's filesystem on the running loop."""
        await self._store.aclose()

    @named_for_caller
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
        allow_empty: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int | None = None,
    ) -> AsyncLoaderStream:
        """Every sample of the store (or of the objects in `key_iterator`) as a re-iterable stream.

        Args:
            key_iterator: keys to read, in this order; all keys of the store (sorted) when None.
            max_concurrency: requests in flight at once (default: the loader's `default_max_concurrency`).
            prefetch: objects held ahead of the consumer, fetching or fetched (bounds memory; default:
                the loader's `default_prefetch`).
            shuffle_key_buffer: shuffle keys within a buffer of this size (1: no shuffle).
            shuffle_item_buffer: shuffle samples within a buffer of this size (1: no shuffle).
            seed, epoch: together they fix the order; a new epoch gives a new order. With shuffle
                buffers and no seed, each iteration draws a fresh random order.
            split_by_rank, split_by_worker: read only this DDP rank's / DataLoader worker's share of
                the keys (decided before anything is fetched); `rank` and `world_size` override the
                environment when torch.distributed is not initialised.
            on_error: "raise" stops at a missing or corrupt object; "skip" logs it, counts it in
                ``stream.metrics.skipped`` and goes on.
            equalize: None, or "drop" / "pad": every rank yields the same number of samples, the
                fewest (dropping the rest) or the most (repeating its own), from the store's index.
            allow_empty: read a store that holds no object as empty. By default, a pass that finds
                nothing raises `FileNotFoundError` naming the url, the suffix looked for and what the
                url holds instead (a typo'd path, a missing ``gs://``, the wrong driver or compression).
            cache_dir, cache_limit: cache the objects read from an object store (gs://, s3://) in this
                local folder, at most `cache_limit` bytes on disk, least recently used evicted first: later
                epochs read them from local disk. Safe to share between DataLoader workers and processes;
                an entry is served only while it matches the store's index (size, crc32c) or, without
                one, the object's size and version (see `squirrel.aio.shard_cache`). Local disk and
                memory:// are read in place: the cache does nothing there. None: the store's own options.

        Raises `ValueError` for a knob out of range (a cache without a positive `cache_limit`, or for a csv
        store, which streams objects in chunks) and `TypeError` for an unknown one (with the closest name),
        checked here; listing and reading errors are raised when the stream is iterated.
        """
        cache_dir, cache_limit = cache_options(self._store, cache_dir, cache_limit)
        plan = LoadPlan(
            key_iterator=list(key_iterator) if key_iterator is not None else None,
            max_concurrency=max_concurrency or self.default_max_concurrency,
            prefetch=prefetch or self.default_prefetch,
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
            allow_empty=allow_empty,
            cache_dir=cache_dir,
            cache_limit=cache_limit,
        )
        return AsyncLoaderStream(self._store, plan, self._buffers)


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


class AsyncCsvLoader(AsyncRecordLoader):
    """Streams the rows of a csv store (or of one csv file) as samples.

    Values are strings unless `dtypes` maps a column to a converter, e.g. ``{"label": int, "score": float}``.

    Args:
        url: the store's folder, or one ``.csv`` file (``.csv.gz``, ``.csv.zst``).
        dtypes: converters by column name, applied when reading (default: every value a string).
    """

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncCsvStore
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8
    _store: AsyncCsvStore

    def __init__(
        self, url: str, compression: str | None = None, dtypes: Dtypes | None = None, **storage_options: Any
    ) -> None:
        self._store = AsyncCsvStore(url, compression, dtypes=dtypes, **storage_options)
        self._buffers = BufferPool()

    @property
    def dtypes(self) -> Dtypes:
        """The column converters applied when reading."""
        return self._store.dtypes
