"""The async core: stores, loaders and streams that run on the caller's event loop."""

from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore, AsyncMessagepackStore

__all__ = ["AsyncJsonlStore", "AsyncMessagepackStore", "AsyncRecordStore"]
