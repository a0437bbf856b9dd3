"""The async core: stores, loaders and streams that run on the caller's event loop."""

from squirrel.aio.loader import AsyncJsonlLoader, AsyncMessagepackLoader, AsyncRecordLoader
from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource

__all__ = [
    "AsyncComposable",
    "AsyncIterableSource",
    "AsyncJsonlLoader",
    "AsyncJsonlStore",
    "AsyncMessagepackLoader",
    "AsyncMessagepackStore",
    "AsyncRecordLoader",
    "AsyncRecordStore",
]
