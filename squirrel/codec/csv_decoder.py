"""The incremental csv decoder (`CsvDecoder`): a csv object fed in chunks of any size, gzip and zstd
included, parsed in pieces of bounded size into samples, rows exactly as Python's `csv.reader` gives them.
`squirrel.codec.csv` is the codec around it (format, encoding, whole-object decoding).
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, check_compression
from squirrel.codec.zstd import ZstdStream
from squirrel.errors import DecodeError
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from squirrel.codec.base import Buffer

__all__ = ["KEY_COLUMN", "MAX_RECORD_BYTES", "PIECE_BYTES", "CsvDecoder", "Dtypes"]

KEY_COLUMN = "key"
"""The column that holds sample keys."""

PIECE_BYTES = 512 * 1024
"""Text parsed at once by `CsvDecoder`: bounds the samples held per batch (a few MiB of Python objects)."""

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Longest record accepted; a longer one is almost surely an unbalanced quote that would swallow the file."""

_GZIP_WBITS = 31

_INFLATE_INPUT_BYTES = 64 * 1024
"""Compressed bytes inflated at once: zlib copies what it has not used yet on each call, so a slice bounds
that copy (a 4 MiB chunk of a bomb, inflated a piece at a time, copied gigabytes)."""

_BLANK_RUN = re.compile(r"[\r\n]{64,}")
"""A run of line ends long enough to skip past rather than hand to the csv module line by line."""

_DENSE_LINE_ENDS = 8
"""Text is searched for runs of line ends only when at least one character in this many is a line end:
elsewhere blank lines cost little, and the search (a regex scan, tens of ns a character) would cost more."""


Dtypes = Mapping[str, Callable[[str], Any]]


