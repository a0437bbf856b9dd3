"""Faults: transient errors retried within a deadline, a GCS server killed mid-pass, writers SIGKILLed
mid-write, and many concurrent writers. The server is a real fake-gcs-server process; nothing is mocked."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from squirrel.aio.retry import DeadlineExceeded, RetryPolicy, is_transient, with_retries
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from tests.gcs_server import GcsServer
from tests.helpers import make_samples, make_shards

FAST = RetryPolicy(attempts=50, initial_backoff=0.05, max_backoff=0.5, request_timeout=2.0, deadline=30.0)


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_transient_errors_are_retried_until_success() -> None:
    flaky = Flaky([ConnectionResetError("reset"), TimeoutError(), ConnectionRefusedError("refused")])
    assert await with_retries(flaky, FAST, "gs://b/x") == "ok"
    assert flaky.calls == 4


async def test_permanent_errors_are_not_retried() -> None:
    for error in (FileNotFoundError("gone"), PermissionError("no"), ValueError("bad data")):
        flaky = Flaky([error])
        with pytest.raises(type(error)):
            await with_retries(flaky, FAST, "gs://b/x")
        assert flaky.calls == 1


async def test_a_hanging_request_fails_at_the_deadline() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    policy = RetryPolicy(attempts=100, initial_backoff=0.01, max_backoff=0.05, request_timeout=0.2, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="gs://b/slow"):
        await with_retries(hang, policy, "gs://b/slow")
    assert time.monotonic() - started < 3.0


def test_http_status_classification() -> None:
    from gcsfs.retry import HttpError

    assert is_transient(HttpError({"code": 503, "message": "busy"}))
    assert is_transient(HttpError({"code": 429, "message": "slow down"}))
    assert not is_transient(HttpError({"code": 403, "message": "forbidden"}))
    assert not is_transient(FileNotFoundError("x"))


@pytest.fixture
def own_server() -> GcsServer:
    """A persistent server of this test's own, so killing it touches no other test."""
    server = GcsServer(persistent=True)
    server.start()
    yield server
    server.stop()


def _fill(url: str, shards: int, per_shard: int, **options) -> list[str]:
    store = MessagepackStore(url, **options)
    for shard in make_shards(shards, per_shard):
        store.set(shard)
    return sorted(s.key for shard in make_shards(shards, per_shard) for s in shard.value)


@pytest.mark.gcs
def test_a_pass_survives_the_server_being_killed_and_restarted(own_server: GcsServer) -> None:
    own_server.create_bucket("faults")
    url = "gs://faults/data"
    options = {"endpoint_url": own_server.url, "retry": FAST}
    expected = _fill(url, 12, 50, **options)
    seen = []
    restarted = threading.Event()
    for sample in MessagePackDataLoader(url, **options).get_iter(prefetch=1, max_concurrency=1):
        seen.append(sample.key)
        if len(seen) == 100:
            own_server.kill()

            def restart_later() -> None:
                time.sleep(1.5)
                own_server.start()
                restarted.set()

            threading.Thread(target=restart_later).start()
    assert restarted.is_set()
    assert sorted(seen) == expected and len(seen) == len(set(seen))


@pytest.mark.gcs
def test_a_dead_server_fails_clearly_within_the_deadline(own_server: GcsServer) -> None:
    own_server.create_bucket("dead")
    url = "gs://dead/data"
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.2, request_timeout=1.0, deadline=4.0)
    _fill(url, 3, 5, endpoint_url=own_server.url)
    store = MessagepackStore(url, endpoint_url=own_server.url, retry=policy)
    own_server.kill()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="dead/data"):
        list(store.get("shard_001"))
    assert time.monotonic() - started < 15


def _write_forever(url: str) -> None:
    store = MessagepackStore(url)
    payload = os.urandom(64 * 1024 * 1024)
    while True:
        store.set(Sample({"blob": payload}, key="big"))


@pytest.mark.parametrize("where", ["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def test_a_writer_killed_mid_write_leaves_no_partial_object(where: str, tmp_path: Path, request) -> None:
    url = str(tmp_path / "store") if where == "local" else request.getfixturevalue("gcs_url")
    MessagepackStore(url).set(Shard(make_samples(2), key="kept"))
    writer = multiprocessing.get_context("spawn").Process(target=_write_forever, args=(url,))
    writer.start()
    time.sleep(4.0)  # well inside a 64 MB write
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    store = MessagepackStore(url)
    keys = list(store.keys())
    assert "kept" in keys and set(keys) <= {"kept", "big"}
    if "big" in keys:  # a complete earlier write: it must decode
        assert len(next(store.get("big")).value["blob"]) == 64 * 1024 * 1024
    if where == "local":
        leftovers = [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith(".")]
        assert store.cleanup(older_than=3600) == []  # too young to be a crashed writer's, maybe
        removed = store.cleanup(older_than=0)
        assert sorted(Path(p).name for p in removed) == sorted(leftovers)
        assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".")]


def _write_many(url: str, first: int) -> None:
    store = MessagepackStore(url)
    for i in range(first, first + 100):
        store.set(Shard(make_samples(2, prefix=f"w{i}_"), key=f"shard_{i:04d}"))


@pytest.mark.parametrize("where", ["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def test_8_threads_and_4_processes_writing_100_shards_each_lose_nothing(where: str, tmp_path: Path, request) -> None:
    url = str(tmp_path / "store") if where == "local" else request.getfixturevalue("gcs_url")
    threads = [threading.Thread(target=_write_many, args=(url, 100 * i)) for i in range(8)]
    processes = [
        multiprocessing.get_context("fork").Process(target=_write_many, args=(url, 100 * i)) for i in range(8, 12)
    ]
    for worker in [*threads, *processes]:
        worker.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(300)
        assert process.exitcode == 0
    store = MessagepackStore(url)
    assert list(store.keys()) == [f"shard_{i:04d}" for i in range(1200)]
    for key in ("shard_0000", "shard_0777", "shard_1199"):
        assert [s.key for s in store.get(key)] == [f"w{int(key[6:])}_{j:05d}" for j in range(2)]


def _key(sample: Sample) -> str:
    return sample.key


@pytest.mark.gcs
def test_after_a_failed_pass_load_state_dict_resumes_without_repeats_or_gaps(own_server: GcsServer) -> None:
    import torch.utils.data

    own_server.create_bucket("resume")
    url = "gs://resume/data"
    _fill(url, 12, 50, endpoint_url=own_server.url)
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.2, request_timeout=1.0, deadline=3.0)

    def dataset() -> torch.utils.data.IterableDataset:
        loader = MessagePackDataLoader(url, endpoint_url=own_server.url, retry=policy)
        stream = loader.get_iter(seed=1, shuffle_key_buffer=4, shuffle_item_buffer=60, prefetch=1, max_concurrency=1)
        return stream.map(_key).to_torch_iterable()

    full = [k for batch in torch.utils.data.DataLoader(dataset(), batch_size=10) for k in batch]
    interrupted = dataset()
    consumed, batches = [], 0
    with pytest.raises(DeadlineExceeded):
        for batch in torch.utils.data.DataLoader(interrupted, batch_size=10):
            consumed.extend(batch)
            batches += 1
            if batches == 12:
                own_server.kill()
    state = interrupted.state_dict(batches_consumed=batches, batch_size=10)
    own_server.start()
    resumed = dataset()
    resumed.load_state_dict(state)
    rest = [k for batch in torch.utils.data.DataLoader(resumed, batch_size=10) for k in batch]
    assert consumed + rest == full
