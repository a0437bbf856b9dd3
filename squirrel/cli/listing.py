"""`squirrel ls` and `squirrel cat`: the objects of a store with their counts, and the samples of one."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel._runtime import run_sync
from squirrel.cli.output import emit, progress_bar
from squirrel.cli.stores import open_store

if TYPE_CHECKING:
    import argparse

__all__ = ["cmd_cat", "cmd_ls", "shard_rows", "summarise"]


def cmd_ls(args: argparse.Namespace) -> None:
    """Shards with sample counts and stored sizes (totals on standard error)."""
    rows = run_sync(shard_rows(open_store(args).aio))
    bar = progress_bar(len(rows), "shard", "listing")
    for key, samples, size in rows:
        emit(key, samples, size)
        bar.update()
    bar.close()
    emit(f"{len(rows)} shards, {sum(r[1] for r in rows)} samples, {sum(r[2] for r in rows)} bytes", stream=sys.stderr)


async def shard_rows(store: Any) -> list[tuple[str, int, int]]:
    """(key, sample count, stored bytes) for every object of `store`: from its index when it has one,
    else by reading the objects concurrently. `FileNotFoundError` naming what was looked for when the
    store holds no object."""
    from squirrel.aio.stream import AsyncIterableSource

    index = await store.read_index()
    if index is not None:
        return [(entry.key, entry.samples, entry.size) for entry in index.entries]

    async def row(key: str) -> tuple[str, int, int]:
        data = await store.read_bytes(key)
        return key, len(store.decode(key, data)), len(data)

    keys = await store.list_keys()
    if not keys:  # a typo'd url, a missing gs://, the wrong --driver or --compression: say so
        raise await store.nothing_to_read()
    return await AsyncIterableSource(keys).async_map(row, max_concurrency=16).collect()


def cmd_cat(args: argparse.Namespace) -> None:
    """The samples of one object, arrays summarised as dtype and shape; `KeyError` if there is none."""
    for sample in open_store(args).get(args.key):
        record = {"key": sample.key, "value": summarise(sample.value)}
        emit(json.dumps(record) if args.json else f"{sample.key}: {record['value']}")


def summarise(value: Any) -> Any:
    """A JSON-friendly view of a sample value: arrays become ``"uint8[64, 64, 3]"``, bytes their length."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): summarise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [summarise(v) for v in value]
    return value
