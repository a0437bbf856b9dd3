"""Whole-object compression of stored shards (gzip), with a cap against decompression bombs."""

from __future__ import annotations

import zlib

from squirrel.errors import DecodeError

__all__ = ["COMPRESSIONS", "DEFAULT_MAX_DECOMPRESSED_SIZE", "check_compression", "compress", "decompress"]

COMPRESSIONS: dict[str | None, str] = {None: "", "gzip": ".gz"}
"""Supported compressions and the suffix each adds to object names."""

DEFAULT_MAX_DECOMPRESSED_SIZE = 2 * 1024**3
"""Largest decompressed object accepted by default (2 GiB): far above any sane shard, far below a bomb."""

_GZIP_WBITS = 31  # zlib: gzip header and trailer, maximum window
_GZIP_LEVEL = 6
_PROBE_BYTES = 8 * 1024
_PROBES = 8
_INCOMPRESSIBLE = 0.97  # probes that shrink by less than 3% mean the data is not worth compressing


def check_compression(compression: str | None) -> str | None:
    """Return `compression` if supported, else raise `ValueError` listing the choices."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {list(COMPRESSIONS)}")
    return compression


def compress(data: bytes, compression: str | None) -> bytes:
    """Compress `data` as a single gzip member, or return it unchanged for no compression.

    Data that does not compress (random pixels, already-compressed images) is written as stored deflate
    blocks: still a gzip member any tool reads, made at copy speed instead of burning ~15 ms of CPU per MB
    for nothing. Eight probes spread over the data decide: if three quarters of them do not shrink, the
    bulk of it will not either (a shard's small header of keys and labels may, and is stored too).
    """
    if compression is None:
        return data
    check_compression(compression)
    packer = zlib.compressobj(_gzip_level(data), zlib.DEFLATED, _GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def _gzip_level(data: bytes) -> int:
    if len(data) < _PROBES * _PROBE_BYTES:
        return _GZIP_LEVEL
    step = (len(data) - _PROBE_BYTES) // (_PROBES - 1)
    probes = (data[start : start + _PROBE_BYTES] for start in range(0, step * _PROBES, step))
    stubborn = sum(len(zlib.compress(probe, 1)) >= _INCOMPRESSIBLE * len(probe) for probe in probes)
    return 0 if stubborn >= _PROBES * 3 // 4 else _GZIP_LEVEL


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
