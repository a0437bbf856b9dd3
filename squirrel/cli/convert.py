"""`squirrel convert`: copy every sample of a store into shards of another driver or compression, indexed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from squirrel.aio.bulk import DRIVERS as BULK_DRIVERS
from squirrel.bulk import write_shards
from squirrel.cli.output import emit
from squirrel.cli.stores import DRIVERS, open_loader, open_store, read_progress
from squirrel.iterstream import IterableSource

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from typing import Any

    from squirrel.driver import RecordStore
    from squirrel.index import Index

__all__ = ["cmd_convert"]


def cmd_convert(args: argparse.Namespace) -> None:
    """Stream every sample of URL (read with ``--driver``/``--compression``) into shards of `--shard-size`
    in DST (written with ``--to``/``--to-compression``/``--to-level``), with bounded memory and a bar over the samples,
    and index DST.

    Shard drivers go through `squirrel.bulk.write_shards` (concurrent writes, the index written once from
    what they reported, and `FileExistsError` if DST already holds anything). The others write shard by
    shard here and index DST at the end from what each write reported, without reading an object back.
    """
    stream = open_loader(args).get_iter()
    progress = read_progress(open_store(args), stream.metrics, "converting")
    samples = progress.follow(iter(stream))  # the pass opens here, off the IO loop that `write_shards` runs on
    if args.to in BULK_DRIVERS:
        options = {"driver": args.to, "compression": args.to_compression, "compression_level": args.to_level}
        write_shards(samples, args.dst, shard_size=args.shard_size, **options)
        index = _target(args).read_index()
    else:
        index = _write_one_by_one(samples, _target(args), args.shard_size)
    if index is None:  # write_shards indexes what it writes: no index is a bug, not the user's mistake
        raise RuntimeError(f"convert wrote no index at {_target(args).index_url}")
    emit(f"wrote {index.num_samples} samples in {len(index)} objects to {args.dst}, indexed", stream=sys.stderr)


def _target(args: argparse.Namespace) -> RecordStore:
    target_class, _ = DRIVERS[args.to]
    return target_class(args.dst, args.to_compression, compression_level=args.to_level)


def _write_one_by_one(samples: Iterator[Any], target: RecordStore, shard_size: int) -> Index:
    """Write `samples` into `target` a shard of `shard_size` at a time, then index it from what the writes
    reported (so no object is read back); return the index."""
    from squirrel.sample import Shard

    written = []
    for number, batch in enumerate(IterableSource(samples).batched(shard_size)):
        written += target.set(Shard(batch, key=f"shard_{number:06d}"), keep_index=True)
    return target.write_index(written)
