"""The interface every shard codec implements."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from squirrel.sample import Sample

__all__ = ["Buffer", "Codec", "Take", "dtype_from_text"]

Buffer = bytes | bytearray | memoryview
"""What codecs decode: stored bytes, or a view of a recycled read buffer."""

Take = Callable[[int], memoryview]
"""Gives a writable buffer of the size asked for, whose contents may be anything (`BufferPool.take`)."""


_DEPRECATED_BYTES_ALIAS = re.compile(r"[<>|=]?a")
"""numpy 2's deprecated 'a' alias for bytes ('S'): never written by numpy's ``dtype.str``, so by no encoder."""


def dtype_from_text(text: str) -> np.dtype[Any]:
    """The numpy dtype a stored type string (``'<f4'``, ``'|S5'``) names.

    The deprecated 'a' alias is refused up front rather than parsed: numpy would warn, and catching that
    warning means changing the process-wide warning filters from decoder threads.
    """
    if _DEPRECATED_BYTES_ALIAS.match(text):
        raise DecodeError(f"unsupported numpy dtype {text!r}: the deprecated 'a' alias (numpy writes 'S')")
    return np.dtype(text)


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
