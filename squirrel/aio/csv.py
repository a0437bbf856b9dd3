"""The csv driver, async: each shard is one csv object ``<key>.csv`` (``.csv.gz`` with gzip).

Objects are read in chunks of `CHUNK_BYTES` with ranged reads and parsed incrementally, so a 1 GB file
streams in bounded memory. A loader fetches the first chunk of up to `prefetch` objects at once (a small
shard is then complete) and reads the rest of a large object as the consumer gets to it, two chunks in
flight. The url may also name a single csv file (``.../data.csv``): its one key is the file's stem.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from squirrel.aio.loader import AsyncLoaderStream, AsyncRecordLoader
from squirrel.aio.operators import closing
from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource
from squirrel.buffers import ShardInterleaver, make_numpy_rng
from squirrel.codec import Codec
from squirrel.codec.base import Buffer
from squirrel.codec.csv import CsvCodec, CsvDecoder, Dtypes
from squirrel.errors import DecodeError, StoreUnavailable
from squirrel.sample import Sample, validate_key

CHUNK_BYTES = 4 * 1024 * 1024
"""Bytes per ranged read of a csv object: large for object-store throughput, small for memory."""

CHUNKS_IN_FLIGHT = 2
"""Ranged reads in flight while the rest of a large object streams (the chunk being parsed, one ahead)."""

_FILE_SUFFIXES = ((".csv.gz", "gzip"), (".csv", None))
_END = object()


@dataclass(frozen=True)
class CsvHead:
    """The first chunk of the object `key`; `complete` when it is the whole object."""

    key: str
    data: bytes
    complete: bool


def single_file_key(url: str, compression: str | None) -> tuple[str | None, str | None]:
    """(stem, compression implied by the suffix) for a url naming one csv file; else (None, `compression`)."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix, implied in _FILE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            if compression not in (None, implied):
                raise ValueError(f"{url} implies compression={implied!r}, but compression={compression!r} was given")
            return validate_key(name[: -len(suffix)]), implied
    return None, compression


class AsyncCsvStore(AsyncRecordStore):
    """Shards as csv objects: ``await store.set(shard)``, ``async for s in store.get(key)``, ``store.keys()``.

    Values read back as strings unless `dtypes` maps a column to a converter (``{"label": int}``). A
    sample's key is its row's ``key`` column, or ``"<shard>:<row>"`` in a file without one.
    """

    codec: ClassVar[Codec] = CsvCodec()
    one_object_per_sample: ClassVar[bool] = False

    def __init__(
        self, url: str, compression: str | None = None, *, dtypes: Dtypes | None = None, **options: Any
    ) -> None:
        self.file_key, compression = single_file_key(url, compression)
        super().__init__(url, compression, **options)
        self.codec = CsvCodec(dtypes)

    @property
    def dtypes(self) -> Dtypes:
        """The column converters applied when reading."""
        return self.codec.dtypes

    def _path(self, key: str) -> str:
        if self.file_key is None:
            return super()._path(key)
        if validate_key(key) != self.file_key:
            raise KeyError(f"{self.url} is a single csv file: its only key is {self.file_key!r}, not {key!r}")
        return self._root

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (used in error messages)."""
        return self.url if self.file_key is not None else super().object_url(key)

    async def list_keys(self) -> list[str]:
        """Every shard in the store, sorted (for a single file: its stem, if the file exists)."""
        if self.file_key is None:
            return await super().list_keys()
        fs = self._fs()
        return [self.file_key] if await self._request(self.url, fs._exists, self._root) else []

    def decoder(self, key: str) -> CsvDecoder:
        """An incremental decoder for the object `key` (pure: feed it chunks in order)."""
        return self.codec.decoder(self.object_url(key), key, self.compression)

    def decode(self, key: str, data: Buffer) -> list[Sample]:
        """Every sample of the whole object `key`, given its stored bytes (pure CPU)."""
        return self.codec.decode(self.decompress(key, data), self.object_url(key), key)

    async def read_head(self, key: str) -> CsvHead:
        """The first `CHUNK_BYTES` of object `key`; `KeyError` if there is none."""
        fs = self._fs()
        path = self._path(key)
        try:
            data = await self._request(self.object_url(key), fs._cat_file, path, start=0, end=CHUNK_BYTES)
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r} (looked for {self.object_url(key)})") from None
        except StoreUnavailable:
            raise  # retries already ran out: asking for the size would only wait as long again
        except Exception:
            # some stores (GCS) refuse any range of an empty object
            if (await self._request(self.object_url(key), fs._info, path))["size"]:
                raise
            data = b""
        return CsvHead(key, data, complete=len(data) < CHUNK_BYTES)

    def read_rest(self, head: CsvHead) -> AsyncComposable:
        """The chunks of the object after `head`, in order, `CHUNKS_IN_FLIGHT` reads at a time."""

        async def spans() -> AsyncIterator[tuple[int, int]]:
            if head.complete:
                return
            size = (await self._request(self.object_url(head.key), self._fs()._info, self._path(head.key)))["size"]
            for start in range(len(head.data), size, CHUNK_BYTES):
                yield start, min(start + CHUNK_BYTES, size)

        async def read(span: tuple[int, int]) -> bytes:
            start, end = span
            path = self._path(head.key)
            return await self._request(self.object_url(head.key), self._fs()._cat_file, path, start=start, end=end)

        return AsyncIterableSource(spans).async_map(read, max_concurrency=CHUNKS_IN_FLIGHT)

    async def batches(self, head: CsvHead) -> AsyncIterator[list[Sample]]:
        """The samples of the object starting with `head`, in batches; parsed in a worker thread."""
        decoder = self.decoder(head.key)
        async with closing(aiter(self.read_rest(head))) as rest:
            chunk: bytes | None = head.data
            while chunk is not None:
                pieces = decoder.feed(chunk)
                while (batch := await asyncio.to_thread(next, pieces, _END)) is not _END:
                    if batch:
                        yield batch
                chunk = await anext(rest, None)
        if last := decoder.finish():
            yield last

    async def get(self, key: str) -> AsyncIterator[Sample]:
        """Yield the samples of shard `key`, streaming: memory stays bounded whatever the object's size."""
        head = await self.read_head(key)
        async with closing(aiter(self.batches(head))) as batches:
            async for batch in batches:
                for sample in batch:
                    yield sample


