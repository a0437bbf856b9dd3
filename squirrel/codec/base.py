"""The interface every shard codec implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from squirrel.sample import Sample

Buffer = bytes | bytearray | memoryview
"""What codecs decode: stored bytes, or a view of a recycled read buffer."""


class Codec(Protocol):
    """Turns a list of samples into the bytes of one stored object, and back."""

    suffix: str
    """File-name suffix of objects in this format, including the dot (e.g. ``.msgpack``)."""

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """Serialise `samples`; raise `EncodeError` for a value the format cannot hold."""
        ...

    def decode(self, data: Buffer, source: str) -> list[Sample]:
        """Parse `data`; raise `DecodeError` naming `source` when it is corrupt, truncated or unsafe."""
        ...
