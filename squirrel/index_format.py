"""The index file's JSON layout (`squirrel.index`): written by `dump_index`, read back strictly by `parse_index`.

Version 2 holds one column per field, one value per line (readable, and a changed object changes its lines)::

    {"format": "squirrel-index", "version": 2, "suffix": ".msgpack", "compression": null,
    "keys": [
    "a",
    "b"
    ],
    "samples": [
    10,
    3
    ],
    ...

Version 1 held one JSON object per object (``"objects": [{"key": ..., "samples": ..., "bytes": ..., "crc32c":
...}, ...]``); it is still read. Columns parse 4x faster than as many small objects (json builds 4 lists, not
50,000 dicts) and are checked a column at a time, in a few C-level passes: a loader's first sample over
50,000 objects waited 150 ms on the version 1 parse. An index is read from a store, so it may be corrupt or
hostile: whatever its bytes hold, reading it raises one error, `DecodeError`, naming the index and, for a bad
object, its position.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from squirrel.codec import COMPRESSIONS
from squirrel.errors import DecodeError
from squirrel.index import IndexEntry, columns_index
from squirrel.sample import validate_key, validate_keys

if TYPE_CHECKING:
    from squirrel.index import Index

__all__ = ["INDEX_FORMAT", "INDEX_VERSION", "check_layout", "dump_index", "parse_index", "store_index"]

INDEX_FORMAT = "squirrel-index"
INDEX_VERSION = 2
"""The version `dump_index` writes; `parse_index` reads it and version 1."""

_COLUMNS = ("keys", "samples", "bytes", "crc32c")
_ONE_PER_LINE = (",\n", ": ")
_HEAD_FIELDS = frozenset({"format", "version", "suffix", "compression"})
_TOP_FIELDS = {1: _HEAD_FIELDS | {"objects"}, 2: _HEAD_FIELDS | set(_COLUMNS)}
_ENTRY_FIELDS = frozenset({"key", "samples", "bytes", "crc32c"})

_MAX_INT = 2**63 - 1
"""Largest sample count or size an index may record: what an int64 (numpy, file offsets, GCS sizes) holds."""
_SHOWN_CHARS = 60
_CANONICAL_CRC32CS = re.compile(r"(?:[A-Za-z0-9+/]{5}[AQgw]==\n)*")
"""Lines of canonical base64 of 4 bytes: 6 characters, the last holding 2 bits (4 zero bits: A, Q, g or w), then
"=="."""


def dump_index(index: Index) -> bytes:
    """The index as UTF-8 JSON of version `INDEX_VERSION`: a header, then each column, one value per line."""
    header = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "suffix": index.suffix,
        "compression": index.compression,
    }
    parts = [json.dumps(header)[:-1]]  # without its closing brace: the columns follow
    for name, column in zip(_COLUMNS, index.columns, strict=True):
        values = json.dumps(list(column), separators=_ONE_PER_LINE)[1:-1]
        parts.append(f',\n"{name}": [\n{values}\n]' if values else f',\n"{name}": []')
    return ("".join(parts) + "}\n").encode("utf-8")


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


def _validated(document: Any) -> Index:
    """The index `document` (parsed JSON) holds; `ValueError` or `TypeError` saying what is wrong."""
    if not isinstance(document, dict):
        raise TypeError(f"the index must be a JSON object, got {type(document).__name__}")
    version = document.get("version", INDEX_VERSION)  # none: the fields' check names it missing
    if type(version) is not int or version not in _TOP_FIELDS:
        raise ValueError(f"unsupported version {_shown(version)} (this squirrel reads {sorted(_TOP_FIELDS)})")
    _check_fields(document, _TOP_FIELDS[version], "the index")
    if document["format"] != INDEX_FORMAT:
        raise ValueError(f"format is {_shown(document['format'])}, expected {INDEX_FORMAT!r}")
    if not isinstance(document["suffix"], str):
        raise TypeError(f"suffix must be a string, got {_shown(document['suffix'])}")
    compression = document["compression"]
    if not (compression is None or isinstance(compression, str)) or compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {_shown(compression)}")
    keys, samples, sizes, crc32cs = (
        _rows_as_columns(document["objects"]) if document["version"] == 1 else _columns(document)
    )
    if not (_all_counts(samples) and _all_counts(sizes) and _all_crc32cs(crc32cs) and _all_keys(keys)):
        for position, row in enumerate(zip(keys, samples, sizes, crc32cs, strict=True)):
            _check_entry(dict(zip(("key", "samples", "bytes", "crc32c"), row, strict=True)), position)
    total = sum(samples)
    if total > _MAX_INT:
        raise ValueError(f"the objects hold {total} samples in total, more than {_MAX_INT}")
    return columns_index(document["suffix"], compression, keys, samples, sizes, crc32cs)


def _columns(document: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The four columns of a version 2 `document`: lists, all as long."""
    for name in _COLUMNS:
        if not isinstance(document[name], list):
            raise TypeError(f"{name} must be a list, got {type(document[name]).__name__}")
    lengths = [len(document[name]) for name in _COLUMNS]
    if len(set(lengths)) > 1:
        raise ValueError(f"the columns {list(_COLUMNS)} must be as long as each other, got {lengths}")
    keys, samples, sizes, crc32cs = (document[name] for name in _COLUMNS)
    return keys, samples, sizes, crc32cs


def _rows_as_columns(objects: Any) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The four columns of version 1's `objects`: a list of JSON objects with exactly the entry fields."""
    if not isinstance(objects, list):
        raise TypeError("objects must be a list")
    for position, item in enumerate(objects):
        if type(item) is not dict or item.keys() != _ENTRY_FIELDS:
            _check_fields(item, _ENTRY_FIELDS, f"object #{position}")
    return (
        [item["key"] for item in objects],
        [item["samples"] for item in objects],
        [item["bytes"] for item in objects],
        [item["crc32c"] for item in objects],
    )


def _all_counts(column: list[Any]) -> bool:
    """Whether `column` holds only ints from 0 to `_MAX_INT` (bools are not ints here)."""
    return not column or (set(map(type, column)) == {int} and min(column) >= 0 and max(column) <= _MAX_INT)


def _all_crc32cs(column: list[Any]) -> bool:
    """Whether `column` holds only crc32cs in canonical base64 (what `squirrel.index.checksum` writes)."""
    if not column:
        return True
    return set(map(type, column)) == {str} and _CANONICAL_CRC32CS.fullmatch("\n".join(column) + "\n") is not None


def _all_keys(column: list[Any]) -> bool:
    """Whether `column` holds only keys `validate_key` accepts."""
    try:
        validate_keys(column)
    except ValueError:
        return False
    return True


def _check_entry(item: Any, position: int) -> IndexEntry:
    """The entry `item` (the `position`-th) holds; `ValueError` or `TypeError` naming it and what is wrong."""
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


def _refuse_constant(name: str) -> NoReturn:
    """`ValueError` for ``NaN``, ``Infinity`` and ``-Infinity``: Python's `json` accepts them, JSON does not."""
    raise ValueError(f"{name} is not a JSON value")


def _shown(value: Any) -> str:
    """`value`'s repr, cut short: an error message must stay one readable line whatever the index holds."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


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