class AsyncCsvLoaderStream(AsyncLoaderStream):
    """The async stream of `AsyncCsvLoader.get_iter`: objects' heads fetched ahead, large ones streamed."""

    store: AsyncCsvStore

    async def one_pass(self) -> AsyncIterator[Sample]:
        """One pass over this reader's rows: heads fetched ahead, the rest of each object streamed."""
        plan, store = self.plan, self.store
        shuffler = None
        if plan.shuffle_item_buffer > 1:
            shuffler = ShardInterleaver(plan.shuffle_item_buffer, make_numpy_rng(plan.seed, plan.epoch, "items"))
        async with closing(aiter(plan.fetch_objects(store, store.read_head))) as heads:
            async for head in heads:
                if not isinstance(head, CsvHead):  # an object skipped (on_error="skip") while fetching
                    continue
                async with closing(aiter(store.batches(head))) as batches:
                    try:
                        async for batch in batches:
                            for sample in shuffler.push(batch) if shuffler else batch:
                                yield sample
                    except DecodeError as error:  # a bad line ends its object; rows of earlier chunks stay
                        plan.skipped(head.key, error)
        for sample in shuffler.drain() if shuffler else ():
            yield sample


class AsyncCsvLoader(AsyncRecordLoader):
    """Streams the rows of a csv store (or of one csv file) as samples.

    Values are strings unless `dtypes` maps a column to a converter, e.g. ``{"label": int, "score": float}``.
    """

    store_class: ClassVar[type[AsyncRecordStore]] = AsyncCsvStore
    stream_class: ClassVar[type[AsyncLoaderStream]] = AsyncCsvLoaderStream
    default_max_concurrency: ClassVar[int] = 8
    default_prefetch: ClassVar[int] = 8

    def __init__(
        self, url: str, compression: str | None = None, dtypes: Dtypes | None = None, **storage_options: Any
    ) -> None:
        self.url = url
        self.storage_options = storage_options
        self._store = AsyncCsvStore(url, compression, dtypes=dtypes, **storage_options)
        self.compression = self._store.compression
        self.dtypes = dtypes

    def get_store(self) -> AsyncCsvStore:
        """The loader's store, for map-style access."""
        return self._store
