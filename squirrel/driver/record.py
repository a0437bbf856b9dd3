"""`RecordStore`: the blocking face of `AsyncRecordStore`, and the base of every sync store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel._runtime import run_sync
from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.aio.stores.shard import AsyncShardStore
from squirrel.driver.twin import SyncTwin, blocking, constructor, delegated, shared

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.aio.retry import RetryPolicy
    from squirrel.aio.stores.layout import Layout
    from squirrel.codec import Codec
    from squirrel.sample import Sample

__all__ = ["RecordStore", "ShardStore"]


class RecordStore(SyncTwin):
    """Map-style blocking access to a folder of samples (one object per sample).

    Every method runs the same-named method of its async twin (`self.aio`) on the process's IO loop.
    Safe to use from threads, from code that runs its own event loop, and in forked child processes.
    """

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncRecordStore
    aio: AsyncRecordStore

    @constructor(AsyncRecordStore)
    def __init__(self) -> None:
        """Open the store at `url` (nothing is read until a method needs it)."""

    compression: shared[str | None] = shared('The compression of stored objects (None, "gzip" or "zstd").')
    layout: shared[Layout] = shared("Where the store's objects live (root, paths, URLs, suffix).")
    suffix: shared[str] = shared("The suffix of the store's objects (codec and compression).")
    index_url: shared[str] = shared("The full URL of the store's index.")
    codec: shared[Codec] = shared("The codec of the store's objects.")
    one_object_per_sample: shared[bool] = shared("Whether each sample is its own object, or each shard is.")
    storage_options: shared[dict[str, Any]] = shared("The options of the url's filesystem.")
    verify_checksums: shared[bool] = shared("Whether objects read are checked against the index.")
    max_decompressed_size: shared[int] = shared("The largest object accepted after inflating.")
    retry: shared[RetryPolicy] = shared("The retry policy of requests to an object store.")
    compression_level: shared[int | None] = shared("The level objects are written at (None: chosen per object).")
    cache_dir: shared[str | None] = shared("The folder caching objects read from an object store (None: no cache).")
    cache_limit: shared[int | None] = shared("The most bytes the cache holds.")

    object_url = delegated(AsyncRecordStore.object_url)
    decompress = delegated(AsyncRecordStore.decompress)
    decode = delegated(AsyncRecordStore.decode)
    encode = delegated(AsyncRecordStore.encode)
    read_bytes = blocking(AsyncRecordStore.read_bytes)
    fetch = blocking(AsyncRecordStore.fetch)
    list_keys = blocking(AsyncRecordStore.list_keys)
    list_objects = blocking(AsyncRecordStore.list_objects)
    list_names = blocking(AsyncRecordStore.list_names)
    list_infos = blocking(AsyncRecordStore.list_infos)
    info = blocking(AsyncRecordStore.info)
    set = blocking(AsyncRecordStore.set)
    exists = blocking(AsyncRecordStore.exists)
    cleanup = blocking(AsyncRecordStore.cleanup)
    delete = blocking(AsyncRecordStore.delete)
    write_index = blocking(AsyncRecordStore.write_index)
    read_index = blocking(AsyncRecordStore.read_index)
    drop_index = blocking(AsyncRecordStore.drop_index)
    count_samples = blocking(AsyncRecordStore.count_samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get(self, key: str) -> Iterator[Sample]:
        """The samples stored under `key`; `KeyError` if there are none."""
        return iter(run_sync(self.aio.fetch(key)))

    def keys(self) -> Iterator[str]:
        """Every key in the store, sorted."""
        return iter(run_sync(self.aio.list_keys()))


class ShardStore(RecordStore):
    """The blocking face of a shard store (one object per shard), in squirrel's layout or squirrel-core's."""

    aio: AsyncShardStore

    @constructor(AsyncShardStore)
    def __init__(self) -> None:
        """Open the shard store at `url`, in squirrel's layout or squirrel-core's (`format`)."""

    format: shared[str] = shared('The layout of the shards: "squirrel" or "squirrel-core".')
