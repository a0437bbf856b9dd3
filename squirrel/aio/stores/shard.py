"""Shard stores: one object per `Shard`, in messagepack (fast, typed) or jsonl (human-readable).

``format="squirrel-core"`` reads and writes squirrel-core 0.20's layout instead (``<key>.gz``, gzip of
concatenated msgpack-numpy maps or JSON lines), so its datasets load without conversion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.codec import Codec, JsonlCodec, MessagepackCodec
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE
from squirrel.codec.squirrel_core import SquirrelCoreJsonlCodec, SquirrelCoreMessagepackCodec

if TYPE_CHECKING:
    from squirrel.aio.retry import RetryPolicy

__all__ = ["FORMATS", "AsyncJsonlStore", "AsyncMessagepackStore", "AsyncShardStore"]

FORMATS = ("squirrel", "squirrel-core")


class AsyncShardStore(AsyncRecordStore):
    """Base of the stores that hold one object per shard, in squirrel's layout or squirrel-core's (`format`).

    Args:
        format: "squirrel" (default) or "squirrel-core": squirrel-core 0.20's layout (``<key>.gz``, always
            gzip), read and written as that library does, so its datasets load without conversion.

    Raises `ValueError` for an unknown format, or a compression other than gzip with "squirrel-core".
    """

    one_object_per_sample: ClassVar[bool] = False
    _squirrel_core_codec: ClassVar[Codec]

    def __init__(
        self,
        url: str,
        compression: str | None = None,
        *,
        format: str = "squirrel",
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        verify_checksums: bool = False,
        retry: RetryPolicy | None = None,
        compression_level: int | None = None,
        **storage_options: Any,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; choose one of {list(FORMATS)}")
        self.format = format
        if format == "squirrel-core":
            if compression not in (None, "gzip"):
                raise ValueError("squirrel-core shards are always gzip-compressed")
            self.codec = self._squirrel_core_codec
            compression = "gzip"
        super().__init__(
            url,
            compression,
            max_decompressed_size=max_decompressed_size,
            verify_checksums=verify_checksums,
            retry=retry,
            compression_level=compression_level,
            **storage_options,
        )


class AsyncMessagepackStore(AsyncShardStore):
    """Each shard is one msgpack object ``<key>.msgpack`` (``.msgpack.gz`` with gzip); numpy types kept."""

    codec: Codec = MessagepackCodec()
    _squirrel_core_codec: ClassVar[Codec] = SquirrelCoreMessagepackCodec()


class AsyncJsonlStore(AsyncShardStore):
    """Each shard is one jsonl object ``<key>.jsonl``: readable by people and any JSON tool."""

    codec: Codec = JsonlCodec()
    _squirrel_core_codec: ClassVar[Codec] = SquirrelCoreJsonlCodec()
