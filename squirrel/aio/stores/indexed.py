"""`IndexedStore`: the part of a store that lists its objects, and reads, writes and checks its index.

An optional index at the root (`squirrel.index`) lists every object with its sample count, size and crc32c:
`list_keys` then reads it instead of listing, and `count_samples` answers without reading a shard.

No write made through squirrel is invisible to its readers, and a fresh index costs readers nothing:
- `set` and `delete` remove the index once their objects are written or removed (one request, or one
  `unlink` in the writer's own thread hop on local disk). Readers then list the store until `write_index`
  runs again. Writers never rewrite the index, so concurrent writers never race on its contents.
- `write_index` lists the store, writes the index, then lists again: an object that appeared or changed
  in between (a writer whose removal of the index came before the new index was written) makes it index
  again. Together: any write either lands before the second listing (and is indexed) or removes the
  index after it was written.
- A bulk writer (`write_shards`) keeps the old index while it writes (``set(..., keep_index=True)``) and
  writes the new one at its end, so readers see the old dataset, then the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from squirrel.aio.fs import is_local, verb_of
from squirrel.aio.retry import RetryPolicy, with_retries
from squirrel.aio.single_flight import SingleFlight
from squirrel.aio.storage_options import gcs_endpoint
from squirrel.aio.stores.local import local_names, read_local, write_local_atomically
from squirrel.aio.stream import AsyncIterableSource
from squirrel.errors import DecodeError, StoreChanged
from squirrel.index import Index, IndexEntry, build_index, describe, verify_object
from squirrel.index_format import dump_index, store_index

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterable

    from fsspec.asyn import AsyncFileSystem

    from squirrel.aio.buffer_pool import BufferPool
    from squirrel.aio.stores.layout import Layout
    from squirrel.codec.base import Buffer
    from squirrel.sample import Sample

__all__ = ["CHECKSUM_IN_THREAD_BYTES", "INDEX_ATTEMPTS", "LOCAL_PROTOCOLS", "IndexedStore"]

T = TypeVar("T")

LOCAL_PROTOCOLS = ("file", "local", "memory")
"""Filesystems that never fail transiently: requests on them are not retried."""

CHECKSUM_IN_THREAD_BYTES = 8 * 1024 * 1024
"""Objects at least this large are checksummed in a worker thread (crc32c runs at ~15 GB/s)."""

INDEX_GROUP = 128
"""Objects `write_index` reads and decodes in one thread hop on local disk and memory://."""
INDEX_ATTEMPTS = 3
"""Times `write_index` indexes a store that writers keep changing before it gives up."""

PARSE_IN_THREAD_BYTES = 256 * 1024
"""An index at least this large is parsed in a worker thread, so the loop keeps serving requests."""


