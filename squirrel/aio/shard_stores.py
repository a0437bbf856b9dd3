"""Shard stores: one object per `Shard`, in messagepack (fast, typed) or jsonl (human-readable)."""

from __future__ import annotations

from typing import ClassVar

from squirrel.aio.record_store import AsyncRecordStore
from squirrel.codec import Codec, JsonlCodec, MessagepackCodec


class AsyncMessagepackStore(AsyncRecordStore):
    """Each shard is one msgpack object ``<key>.msgpack`` (``.msgpack.gz`` with gzip); numpy types kept."""

    codec: ClassVar[Codec] = MessagepackCodec()
    one_object_per_sample: ClassVar[bool] = False


class AsyncJsonlStore(AsyncRecordStore):
    """Each shard is one jsonl object ``<key>.jsonl``: readable by people and any JSON tool."""

    codec: ClassVar[Codec] = JsonlCodec()
    one_object_per_sample: ClassVar[bool] = False
