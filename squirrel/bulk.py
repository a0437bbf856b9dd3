"""Parallel bulk writer, blocking face: ``write_shards(samples, url, executor=dask_client)``.

Runs `squirrel.aio.bulk.write_shards` on the process's IO loop; see there for how shards are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squirrel._runtime import run_sync
from squirrel.aio import bulk

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["write_shards"]


def write_shards(
    samples: Iterable[Any],
    url: str,
    shard_size: int = 1000,
    executor: Any | None = None,
    driver: str = "messagepack",
    compression: str | None = None,
    max_concurrency: int = 16,
    key_prefix: str = "shard",
    **storage_options: Any,
) -> list[str]:
    """Write `samples` as shards of `shard_size` (keys ``f"{key_prefix}_{i:06d}"``) under `url`, then index it.

    Shards are written concurrently on the IO loop, or as tasks on `executor` (a ``dask.distributed.Client``),
    at most `max_concurrency` at once; `samples` is consumed lazily. Returns the keys written, in order.
    """
    return run_sync(
        bulk.write_shards(
            samples, url, shard_size, executor, driver, compression, max_concurrency, key_prefix, **storage_options
        )
    )
