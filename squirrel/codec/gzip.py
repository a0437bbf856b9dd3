"""gzip: one member per object written, any number read, inflated within the cap (see `squirrel.codec.sizing`)."""

from __future__ import annotations

import contextlib
import zlib

from squirrel.codec.sizing import BEYOND_DECLARED, INPUT_PIECE, OUTPUT_PIECE, checked_declared, incompressible
from squirrel.errors import DecodeError

__all__ = ["gzip_compress", "gzip_decompress"]

_GZIP_WBITS = 31  # zlib: gzip header and trailer, maximum window
_GZIP_LEVEL = 6
_MIN_MEMBER_BYTES = 20  # a 10-byte header, an empty deflate block, an 8-byte trailer (CRC-32, size)
_MAX_DEFLATE_RATIO = 1032  # deflate's largest expansion: 258 bytes from a 2-bit length/distance pair


def gzip_compress(data: bytes, level: int | None = None) -> bytes:
    """`data` as a single gzip member: at `level` when given (0-9), else at level 6, or as stored deflate
    blocks (copy speed) for data that does not compress (random pixels, already-compressed images)."""
    packer = zlib.compressobj(_gzip_level(data) if level is None else level, zlib.DEFLATED, _GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def _gzip_level(data: bytes) -> int:
    """`_GZIP_LEVEL`, or 0 (stored blocks) for data that does not compress."""
    return 0 if incompressible(data, lambda probe: zlib.compress(probe, 1)) else _GZIP_LEVEL


def gzip_decompress(data: bytes | bytearray | memoryview, source: str, max_size: int) -> bytearray:
    """Every gzip member of `data`, inflated into one buffer sized by the last trailer's declared size.

    `DecodeError` naming `source` for a declared or actual size past `max_size`, and for truncated or
    corrupt data (zlib checks each member's CRC and size against its trailer).
    """
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
    return checked_declared(declared, _MAX_DEFLATE_RATIO, "gzip", "its trailer", len(data), source, max_size)


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
                pending = data[fed : fed + INPUT_PIECE]
                fed += len(pending)
            piece = inflater.decompress(pending, OUTPUT_PIECE)
            end = filled + len(piece)
            if end > max_size:
                raise DecodeError(f"{source}: gzip data expands past the cap of {max_size} bytes")
            if end > declared and not beyond:  # past the trailer's word: one such inflation at a time
                beyond = held.enter_context(BEYOND_DECLARED)
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
