"""The csv driver's async store: each shard is one csv object ``<key>.csv`` (``.csv.gz`` with gzip).

Objects are read in chunks of `CHUNK_BYTES` with ranged reads and parsed incrementally, so a 1 GB file
streams in bounded memory: a loader fetches the first chunk of up to `prefetch` objects at once (a small
shard is then complete), and the decoder pulls the rest of a large object as the consumer gets to it, two
chunks in flight (`read_rest`). The url may also name a single csv file (``.../data.csv``): its one key
is the file's stem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio.operators import closing
from squirrel.aio.pipeline import Fetched, Rest
from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.aio.stream import AsyncIterableSource
from squirrel.codec.csv import CsvCodec, Dtypes
from squirrel.errors import StoreUnavailable
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.codec.base import Buffer

__all__ = ["CHUNK_BYTES", "AsyncCsvStore", "single_file_key"]

CHUNK_BYTES = 4 * 1024 * 1024
"""Bytes per ranged read of a csv object: large for object-store throughput, small for memory."""

CHUNKS_IN_FLIGHT = 2
"""Ranged reads in flight while the rest of a large object streams (the chunk being parsed, one ahead)."""

_FILE_SUFFIXES = ((".csv.gz", "gzip"), (".csv", None))


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

    codec: CsvCodec = CsvCodec()
    one_object_per_sample: ClassVar[bool] = False
    max_objects_per_read: ClassVar[int] = 1
    whole_objects: ClassVar[bool] = False

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

    def _object_path(self, key: str) -> str:
        if self.file_key is None:
            return self.layout.path(key)
        if validate_key(key) != self.file_key:
            raise KeyError(f"{self.url} is a single csv file: its only key is {self.file_key!r}, not {key!r}")
        return self.layout.root

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (used in error messages)."""
        return self.url if self.file_key is not None else super().object_url(key)

    async def list_keys(self) -> list[str]:
        """Every shard in the store, sorted (for a single file: its stem, if the file exists)."""
        if self.file_key is None:
            return await super().list_keys()
        fs = self._fs()
        return [self.file_key] if await self._request(self.url, fs._exists, self.layout.root) else []

    def decode(self, key: str, data: Buffer) -> list[Sample]:
        """Every sample of the whole object `key`, given its stored bytes (pure CPU)."""
        return self.codec.decode(self.decompress(key, data), self.object_url(key), key)

    async def read_head(self, key: str) -> Fetched:
        """The first `CHUNK_BYTES` of object `key` (still compressed); `KeyError` if there is none."""
        fs = self._fs()
        path = self._object_path(key)
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
        return Fetched(key, data, complete=len(data) < CHUNK_BYTES)

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """The first chunk of each object of `keys`; a missing one comes back with its `error` set."""
        fetched = []
        for key in keys:
            try:
                fetched.append(await self.read_head(key))
            except KeyError as error:
                fetched.append(Fetched(key, error=error))
        return fetched

    async def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """The chunks of the object after `fetched`, in order, `CHUNKS_IN_FLIGHT` reads at a time."""
        if fetched.complete:
            return
        path, url = self._object_path(fetched.key), self.object_url(fetched.key)
        size = (await self._request(url, self._fs()._info, path))["size"]

        async def read(start: int) -> bytes:
            data: bytes = await self._request(
                url, self._fs()._cat_file, path, start=start, end=min(start + CHUNK_BYTES, size)
            )
            return data

        starts = range(len(fetched.data), size, CHUNK_BYTES)
        async with closing(aiter(AsyncIterableSource(starts).async_map(read, CHUNKS_IN_FLIGHT))) as chunks:
            async for chunk in chunks:
                yield chunk

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterator[list[Sample]]:
        """The samples of one object in batches, parsed as its chunks arrive (`rest` reads the others)."""
        decoder = self.codec.decoder(self.object_url(fetched.key), fetched.key, self.compression)
        yield from decoder.feed(fetched.data)
        if not fetched.complete:
            for chunk in rest():
                yield from decoder.feed(chunk)
        yield decoder.finish()
