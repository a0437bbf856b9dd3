"""`async_map(fn, executor=dask_client)` on both faces: order, bound, errors, and cancelling on early exit."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from distributed import Client, LocalCluster

from squirrel.aio import AsyncIterableSource
from squirrel.iterstream import IterableSource

if TYPE_CHECKING:
    from collections.abc import Iterator


class BadItemError(Exception):
    """Raised in a worker; must reach the caller as itself."""


def slow_square(x: int) -> int:
    time.sleep(0.01 * ((7 * x) % 5))  # later items often finish first
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise BadItemError(f"item {x} is bad")
    return x


def mark_and_sleep(item: tuple[str, int]) -> int:
    folder, x = item
    Path(folder, str(x)).touch()
    time.sleep(0.2 if x else 0)  # the first result comes at once, while the rest are still queued
    return x


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    """One two-process dask cluster for the module."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
    gc.collect()  # close the cluster's sockets now, not during a later test that counts file descriptors


def counting(n: int, pulled: list[int]) -> Iterator[int]:
    for i in range(n):
        pulled.append(i)
        yield i


def test_sync_keeps_order_and_bound(dask_client: Client) -> None:
    pulled: list[int] = []
    stream = iter(IterableSource(counting(30, pulled)).async_map(slow_square, 4, executor=dask_client))
    assert next(stream) == 0 and len(pulled) == 4  # nothing pulled beyond the bound before the first result
    assert [0, *stream] == [x * x for x in range(30)]
    unordered = IterableSource(range(30)).async_map(slow_square, 4, ordered=False, executor=dask_client)
    assert sorted(unordered.collect()) == [x * x for x in range(30)]


async def test_async_keeps_order_and_bound(dask_client: Client) -> None:
    pulled: list[int] = []
    stream = aiter(AsyncIterableSource(counting(30, pulled)).async_map(slow_square, 4, executor=dask_client))
    assert await anext(stream) == 0 and len(pulled) == 4
    assert [0, *[x async for x in stream]] == [x * x for x in range(30)]
    unordered = AsyncIterableSource(range(30)).async_map(slow_square, 4, ordered=False, executor=dask_client)
    assert sorted(await unordered.collect()) == [x * x for x in range(30)]


def test_sync_error_reaches_the_caller(dask_client: Client) -> None:
    with pytest.raises(BadItemError, match="item 3 is bad"):
        IterableSource(range(10)).async_map(fail_on_three, 4, executor=dask_client).collect()


async def test_async_error_reaches_the_caller(dask_client: Client) -> None:
    with pytest.raises(BadItemError, match="item 3 is bad"):
        await AsyncIterableSource(range(10)).async_map(fail_on_three, 4, executor=dask_client).collect()


QUEUED = 12  # tasks in flight on two single-thread workers: most are still queued after the first result


def test_sync_early_exit_cancels_queued_tasks(tmp_path, dask_client: Client) -> None:
    items = [(str(tmp_path), x) for x in range(QUEUED)]
    stream = iter(IterableSource(items).async_map(mark_and_sleep, QUEUED, executor=dask_client))
    assert next(stream) == 0
    stream.close()
    time.sleep(1.5)  # long enough for every task to have started, had they not been cancelled
    assert len(os.listdir(tmp_path)) <= QUEUED // 2


async def test_async_early_exit_cancels_queued_tasks(tmp_path, dask_client: Client) -> None:
    items = [(str(tmp_path), x) for x in range(QUEUED)]
    stream = AsyncIterableSource(items).async_map(mark_and_sleep, QUEUED, executor=dask_client)
    assert await stream.take(1).collect() == [0]
    await asyncio.sleep(1.5)
    assert len(os.listdir(tmp_path)) <= QUEUED // 2
