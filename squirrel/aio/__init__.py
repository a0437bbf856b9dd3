"""The async core: stores, loaders and streams that run on the caller's event loop."""

from squirrel.aio.csv import AsyncCsvLoader, AsyncCsvStore
from squirrel.aio.file_driver import AsyncFileDriver
from squirrel.aio.loader import AsyncJsonlLoader, AsyncMessagepackLoader, AsyncRecordLoader
from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore, AsyncMessagepackStore
from squirrel.aio.stream import AsyncComposable, AsyncIterableSource
from squirrel.aio.zarr import AsyncZarrLoader, AsyncZarrStore

__all__ = [
    "AsyncComposable",
    "AsyncCsvLoader",
    "AsyncCsvStore",
    "AsyncFileDriver",
    "AsyncIterableSource",
    "AsyncJsonlLoader",
    "AsyncJsonlStore",
    "AsyncMessagepackLoader",
    "AsyncMessagepackStore",
    "AsyncRecordLoader",
    "AsyncRecordStore",
    "AsyncZarrLoader",
    "AsyncZarrStore",
]
