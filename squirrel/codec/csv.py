"""Csv shards: a header row, then one row per sample, readable by spreadsheets, pandas and any csv tool.

Values are written as text and read back as strings, unless a `dtypes` mapping names a converter for a
column (``{"label": int}``). A ``key`` column holds each sample's key; a file without one gives keys
``"<shard>:<row>"`` (rows counted from 0). A row with more fields than the header is an error; one with
fewer is padded with empty strings. Decoding is incremental (`CsvDecoder`): a file of any size is parsed
in pieces of bounded size (`squirrel.codec.csv_decoder`), gzip and zstd included (up to a cap on its
inflated size), and rows come out exactly as Python's `csv.reader` gives them: RFC 4180 quoting (quoted
fields may hold delimiters and newlines), and a quote inside an unquoted field is a plain character.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE
from squirrel.codec.csv_decoder import KEY_COLUMN, MAX_RECORD_BYTES, PIECE_BYTES, CsvDecoder, Dtypes
from squirrel.errors import EncodeError

if TYPE_CHECKING:
    from squirrel.codec.base import Buffer
    from squirrel.sample import Sample

__all__ = ["KEY_COLUMN", "MAX_RECORD_BYTES", "PIECE_BYTES", "CsvCodec", "CsvDecoder", "Dtypes"]


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

    def decoder(
        self,
        source: str,
        shard: str,
        compression: str | None = None,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    ) -> CsvDecoder:
        """An incremental decoder for the object `source` holding shard `shard` (see `CsvDecoder`)."""
        return CsvDecoder(source, shard, compression, self.dtypes, max_decompressed_size)

    def decode(
        self,
        data: Buffer,
        source: str,
        shard: str | None = None,
        *,
        compression: str | None = None,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    ) -> list[Sample]:
        """Every sample of a csv object, given its stored bytes; `shard` (default: the file's stem) names
        keyless rows. Gzip or zstd `data` is inflated a piece at a time: `DecodeError` once it passes
        `max_decompressed_size` bytes, as for any bad data (see `CsvDecoder.feed`)."""
        if shard is None:
            shard = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
        decoder = self.decoder(source, shard, compression, max_decompressed_size)
        samples = [sample for batch in decoder.feed(data) for sample in batch]
        samples.extend(decoder.finish())
        return samples
