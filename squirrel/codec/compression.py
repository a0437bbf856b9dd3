"""Whole-object compression of stored shards (gzip), with a cap against decompression bombs."""

from __future__ import annotations

import contextlib
import threading
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
_MIN_MEMBER_BYTES = 20  # a 10-byte header, an empty deflate block, an 8-byte trailer (CRC-32, size)
_MAX_DEFLATE_RATIO = 1032  # deflate's largest expansion: 258 bytes from a 2-bit length/distance pair
_INPUT_PIECE = 64 * 1024
_OUTPUT_PIECE = 256 * 1024

_BEYOND_DECLARED = threading.Lock()
"""Held by the one inflation at a time whose output has passed what its trailer declared (multi-member data,
or a bomb with a lying trailer): together, objects in flight then hold at most their declared sizes, one
cap, and a piece each, however many bombs arrive at once."""


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

    Memory stays at most the output (or the cap) plus a constant: the inflated bytes go straight into one
    buffer, sized by the size the last member's trailer declares (ISIZE; exact for what `compress`
    writes, a single member) and grown in place only for multi-member data. A trailer declaring more than
    `max_size` is refused before anything is inflated, so an honest bomb costs nothing; a lying or
    multi-member one is stopped at the cap, and only one such inflation runs past its declared size at a
    time (others wait for it), so concurrent bombs cost one cap between them, not one each. `DecodeError`
    naming `source` for that, and for truncated or corrupt input (zlib checks each member's CRC and size
    against its trailer).
    """
    if compression is None:
        return data
    check_compression(compression)
    declared = _declared_size(data, source, max_size)
    try:
        return _inflate(memoryview(data), declared, source, max_size)
    except zlib.error as exc:
        raise DecodeError(f"{source}: corrupt gzip data ({exc})") from None


def _declared_size(data: bytes | bytearray | memoryview, source: str, max_size: int) -> int:
    """The size the last gzip member's trailer declares (its last 4 bytes: the size modulo 2**32), or 0 when
    `data` is too short to hold a member (inflating it then reports the truncation).

    `DecodeError` if it exceeds `max_size` (modulo 2**32 it can only understate), or what deflate could
    produce from `data` at all (corrupt, and no reason to reserve that much memory).
    """
    if len(data) < _MIN_MEMBER_BYTES:
        return 0
    declared = int.from_bytes(data[-4:], "little")
    if declared > max_size:
        raise DecodeError(
            f"{source}: gzip data expands past the cap of {max_size} bytes (its trailer declares {declared} bytes)"
        )
    if declared > _MAX_DEFLATE_RATIO * len(data):
        raise DecodeError(
            f"{source}: corrupt or truncated gzip data (its trailer declares {declared} bytes, more than deflate "
            f"can expand {len(data)} bytes to)"
        )
    return declared


def _inflate(data: memoryview, declared: int, source: str, max_size: int) -> bytearray:
    """Inflate every member of `data` into one buffer of `declared` bytes, grown in place if they hold more.

    Input goes to zlib a piece at a time and output comes back a piece at a time, so besides the buffer
    only a piece of each is held (zlib copies unconsumed input: whole-input calls would copy it over and over).
    """
    out = bytearray(declared)
    filled = 0
    fed = 0
    pending: bytes | memoryview = b""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    beyond = False
    with contextlib.ExitStack() as held:
        while True:
            if not pending and fed < len(data):
                pending = data[fed : fed + _INPUT_PIECE]
                fed += len(pending)
            piece = inflater.decompress(pending, _OUTPUT_PIECE)
            end = filled + len(piece)
            if end > max_size:
                raise DecodeError(f"{source}: gzip data expands past the cap of {max_size} bytes")
            if end > declared and not beyond:  # past the trailer's word: one such inflation at a time
                beyond = held.enter_context(_BEYOND_DECLARED)
            out[filled:end] = piece  # a copy into place; past the end, it grows the buffer (multi-member data)
            filled = end
            if inflater.eof:
                pending = inflater.unused_data
                if not pending and fed == len(data):
                    return out  # zlib checked the last member's size, so `filled == len(out)`
                inflater = zlib.decompressobj(_GZIP_WBITS)
            else:
                pending = inflater.unconsumed_tail
                if not piece and not pending and fed == len(data):
                    raise DecodeError(f"{source}: gzip data is truncated")
