"""The store index: what it lists of every object of a store (its key, sample count, size and checksum).

A loader reads it instead of listing a bucket of 100,000 objects, and knows the dataset's length without
reading a shard. Checksums are crc32c in GCS's own form (base64 of the big-endian value), so they can be
compared with the checksum GCS keeps for every object. This module is pure; the file's JSON layout, written
and strictly read back, is `squirrel.index_format`.

The index is written once, at the end of a bulk write or by an explicit ``write_index()``; `set` and
`delete` leave it alone, so concurrent writers never race on it, and a store changed after indexing has a
stale index until it is written again.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import google_crc32c

from squirrel.errors import DecodeError
from squirrel.sample import validate_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "INDEX_NAME",
    "Index",
    "IndexEntry",
    "build_index",
    "checksum",
    "columns_index",
    "describe",
    "verify_object",
]

INDEX_NAME = "_squirrel_index.json"
"""The index's object name at the store's root (it matches no store suffix, so it is never listed as a key)."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stored object: its key, how many samples it holds, its stored size in bytes and its crc32c."""

    key: str
    samples: int
    size: int
    crc32c: str


class Index:
    """Every object of a store, sorted by key, and the layout (`suffix`, `compression`) it was written for.

    Held as columns, one per field, as the index file stores them (`squirrel.index_format`): a pass needs
    only the keys, and 50,000 entry objects cost more than parsing the file. `entries` and `get` make
    entries when asked. The columns, object by object: `keys`, `samples` (counts), `sizes` (stored bytes)
    and `crc32cs`, sorted by key without duplicates (`columns_index` makes them so).
    """

    def __init__(
        self,
        suffix: str,
        compression: str | None,
        keys: Sequence[str],
        samples: Sequence[int],
        sizes: Sequence[int],
        crc32cs: Sequence[str],
    ) -> None:
        self.suffix, self.compression = suffix, compression
        self._columns = (tuple(keys), tuple(samples), tuple(sizes), tuple(crc32cs))

    @property
    def columns(self) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
        """(keys, sample counts, sizes, crc32cs), each in key order."""
        return self._columns

    @property
    def keys(self) -> list[str]:
        """Every key, sorted."""
        return list(self._columns[0])

    @cached_property
    def entries(self) -> tuple[IndexEntry, ...]:
        """Every object's entry, sorted by key."""
        return tuple(map(IndexEntry, *self._columns))

    @cached_property
    def num_samples(self) -> int:
        """The total number of samples in the store."""
        return sum(self._columns[1])

    @cached_property
    def _positions(self) -> dict[str, int]:
        return dict(zip(self._columns[0], range(len(self._columns[0])), strict=True))

    def get(self, key: str) -> IndexEntry | None:
        """The entry of `key`, or None if the index does not list it."""
        at = self._positions.get(key)
        if at is None:
            return None
        keys, samples, sizes, crc32cs = self._columns
        return IndexEntry(keys[at], samples[at], sizes[at], crc32cs[at])

    def __repr__(self) -> str:
        return (
            f"Index(suffix={self.suffix!r}, compression={self.compression!r}, objects={len(self)}, "
            f"samples={self.num_samples})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Index):
            return NotImplemented
        return (self.suffix, self.compression, self._columns) == (other.suffix, other.compression, other._columns)

    def __hash__(self) -> int:
        return hash((self.suffix, self.compression, self._columns))

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def __len__(self) -> int:
        return len(self._columns[0])


def checksum(data: bytes | bytearray | memoryview) -> str:
    """The crc32c of `data` as GCS reports it: base64 of the 4 big-endian bytes."""
    if not isinstance(data, bytes):
        data = bytes(data)  # google_crc32c takes only immutable bytes
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode("ascii")


def describe(key: str, data: bytes | bytearray | memoryview, samples: int) -> IndexEntry:
    """The index entry of object `key` whose stored bytes are `data`, holding `samples` samples."""
    return IndexEntry(validate_key(key), samples, len(data), checksum(data))


def build_index(suffix: str, compression: str | None, entries: Iterable[IndexEntry]) -> Index:
    """An index of `entries` (in any order) for a store of `suffix` objects with `compression`; `ValueError`
    on a duplicate key."""
    listed = list(entries)
    columns = (
        [e.key for e in listed],
        [e.samples for e in listed],
        [e.size for e in listed],
        [e.crc32c for e in listed],
    )
    return columns_index(suffix, compression, *columns)


def columns_index(
    suffix: str, compression: str | None, keys: list[str], samples: list[int], sizes: list[int], crc32cs: list[str]
) -> Index:
    """An index for a store of `suffix` objects with `compression`, of the objects the columns list row by
    row, in any order (sorted here by key): `keys`, `samples`, `sizes`, `crc32cs`. `ValueError` on a
    duplicate key."""
    if keys != sorted(keys):
        order = sorted(range(len(keys)), key=keys.__getitem__)
        keys, crc32cs = [keys[at] for at in order], [crc32cs[at] for at in order]
        samples, sizes = [samples[at] for at in order], [sizes[at] for at in order]
    if len(set(keys)) < len(keys):
        twice = next(before for before, after in itertools.pairwise(keys) if before == after)
        raise ValueError(f"key {twice!r} is listed twice")
    return Index(suffix, compression, keys, samples, sizes, crc32cs)


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
