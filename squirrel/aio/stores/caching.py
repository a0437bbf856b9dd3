"""How a store's reads go through the local cache of remote objects (`squirrel.aio.shard_cache`).

A store keeps its own ``cache_dir`` / ``cache_limit`` (given to it, or to a loader's ``get_iter``);
`cache_options` checks them, `shard_cache` opens the cache where one serves (object stores only), and
`expectations` tells a cached pass what each object holds now, so an entry for a changed object is never
served. `source_for` is the store as a pass then reads it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from squirrel.aio.cached_source import CachedSource
from squirrel.aio.shard_cache import Expected, ShardCache
from squirrel.aio.stores.indexed import LOCAL_PROTOCOLS
from squirrel.plan import check_cache_options

if TYPE_CHECKING:
    from squirrel.aio.pipeline import ObjectSource
    from squirrel.aio.stores.record import AsyncRecordStore

__all__ = ["cache_options", "expectations", "shard_cache", "source_for"]


def cache_options(
    store: AsyncRecordStore, cache_dir: str | os.PathLike[str] | None, cache_limit: int | None
) -> tuple[str | None, int | None]:
    """`cache_dir` and `cache_limit` checked, each None replaced by the store's own (a loader's ``get_iter``
    passes its arguments).

    Raises `ValueError` for a cache without a positive limit, or on a store that streams objects in chunks
    (csv: its objects are never held whole).
    """
    folder = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else store.cache_dir
    limit = cache_limit if cache_limit is not None else store.cache_limit
    check_cache_options(folder, limit)
    if folder is not None and not store.whole_objects:
        raise ValueError(
            f"{type(store).__name__} streams its objects in ranged chunks and cannot cache them "
            f"(cache_dir={folder!r}): read {store.url} without a cache"
        )
    return folder, limit


def shard_cache(store: AsyncRecordStore, cache_dir: str | None, cache_limit: int | None) -> ShardCache | None:
    """The cache of the store's objects in `cache_dir`, or None: no folder, or a store on local disk or
    memory://, which is read in place (a cache would only copy it)."""
    if cache_dir is None or cache_limit is None or store.layout.protocol in LOCAL_PROTOCOLS:
        return None
    return ShardCache(cache_dir, cache_limit)


async def expectations(store: AsyncRecordStore, listing: bool) -> dict[str, Expected] | None:
    """What each object holds now, by key, for a cached pass to match its entries against: size and crc32c
    from the store's index (read anew), else, when `listing`, size and version from a listing (what a pass
    without an index lists anyway); else None (the cache asks per object, one metadata request each)."""
    index = await store.read_index()
    if index is not None:
        return {entry.key: Expected(entry.size, crc32c=entry.crc32c) for entry in index.entries}
    if not listing:
        return None
    infos = await store.list_infos()
    names = ((store.layout.key_of(info["name"].rstrip("/").rsplit("/", 1)[-1]), info) for info in infos)
    return {key: Expected.of_info(info) for key, info in names if key is not None}


def source_for(
    store: AsyncRecordStore, cache: ShardCache | None, expected: dict[str, Expected] | None = None
) -> ObjectSource:
    """The store as a pass reads it: through `cache` when there is one (see `CachedSource`)."""
    return store if cache is None else CachedSource(store, cache, expected)
