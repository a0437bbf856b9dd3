"""The async core: stores, loaders and streams that run on the caller's event loop."""

from squirrel.aio.file_driver import AsyncFileDriver
from squirrel.aio.loaders import AsyncCsvLoader, AsyncJsonlLoader, AsyncMessagepackLoader, AsyncRecordLoader
from squirrel.aio.mixing import AsyncMixedStream
from squirrel.aio.stores.csv import AsyncCsvStore
from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.aio.stores.shard import AsyncJsonlStore, AsyncMessagepackStore
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
    "AsyncMixedStream",
    "AsyncRecordLoader",
    "AsyncRecordStore",
    "AsyncZarrLoader",
    "AsyncZarrStore",
]
