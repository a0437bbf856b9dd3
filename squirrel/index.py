"""The store index: one JSON object at a store's root listing every object with its sample count, size and checksum.

A loader reads it instead of listing a bucket of 100,000 objects, and knows the dataset's length without
reading a shard. Checksums are crc32c in GCS's own form (base64 of the big-endian value), so they can be
compared with the checksum GCS keeps for every object. This module is pure: bytes in, bytes out.

The index is written once, at the end of a bulk write or by an explicit ``write_index()``; `set` and
`delete` leave it alone, so concurrent writers never race on it, and a store changed after indexing has a
stale index until it is written again.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import google_crc32c

from squirrel.codec import COMPRESSIONS
from squirrel.errors import DecodeError
from squirrel.sample import validate_key

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "INDEX_FORMAT",
    "INDEX_NAME",
    "INDEX_VERSION",
    "Index",
    "IndexEntry",
    "build_index",
    "check_layout",
    "checksum",
    "describe",
    "dump_index",
    "parse_index",
    "store_index",
    "verify_object",
]

INDEX_NAME = "_squirrel_index.json"
"""The index's object name at the store's root (it matches no store suffix, so it is never listed as a key)."""

INDEX_FORMAT = "squirrel-index"
INDEX_VERSION = 1

_TOP_FIELDS = frozenset({"format", "version", "suffix", "compression", "objects"})
_ENTRY_FIELDS = frozenset({"key", "samples", "bytes", "crc32c"})

_MAX_INT = 2**63 - 1
"""Largest sample count or size an index may record: what an int64 (numpy, file offsets, GCS sizes) holds."""
_SHOWN_CHARS = 60
_CANONICAL_CRC32C = re.compile(r"[A-Za-z0-9+/]{5}[AQgw]==")
"""Canonical base64 of 4 bytes: 6 characters, the last holding 2 bits (4 zero bits: A, Q, g or w), then "=="."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stored object: its key, how many samples it holds, its stored size in bytes and its crc32c."""

    key: str
    samples: int
    size: int
    crc32c: str


@dataclass(frozen=True, repr=False)
class Index:
    """Every object of a store, `entries` sorted by key, and the layout (`suffix`, `compression`) it was
    written for."""

    suffix: str
    compression: str | None
    entries: tuple[IndexEntry, ...]

    @cached_property
    def _by_key(self) -> dict[str, IndexEntry]:
        return {entry.key: entry for entry in self.entries}

    @property
    def keys(self) -> list[str]:
        """Every key, sorted."""
        return [entry.key for entry in self.entries]

    @property
    def num_samples(self) -> int:
        """The total number of samples in the store."""
        return sum(entry.samples for entry in self.entries)

    def get(self, key: str) -> IndexEntry | None:
        """The entry of `key`, or None if the index does not list it."""
        return self._by_key.get(key)

    def __repr__(self) -> str:
        return (
            f"Index(suffix={self.suffix!r}, compression={self.compression!r}, objects={len(self.entries)}, "
            f"samples={self.num_samples})"
        )

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self.entries)


def checksum(data: bytes | bytearray | memoryview) -> str:
    """The crc32c of `data` as GCS reports it: base64 of the 4 big-endian bytes."""
    if not isinstance(data, bytes):
        data = bytes(data)  # google_crc32c takes only immutable bytes
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode("ascii")


def describe(key: str, data: bytes | bytearray | memoryview, samples: int) -> IndexEntry:
    """The index entry of object `key` whose stored bytes are `data`, holding `samples` samples."""
    return IndexEntry(validate_key(key), samples, len(data), checksum(data))


def build_index(suffix: str, compression: str | None, entries: Iterable[IndexEntry]) -> Index:
    """An index of `entries` (sorted by key) for a store of `suffix` objects with `compression`; `ValueError`
    on a duplicate key."""
    ordered = tuple(sorted(entries, key=lambda entry: entry.key))
    for before, after in itertools.pairwise(ordered):
        if before.key == after.key:
            raise ValueError(f"key {before.key!r} is listed twice")
    return Index(suffix, compression, ordered)


def dump_index(index: Index) -> bytes:
    """The index as UTF-8 JSON, one object per line (readable, and diffs well)."""
    header = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "suffix": index.suffix,
        "compression": index.compression,
    }
    lines = [
        json.dumps({"key": e.key, "samples": e.samples, "bytes": e.size, "crc32c": e.crc32c}) for e in index.entries
    ]
    head = json.dumps(header)[:-1]  # without its closing brace: the objects follow, one per line
    return (head + ', "objects": [\n' + ",\n".join(lines) + "\n]}\n").encode("utf-8")


def parse_index(data: bytes | bytearray | memoryview, source: str) -> Index:
    """Parse and strictly validate index bytes `data`; `DecodeError` naming `source` when anything is wrong.

    Whatever the bytes hold (not UTF-8, truncated, nested 100,000 deep, numbers of 400 digits, a value of
    the wrong type anywhere), the only error raised is a `DecodeError`: an index is read from a store, so
    it may be corrupt or hostile, and a reader must be able to catch its failure as one error.
    """
    try:
        document = json.loads(bytes(data).decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, an int over Python's digit limit
        raise DecodeError(f"index {source} is not valid JSON: {exc}") from None
    except RecursionError:  # json's parser checks its depth against the recursion limit, in C: a clean error
        raise DecodeError(
            f"index {source} is invalid: arrays and objects are nested deeper than {sys.getrecursionlimit()} "
            "levels (a valid index nests 3 deep)"
        ) from None
    try:
        return _validated(document)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"index {source} is invalid: {exc}") from None


