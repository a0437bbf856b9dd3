"""`RecordLoader`: the blocking face of `AsyncRecordLoader`, and the base of every sync loader.

Objects are fetched on the IO loop (concurrently, `prefetch` ahead) and handed over one object's bytes
at a time; decoding and everything after it run in the consumer's thread, so the loop only does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from squirrel.aio.loader import AsyncRecordLoader, item_seed
from squirrel.driver.record import RecordStore
from squirrel.iterstream.base import Composable, IterableSource
from squirrel.iterstream.bridge import iterate_on_io_loop
from squirrel.sample import Sample


class RecordLoader:
    """Streams every sample of a record store: ``for sample in RecordLoader(url).get_iter(): ...``."""

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncRecordLoader
    store_class: ClassVar[type[RecordStore]] = RecordStore

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
    ) -> Composable:
        """Every sample of the store (or of the objects in `key_iterator`) as a re-iterable stream.

        Args:
            key_iterator: keys to read, in this order; all keys of the store (sorted) when None.
            max_concurrency: requests in flight at once.
            prefetch: objects held ahead of the consumer, fetching or fetched (bounds memory).
            shuffle_key_buffer: shuffle keys within a buffer of this size (1: no shuffle).
            shuffle_item_buffer: shuffle samples within a buffer of this size (1: no shuffle).
            seed, epoch: together they fix the order; a new epoch gives a new order. With shuffle
                buffers and no seed, each iteration draws a fresh random order.
        """
        keys = list(key_iterator) if key_iterator is not None else None
        store = self.aio.get_store()

        async def fetch(key: str) -> tuple[str, bytes]:
            return key, await store.read_bytes(key)

        def objects() -> Iterator[tuple[str, bytes]]:
            stream = self.aio.fetch_objects(keys, max_concurrency, prefetch, shuffle_key_buffer, seed, epoch, fetch)
            return iterate_on_io_loop(lambda: aiter(stream))

        def decode(fetched: tuple[str, bytes]) -> list[Sample]:
            return store.decode(*fetched)

        stream = IterableSource(objects).map(decode).flatten()
        if shuffle_item_buffer > 1:
            stream = stream.shuffle(shuffle_item_buffer, item_seed(seed, epoch))
        return stream
