"""The messagepack driver's blocking store and loader: shards as msgpack objects, numpy dtypes and shapes kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from squirrel.aio.loaders import AsyncMessagepackLoader, AsyncRecordLoader
from squirrel.aio.stores.shard import AsyncMessagepackStore
from squirrel.driver.loader import RecordLoader
from squirrel.driver.record import RecordStore, ShardStore

if TYPE_CHECKING:
    from squirrel.aio.stores.record import AsyncRecordStore

__all__ = ["MessagePackDataLoader", "MessagepackLoader", "MessagepackStore"]


class MessagepackStore(ShardStore):
    """Blocking face of `AsyncMessagepackStore`: ``set(shard)``, ``get(shard_key)``, ``keys()``."""

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncMessagepackStore


class MessagePackDataLoader(RecordLoader):
    """Streams the samples of a messagepack store: ``MessagePackDataLoader(url).get_iter()``."""

    async_class: ClassVar[type[AsyncRecordLoader]] = AsyncMessagepackLoader
    store_class: ClassVar[type[RecordStore]] = MessagepackStore


MessagepackLoader = MessagePackDataLoader
