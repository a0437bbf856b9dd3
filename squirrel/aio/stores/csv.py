"""The csv driver's async store: each shard is one csv object ``<key>.csv`` (``.csv.gz`` with gzip).

Objects are read in chunks of `CHUNK_BYTES` with ranged reads and parsed incrementally, so a 1 GB file
streams in bounded memory: a loader fetches the first chunk of up to `prefetch` objects at once (a small
shard is then complete), and the decoder pulls the rest of a large object as the consumer gets to it, two
chunks in flight (`read_rest`). The url may also name a single csv file (``.../data.csv``): its one key
is the file's stem.

An object read in chunks is read in one version, even if it is replaced meanwhile: the first chunk
records which (`Version`), and every later read is of that version or fails with a `DecodeError` saying the
object changed during the read. Reading again from the start is no answer, as the rows of the first
chunks are already out. On gs:// the reads name the object's generation (a replaced generation is gone, so
the read fails, unless the bucket keeps old versions: then it reads whole); on local disk, memory:// and
other filesystems the version's stamp is taken again after each read and must not have changed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from squirrel.aio.fs import is_blocking
from squirrel.aio.operators import closing
from squirrel.aio.pipeline import Fetched, Rest
from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.aio.stream import AsyncIterableSource
from squirrel.codec.csv import CsvCodec, Dtypes
from squirrel.errors import DecodeError, StoreUnavailable
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from fsspec import AbstractFileSystem
    from fsspec.asyn import AsyncFileSystem

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.codec.base import Buffer

__all__ = ["CHUNK_BYTES", "GENERATION_PROTOCOLS", "AsyncCsvStore", "Head", "Version", "single_file_key"]

CHUNK_BYTES = 4 * 1024 * 1024
"""Bytes per ranged read of a csv object: large for object-store throughput, small for memory."""

CHUNKS_IN_FLIGHT = 2
"""Ranged reads in flight while the rest of a large object streams (the chunk being parsed, one ahead)."""

GENERATION_PROTOCOLS = ("gs", "gcs")
"""Protocols whose objects have generations that a read can name (gcsfs's ``generation=``)."""

_FILE_SUFFIXES = ((".csv.gz", "gzip"), (".csv.zst", "zstd"), (".csv", None))


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a stored object, of `size` bytes: what `read_rest` reads all chunks of.

    On gs:// its `generation`, which each read names; elsewhere its `stamp`, taken again after each read
    and compared: device, inode, size and mtime on local disk; the file object and its size on memory://;
    the object's metadata (`_info`) on other filesystems.
    """

    size: int
    generation: str | None = None
    stamp: object = None


@dataclass(slots=True)
class Head(Fetched):
    """The first chunk of an object read in chunks (`complete` is False), and the `version` it is of."""

    version: Version = field(kw_only=True)


def _changed(url: str) -> DecodeError:
    return DecodeError(
        f"{url} changed during the read (replaced or rewritten after its first chunk was read): "
        "the rows before this error are of the version it had then; read it again"
    )


async def _reading(fs: AsyncFileSystem, path: str, end: int) -> tuple[bytes, Version | None]:
    """Bytes ``0:end`` of a gs:// object with one GET, and its `Version` from the response's headers
    (x-goog-generation and the size in content-range), None if they are missing.

    Named for the errors of `_request`, which call a request by its method's name: "reading <url>".
    """
    headers, data = await fs._call("GET", fs.url(path), headers={"Range": f"bytes=0-{end - 1}"})
    generation, size = headers.get("X-Goog-Generation"), headers.get("Content-Range", "").rpartition("/")[2]
    return data, Version(int(size), generation=generation) if generation and size.isdigit() else None


def _stamp(fs: AbstractFileSystem, path: str) -> Version:
    """The version of the object at `path` on a blocking filesystem now (`FileNotFoundError` if none)."""
    if isinstance(fs, LocalFileSystem):
        stat = os.stat(path)
        return Version(stat.st_size, stamp=(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    if isinstance(fs, MemoryFileSystem):
        file = fs.store.get(fs._strip_protocol(path))
        if file is None:
            raise FileNotFoundError(path)
        return Version(file.size, stamp=(file, file.size))  # the object itself: its id may be reused
    return _info_stamp(fs.info(path))


def _info_stamp(info: dict[str, Any]) -> Version:
    """A version made of everything a filesystem's `_info` says of an object."""
    return Version(int(info["size"]), stamp=tuple(sorted((name, repr(value)) for name, value in info.items())))


def _read_stamped(fs: AbstractFileSystem, path: str, start: int, end: int) -> tuple[bytes, Version]:
    """Bytes `start:end` of the object at `path` on a blocking filesystem, and the version they are of
    (taken first: a change during the read shows in the next comparison)."""
    version = _stamp(fs, path)
    data: bytes = fs.cat_file(path, start=start, end=end)
    return data, version


def _read_checked(fs: AbstractFileSystem, path: str, start: int, end: int, version: Version, url: str) -> bytes:
    """Bytes `start:end` of the object at `path` on a blocking filesystem; `DecodeError` unless it is still
    `version` once they are read."""
    try:
        data: bytes = fs.cat_file(path, start=start, end=end)
        if _stamp(fs, path) != version:
            raise _changed(url)
    except FileNotFoundError:
        raise _changed(url) from None
    return data


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

    Args:
        url: the store's folder, or one ``.csv`` file (``.csv.gz``, ``.csv.zst``): its only key is its stem.
        dtypes: converters by column name, applied when reading (default: every value a string).
    """

    codec: CsvCodec = CsvCodec()
    one_object_per_sample: ClassVar[bool] = False
    groups_small_objects: ClassVar[bool] = False
    whole_objects: ClassVar[bool] = False

    def __init__(
        self, url: str, compression: str | None = None, *, dtypes: Dtypes | None = None, **storage_options: Any
    ) -> None:
        self.file_key, compression = single_file_key(url, compression)
        super().__init__(url, compression, **storage_options)
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
        """Every sample of the whole object `key`, given its stored bytes `data` (pure CPU); gzip is inflated
        a piece at a time, and refused past `max_decompressed_size` (`DecodeError`)."""
        return self.codec.decode(
            data,
            self.object_url(key),
            key,
            compression=self.compression,
            max_decompressed_size=self.max_decompressed_size,
        )

    async def read_head(self, key: str) -> Fetched:
        """The first `CHUNK_BYTES` of object `key` (still compressed); `KeyError` if there is none.

        An object with more comes back as a `Head`, with the `Version` its first chunk is of.
        """
        fs = self._fs()
        path, url = self._object_path(key), self.object_url(key)
        try:
            data, version = await self._read_first(fs, path, url)
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r} (looked for {url})") from None
        except StoreUnavailable:
            raise  # retries already ran out: asking for the size would only wait as long again
        except Exception:
            # some stores (GCS) refuse any range of an empty object
            if (await self._request(url, fs._info, path))["size"]:
                raise
            return Fetched(key, b"")
        if len(data) < CHUNK_BYTES:
            return Fetched(key, data)
        if version is None:
            raise DecodeError(
                f"{url}: the server named no generation and size of the object (x-goog-generation, content-range), "
                "so its chunks cannot be read from one version"
            )
        return Head(key, data, complete=False, version=version)

    async def _read_first(self, fs: AsyncFileSystem, path: str, url: str) -> tuple[bytes, Version | None]:
        """The first chunk of the object at `path`, and the version it is of (None if a server did not say)."""
        if is_blocking(fs):
            return await asyncio.to_thread(_read_stamped, fs.sync_fs, path, 0, CHUNK_BYTES)
        if self.layout.protocol in GENERATION_PROTOCOLS:
            return await self._request(url, _reading, fs, path, CHUNK_BYTES)
        stamp = _info_stamp(await self._request(url, fs._info, path))
        data: bytes = await self._request(url, fs._cat_file, path, start=0, end=CHUNK_BYTES)
        return data, stamp

    async def fetch_objects(self, keys: Sequence[str], pool: BufferPool | None) -> list[Fetched]:
        """The first chunk of each object of `keys` (`pool` is unused: chunks are small); a missing one comes
        back with its `error` set."""
        fetched = []
        for key in keys:
            try:
                fetched.append(await self.read_head(key))
            except (KeyError, DecodeError) as error:
                fetched.append(Fetched(key, error=error))
        return fetched

    async def read_rest(self, fetched: Fetched) -> AsyncIterator[bytes]:
        """The chunks of the object after `fetched`, in order, `CHUNKS_IN_FLIGHT` reads at a time, all of
        the version of `fetched` (a `Head`); `DecodeError` if the object changed since."""
        if fetched.complete:
            return
        if not isinstance(fetched, Head):
            raise TypeError(f"read_rest continues a Head from read_head, got {type(fetched).__name__}")
        path, url, version = self._object_path(fetched.key), self.object_url(fetched.key), fetched.version

        async def read(start: int) -> bytes:
            return await self._read_chunk(path, url, start, min(start + CHUNK_BYTES, version.size), version)

        starts = range(len(fetched.data), version.size, CHUNK_BYTES)
        async with closing(aiter(AsyncIterableSource(starts).async_map(read, CHUNKS_IN_FLIGHT))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _read_chunk(self, path: str, url: str, start: int, end: int, version: Version) -> bytes:
        """Bytes `start:end` of `version` of the object at `path`; `DecodeError` if that version is gone."""
        fs = self._fs()
        if is_blocking(fs):
            return await asyncio.to_thread(_read_checked, fs.sync_fs, path, start, end, version, url)
        try:
            if version.generation is not None:
                data: bytes = await self._request(
                    url, fs._cat_file, path, start=start, end=end, generation=version.generation
                )
                return data
            data = await self._request(url, fs._cat_file, path, start=start, end=end)
            if _info_stamp(await self._request(url, fs._info, path)) != version:
                raise _changed(url)
            return data
        except FileNotFoundError:
            raise _changed(url) from None

    def decode_object(self, fetched: Fetched, rest: Rest) -> Iterator[list[Sample]]:
        """The samples of one object in batches, parsed as its chunks arrive: `fetched` holds the first,
        `rest` reads the others."""
        decoder = self.codec.decoder(
            self.object_url(fetched.key), fetched.key, self.compression, self.max_decompressed_size
        )
        yield from decoder.feed(fetched.data)
        if not fetched.complete:
            for chunk in rest():
                yield from decoder.feed(chunk)
        yield decoder.finish()
