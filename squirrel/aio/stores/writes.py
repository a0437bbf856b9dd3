"""`StoreWrites`: how a store writes and removes its objects: atomic writes, each followed by the removal
of the index it made stale (see `squirrel.aio.stores.indexed`), and the cleanup of what killed writers left.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, ClassVar

from squirrel.aio.fs import is_local
from squirrel.aio.operators import run_all
from squirrel.aio.storage_options import reports_missing_deletes
from squirrel.aio.stores.indexed import IndexedStore
from squirrel.aio.stores.local import remove_stale_temp_files, write_local_atomically
from squirrel.codec import compress
from squirrel.index import IndexEntry, describe
from squirrel.sample import Sample, Shard

if TYPE_CHECKING:
    from collections.abc import Sequence

    from squirrel.codec import Codec

__all__ = ["MAX_CONCURRENT_WRITES", "StoreWrites"]

MAX_CONCURRENT_WRITES = 64
"""Bound on objects written at once by one `set` (a shard written into a record store)."""


class StoreWrites(IndexedStore):
    """Writing, deleting and cleaning up objects; `AsyncRecordStore` provides the codec and the filesystem."""

    codec: Codec
    one_object_per_sample: ClassVar[bool]
    compression_level: int | None

    def object_url(self, key: str) -> str:
        """The full URL of the object that holds `key` (the store class provides it)."""
        raise NotImplementedError

    def _objects_of(self, item: Sample | Shard) -> list[tuple[str, Sequence[Sample]]]:
        if isinstance(item, Shard):
            return [(one.key, [one]) for one in item.value] if self.one_object_per_sample else [(item.key, item.value)]
        if isinstance(item, Sample):
            return [(item.key, [item])]
        raise TypeError(f"{type(self).__name__}.set takes a Sample or a Shard, got {type(item).__name__}")

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Encode and compress `samples` as the bytes of one object (pure CPU)."""
        return compress(self.codec.encode(samples), self.compression, self.compression_level)

    async def set(self, item: Sample | Shard, *, keep_index: bool = False) -> list[IndexEntry]:
        """Store `item` atomically: a reader sees the old object or the new one, never a partial one.

        A record store writes each sample of a shard as its own object; a shard store writes a shard as
        one object and a lone sample as a one-sample shard under the sample's key. Returns the index
        entries of the objects written. Once the objects are written, the store's index is removed (see
        `IndexedStore`): readers list the store until `write_index` runs again, so no write is invisible.
        `keep_index=True` leaves it in place, for a writer that rewrites the index itself afterwards
        (`write_shards` does). `TypeError` for anything but a Sample or a Shard, `EncodeError` for a value
        the codec cannot hold.
        """
        objects = self._objects_of(item)
        if len(objects) == 1:
            return [await self._put(*objects[0], drop_index=not keep_index)]
        puts = [functools.partial(self._put, key, samples, drop_index=False) for key, samples in objects]
        entries = await run_all(puts, limit=MAX_CONCURRENT_WRITES)
        if not keep_index:
            await self.drop_index()
        return entries

    async def _put(self, key: str, samples: Sequence[Sample], drop_index: bool) -> IndexEntry:
        """Write one object; with `drop_index`, remove the index after it (local disk: in the same thread hop)."""
        fs, path = self._fs(), self._object_path(key)
        if is_local(fs):
            index_path = self.layout.index_path if drop_index else None
            entry = await asyncio.to_thread(self._encode_and_write_local, key, path, samples, index_path)
            if drop_index:
                self._forget_index()
            return entry
        data, entry = await asyncio.to_thread(self._encode_and_describe, key, samples)
        await self._request(self.object_url(key), fs._pipe_file, path, data)
        if drop_index:
            await self.drop_index()
        return entry

    def _encode_and_describe(self, key: str, samples: Sequence[Sample]) -> tuple[bytes, IndexEntry]:
        data = self.encode(samples)
        return data, describe(key, data, len(samples))

    def _encode_and_write_local(
        self, key: str, path: str, samples: Sequence[Sample], index_path: str | None
    ) -> IndexEntry:
        data, entry = self._encode_and_describe(key, samples)
        write_local_atomically(path, data, then_remove=index_path)
        return entry

    async def cleanup(self, older_than: float = 3600.0) -> list[str]:
        """Remove what crashed writers left behind (hidden temp files of writes that never reached their
        rename, on local disk: object stores publish an upload whole or not at all), and return the paths
        removed. Files younger than `older_than` seconds are kept: writes may still be under way."""
        if not is_local(self._fs()):
            return []
        return await asyncio.to_thread(remove_stale_temp_files, self.layout.root, older_than)

    async def delete(self, key: str, *, keep_index: bool = False) -> None:
        """Remove the object stored under `key`, then the store's index unless `keep_index` (as `set` does);
        `KeyError` if there is none."""
        fs, path, url = self._fs(), self._object_path(key), self.object_url(key)
        try:
            if not reports_missing_deletes(self.layout.protocol):
                await self._request(url, fs._info, path)
            await self._request(url, fs._rm_file, path)
        except FileNotFoundError:
            raise KeyError(f"no key {key!r} in {self!r}") from None
        if not keep_index:
            await self.drop_index()
