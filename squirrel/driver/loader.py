"""`RecordLoader`: the blocking face of `AsyncRecordLoader`, and the base of every sync loader.

Objects are fetched (and gzip-inflated, in threads) on the IO loop, `prefetch` ahead, and handed over one
object at a time; decoding and everything after it run in the consumer's thread, so the loop only does
I/O, and a shard's samples cross as one list, not one by one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from squirrel.aio.buffer_pool import BufferPool
from squirrel.aio.loader import AsyncRecordLoader, PlannedStream
from squirrel.driver.record import RecordStore
from squirrel.errors import DecodeError
from squirrel.iterstream.base import Composable
from squirrel.iterstream.bridge import iterate_on_io_loop
from squirrel.runtime import run_sync
from squirrel.sample import Sample


class LoaderStream(PlannedStream, Composable):
    """The stream a loader's `get_iter` returns: re-iterable, with `set_epoch` for a new order."""

    def __iter__(self) -> Iterator[Sample]:
        quota = run_sync(self.plan.quota(self.store)) if self.plan.equalize else None
        if quota is None:
            return self.one_pass()
        return itertools.islice(_repeat_passes(self.one_pass), quota)

    def resumed(self, skip: int) -> Iterator[Sample]:
        """This reader's pass without its first `skip` samples, for a resume mid-epoch.

        With the store's index, shards whose samples all came before are not read: placeholders of
        their sample count take their place, so the item shuffle (which depends only on counts and the
        seed) replays exactly, and only shards that still hold unseen samples are fetched. Otherwise
        (see `LoadPlan.replay_plan`) the skipped samples are read and dropped.
        """
        replay = run_sync(self.plan.replay_plan(self.store, skip)) if skip else None
        if replay is None:
            return itertools.islice(iter(self), skip, None)
        return itertools.islice(type(self)(self.store, replay).one_pass(), skip, None)

    def one_pass(self) -> Iterator[Sample]:
        """One pass over this reader's samples; subclasses for other formats override this."""
        plan, store = self.plan, self.store
        pool = BufferPool(max_buffers=plan.prefetch + 4)

        async def fetch(key: str) -> tuple[str, bytes | memoryview]:
            data = await store.read_bytes(key, pool)
            plan.metrics.bytes += len(data)
            if store.compression is not None:  # inflating releases the GIL: threads use both cores
                data = await asyncio.to_thread(store.decompress, key, data)
            return key, data

        def decode(fetched: tuple[str, bytes | memoryview] | list) -> list[Sample]:
            if isinstance(fetched, list):  # an object skipped on the IO loop
                return fetched
            key, raw = fetched
            try:
                return store.codec.decode(raw, store.object_url(key))
            except DecodeError as error:
                return plan.skipped(key, error)

        fetched = iterate_on_io_loop(lambda: aiter(plan.fetch_objects(store, fetch)))
        return itertools.chain.from_iterable(plan.shuffle_chunks(map(decode, fetched)))


def _repeat_passes(one_pass: Callable[[], Iterator[Sample]]) -> Iterator[Sample]:
    """Pass after pass over the same samples (for "pad"), stopping if a pass yields nothing."""
    while True:
        empty = True
        for sample in one_pass():
            empty = False
            yield sample
        if empty:
            return


class RecordLoader:
    """Streams every sample of a record store: ``for sample in RecordLoader(url).get_iter(): ...``."""

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncRecordLoader
    store_class: ClassVar[type[RecordStore]] = RecordStore
    stream_class: ClassVar[type[LoaderStream]] = LoaderStream

    def __init__(self, url: str, compression: str | None = None, **storage_options: Any) -> None:
        self.aio = self.async_class(url, compression, **storage_options)

    @property
    def url(self) -> str:
        """The store's root URL."""
        return self.aio.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.aio.compression!r})"

    def get_store(self) -> RecordStore:
        """The loader's store, for map-style access (`get`, `set`, `keys`)."""
        return self.store_class(self.aio.url, self.aio.compression, **self.aio.storage_options)

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
    ) -> LoaderStream:
        """Every sample of the store (or of the objects in `key_iterator`) as a re-iterable stream.

        Takes the same arguments as `AsyncRecordLoader.get_iter` (see there).
        """
        plan = self.aio.get_iter(
            key_iterator,
            max_concurrency,
            prefetch,
            shuffle_key_buffer,
            shuffle_item_buffer,
            seed,
            epoch,
            split_by_rank,
            split_by_worker,
            rank,
            world_size,
            on_error,
            equalize,
        ).plan
        return self.stream_class(self.aio.get_store(), plan)
