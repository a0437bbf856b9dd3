"""Whole-object compression of stored shards (gzip or zstd), with a cap against decompression bombs.

zstd goes through the `zstandard` binding: the one fsspec already uses for its own "zstd" compression, with
wheels for every platform and Python this package supports (the standard library's `compression.zstd` needs
Python 3.14; `pyzstd` is its smaller-audience backport). Its streaming decompressor cannot bound the output
of one call, so `ZstdStream` feeds it whole blocks a few at a time (each block inflates to at most 128 KiB).
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from typing import TYPE_CHECKING

import zstandard

from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "ZSTD_LEVEL",
    "ZstdStream",
    "check_compression",
    "compress",
    "decompress",
]

COMPRESSIONS: dict[str | None, str] = {None: "", "gzip": ".gz", "zstd": ".zst"}
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

ZSTD_LEVEL = 3
"""The zstd level `compress` writes at (zstd's own default): on image and token shards it compresses as well as
gzip level 6 at several times its speed (benchmarks/compression.py). One level for every store: no per-store
setting yet."""

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50  # the top 28 bits; the low 4 are free
_ZSTD_BLOCK_HEADER = 3
_ZSTD_CHECKSUM = 4
_ZSTD_RAW, _ZSTD_RLE, _ZSTD_COMPRESSED = 0, 1, 2
_MAX_ZSTD_RATIO = zstandard.BLOCKSIZE_MAX // 4  # a block inflates to at most 128 KiB and takes at least 4 bytes

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
    """Compress `data` as a single gzip member or zstd frame, or return it unchanged for no compression.

    A zstd frame is written at `ZSTD_LEVEL` (level 1 for data the probes find incompressible), declares its
    content size (readers reserve exactly that) and ends with a checksum of the content.

    Data that does not compress (random pixels, already-compressed images) is written as stored deflate
    blocks: still a gzip member any tool reads, made at copy speed instead of burning ~15 ms of CPU per MB
    for nothing. Eight probes spread over the data decide: if three quarters of them do not shrink, the
    bulk of it will not either (a shard's small header of keys and labels may, and is stored too).
    """
    if compression is None:
        return data
    if check_compression(compression) == "zstd":
        return zstandard.ZstdCompressor(level=_zstd_level(data), write_checksum=True).compress(data)
    packer = zlib.compressobj(_gzip_level(data), zlib.DEFLATED, _GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def _incompressible(data: bytes, probe: Callable[[bytes], bytes]) -> bool:
    """Whether `data` will not compress: three quarters of eight probes spread over it shrink by less than
    3% under `probe` (a fast level of the codec). Small data is never judged so."""
    if len(data) < _PROBES * _PROBE_BYTES:
        return False
    step = (len(data) - _PROBE_BYTES) // (_PROBES - 1)
    starts = range(0, step * _PROBES, step)
    stubborn = sum(len(probe(data[s : s + _PROBE_BYTES])) >= _INCOMPRESSIBLE * _PROBE_BYTES for s in starts)
    return stubborn >= _PROBES * 3 // 4


def _gzip_level(data: bytes) -> int:
    """`_GZIP_LEVEL`, or 0 (stored blocks) for data that does not compress."""
    return 0 if _incompressible(data, lambda probe: zlib.compress(probe, 1)) else _GZIP_LEVEL


def decompress(
    data: bytes | bytearray | memoryview,
    compression: str | None,
    source: str,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> bytes | bytearray | memoryview:
    """Decompress `data` (all gzip members or zstd frames), refusing output larger than `max_size` bytes.

    Memory stays at most the output (or the cap) plus a constant: the inflated bytes go straight into one
    buffer, sized by the size the last member's trailer declares (ISIZE; exact for what `compress`
    writes, a single member) and grown in place only for multi-member data. A trailer declaring more than
    `max_size` is refused before anything is inflated, so an honest bomb costs nothing; a lying or
    multi-member one is stopped at the cap, and only one such inflation runs past its declared size at a
    time (others wait for it), so concurrent bombs cost one cap between them, not one each. `DecodeError`
    naming `source` for that, and for truncated or corrupt input (zlib checks each member's CRC and size
    against its trailer). zstd is read the same way (see `_unzstd`).
    """
    if compression is None:
        return data
    if check_compression(compression) == "zstd":
        return _unzstd(memoryview(data), source, max_size)
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
    return _checked_declared(declared, _MAX_DEFLATE_RATIO, "gzip", "its trailer", len(data), source, max_size)


def _checked_declared(declared: int, ratio: int, codec: str, where: str, size: int, source: str, max_size: int) -> int:
    """`declared` (the output size `size` compressed bytes state, at `where`), or `DecodeError` naming `source`
    if it exceeds `max_size` or what `codec` could produce from them at all (`ratio` times: corrupt, and no
    reason to reserve that much memory)."""
    if declared > max_size:
        raise DecodeError(
            f"{source}: {codec} data expands past the cap of {max_size} bytes ({where} declares {declared} bytes)"
        )
    if declared > ratio * size:
        raise DecodeError(
            f"{source}: corrupt or truncated {codec} data ({where} declares {declared} bytes, more than {codec} "
            f"can expand {size} bytes to)"
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


def _zstd_level(data: bytes) -> int:
    """`ZSTD_LEVEL`, or 1 for data that does not compress (random pixels, already-compressed images): the
    frame is as small, made several times faster."""
    return 1 if _incompressible(data, zstandard.ZstdCompressor(level=1).compress) else ZSTD_LEVEL


def _unzstd(data: memoryview, source: str, max_size: int) -> bytearray:
    """Inflate every zstd frame of `data` into one buffer, refusing output past `max_size` bytes.

    As for gzip: the buffer is sized by what the first frame's header declares (exact for what `compress`
    writes: one frame, which zstd checks against that size) and zstd inflates straight into it; it grows
    past that only for further frames or a frame that declares nothing, a piece at a time, one such
    inflation at a time (`_BEYOND_DECLARED`). A header declaring more than `max_size` is refused before
    anything is inflated; a bomb that declares nothing is stopped at the cap. Truncated data is found by
    walking the frames' block headers first (zstd's reader would just stop). `DecodeError` naming `source`
    for all of these, and for corrupt data.
    """
    declared = _zstd_declared(data, source, max_size)
    _check_zstd_frames(data, source)
    out = bytearray(declared)
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    try:
        if declared:  # zstd fills it or raises: it checks each frame's content against its declared size
            with memoryview(out) as view:
                reader.readinto(view)
        piece = reader.read(_OUTPUT_PIECE)
        if piece:  # past the header's word: one such inflation at a time
            with _BEYOND_DECLARED:
                while piece:
                    if len(out) + len(piece) > max_size:
                        raise DecodeError(f"{source}: zstd data expands past the cap of {max_size} bytes")
                    out += piece
                    piece = reader.read(_OUTPUT_PIECE)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"{source}: corrupt zstd data ({exc})") from None
    return out


def _zstd_declared(data: memoryview, source: str, max_size: int) -> int:
    """The content size the first zstd frame's header declares, or 0 if it declares none (or `data` does not
    start with a readable frame header: walking the frames then reports what is wrong).

    `DecodeError` if it exceeds `max_size`, or what zstd could produce from `data` at all (corrupt, and no
    reason to reserve that much memory).
    """
    if len(data) < 4 or int.from_bytes(data[:4], "little") != _ZSTD_MAGIC:
        return 0
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError:
        return 0
    if declared == zstandard.CONTENTSIZE_UNKNOWN:
        return 0
    return _checked_declared(declared, _MAX_ZSTD_RATIO, "zstd", "its frame header", len(data), source, max_size)


def _check_zstd_frames(data: memoryview, source: str) -> None:
    """`DecodeError` unless `data` is whole zstd (or skippable) frames, at least one: no inflating, a few
    operations per block."""
    walker = _ZstdWalker(source)
    at = 0
    while (unit := walker.unit(data, at)) is not None:
        at = unit[0]
    if at < len(data) or not walker.at_frame_end:
        raise DecodeError(f"{source}: zstd data is truncated")


_FRAME, _BLOCK, _CHECKSUM, _SKIP = range(4)  # what `_ZstdWalker` expects next
_HEADER, _BLOCK_UNIT, _SKIPPED = range(3)  # the kinds of unit it cuts the input into


class _ZstdWalker:
    """Cuts zstd data, fed in order, into units: frame headers, blocks, checksums, and the bytes of skippable
    frames; checks the structure (magic numbers, block types), not the content."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._expect = _FRAME
        self._checksum = False  # whether the current frame ends with a checksum
        self._skip = 0  # bytes of a skippable frame still to skip
        self._frames = 0

    @property
    def at_frame_end(self) -> bool:
        """Whether the units so far end where a frame ends (at least one frame)."""
        return self._expect == _FRAME and self._frames > 0

    def unit(self, view: memoryview, at: int) -> tuple[int, int] | None:
        """(end, kind) of the next unit of `view` from `at`, or None if `view` does not hold all of it yet
        (the bytes of a skippable frame come in whatever pieces `view` holds)."""
        left = len(view) - at
        if self._expect == _SKIP:
            take = min(self._skip, left)
            self._skip -= take
            if not self._skip:
                self._expect = _FRAME
            return (at + take, _SKIPPED) if take else None
        if self._expect == _FRAME:
            return self._frame_start(view, at)
        if self._expect == _CHECKSUM:
            if left < _ZSTD_CHECKSUM:
                return None
            self._expect = _FRAME
            return at + _ZSTD_CHECKSUM, _HEADER
        if left < _ZSTD_BLOCK_HEADER:
            return None
        header = int.from_bytes(view[at : at + _ZSTD_BLOCK_HEADER], "little")
        kind, size = (header >> 1) & 3, header >> 3
        if kind not in (_ZSTD_RAW, _ZSTD_RLE, _ZSTD_COMPRESSED):
            raise DecodeError(f"{self.source}: corrupt zstd data (a block of the reserved type)")
        end = at + _ZSTD_BLOCK_HEADER + (1 if kind == _ZSTD_RLE else size)
        if end > len(view):
            return None
        if header & 1:  # the frame's last block
            self._expect = _CHECKSUM if self._checksum else _FRAME
        return end, _BLOCK_UNIT

    def _frame_start(self, view: memoryview, at: int) -> tuple[int, int] | None:
        """The header of the zstd frame at `at`, or the 8-byte start of a skippable frame (see `unit`)."""
        left = len(view) - at
        if left < 4:
            return None
        magic = int.from_bytes(view[at : at + 4], "little")
        if magic & ~0xF == _ZSTD_SKIPPABLE_MAGIC:
            if left < 8:  # its magic number, then the size of its content
                return None
            self._skip = int.from_bytes(view[at + 4 : at + 8], "little")
            self._expect = _SKIP if self._skip else _FRAME
            return at + 8, _SKIPPED
        if magic != _ZSTD_MAGIC:
            raise DecodeError(f"{self.source}: corrupt zstd data (no zstd frame starts where one should)")
        return self._header(view, at) if left >= 5 else None  # the header's size is in its fifth byte

    def _header(self, view: memoryview, at: int) -> tuple[int, int] | None:
        """The header of the zstd frame at `at`; notes whether the frame ends with a checksum."""
        try:
            size = zstandard.frame_header_size(view[at : at + 5])
            if at + size > len(view):
                return None
            self._checksum = zstandard.get_frame_parameters(view[at : at + size]).has_checksum
        except zstandard.ZstdError as exc:
            raise DecodeError(f"{self.source}: corrupt zstd data ({exc})") from None
        self._frames += 1
        self._expect = _BLOCK
        return at + size, _HEADER


