"""The stores and loaders the `squirrel` command opens from its arguments, the hints that name them, and
the progress bar of a pass that reads one whole."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from squirrel.cli.output import Progress, progress_bar, show_progress
from squirrel.driver import (
    CsvLoader,
    CsvStore,
    JsonlLoader,
    JsonlStore,
    MessagePackDataLoader,
    MessagepackStore,
    RecordLoader,
    RecordStore,
)

if TYPE_CHECKING:
    import argparse

    from squirrel.metrics import LoaderMetrics

__all__ = ["DRIVERS", "index_command", "open_loader", "open_store", "read_progress"]

DRIVERS: dict[str, tuple[type[RecordStore], type[RecordLoader]]] = {
    "messagepack": (MessagepackStore, MessagePackDataLoader),
    "jsonl": (JsonlStore, JsonlLoader),
    "record": (RecordStore, RecordLoader),
    "csv": (CsvStore, CsvLoader),
}
"""What ``--driver`` and ``--to`` name: each driver's store and loader classes."""


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"format": args.format} if args.format != "squirrel" else {}


def open_store(args: argparse.Namespace) -> RecordStore:
    """The store at ``args.url``, of ``args.driver``, ``args.compression`` and ``args.format``."""
    store_class, _ = DRIVERS[args.driver]
    return store_class(args.url, args.compression, **_options(args))


def open_loader(args: argparse.Namespace) -> RecordLoader:
    """The loader of the store at ``args.url``, of ``args.driver``, ``args.compression`` and ``args.format``."""
    _, loader_class = DRIVERS[args.driver]
    return loader_class(args.url, args.compression, **_options(args))


def index_command(store: Any) -> str:
    """The `squirrel index` command line that indexes the async `store`, with the ``--driver``,
    ``--compression`` and ``--format`` it needs (only those that differ from the defaults), for hints that
    work when pasted. `ValueError` if no driver of `DRIVERS` makes stores of `store`'s class."""
    names = [name for name, (store_class, _) in DRIVERS.items() if type(store) is store_class.async_class]
    if not names:
        raise ValueError(f"no driver of the squirrel command reads {store!r}")
    words = ["squirrel", "index", shlex.quote(store.url)]
    if names[0] != "messagepack":
        words += ["--driver", names[0]]
    if store.compression is not None:
        words += ["--compression", store.compression]
    if getattr(store, "format", "squirrel") != "squirrel":
        words += ["--format", store.format]
    return " ".join(words)


def read_progress(store: RecordStore, metrics: LoaderMetrics, description: str) -> Progress:
    """The bar of a pass that reads every sample of `store`, whose counters are `metrics`.

    Its total is the sample count from the store's index when it has one, else the object count from a
    listing (the bar then follows the objects fetched). The store is asked only when the bar shows, so a
    piped command makes no request more. Raises what `read_index` and `list_objects` raise (a corrupt
    index: `DecodeError`).
    """
    if not show_progress():
        return Progress(progress_bar(None, "sample", description))
    index = store.read_index()
    if index is not None:
        return Progress(progress_bar(index.num_samples, "sample", description))
    unit = "sample" if store.one_object_per_sample else "object"
    return Progress(progress_bar(len(store.list_objects()), unit, description), metrics)
