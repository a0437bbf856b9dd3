"""Whole-object compression of stored shards (gzip or zstd), with a cap against decompression bombs.

Each codec has its module (`squirrel.codec.gzip`, `squirrel.codec.zstd`); what they share, the probes and
the rules for declared sizes, is `squirrel.codec.sizing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from squirrel.codec.gzip import gzip_compress, gzip_decompress
from squirrel.codec.zstd import zstd_compress, zstd_decompress

if TYPE_CHECKING:
    from squirrel.codec.base import Buffer, Take

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "LEVELS",
    "check_compression",
    "check_level",
    "compress",
    "decompress",
]

COMPRESSIONS: dict[str | None, str] = {None: "", "gzip": ".gz", "zstd": ".zst"}
"""Supported compressions and the suffix each adds to object names."""

LEVELS: dict[str, range] = {"gzip": range(0, 10), "zstd": range(1, 23)}
"""The levels each compression takes (zlib's 0-9, 0 storing; zstd's 1-22): None lets `compress` choose."""

DEFAULT_MAX_DECOMPRESSED_SIZE = 2 * 1024**3
"""Largest decompressed object accepted by default (2 GiB): far above any sane shard, far below a bomb."""


def check_compression(compression: str | None) -> str | None:
    """Return `compression` if supported, else raise `ValueError` listing the choices."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {list(COMPRESSIONS)}")
    return compression


def check_level(compression: str | None, level: int | None) -> int | None:
    """Return `level` if `compression` takes it (None always fits), else raise `ValueError` saying which
    levels it takes (a level without a compression names none)."""
    if level is None:
        return None
    if compression is None:
        raise ValueError(f"compression_level={level!r} needs a compression: choose one of {list(LEVELS)}")
    levels = LEVELS[check_compression(compression) or ""]
    if type(level) is not int or level not in levels:
        raise ValueError(f"{compression} takes a compression_level from {levels[0]} to {levels[-1]}, got {level!r}")
    return level


def compress(data: bytes, compression: str | None, level: int | None = None) -> bytes:
    """Compress `data` as a single gzip member or zstd frame, or return it unchanged for no compression.

    Data that does not compress (random pixels, already-compressed images) is written at copy speed (gzip's
    stored blocks, zstd's level 1) instead of burning CPU for nothing. Eight probes spread over the data
    decide: if three quarters of them do not shrink, the bulk of it will not either (a shard's small header
    of keys and labels may, and is compressed along with it). zstd also takes the rest of its parameters from
    them (`squirrel.codec.zstd.zstd_parameters`). A `level` (see `check_level`) overrides all of that.
    """
    if compression is None:
        return data
    if check_compression(compression) == "zstd":
        return zstd_compress(data, level)
    return gzip_compress(data, level)


def decompress(
    data: Buffer,
    compression: str | None,
    source: str,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    take: Take | None = None,
) -> Buffer:
    """Decompress `data` (all gzip members or zstd frames), refusing output larger than `max_size` bytes.

    Memory stays at most the output (or the cap) plus a constant: the inflated bytes go straight into one
    buffer, sized by what the data declares (gzip's last trailer, zstd's first frame header; exact for what
    `compress` writes) and grown in place only for more members or frames. A declared size over `max_size`
    is refused before anything is inflated, so an honest bomb costs nothing; a lying or multi-member one is
    stopped at the cap, and only one such inflation runs past its declared size at a time (others wait for
    it), so concurrent bombs cost one cap between them, not one each. `DecodeError` naming `source` for
    that, and for truncated or corrupt input. `take`, when given, gives that buffer (a pool's: recycled).
    """
    if compression is None:
        return data
    if check_compression(compression) == "zstd":
        return zstd_decompress(data, source, max_size, take)
    return gzip_decompress(data, source, max_size, take)