class CsvDecoder:
    """Parses a csv object fed in chunks of any size, in order; yields samples of complete records.

    Feed raw (possibly gzip- or zstd-compressed) bytes with `feed`, which yields batches of samples, then call
    `finish`. Python's csv module (dialect excel) parses the text and decides where each record ends, so
    quoting means here exactly what it means to `csv.reader` (a quote inside an unquoted field is a plain
    character). Memory stays at a piece of `PIECE_BYTES`, its samples and one unfinished record (at most
    `MAX_RECORD_BYTES`), whatever the size of the object. Compressed input inflating past `max_size` bytes is
    refused. Pure: no I/O.
    """

    def __init__(
        self,
        source: str,
        shard: str,
        compression: str | None,
        dtypes: Dtypes,
        max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    ) -> None:
        self.source = source
        self.shard = shard
        self.dtypes = dtypes
        self.max_size = max_size
        self.compression = check_compression(compression)
        self._gzip = compression == "gzip"
        self._zstd = ZstdStream(source, PIECE_BYTES) if compression == "zstd" else None
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._inflated = 0
        self._pending = bytearray()
        self._parse_at = 0  # `_pending` is parsed again once this long (see `feed`)
        self._at_start = True
        self._header: list[str] | None = None
        self._keyed = False
        self._lines = 0
        self._rows = 0

    def feed(self, chunk: Buffer) -> Iterator[list[Sample]]:
        """Batches of the samples whose records end in `chunk` (a later chunk completes the rest).

        `DecodeError` for text that is not csv, a row the header does not fit, gzip or zstd data that is corrupt
        or inflates past `max_size`, or a record longer than `MAX_RECORD_BYTES`.
        """
        for text in self._inflate(chunk):
            self._pending += text
            # An unfinished record is parsed again only once the text held has doubled: a long record
            # costs its length a few times over, not once per piece.
            if len(self._pending) < self._parse_at:
                continue
            end = _lines_end(self._pending)
            samples = self._parse(end, final=False) if end else []
            if len(self._pending) > MAX_RECORD_BYTES:
                raise DecodeError(
                    f"{self.source}: the record starting at line {self._lines + 1} runs past {MAX_RECORD_BYTES} "
                    "bytes (an unbalanced quote?)"
                )
            self._parse_at = min(2 * len(self._pending), MAX_RECORD_BYTES + 1)
            if samples:
                yield samples

    def finish(self) -> list[Sample]:
        """The samples of the last records (the last may lack a final newline); checks compressed data is complete."""
        if self._gzip and not self._inflater.eof:
            raise DecodeError(f"{self.source}: gzip data is truncated")
        if self._zstd is not None:
            self._zstd.finish()
        return self._parse(len(self._pending), final=True) if self._pending else []

    def _inflate(self, chunk: Buffer) -> Iterator[Buffer]:
        view = memoryview(chunk)
        if self.compression is None:
            for start in range(0, len(view), PIECE_BYTES):
                yield view[start : start + PIECE_BYTES]
            return
        for text in self._zstd.feed(view) if self._zstd is not None else self._inflate_gzip(view):
            self._inflated += len(text)
            if self._inflated > self.max_size:
                raise DecodeError(
                    f"{self.source}: {self.compression} data expands past the cap of {self.max_size} bytes"
                )
            yield text

    def _inflate_gzip(self, view: memoryview) -> Iterator[bytes]:
        # zlib copies the input it has not used yet on every call: slices keep that copy small.
        for start in range(0, len(view), _INFLATE_INPUT_BYTES):
            yield from self._inflate_slice(view[start : start + _INFLATE_INPUT_BYTES])

    def _inflate_slice(self, data: Buffer) -> Iterator[bytes]:
        """The text of compressed `data`, in pieces of at most `PIECE_BYTES`, across gzip members."""
        if self._inflater.eof:  # the last gzip member ended: another one follows
            self._inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            while True:
                text = self._inflater.decompress(data, PIECE_BYTES)
                if text:
                    yield text
                if self._inflater.eof:
                    data = self._inflater.unused_data
                    if not data:
                        return
                    self._inflater = zlib.decompressobj(_GZIP_WBITS)
                else:
                    data = self._inflater.unconsumed_tail
                    if not data and len(text) < PIECE_BYTES:  # all input used, no output held back
                        return
        except zlib.error as exc:
            raise DecodeError(f"{self.source}: corrupt gzip data ({exc})") from None

    def _parse(self, end: int, final: bool) -> list[Sample]:
        """The samples of the records in the first `end` bytes of the text held (whole lines), which are
        dropped; an unfinished last record stays, unless `final` (the end of the object)."""
        if self._at_start:
            self._at_start = False
            if self._pending.startswith(codecs.BOM_UTF8):
                del self._pending[: len(codecs.BOM_UTF8)]
                end -= len(codecs.BOM_UTF8)
        try:
            text = self._pending[:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{self.source}: not UTF-8 text after line {self._lines} ({exc.reason})") from None
        samples: list[Sample] = []
        used = self._read_text(text, final, samples)
        del self._pending[: end - len(text[used:].encode("utf-8"))]
        return samples

    def _read_text(self, text: str, final: bool, samples: list[Sample]) -> int:
        """Read the records of `text` into `samples`; return the characters they take (all if `final`).

        Runs of blank lines are skipped without the csv module, which takes a quarter of a microsecond
        for each (a gzip bomb of newlines is a billion of them). A run is blank lines only if the text
        before it ends outside quotes: if not, the rest of `text` is read in one go.
        """
        start = 0
        for run_start, run_end in _blank_runs(text):
            stop = _end_of_line(text, run_start, start)
            if stop > start:
                used, complete = self._read_records(text[start:stop], False, samples)
                if not complete:
                    more, _ = self._read_records(text[start + used :], final, samples)
                    return start + used + more
            self._lines += _count_lines(text, stop, run_end)
            start = run_end
        used, _ = self._read_records(text[start:], final, samples)
        return start + used

    def _read_records(self, text: str, final: bool, samples: list[Sample]) -> tuple[int, bool]:
        """Read the records of `text` (whole lines, from a record start) into `samples`; return the
        characters they take, and whether that is all of `text`.

        The csv module itself tells where its last record ends: when it runs out of lines inside a quoted
        field it returns what it has as a record, and asks for one line more than `text` holds first.
        That record is left for the next call, with more text, unless `final`.
        """
        lines = io.StringIO(text, newline="")
        ran_out: list[bool] = []  # after the last line, the reader's next request appends to it (and stops)
        reader = csv.reader(itertools.chain(lines, iter(functools.partial(ran_out.append, True), None)))
        used = 0  # characters of the records read
        read = 0  # lines of the records read
        try:
            for row in reader:
                if ran_out and not final:
                    self._lines += read
                    return used, False
                line = self._lines + read + 1  # where this record starts
                read, used = reader.line_num, lines.tell()
                if row:
                    sample = self._sample(row, line)
                    if sample is not None:
                        samples.append(sample)
        except csv.Error as exc:
            raise DecodeError(f"{self.source}: line {self._lines + read + 1} is not valid csv ({exc})") from None
        self._lines += read
        return len(text), True

    def _sample(self, row: list[str], line: int) -> Sample | None:
        if self._header is None:
            self._start(row)
            return None
        header = self._header
        if len(row) > len(header):
            raise DecodeError(f"{self.source}: line {line} has {len(row)} fields, the header has {len(header)}")
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        value = dict(zip(header, row, strict=True))
        for column, convert in self.dtypes.items():
            try:
                value[column] = convert(value[column])
            except Exception as exc:
                raise DecodeError(
                    f"{self.source}: line {line}, column {column!r}: cannot convert {value[column]!r} "
                    f"({type(exc).__name__}: {exc})"
                ) from None
        if not self._keyed:
            key = f"{self.shard}:{self._rows}"
        else:
            key = value.pop(KEY_COLUMN)
            try:
                validate_key(key)
            except ValueError as exc:
                raise DecodeError(f"{self.source}: line {line}: the key column holds an invalid key ({exc})") from None
        self._rows += 1
        return Sample.trusted(value, key)

    def _start(self, header: list[str]) -> None:
        missing = [column for column in self.dtypes if column not in header]
        if missing:
            raise DecodeError(f"{self.source}: dtypes name columns {missing} that are not in the header {header}")
        self._header = header
        self._keyed = KEY_COLUMN in header


def _lines_end(buffer: bytearray) -> int:
    """Index just past the last line end of `buffer`, or 0 if it holds none (a CR as its last byte may be
    the start of a CRLF: it does not count yet)."""
    return max(buffer.rfind(b"\n"), buffer.rfind(b"\r", 0, len(buffer) - 1)) + 1


def _blank_runs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of `_BLANK_RUN` line ends in `text`, in order, if line ends are dense in it."""
    if (text.count("\n") + text.count("\r")) * _DENSE_LINE_ENDS >= len(text):
        for run in _BLANK_RUN.finditer(text):
            yield run.span()


def _end_of_line(text: str, at: int, start: int) -> int:
    """Where the line whose end is at index `at` of `text` ends (past its LF, CR or CRLF); `at` itself if the
    line starts there (`at == start`: blank lines only)."""
    if at == start:
        return at
    return at + 2 if text.startswith("\r\n", at) else at + 1


def _count_lines(text: str, start: int, end: int) -> int:
    """The line ends (LF, CR or CRLF, as the csv module counts them) in `text[start:end]`."""
    return text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)
