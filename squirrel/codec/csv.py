"""Csv shards: a header row, then one row per sample, readable by spreadsheets, pandas and any csv tool.

Values are written as text and read back as strings, unless a `dtypes` mapping names a converter for a
column (``{"label": int}``). A ``key`` column holds each sample's key; a file without one gives keys
``"<shard>:<row>"`` (rows counted from 0). A row with more fields than the header is an error; one with
fewer is padded with empty strings. Decoding is incremental (`CsvDecoder`): a file of any size is parsed
in pieces of bounded size, gzip included, with RFC 4180 quoting (quoted fields may hold delimiters and
newlines).
"""

from __future__ import annotations

import codecs
import csv
import io
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel.codec.compression import check_compression
from squirrel.errors import DecodeError, EncodeError
from squirrel.sample import Sample, validate_key

if TYPE_CHECKING:
    from squirrel.codec.base import Buffer

__all__ = ["KEY_COLUMN", "MAX_RECORD_BYTES", "PIECE_BYTES", "CsvCodec", "CsvDecoder", "Dtypes"]

KEY_COLUMN = "key"
"""The column that holds sample keys."""

PIECE_BYTES = 512 * 1024
"""Text parsed at once by `CsvDecoder`: bounds the samples held per batch (a few MiB of Python objects)."""

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Longest record accepted; a longer one is almost surely an unbalanced quote that would swallow the file."""

_GZIP_WBITS = 31

Dtypes = Mapping[str, Callable[[str], Any]]


def _cell(value: Any, column: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, str | int | float | bool):
        return value
    raise EncodeError(
        f"csv column {column!r} cannot hold a value of type {type(value).__name__} "
        "(csv holds scalars: use the messagepack or zarr driver for arrays and nested values)"
    )


class CsvCodec:
    """Encode and decode csv shards; `dtypes` maps column names to converters applied when reading."""

    suffix = ".csv"

    def __init__(self, dtypes: Dtypes | None = None) -> None:
        self.dtypes = dict(dtypes or {})

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """A header (the union of field names, first seen first), then one row per sample.

        The sample key goes in a leading ``key`` column, unless a field is itself called ``key``.
        """
        fields: dict[str, None] = {}
        for sample in samples:
            if not isinstance(sample.value, Mapping):
                raise EncodeError(f"csv stores dict values, got {type(sample.value).__name__} in sample {sample.key!r}")
            fields.update(dict.fromkeys(str(name) for name in sample.value))
        with_keys = KEY_COLUMN not in fields
        header = [KEY_COLUMN, *fields] if with_keys else list(fields)
        out = io.StringIO()
        writer = csv.writer(out)  # RFC 4180: CRLF line ends, and any field with CR or LF quoted
        if samples:
            writer.writerow(header)
        for sample in samples:
            row = {str(name): _cell(value, str(name)) for name, value in sample.value.items()}
            if with_keys:
                row[KEY_COLUMN] = sample.key
            writer.writerow([row.get(column, "") for column in header])
        return out.getvalue().encode("utf-8")

    def decoder(self, source: str, shard: str, compression: str | None = None) -> CsvDecoder:
        """An incremental decoder for the object `source` holding shard `shard`."""
        return CsvDecoder(source, shard, compression, self.dtypes)

    def decode(self, data: Buffer, source: str, shard: str | None = None) -> list[Sample]:
        """Every sample of an uncompressed csv object; `shard` (default: the file's stem) names keyless rows."""
        if shard is None:
            shard = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
        decoder = self.decoder(source, shard)
        samples = [sample for batch in decoder.feed(data) for sample in batch]
        samples.extend(decoder.finish())
        return samples


class CsvDecoder:
    """Parses a csv object fed in chunks of any size, in order; yields samples of complete records.

    Feed raw (possibly gzip-compressed) bytes with `feed`, which yields batches of samples, each from at
    most `PIECE_BYTES` of text, then call `finish`. Memory stays at a piece, its samples and one partial
    record, whatever the size of the object. Pure: no I/O.
    """

    def __init__(self, source: str, shard: str, compression: str | None, dtypes: Dtypes) -> None:
        self.source = source
        self.shard = shard
        self.dtypes = dtypes
        self._inflater = zlib.decompressobj(_GZIP_WBITS) if check_compression(compression) else None
        self._pending = bytearray()
        self._header: list[str] | None = None
        self._keyed = False
        self._lines = 0
        self._rows = 0

    def feed(self, chunk: Buffer) -> Iterator[list[Sample]]:
        """Batches of the samples whose records end in `chunk` (a later chunk completes the rest)."""
        for text in self._inflate(chunk):
            self._pending += text
            end = _record_end(self._pending)
            if end:
                complete = self._pending[:end]
                del self._pending[:end]
                yield self._parse(complete)
            if len(self._pending) > MAX_RECORD_BYTES:
                raise DecodeError(
                    f"{self.source}: no record ends within {MAX_RECORD_BYTES} bytes after line {self._lines} "
                    "(an unbalanced quote?)"
                )

    def finish(self) -> list[Sample]:
        """The samples of the last record (which may lack a final newline); checks gzip is complete."""
        if self._inflater is not None and not self._inflater.eof:
            raise DecodeError(f"{self.source}: gzip data is truncated")
        rest, self._pending = self._pending, bytearray()
        return self._parse(rest) if rest else []

    def _inflate(self, chunk: Buffer) -> Iterator[Buffer]:
        if self._inflater is None:
            view = memoryview(chunk)
            for start in range(0, len(view), PIECE_BYTES):
                yield view[start : start + PIECE_BYTES]
            return
        data = chunk
        if data and self._inflater.eof:  # the last gzip member ended: another one follows
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

    def _parse(self, data: bytearray) -> list[Sample]:
        if self._lines == 0 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{self.source}: not UTF-8 text after line {self._lines} ({exc.reason})") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        samples = []
        before = 0  # lines of `text` before the current record
        try:
            for row in reader:
                line = self._lines + before + 1  # where this record starts
                before = reader.line_num
                if row:
                    sample = self._sample(row, line)
                    if sample is not None:
                        samples.append(sample)
        except csv.Error as exc:
            raise DecodeError(f"{self.source}: line {self._lines + before + 1} is not valid csv ({exc})") from None
        self._lines += reader.line_num
        return samples

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


def _record_end(buffer: bytearray) -> int:
    """Index just past the last newline of `buffer` that ends a record (is outside quotes), or 0.

    Under RFC 4180 quoting every quote inside a quoted field is doubled, so a newline is outside quotes
    exactly when an even number of quote characters precedes it.
    """
    end = buffer.rfind(b"\n")
    if end < 0:
        return 0
    quotes = buffer.count(b'"', 0, end)
    while quotes % 2:
        previous = buffer.rfind(b"\n", 0, end)
        if previous < 0:
            return 0
        quotes -= buffer.count(b'"', previous, end)
        end = previous
    return end + 1
