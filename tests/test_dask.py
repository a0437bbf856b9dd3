"""dask on both faces: `async_map(fn, executor=client)` (order, bound, errors, cancelling on early exit) and
`write_shards(items, url, executor=client, make_sample=fn)` (one task per shard builds and writes it)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

from squirrel.aio import AsyncIterableSource
from squirrel.aio import bulk as aio_bulk
from squirrel.bulk import write_shards
from squirrel.driver import MessagePackDataLoader, Sample
from squirrel.iterstream import IterableSource
from tests.helpers import assert_same_samples

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


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


def pid_sample(i: int) -> Sample:
    """A sample made from an int alone, recording the process that made it; fails for a negative `i`."""
    if i < 0:
        raise BadItemError(f"item {i} is bad")
    image = np.random.default_rng(i).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return Sample({"image": image, "label": i, "pid": os.getpid()}, f"s{i:05d}")


def read_back(url: str) -> tuple[list[Sample], set[int]]:
    """The samples at `url` (without their ``pid``) and the pids of the processes that made them."""
    samples = list(MessagePackDataLoader(url).get_iter())
    stripped = [Sample({k: v for k, v in s.value.items() if k != "pid"}, s.key) for s in samples]
    return stripped, {int(s.value["pid"]) for s in samples}


def test_write_shards_per_shard_matches_the_local_path(tmp_path, dask_client: Client) -> None:
    local, cluster = str(tmp_path / "local"), str(tmp_path / "cluster")
    assert write_shards(range(2345), local, 400, make_sample=pid_sample) == [f"shard_{i:06d}" for i in range(6)]
    with get_task_stream(dask_client) as tasks:
        keys = write_shards(range(2345), cluster, 400, executor=dask_client, make_sample=pid_sample)
    assert keys == [f"shard_{i:06d}" for i in range(6)]
    assert [task["key"].startswith("write_shard-") for task in tasks.data] == [True] * 6  # one task per shard
    (expected, local_pids), (written, cluster_pids) = read_back(local), read_back(cluster)
    assert_same_samples(written, expected)
    worker_pids = set(dask_client.run(os.getpid).values())
    assert local_pids == {os.getpid()} and cluster_pids <= worker_pids  # built in the workers, not here


async def test_async_write_shards_per_shard(tmp_path, dask_client: Client) -> None:
    async def items() -> AsyncIterator[int]:
        for i in range(25):
            yield i

    url = str(tmp_path)
    keys = await aio_bulk.write_shards(items(), url, 10, executor=dask_client, make_sample=pid_sample)
    assert keys == ["shard_000000", "shard_000001", "shard_000002"]
    assert [s.value["label"] for s in read_back(url)[0]] == list(range(25))


def test_write_shards_error_in_a_worker_names_the_shard(tmp_path, dask_client: Client) -> None:
    with pytest.raises(BadItemError, match="item -1 is bad") as caught:
        write_shards([*range(25), -1], str(tmp_path), 10, executor=dask_client, make_sample=pid_sample)
    assert f"make_sample(-1) for item 5 of shard 'shard_000002' of {tmp_path}" in caught.value.__notes__[0]
    assert not (tmp_path / "_squirrel_index.json").exists()  # no index for a failed write


def test_write_shards_progress_with_dask(tmp_path, dask_client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    write_shards(range(50), str(tmp_path), 10, executor=dask_client, make_sample=pid_sample, progress=True)
    shown = capsys.readouterr().err
    assert "50/50" in shown and "shards=5/5" in shown
