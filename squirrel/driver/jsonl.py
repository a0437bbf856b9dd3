"""The jsonl driver's blocking store: shards as JSON lines, readable by people and any JSON tool."""

from __future__ import annotations

from typing import ClassVar

from squirrel.aio.record_store import AsyncRecordStore
from squirrel.aio.shard_stores import AsyncJsonlStore
from squirrel.driver.record import RecordStore


class JsonlStore(RecordStore):
    """Blocking face of `AsyncJsonlStore`: ``set(shard)``, ``get(shard_key)``, ``keys()``."""

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncJsonlStore
