"""The csv driver's blocking store and loader: shards as csv objects, or one csv file, streamed.

Bytes are read on the IO loop and handed over a chunk at a time; parsing runs in the consumer's thread
(see `squirrel.driver.loader`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from squirrel._runtime import run_sync
from squirrel.aio.loaders import AsyncCsvLoader, AsyncRecordLoader
from squirrel.aio.stores.csv import AsyncCsvStore
from squirrel.driver.loader import RecordLoader, samples_of
from squirrel.driver.record import RecordStore
from squirrel.driver.twin import constructor, shared

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.aio.stores.record import AsyncRecordStore
    from squirrel.codec.csv import Dtypes
    from squirrel.sample import Sample

__all__ = ["CsvLoader", "CsvStore"]


class CsvStore(RecordStore):
    """Blocking face of `AsyncCsvStore`: ``set(shard)``, ``get(shard_key)``, ``keys()``.

    The url is a folder of ``<key>.csv`` objects (``.csv.gz`` with ``compression="gzip"``), or a single
    csv file. Values read back as strings unless `dtypes` maps a column to a converter.
    """

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncCsvStore
    aio: AsyncCsvStore

    @constructor(AsyncCsvStore)
    def __init__(self) -> None:
        """Open the csv store (or file) at `url`."""

    dtypes: shared[Dtypes] = shared("The column converters applied when reading.")
    file_key: shared[str | None] = shared("The only key of a store that is one csv file (None: a folder).")

    def get(self, key: str) -> Iterator[Sample]:
        """The samples of shard `key`, streamed in chunks; `KeyError` if there is none (raised here)."""
        if not run_sync(self.aio.exists(key)):
            raise KeyError(f"no key {key!r} in {self!r} (looked for {self.aio.object_url(key)})")
        return samples_of(self.aio.object_pass(key))


class CsvLoader(RecordLoader):
    """Streams the rows of a csv store, or of one csv file, as samples: ``CsvLoader(url).get_iter()``.

    Values are strings unless `dtypes` maps a column to a converter, e.g. ``{"label": int, "score": float}``.
    A large file is read in chunks, never held in memory whole.
    """

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncCsvLoader
    store_class: ClassVar[type[RecordStore]] = CsvStore
    aio: AsyncCsvLoader

    @constructor(AsyncCsvLoader)
    def __init__(self) -> None:
        """A loader of the csv store (or file) at `url`."""

    dtypes: shared[Dtypes] = shared("The column converters applied when reading.")