class ZstdStream:
    """Inflates zstd data fed in chunks of any size, in order, yielding its content in bounded pieces.

    zstandard's streaming decompressor returns all the output of the input it is given, however much: a few
    kilobytes of a bomb are gigabytes. So the input is cut at block boundaries (a block inflates to at most
    128 KiB) and handed over at most `piece // 128 KiB` blocks at a time: each piece yielded holds at most
    `piece` bytes (at least one block), and the input held back is one incomplete block at most.
    Consecutive frames are read as one stream; skippable frames are skipped. Pure: no I/O.
    """

    def __init__(self, source: str, piece: int = _OUTPUT_PIECE) -> None:
        self.source = source
        self._blocks_per_call = max(1, piece // zstandard.BLOCKSIZE_MAX)
        self._inflater = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        self._walker = _ZstdWalker(source)
        self._held = b""  # the start of a unit that the next chunk completes

    def feed(self, chunk: bytes | bytearray | memoryview) -> Iterator[bytes]:
        """The content inflated from `chunk` (with what earlier chunks left incomplete), in pieces.

        `DecodeError` naming `source` for data that is not zstd or is corrupt (zstd checks each frame's
        declared size and checksum).
        """
        view = memoryview(self._held + chunk if self._held else chunk)
        start = at = blocks = 0
        while (unit := self._walker.unit(view, at)) is not None:
            end, kind = unit
            if kind == _SKIPPED:
                yield from self._inflate(view[start:at])
                start = end
            blocks += kind == _BLOCK_UNIT
            at = end
            if blocks == self._blocks_per_call:
                yield from self._inflate(view[start:at])
                start, blocks = at, 0
        yield from self._inflate(view[start:at])
        self._held = bytes(view[at:])

    def finish(self) -> None:
        """`DecodeError` unless the data fed so far ends where a frame ends (at least one frame)."""
        if self._held or not self._walker.at_frame_end:
            raise DecodeError(f"{self.source}: zstd data is truncated")

    def _inflate(self, data: memoryview) -> Iterator[bytes]:
        if not data:
            return
        try:
            content = self._inflater.decompress(data)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"{self.source}: corrupt zstd data ({exc})") from None
        if content:
            yield content
