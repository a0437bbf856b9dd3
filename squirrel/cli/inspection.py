"""`squirrel inspect` (alias `info`): one screen about a store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel._runtime import run_sync
from squirrel.cli.output import emit
from squirrel.cli.stores import index_command, open_store

if TYPE_CHECKING:
    import argparse

    from squirrel.driver import RecordStore
    from squirrel.index import Index

__all__ = ["cmd_inspect"]


def cmd_inspect(args: argparse.Namespace) -> None:
    """One screen about a store: its layout, objects, samples, bytes, the fields of its first sample, and
    whether its index is fresh. `FileNotFoundError` (from the store) when it holds no object."""
    store = open_store(args)
    listing = store.list_objects()  # listed once: the counts and sizes below, and the index checked against it
    if not listing:
        raise run_sync(store.aio.nothing_to_read())
    index = store.read_index()
    first = next(store.get(min(listing)))
    rows = [
        ("url", store.url),
        ("driver", args.driver),
        ("compression", store.compression or "none"),
        ("format", args.format),
        ("objects (one per sample)" if store.one_object_per_sample else "shards", len(listing)),
        ("samples", _samples_line(store, index, listing)),
        ("bytes", sum(listing.values())),
        *_field_rows(first.value),
        ("index", _freshness(index, listing)),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        emit(f"{label + ':':<{width}}{value}")


def _samples_line(store: RecordStore, index: Index | None, listing: dict[str, int]) -> str:
    if index is None:
        return f"unknown (no index: run `{index_command(store.aio)}`)"
    if _differing(index, listing):
        return f"{index.num_samples} (from a stale index: run `{index_command(store.aio)}`)"
    return str(index.num_samples)


def _field_rows(value: Any) -> list[tuple[str, str]]:
    """(``field NAME``, its type) for each field of a sample's `value` (a dict), else one ``value`` row."""
    if isinstance(value, dict):
        return [(f"field {name}", _type_of(field)) for name, field in value.items()]
    return [("value", _type_of(value))]


def _type_of(value: Any) -> str:
    """An array's dtype and shape (``uint8 (64, 64, 3)``), a numpy scalar's dtype, else the type's name."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    if isinstance(value, np.generic):
        return str(value.dtype)
    if isinstance(value, bytes):
        return f"bytes ({len(value)})"
    return type(value).__name__


def _differing(index: Index, listing: dict[str, int]) -> int:
    """How many objects the index and the listing disagree on: missing from one, or of another size."""
    indexed = {entry.key: entry.size for entry in index.entries}
    return sum(indexed.get(key) != listing.get(key) for key in indexed.keys() | listing.keys())


def _freshness(index: Index | None, listing: dict[str, int]) -> str:
    if index is None:
        return "none"
    differing = _differing(index, listing)
    return f"stale: {differing} objects differ" if differing else "fresh"
