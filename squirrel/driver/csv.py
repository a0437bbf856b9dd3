"""The csv driver's blocking store and loader: shards as csv objects, or one csv file, streamed.

Bytes are read on the IO loop and handed over a chunk at a time; parsing runs in the consumer's thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

from squirrel.aio.csv import AsyncCsvLoader, AsyncCsvStore, CsvHead
from squirrel.aio.loader import AsyncRecordLoader, LoadPlan
from squirrel.aio.record_store import AsyncRecordStore
from squirrel.codec.csv import Dtypes
from squirrel.driver.loader import LoaderStream, RecordLoader
from squirrel.driver.record import RecordStore
from squirrel.errors import DecodeError
from squirrel.iterstream.bridge import iterate_on_io_loop
from squirrel.runtime import run_sync
from squirrel.sample import Sample


def decode_batches(store: AsyncCsvStore, head: CsvHead) -> Iterator[list[Sample]]:
    """The samples of the object starting with `head`, in batches, parsed in this thread.

    The rest of a large object is read on the IO loop only as it is needed, so memory stays bounded.
    """
    decoder = store.decoder(head.key)
    yield from decoder.feed(head.data)
    if not head.complete:
        for chunk in iterate_on_io_loop(lambda: aiter(store.read_rest(head))):
            yield from decoder.feed(chunk)
    yield decoder.finish()


def _object_batches(plan: LoadPlan, store: AsyncCsvStore, head: CsvHead) -> Iterator[list[Sample]]:
    """`decode_batches` for a loader: under ``on_error="skip"`` a bad line ends its object, logged and
    counted. A large object is parsed a chunk at a time: rows of its earlier chunks were streamed and stay."""
    try:
        yield from decode_batches(store, head)
    except DecodeError as error:
        plan.skipped(head.key, error)


class CsvStore(RecordStore):
    """Blocking face of `AsyncCsvStore`: ``set(shard)``, ``get(shard_key)``, ``keys()``.

    The url is a folder of ``<key>.csv`` objects (``.csv.gz`` with ``compression="gzip"``), or a single
    csv file. Values read back as strings unless `dtypes` maps a column to a converter.
    """

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncCsvStore
    aio: AsyncCsvStore

    def __init__(
        self, url: str, compression: str | None = None, *, dtypes: Dtypes | None = None, **storage_options: Any
    ) -> None:
        super().__init__(url, compression, dtypes=dtypes, **storage_options)

    def get(self, key: str) -> Iterator[Sample]:
        """The samples of shard `key`, streamed in chunks; `KeyError` if there is none."""
        head = run_sync(self.aio.read_head(key))
        return (sample for batch in decode_batches(self.aio, head) for sample in batch)


class CsvLoaderStream(LoaderStream):
    """The stream of `CsvLoader.get_iter`: objects' heads fetched ahead on the IO loop, parsed here."""

    store: AsyncCsvStore

    def resumed(self, skip: int) -> Iterator[Sample]:
        """This reader's pass without its first `skip` rows: they are read and dropped (csv objects are
        shuffled in row batches, not whole objects, so placeholders could not stand in for them)."""
        return itertools.islice(iter(self), skip, None)

    def one_pass(self) -> Iterator[Sample]:
        """One pass over this reader's rows: heads fetched ahead on the IO loop, parsed here."""
        plan, store = self.plan, self.store
        heads = iterate_on_io_loop(lambda: aiter(plan.fetch_objects(store, store.read_head)))
        batches = itertools.chain.from_iterable(
            _object_batches(plan, store, head) for head in heads if isinstance(head, CsvHead)
        )  # not a head: an object skipped (on_error="skip") while fetching
        return itertools.chain.from_iterable(plan.shuffle_chunks(batches))


class CsvLoader(RecordLoader):
    """Streams the rows of a csv store, or of one csv file, as samples: ``CsvLoader(url).get_iter()``.

    Values are strings unless `dtypes` maps a column to a converter, e.g. ``{"label": int, "score": float}``.
    A large file is read in chunks, never held in memory whole.
    """

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncCsvLoader
    store_class: ClassVar[type[RecordStore]] = CsvStore
    stream_class: ClassVar[type[LoaderStream]] = CsvLoaderStream
    aio: AsyncCsvLoader

    def __init__(
        self, url: str, compression: str | None = None, dtypes: Dtypes | None = None, **storage_options: Any
    ) -> None:
        super().__init__(url, compression, dtypes=dtypes, **storage_options)

    def get_store(self) -> CsvStore:
        """The loader's store, for map-style access (`get`, `set`, `keys`)."""
        return CsvStore(self.aio.url, self.aio.compression, dtypes=self.aio.dtypes, **self.aio.storage_options)
