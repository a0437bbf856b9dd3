"""gzip: one member per object written, any number read, inflated within the cap (see `squirrel.codec.sizing`)."""

from __future__ import annotations

import contextlib
import zlib
from typing import TYPE_CHECKING

from squirrel.codec.sizing import BEYOND_DECLARED, INPUT_PIECE, OUTPUT_PIECE, checked_declared, incompressible
from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from squirrel.codec.base import Buffer, Take

__all__ = ["gzip_compress", "gzip_decompress", "gzip_inflate"]

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


def gzip_decompress(data: Buffer, source: str, max_size: int, take: Take | None = None) -> Buffer:
    """Every gzip member of `data`, inflated into one buffer sized by the last trailer's declared size (from
    `take` when given, else a new bytearray); see `gzip_inflate`."""
    view = memoryview(data)
    return gzip_inflate((view,), len(view), view[-4:], source, max_size, take)


def gzip_inflate(
    pieces: Iterable[Buffer], size: int, last_word: Buffer, source: str, max_size: int, take: Take | None = None
) -> Buffer:
    """Every gzip member of the `size` bytes `pieces` hold in order (the last 4 of them are `last_word`),
    inflated into one buffer sized by the last trailer's declared size: from `take` when given (a pool's
    recycled buffer, which nobody needs to zero), else a new bytearray.

    The pieces are consumed as they come, so a file streams through the inflater and only one piece of it
    is held at a time (`squirrel.aio.stores.local.read_local_gzip`). Each piece is used only until the
    next is asked for: a reader may refill one buffer.

    `DecodeError` naming `source` for a declared or actual size past `max_size`, and for truncated or
    corrupt data (zlib checks each member's CRC and size against its trailer).
    """
    declared = _declared_size(size, last_word, source, max_size)
    try:
        return _inflate(_fed(pieces), declared, source, max_size, take)
    except zlib.error as exc:
        raise DecodeError(f"{source}: corrupt gzip data ({exc})") from None


def _declared_size(size: int, last_word: Buffer, source: str, max_size: int) -> int:
    """The size the last gzip member's trailer declares (`last_word`, the last 4 of the data's `size` bytes:
    the size modulo 2**32), or 0 when the data is too short to hold a member (inflating it then reports the
    truncation).

    `DecodeError` if it exceeds `max_size` (modulo 2**32 it can only understate), or what deflate could
    produce from `size` bytes at all (corrupt, and no reason to reserve that much memory).
    """
    if size < _MIN_MEMBER_BYTES:
        return 0
    declared = int.from_bytes(last_word, "little")
    return checked_declared(declared, _MAX_DEFLATE_RATIO, "gzip", "its trailer", size, source, max_size)


def _fed(pieces: Iterable[Buffer]) -> Iterator[Buffer]:
    """`pieces` cut to at most `INPUT_PIECE` bytes each: what zlib is handed at once."""
    for piece in pieces:
        if len(piece) <= INPUT_PIECE:
            yield piece
            continue
        view = memoryview(piece)
        for start in range(0, len(view), INPUT_PIECE):
            yield view[start : start + INPUT_PIECE]


def _inflate(feed: Iterator[Buffer], declared: int, source: str, max_size: int, take: Take | None) -> Buffer:
    """Inflate every member of the input `feed` gives into one buffer of `declared` bytes (from `take` if
    given), moved to a bytearray grown in place if they hold more.

    Output comes back from zlib a piece at a time, so besides the buffer only a piece of input and one of
    output are held (zlib copies unconsumed input: whole-input calls would copy it over and over).
    """
    out: bytearray | memoryview = take(declared) if take is not None and declared else bytearray(declared)
    filled = 0
    pending: Buffer | None = b""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    beyond = False
    with contextlib.ExitStack() as held:
        while True:
            if not pending and pending is not None:
                pending = next(feed, None)  # None: the input is all fed
            piece = inflater.decompress(pending or b"", OUTPUT_PIECE)
            end = filled + len(piece)
            if end > max_size:
                raise DecodeError(f"{source}: gzip data expands past the cap of {max_size} bytes")
            if end > declared and not beyond:  # past the trailer's word: one such inflation at a time
                beyond = held.enter_context(BEYOND_DECLARED)
                if isinstance(out, memoryview):  # a recycled buffer cannot grow
                    out = bytearray(out[:filled])
            out[filled:end] = piece  # a copy into place; past the end, it grows the bytearray (multi-member data)
            filled = end
            if inflater.eof:
                pending = inflater.unused_data or next(feed, None)
                if pending is None:
                    return out  # zlib checked the last member's size, so `filled == len(out)`
                inflater = zlib.decompressobj(_GZIP_WBITS)
            elif pending is not None:
                pending = inflater.unconsumed_tail
            elif not piece:  # all fed, and zlib has nothing more to give
                raise DecodeError(f"{source}: gzip data is truncated")