def check_layout(index: Index, suffix: str, compression: str | None, source: str) -> None:
    """`DecodeError` naming `source` (the index's URL) if `index` was written for objects other than
    ``<key><suffix>`` with `compression`."""
    if (index.suffix, index.compression) != (suffix, compression):
        raise DecodeError(
            f"index {source} lists {index.suffix!r} objects (compression={index.compression!r}), but this store "
            f"reads {suffix!r} objects (compression={compression!r}): open it with the driver and compression "
            "it was written with"
        )


def store_index(data: bytes | bytearray | memoryview, source: str, suffix: str, compression: str | None) -> Index:
    """`data` parsed as the index `source` of a store of `suffix` and `compression` objects (`parse_index`,
    then `check_layout`): `DecodeError` naming `source` if it is not one."""
    index = parse_index(data, source)
    check_layout(index, suffix, compression, source)
    return index


def verify_object(entry: IndexEntry, data: bytes | bytearray | memoryview, object_url: str, source: str) -> None:
    """`DecodeError` ("stale index", naming `object_url` and the index `source`) if `data` does not have the
    size and crc32c of its index `entry`."""
    if len(data) != entry.size:
        found = f"{len(data)} bytes, index {source} says {entry.size}"
    elif (crc := checksum(data)) != entry.crc32c:
        found = f"crc32c {crc}, index {source} says {entry.crc32c}"
    else:
        return
    raise DecodeError(
        f"stale index: {object_url} has {found}; the object changed after indexing (rewrite the index with "
        "write_index()) or is corrupt"
    )


def _refuse_constant(name: str) -> NoReturn:
    """`ValueError` for ``NaN``, ``Infinity`` and ``-Infinity``: Python's `json` accepts them, JSON does not."""
    raise ValueError(f"{name} is not a JSON value")


def _shown(value: Any) -> str:
    """`value`'s repr, cut short: an error message must stay one readable line whatever the index holds."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


def _validated(document: Any) -> Index:
    _check_fields(document, _TOP_FIELDS, "the index")
    if document["format"] != INDEX_FORMAT:
        raise ValueError(f"format is {_shown(document['format'])}, expected {INDEX_FORMAT!r}")
    if type(document["version"]) is not int or document["version"] != INDEX_VERSION:
        raise ValueError(f"unsupported version {_shown(document['version'])} (this squirrel reads {INDEX_VERSION})")
    if not isinstance(document["suffix"], str):
        raise TypeError(f"suffix must be a string, got {_shown(document['suffix'])}")
    compression = document["compression"]
    if not (compression is None or isinstance(compression, str)) or compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {_shown(compression)}")
    if not isinstance(document["objects"], list):
        raise TypeError("objects must be a list")
    entries = [_entry(item, position) for position, item in enumerate(document["objects"])]
    total = sum(entry.samples for entry in entries)
    if total > _MAX_INT:
        raise ValueError(f"the objects hold {total} samples in total, more than {_MAX_INT}")
    return build_index(document["suffix"], compression, entries)


def _entry(item: Any, position: int) -> IndexEntry:
    """The entry `item` (the `position`-th) holds if it is valid; else `_checked_entry` names what is wrong.

    The checks of a valid entry come first, with no message built (an index may list 100,000 objects)."""
    if type(item) is dict and item.keys() == _ENTRY_FIELDS:
        key, samples, size, crc = item["key"], item["samples"], item["bytes"], item["crc32c"]
        if (
            type(samples) is int
            and type(size) is int
            and 0 <= samples <= _MAX_INT
            and 0 <= size <= _MAX_INT
            and type(crc) is str
            and _CANONICAL_CRC32C.fullmatch(crc)
            and type(key) is str
        ):
            try:
                return IndexEntry(validate_key(key), samples, size, crc)
            except ValueError:  # a bad key (validate_key refuses lone surrogates too): named below
                pass
    return _checked_entry(item, position)


def _checked_entry(item: Any, position: int) -> IndexEntry:
    where = f"object #{position}"
    _check_fields(item, _ENTRY_FIELDS, where)
    key = _valid_key(item["key"], where)
    where = f"{where} ({key!r})"
    for field in ("samples", "bytes"):
        value = item[field]
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            raise ValueError(f"{where}: {field} must be a non-negative integer below 2**63, got {_shown(value)}")
    crc = item["crc32c"]
    if not isinstance(crc, str) or len(_b64decode(crc, where)) != 4:
        raise ValueError(f"{where}: crc32c must be base64 of 4 bytes, got {_shown(crc)}")
    return IndexEntry(key, item["samples"], item["bytes"], crc)


def _valid_key(key: Any, where: str) -> str:
    """`key` if `validate_key` accepts it and it is valid Unicode (no lone surrogate, which JSON's
    ``\\ud800`` escapes can produce and no object name can hold); `ValueError` naming `where` otherwise."""
    if not isinstance(key, str):
        raise ValueError(f"{where}: key must be a str, got {_shown(key)}")
    try:
        valid = validate_key(key)
        valid.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: key {key!r} is not valid Unicode (it holds a lone surrogate)") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return valid


def _b64decode(text: str, where: str) -> bytes:
    """The bytes `text` encodes in canonical base64 (as `checksum` writes it), so equal checksums are equal
    strings; `ValueError` naming `where` otherwise."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: crc32c {_shown(text)} is not base64") from None
    if base64.b64encode(decoded).decode("ascii") != text:
        raise ValueError(f"{where}: crc32c {_shown(text)} is not canonical base64")
    return decoded


def _check_fields(item: Any, fields: frozenset[str], where: str) -> None:
    if not isinstance(item, dict):
        raise TypeError(f"{where} must be a JSON object, got {type(item).__name__}")
    if item.keys() != fields:
        missing, extra = sorted(fields - item.keys()), sorted(item.keys() - fields)
        raise ValueError(f"{where} has missing fields {missing} / unexpected fields {extra}")