class IndexedStore:
    """Listing and index of a store; `AsyncRecordStore` provides the filesystem, layout and codec."""

    layout: Layout
    retry: RetryPolicy
    compression: str | None
    storage_options: dict[str, Any]

    def __init__(self) -> None:
        self._index: Index | None = None  # the index this store last read or wrote (None: absent or unread)
        self._index_read = False
        self._index_reads = SingleFlight()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.layout.url!r}, compression={self.compression!r})"

    def _fs(self) -> AsyncFileSystem:
        raise NotImplementedError

    def decode(self, key: str, data: Buffer) -> list[Sample]:
        """The samples of object `key` from its stored bytes (the store class provides it)."""
        raise NotImplementedError

    def _object_path(self, key: str) -> str:
        return self.layout.path(key)

    def _blocking_read(self, pool: BufferPool | None) -> Callable[[str], Buffer]:
        """What reads an object by path in the calling thread: local disk, memory:// (its loop's filesystem)."""
        return functools.partial(read_local, pool=pool) if self.layout.on_local_disk else self._fs().sync_fs.cat_file

    @property
    def index_url(self) -> str:
        """The full URL of the store's index."""
        return self.layout.index_url

    def _location(self) -> str:
        """The store's URL, with the endpoint it talks to for gs:// when one is set (for error messages)."""
        endpoint = gcs_endpoint(self.storage_options) if self.layout.protocol in ("gs", "gcs") else None
        return f"store {self.layout.url} at {endpoint}" if endpoint else f"store {self.layout.url}"

    async def _request(self, url: str, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await method(*args, **kwargs)`` under the store's retry policy, the only layer that retries it.

        `url` (the object's, or the store's for a listing) names the request in the error raised when retries
        run out, with the store and its endpoint: see `squirrel.aio.retry.with_retries`.
        """
        what = f"{verb_of(method)} {url} ({self._location()})"
        return await with_retries(functools.partial(method, *args, **kwargs), self.retry, what)

    # -- listing -------------------------------------------------------------------------------

    async def list_keys(self) -> list[str]:
        """Every key in the store, sorted: from the index when there is one, else by listing the folder.

        A store whose folder does not exist yet is empty; `FileNotFoundError` when its bucket is missing.
        """
        if self.layout.on_local_disk:  # in one thread hop; names only: fsspec's detailed listing stats every file
            index, names = await asyncio.to_thread(self._local_index_or_names)
            self._index, self._index_read = index, True
            return index.keys if index is not None else self.layout.keys_of(names)
        index = await self.read_index()
        return index.keys if index is not None else sorted(await self.list_objects())

    async def list_objects(self) -> dict[str, int]:
        """The stored size of every object under the root, by key, from a listing (never from the index)."""
        return {key: size for key, (size, _) in (await self._listing()).items()}

    async def list_names(self) -> list[str]:
        """The name of everything directly under the store's root (objects of any format, the index too),
        sorted: what a writer that must not mix with earlier data checks first."""
        return sorted(info["name"].rstrip("/").rsplit("/", 1)[-1] for info in await self.list_infos())

    async def list_infos(self) -> list[dict[str, Any]]:
        """The filesystem's details (name, size, version...) of everything directly under the root."""
        fs = self._fs()
        try:
            infos: list[dict[str, Any]] = await self._request(self.layout.url, fs._ls, self.layout.root, detail=True)
        except FileNotFoundError:
            await self._check_root_reachable(fs)
            return []
        return infos

    async def _listing(self, only: Collection[str] | None = None) -> dict[str, tuple[int, object]]:
        """(size, version) of every object under the root (or of the keys `only`), by key: the version is
        what the filesystem changes on every write (gs:// generation, local mtime, memory:// creation time)."""
        listing = {}
        for info in await self.list_infos():
            key = self.layout.key_of(info["name"].rstrip("/").rsplit("/", 1)[-1])
            if key is not None and (only is None or key in only):
                version = info.get("generation") or info.get("mtime") or info.get("created")
                listing[key] = (info["size"], version)
        return listing

    async def _check_root_reachable(self, fs: AsyncFileSystem) -> None:
        """Raise `FileNotFoundError` when the store's bucket itself is missing (not just its folder)."""
        if self.layout.protocol in LOCAL_PROTOCOLS:
            return
        bucket = self.layout.root.split("/", 1)[0]
        if not await self._request(f"{self.layout.protocol}://{bucket}", fs._exists, bucket):
            raise FileNotFoundError(f"bucket {bucket!r} of store {self.layout.url} does not exist")

    async def nothing_to_read(self) -> FileNotFoundError:
        """The error for a reader that found no object in the store (see `Layout.nothing_found`)."""
        return self.layout.nothing_found(await self.list_names())

    # -- index ---------------------------------------------------------------------------------

    async def read_index(self) -> Index | None:
        """The store's index, read anew, or None when it has none.

        `DecodeError` naming the index if it is corrupt or was written for another suffix or compression.
        """
        if self.layout.on_local_disk:  # read and parsed in one thread hop, with no filesystem object to build
            index = await asyncio.to_thread(self._local_index)
        else:
            try:
                data = await self._request(self.index_url, self._fs()._cat_file, self.layout.index_path)
            except FileNotFoundError:
                index = None
            else:
                parse = functools.partial(store_index, data, self.index_url, self.layout.suffix, self.compression)
                index = await asyncio.to_thread(parse) if len(data) >= PARSE_IN_THREAD_BYTES else parse()
        self._index, self._index_read = index, True
        return index

    def _local_index(self) -> Index | None:
        """The store's index file on local disk, parsed and checked (see `read_index`); None if there is none."""
        try:
            data = read_local(self.layout.index_path, None)
        except (FileNotFoundError, NotADirectoryError):  # none, or a single-file store
            return None
        return store_index(data, self.index_url, self.layout.suffix, self.compression)

    def _local_index_or_names(self) -> tuple[Index | None, list[str]]:
        """The store's index on local disk (see `read_index`), or when it has none the names in its folder."""
        index = self._local_index()
        return index, [] if index is not None else local_names(self.layout.root)

    async def _loaded_index(self) -> Index | None:
        """The index this store last read, reading it first if it has not (once, however many callers wait)."""
        while not self._index_read:
            await self._index_reads.run(self.read_index)
        return self._index

    async def count_samples(self) -> int:
        """The number of samples in the store, from its index (`FileNotFoundError` when it has none)."""
        index = await self.read_index()
        if index is None:
            raise FileNotFoundError(
                f"{self!r} has no index ({self.index_url}): build one with write_index() to count its samples"
            )
        return index.num_samples

    async def write_index(
        self,
        known: Iterable[IndexEntry] = (),
        max_concurrency: int = 16,
        only: Collection[str] | None = None,
        progress: bool = False,
    ) -> Index:
        """Index every object of the store (or the keys `only`), write the index atomically at the root, and
        return it.

        The folder is listed (the old index is ignored) and each object read and decoded to count its
        samples, at most `max_concurrency` at once (on local disk and memory://, `INDEX_GROUP` per thread
        hop); objects in `known` whose listed size matches are taken as given (a bulk writer knows what it
        wrote; an overwrite indexes `only` what it wrote, not the old objects it removes next). The folder is
        listed again after the index is written: if a writer changed the store meanwhile, it indexes again
        (`INDEX_ATTEMPTS` times in all, then removes its index and raises `StoreChanged`, so readers list the
        store instead of missing a write). With `progress`, a tqdm bar on standard error counts the objects
        indexed, up to the listing's total.
        """
        given = {entry.key: entry for entry in known}
        listing = await self._listing(only)
        with tqdm(unit="object", desc=f"indexing {self.layout.url}", disable=not progress) as bar:
            for _ in range(INDEX_ATTEMPTS):
                bar.reset(total=len(listing))
                index = await self._index_of(listing, given, max_concurrency, bar.update)
                await self._write_index_object(dump_index(index))
                self._index, self._index_read = index, True
                relisted = await self._listing(only)
                if relisted == listing:
                    return index
                listing = relisted
        await self.drop_index()
        raise StoreChanged(
            f"{self.layout.url} kept changing while it was being indexed ({INDEX_ATTEMPTS} attempts): "
            "its index was removed, so readers list the store; index it once the writers are done"
        )

    async def _index_of(
        self,
        listing: dict[str, tuple[int, object]],
        given: dict[str, IndexEntry],
        max_concurrency: int,
        done: Callable[[int], object],
    ) -> Index:
        known = {key: entry for key, entry in given.items() if key in listing and entry.size == listing[key][0]}

        async def entry_of(key: str) -> IndexEntry:
            entry = known.get(key)
            if entry is None:
                data = await self._read_unverified(key)
                entry = await asyncio.to_thread(lambda: describe(key, data, len(self.decode(key, data))))
            done(1)
            return entry

        def entries_of(keys: list[str], cat: Callable[[str], Buffer]) -> list[IndexEntry]:
            found = []
            for key in keys:
                if (entry := known.get(key)) is None:
                    try:
                        data = cat(self._object_path(key))
                    except FileNotFoundError:
                        raise self._deleted(key) from None
                    entry = describe(key, data, len(self.decode(key, data)))
                found.append(entry)
            return found

        keys = sorted(listing)
        if self.layout.protocol not in LOCAL_PROTOCOLS:
            entries = await AsyncIterableSource(keys).async_map(entry_of, max_concurrency).collect()
        else:  # local disk, memory://: a group of objects per thread hop (a hop each cost more than the read)
            cat = self._blocking_read(None)

            async def group_of(group: list[str]) -> list[IndexEntry]:
                part = await asyncio.to_thread(entries_of, group, cat)
                done(len(part))
                return part

            groups = [keys[start : start + INDEX_GROUP] for start in range(0, len(keys), INDEX_GROUP)]
            entries = await AsyncIterableSource(groups).async_map(group_of, 2).flatten().collect()
        return build_index(self.layout.suffix, self.compression, entries)

    async def _write_index_object(self, data: bytes) -> None:
        fs = self._fs()
        if is_local(fs):
            await asyncio.to_thread(write_local_atomically, self.layout.index_path, data)
        else:  # an upload is published whole or not at all
            await self._request(self.index_url, fs._pipe_file, self.layout.index_path, data)

    async def drop_index(self) -> None:
        """Remove the store's index, if it has one: readers list the store until `write_index` runs again."""
        fs = self._fs()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # none, or a single-file store
            await self._request(self.index_url, fs._rm_file, self.layout.index_path)
        self._forget_index()

    def _forget_index(self) -> None:
        """Forget the index this store read or wrote (it was removed): the next use reads it anew."""
        self._index, self._index_read = None, False

    async def _read_unverified(self, key: str) -> bytes:
        try:
            data: bytes = await self._request(self.layout.object_url(key), self._fs()._cat_file, self._object_path(key))
        except FileNotFoundError:
            raise self._deleted(key) from None
        return data

    def _deleted(self, key: str) -> KeyError:
        return KeyError(f"{self.layout.object_url(key)} was deleted while the index was being written")

    async def _verify(self, key: str, data: Buffer, index: Index) -> None:
        if len(data) >= CHECKSUM_IN_THREAD_BYTES:
            await asyncio.to_thread(self._verify_now, key, data, index)
        else:
            self._verify_now(key, data, index)

    def _verify_now(self, key: str, data: Buffer, index: Index) -> None:
        """Check `data` of object `key` against `index`: `DecodeError` "stale index" on any difference."""
        entry = index.get(key)
        url = self.layout.object_url(key)
        if entry is None:
            raise DecodeError(
                f"stale index: {url} is not listed in the index {self.index_url} (written after "
                "indexing?); rewrite the index with write_index()"
            )
        verify_object(entry, data, url, self.index_url)
