"""`squirrel index`: build a store's index, or check every object against it, with a bar over the objects."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from squirrel._runtime import run_sync
from squirrel.cli.output import emit, progress_bar, show_progress
from squirrel.cli.stores import index_command, open_store
from squirrel.errors import SquirrelError

if TYPE_CHECKING:
    import argparse

    from squirrel.driver import RecordStore
    from squirrel.index import Index

__all__ = ["build_index", "cmd_index", "verify_store"]

CONCURRENCY = 16
"""Objects read at once while indexing or verifying."""


def cmd_index(args: argparse.Namespace) -> None:
    """Build the store's index, or with ``--verify`` check every object against it (`SquirrelError` when
    any differs, after printing each difference)."""
    store = open_store(args)
    if not args.verify:
        index = build_index(store)
        emit(f"indexed {len(index)} objects, {index.num_samples} samples: {store.aio.index_url}", stream=sys.stderr)
        return
    problems = run_sync(verify_store(store.aio))
    for problem in problems:
        emit(problem)
    if problems:
        raise SquirrelError(f"{len(problems)} problem(s) against the index {store.aio.index_url}")
    emit("index matches every object", stream=sys.stderr)


def build_index(store: RecordStore) -> Index:
    """Write the index of every object of `store`, with a bar over them (`write_index`'s own), and return it.

    The store's `FileNotFoundError` when it holds no object: an index that lists nothing would hide the
    mistake (a wrong driver or compression lists no object of its suffix).
    """
    if not store.list_objects():
        raise run_sync(store.aio.nothing_to_read())
    return store.write_index(progress=show_progress())


async def verify_store(store: Any) -> list[str]:
    """Every disagreement between the store's objects and its index (missing, unlisted, changed), with a
    bar over the indexed objects (its total from the index). `SquirrelError` if the store has no index."""
    from squirrel.aio.stream import AsyncIterableSource
    from squirrel.index import verify_object

    index = await store.read_index()
    if index is None:
        raise SquirrelError(f"{store.url} has no index: build it with `{index_command(store)}`")
    listed = set(await store.list_objects())
    problems = [f"unlisted: {store.object_url(k)}" for k in sorted(listed - set(index.keys))]
    problems += [f"missing: {store.object_url(k)}" for k in index.keys if k not in listed]
    present = [k for k in index.keys if k in listed]
    bar = progress_bar(len(present), "object", "verifying")

    async def check(key: str) -> str | None:
        data = await store.read_bytes(key)
        bar.update()
        try:
            verify_object(index.get(key), data, store.object_url(key), store.index_url)
        except SquirrelError as error:
            return f"changed: {error}"
        return None

    try:
        results = await AsyncIterableSource(present).async_map(check, max_concurrency=CONCURRENCY).collect()
    finally:
        bar.close()
    return problems + [r for r in results if r]
