"""Sync stores and loaders across processes: forked children, spawned children, concurrent writers."""

from __future__ import annotations

import multiprocessing

import pytest

from squirrel.driver import MessagePackDataLoader, MessagepackStore, Shard
from tests.helpers import make_samples


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store URL that other processes can reach too (memory:// is per process)."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("gcs_url")


def _write_shards(url: str, first: int, count: int) -> None:
    store = MessagepackStore(url)
    for i in range(first, first + count):
        store.set(Shard(make_samples(2, prefix=f"p{i}_"), key=f"shard_{i:03d}"))


def _read_all(url: str, queue: multiprocessing.Queue) -> None:
    loader = MessagePackDataLoader(url)
    queue.put(sorted(sample.key for sample in loader.get_iter()))


def _read_with(loader: MessagePackDataLoader, queue: multiprocessing.Queue) -> None:
    queue.put(sorted(sample.key for sample in loader.get_iter()))


def _run(context: str, target, *args) -> None:
    process = multiprocessing.get_context(context).Process(target=target, args=args)
    process.start()
    process.join(120)
    assert process.exitcode == 0


def test_forked_child_uses_its_own_loop_and_filesystem(shared_url: str) -> None:
    store = MessagepackStore(shared_url)
    store.set(Shard(make_samples(3), key="parent"))
    assert list(store.keys()) == ["parent"]  # the parent's IO loop and filesystem now exist
    _run("fork", _write_shards, shared_url, 0, 2)
    queue = multiprocessing.get_context("fork").Queue()
    _run("fork", _read_all, shared_url, queue)
    assert len(queue.get(timeout=10)) == 3 + 2 * 2
    assert list(store.keys()) == ["parent", "shard_000", "shard_001"]  # the parent still works


def test_spawned_child_gets_a_pickled_loader(shared_url: str) -> None:
    MessagepackStore(shared_url).set(Shard(make_samples(4), key="a"))
    loader = MessagePackDataLoader(shared_url)
    list(loader.get_iter())  # used in the parent before it is pickled
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    _run("spawn", _read_with, loader, queue)
    assert queue.get(timeout=10) == [f"s{i:05d}" for i in range(4)]


def test_four_processes_writing_one_store_lose_nothing(shared_url: str) -> None:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_write_shards, args=(shared_url, 25 * i, 25)) for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = MessagepackStore(shared_url)
    assert list(store.keys()) == [f"shard_{i:03d}" for i in range(100)]
    assert sum(len(list(store.get(k))) for k in store.keys()) == 200
