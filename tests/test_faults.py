"""Faults: transient errors retried within a deadline, an endpoint going down mid-pass, writers SIGKILLed
mid-write, and many concurrent writers, on gs:// and s3://. The servers are real fake-gcs-server and moto
processes (for s3://, an outage is a `FaultProxy` in front of moto going down: moto keeps nothing across a
restart); nothing is mocked."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from squirrel.aio.retry import DeadlineExceeded, RetryPolicy, is_transient, with_retries
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from tests.fault_proxy import FaultProxy
from tests.gcs_server import GcsServer
from tests.helpers import make_samples, make_shards

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.server_process import LoopbackServer

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


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


def test_botocore_error_classification() -> None:
    """What s3fs raises: botocore's errors, and the `OSError` s3fs makes of a ClientError (its cause)."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError
    from s3fs.errors import translate_boto_error

    transient = [
        (503, "ServiceUnavailable"),
        (503, "SlowDown"),
        (500, "InternalError"),
        (429, "429"),
        (400, "Throttling"),
    ]
    for status, code in transient:
        assert is_transient(_client_error(status, code)), code
        assert is_transient(translate_boto_error(_client_error(status, code))), code
    for status, code in [(403, "AccessDenied"), (404, "NoSuchKey"), (400, "InvalidArgument"), (416, "InvalidRange")]:
        assert not is_transient(_client_error(status, code)), code
        assert not is_transient(translate_boto_error(_client_error(status, code))), code
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))
    assert not is_transient(NoCredentialsError())


@dataclass
class Restartable:
    """An endpoint of a test's own that a test can take down and bring back with its data: a persistent
    fake-gcs-server killed and restarted, or a `FaultProxy` in front of moto stopped and started."""

    scheme: str
    endpoint: str
    server: LoopbackServer
    kill: Callable[[], None]
    start: Callable[[], None]

    def bucket_url(self, name: str) -> str:
        """The URL of a new bucket (a fresh name: moto's server is shared by the session)."""
        bucket = f"{name}-{uuid.uuid4().hex[:8]}"
        self.server.create_bucket(bucket)
        return f"{self.scheme}://{bucket}/data"


@pytest.fixture(params=[pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)])
def own_server(request: pytest.FixtureRequest) -> Iterator[Restartable]:
    """A gs:// or s3:// endpoint of this test's own, so taking it down touches no other test."""
    if request.param == "gcs":
        server = GcsServer(persistent=True)
        server.start()
        yield Restartable("gs", server.url, server, server.kill, server.start)
        server.stop()
        return
    moto = request.getfixturevalue("s3_server")
    proxy = FaultProxy(moto.url, "s3")
    proxy.start()
    yield Restartable("s3", proxy.url, moto, proxy.stop, proxy.start)
    proxy.stop()


def _fill(url: str, shards: int, per_shard: int, **options) -> list[str]:
    store = MessagepackStore(url, **options)
    for shard in make_shards(shards, per_shard):
        store.set(shard)
    return sorted(s.key for shard in make_shards(shards, per_shard) for s in shard.value)


def test_a_pass_survives_the_server_being_killed_and_restarted(own_server: Restartable) -> None:
    url = own_server.bucket_url("faults")
    options = {"endpoint_url": own_server.endpoint, "retry": FAST}
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


def test_a_dead_server_fails_clearly_within_the_deadline(own_server: Restartable) -> None:
    url = own_server.bucket_url("dead")
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.2, request_timeout=1.0, deadline=4.0)
    _fill(url, 3, 5, endpoint_url=own_server.endpoint)
    store = MessagepackStore(url, endpoint_url=own_server.endpoint, retry=policy)
    own_server.kill()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=f"{url}/shard_001"):
        list(store.get("shard_001"))
    assert time.monotonic() - started < 15


def _write_forever(url: str) -> None:
    store = MessagepackStore(url)
    payload = os.urandom(64 * 1024 * 1024)
    while True:
        store.set(Sample({"blob": payload}, key="big"))


WHERE = ["local", pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)]


def _store_url(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "store") if where == "local" else request.getfixturevalue(f"{where}_url")


@pytest.mark.parametrize("where", WHERE)
def test_a_writer_killed_mid_write_leaves_no_partial_object(where: str, tmp_path: Path, request) -> None:
    url = _store_url(where, tmp_path, request)
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


@pytest.mark.parametrize("where", WHERE)
def test_8_threads_and_4_processes_writing_100_shards_each_lose_nothing(where: str, tmp_path: Path, request) -> None:
    url = _store_url(where, tmp_path, request)
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


def test_after_a_failed_pass_load_state_dict_resumes_without_repeats_or_gaps(own_server: Restartable) -> None:
    import torch.utils.data

    url = own_server.bucket_url("resume")
    _fill(url, 12, 50, endpoint_url=own_server.endpoint)
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.2, request_timeout=1.0, deadline=3.0)

    def dataset() -> torch.utils.data.IterableDataset:
        loader = MessagePackDataLoader(url, endpoint_url=own_server.endpoint, retry=policy)
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
