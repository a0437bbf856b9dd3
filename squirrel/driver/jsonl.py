"""The jsonl driver's blocking store and loader: shards as JSON lines, readable by people and any JSON tool."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from squirrel.aio.loaders import AsyncJsonlLoader, AsyncRecordLoader
from squirrel.aio.stores.shard import AsyncJsonlStore
from squirrel.driver.loader import RecordLoader
from squirrel.driver.record import RecordStore, ShardStore

if TYPE_CHECKING:
    from squirrel.aio.stores.record import AsyncRecordStore

__all__ = ["JsonlLoader", "JsonlStore"]


class JsonlStore(ShardStore):
    """Blocking face of `AsyncJsonlStore`: ``set(shard)``, ``get(shard_key)``, ``keys()``."""

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncJsonlStore


class JsonlLoader(RecordLoader):
    """Streams the samples of a jsonl store: ``JsonlLoader(url).get_iter()``."""

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncJsonlLoader
    store_class: ClassVar[type[RecordStore]] = JsonlStore
