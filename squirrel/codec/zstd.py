"""zstd: one frame per object written (declaring its size, with a checksum), any number read, inflated
within the cap (see `squirrel.codec.sizing`); `ZstdStream` inflates a stream in bounded pieces (csv).

zstd goes through the `zstandard` binding: the one fsspec already uses for its own "zstd" compression, with
wheels for every platform and Python this package supports (the standard library's `compression.zstd` needs
Python 3.14; `pyzstd` is its smaller-audience backport). It runs at libzstd's own speed (the `zstd` command
line inflates these shards no faster) and releases the GIL while it works, so loaders inflate objects on
both cores. Its streaming decompressor cannot bound the output of one call, so `ZstdStream` feeds it whole
blocks a few at a time (each block inflates to at most 128 KiB).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import zstandard

from squirrel.codec.sizing import BEYOND_DECLARED, OUTPUT_PIECE, checked_declared, incompressible
from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.codec.base import Buffer, Take

__all__ = [
    "ENTROPY_MIN_MATCH",
    "MATCH_RICH_LEVEL",
    "ZSTD_LEVEL",
    "ZstdStream",
    "zstd_compress",
    "zstd_decompress",
    "zstd_parameters",
]

ZSTD_LEVEL = 3
"""The zstd level of data too small to probe (under 64 KiB: a record, a small shard): zstd's own default.
Larger data gets the parameters its probes call for (`zstd_parameters`). One choice for every store: no
per-store setting yet."""

MATCH_RICH_LEVEL = 7
"""The level of data whose probes shrink to half or less at level 1 (token arrays, text, flat images): most
of it is repeats, and the lazy parse from level 5 on finds longer ones. On token shards, level 7 stores
5% less than gzip (level 3: 1.6% more) and its longer matches inflate faster (about +15%); it still writes
5x as fast as gzip, which is slowest on such data (benchmarks/compression.py). The price is on text (json
lines, source code): there it writes about 2x as fast as gzip (level 3: 6-7x) and stores 1-8% less than
gzip (level 3: 4-9% more)."""

ENTROPY_MIN_MATCH = 4
"""The shortest match sought in data whose probes shrink by less than half (noisy pixels, smooth gradients):
it shrinks mostly by entropy coding, where the lazy parse costs 2-3x the time for nothing, so it gets level
3 seeking 4-byte matches rather than 5: on gradient images that stores 1% less than gzip (plain level 3:
0.3% more) and still writes 4-5x as fast, for about 7% slower inflating."""

_MATCH_RICH = 0.5  # probes that shrink to this fraction of their size or less mark data rich in repeats

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50  # the top 28 bits; the low 4 are free
_ZSTD_BLOCK_HEADER = 3
_ZSTD_CHECKSUM = 4
_ZSTD_RAW, _ZSTD_RLE, _ZSTD_COMPRESSED = 0, 1, 2
_MAX_ZSTD_RATIO = zstandard.BLOCKSIZE_MAX // 4  # a block inflates to at most 128 KiB and takes at least 4 bytes

_THREAD = threading.local()  # each thread's decompressor (see `_decompressor`)


def zstd_compress(data: bytes, level: int | None = None) -> bytes:
    """`data` as one zstd frame at `level` when given (1-22), else at the parameters `zstd_parameters` picks
    for it, declaring its content size (readers then inflate it in one call into a buffer of exactly that
    size) and ending with a checksum of the content (xxHash64: what gzip's CRC-32 is to gzip, for about 7%
    of inflating's time)."""
    if level is None:
        parameters = zstd_parameters(data)
    else:
        parameters = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(data), write_content_size=1, write_checksum=1
        )
    return zstandard.ZstdCompressor(compression_params=parameters).compress(data)


