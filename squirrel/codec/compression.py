"""Whole-object compression of stored shards (gzip), with a cap against decompression bombs."""

from __future__ import annotations

import zlib

from squirrel.errors import DecodeError

COMPRESSIONS: dict[str | None, str] = {None: "", "gzip": ".gz"}
"""Supported compressions and the suffix each adds to object names."""

DEFAULT_MAX_DECOMPRESSED_SIZE = 2 * 1024**3
"""Largest decompressed object accepted by default (2 GiB): far above any sane shard, far below a bomb."""

_GZIP_WBITS = 31  # zlib: gzip header and trailer, maximum window
_GZIP_LEVEL = 6


def check_compression(compression: str | None) -> str | None:
    """Return `compression` if supported, else raise `ValueError` listing the choices."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {list(COMPRESSIONS)}")
    return compression


def compress(data: bytes, compression: str | None) -> bytes:
    """Compress `data` as a single gzip member, or return it unchanged for no compression."""
    if compression is None:
        return data
    check_compression(compression)
    packer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def decompress(
    data: bytes | bytearray | memoryview,
    compression: str | None,
    source: str,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> bytes | bytearray | memoryview:
    """Decompress `data` (all gzip members), refusing output larger than `max_size` bytes.

    Truncated or corrupt input raises `DecodeError` naming `source`.
    """
    if compression is None:
        return data
    check_compression(compression)
    parts: list[bytes] = []
    total = 0
    inflater = zlib.decompressobj(_GZIP_WBITS)
    pending = data
    try:
        while True:
            chunk = inflater.decompress(pending, max_size - total + 1)
            total += len(chunk)
            if total > max_size:
                raise DecodeError(f"{source}: gzip data expands past the cap of {max_size} bytes")
            parts.append(chunk)
            if inflater.eof:
                pending = inflater.unused_data
                if not pending:
                    break
                inflater = zlib.decompressobj(_GZIP_WBITS)
                continue
            if not chunk and not inflater.unconsumed_tail:
                raise DecodeError(f"{source}: gzip data is truncated")
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise DecodeError(f"{source}: corrupt gzip data ({exc})") from None
    return b"".join(parts)