def zstd_parameters(data: bytes) -> zstandard.ZstdCompressionParameters:
    """What `zstd_compress` writes `data` at, judged by eight probes compressed at level 1 (see
    `squirrel.codec.sizing.incompressible`): level 1 for data that does not compress (random pixels,
    already-compressed images: the frame is as small, made several times faster), `MATCH_RICH_LEVEL` for
    data rich in repeats, level 3 seeking `ENTROPY_MIN_MATCH`-byte matches for the rest, `ZSTD_LEVEL` for
    data too small to probe. Always with the content size and a checksum."""
    fast = zstandard.ZstdCompressor(level=1)
    probed: list[tuple[int, int]] = []  # (compressed, raw) bytes of each probe

    def probe(piece: bytes) -> bytes:
        packed = fast.compress(piece)
        probed.append((len(packed), len(piece)))
        return packed

    options: dict[str, int] = {}
    if incompressible(data, probe):
        level = 1
    elif not probed:
        level = ZSTD_LEVEL
    elif sum(packed for packed, _ in probed) <= _MATCH_RICH * sum(raw for _, raw in probed):
        level = MATCH_RICH_LEVEL
    else:
        level, options = ZSTD_LEVEL, {"min_match": ENTROPY_MIN_MATCH}
    return zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(data), write_content_size=1, write_checksum=1, **options
    )


def zstd_decompress(data: Buffer, source: str, max_size: int, take: Take | None = None) -> Buffer:
    """Every zstd frame of `data`, inflated within `max_size` (into a buffer from `take` when given).

    One frame declaring its size and nothing after it (what `zstd_compress` writes), with no `take`, is
    inflated in one call of this thread's decompressor, into a buffer of the declared size, once the size
    passed the checks of `_zstd_declared`; zstd checks the frame is whole, its content the declared size,
    its checksum right and nothing follows it. Anything else (a `take`, more frames, no declared size, bad
    data) goes the general way (`_unzstd`), which also names what is wrong: `DecodeError` naming `source`.
    """
    view = memoryview(data)
    declared = _zstd_declared(view, source, max_size)
    if declared and take is None:
        with contextlib.suppress(zstandard.ZstdError):
            return _decompressor().decompress(view, allow_extra_data=False)
    return _unzstd(view, declared, source, max_size, take)


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompressor (one may not serve two threads at once): made once, so inflating object
    after object in a loader's worker threads reuses one context each instead of allocating a fresh one."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_THREAD, "decompressor", None)
    if decompressor is None:
        decompressor = _THREAD.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _unzstd(data: memoryview, declared: int, source: str, max_size: int, take: Take | None) -> Buffer:
    """Inflate every zstd frame of `data` into one buffer, refusing output past `max_size` bytes.

    As for gzip: the buffer is sized by what the first frame's header declares (`declared`, from
    `_zstd_declared`; zstd checks that frame against it), from `take` when given, and zstd inflates
    straight into it; it moves to a bytearray grown past that only for further frames or a frame that
    declares nothing, a piece at a time, one such inflation at a time (`BEYOND_DECLARED`). A header
    declaring more than `max_size` is refused before anything is inflated; a bomb that declares nothing is
    stopped at the cap. Truncated data is found by walking the frames' block headers first (zstd's reader
    would just stop). `DecodeError` naming `source` for all of these, and for corrupt data.
    """
    _check_zstd_frames(data, source)
    out: bytearray | memoryview = take(declared) if take is not None and declared else bytearray(declared)
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_size=max(len(data), 1), read_across_frames=True)
    try:
        if declared:  # zstd fills it or raises: it checks each frame's content against its declared size
            reader.readinto(out)
        piece = reader.read(OUTPUT_PIECE)
        if piece:  # past the header's word: one such inflation at a time
            if isinstance(out, memoryview):  # a recycled buffer cannot grow
                out = bytearray(out)
            with BEYOND_DECLARED:
                while piece:
                    if len(out) + len(piece) > max_size:
                        raise DecodeError(f"{source}: zstd data expands past the cap of {max_size} bytes")
                    out += piece
                    piece = reader.read(OUTPUT_PIECE)
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
    return checked_declared(declared, _MAX_ZSTD_RATIO, "zstd", "its frame header", len(data), source, max_size)


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

    def __init__(self, source: str, piece: int = OUTPUT_PIECE) -> None:
        self.source = source
        self._blocks_per_call = max(1, piece // zstandard.BLOCKSIZE_MAX)
        self._inflater = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        self._walker = _ZstdWalker(source)
        self._held = b""  # the start of a unit that the next chunk completes

    def feed(self, chunk: Buffer) -> Iterator[bytes]:
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
