"""One retry layer: squirrel's `RetryPolicy` is the only thing that retries a store's requests, bounded by its
deadline, and gives up with an error naming the store, its endpoint, the object, the attempts and the time.

The gs:// and s3:// cases run the real gcsfs and s3fs clients against a port where nothing listens, or against
a real fake-gcs-server process that is killed and restarted; nothing is mocked. Faults injected by a proxy
in front of a real server: tests/test_injected_faults.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import random
import threading
import time
from typing import TYPE_CHECKING

import gcsfs.core
import pytest

from squirrel.aio import AsyncCsvStore, AsyncMessagepackStore
from squirrel.aio.fs import CONNECT_TIMEOUT, open_filesystem
from squirrel.aio.gcs import GCSFileSystem, _request_once
from squirrel.aio.retry import (
    SHORTEST_ATTEMPT,
    DeadlineExceeded,
    RetryPolicy,
    StoreTimeout,
    StoreUnavailable,
    is_transient,
    policy_retries_active,
    with_retries,
)
from squirrel.aio.s3 import S3FileSystem
from squirrel.errors import SquirrelError
from tests.gcs_server import GcsServer, free_port
from tests.helpers import make_shards

if TYPE_CHECKING:
    from collections.abc import Iterator


SMALL = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.2, request_timeout=1.0, deadline=3.0)
"""Gives up on a dead endpoint after 3 s."""

ONE_DEFAULT_ATTEMPT = dataclasses.replace(RetryPolicy(), attempts=1)
"""The default policy cut to one attempt: how long one attempt of a store's default wiring takes."""


@pytest.fixture
def dead_endpoint() -> str:
    """An endpoint on 127.0.0.1 where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(params=[pytest.param("gs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)])
def scheme(request: pytest.FixtureRequest) -> str:
    """gs:// or s3://; for s3:// the session's moto server sets botocore's environment (fake credentials, no
    AWS configuration of the user's), though the tests give an endpoint of their own."""
    if request.param == "s3":
        request.getfixturevalue("s3_server")
    return str(request.param)


CONNECTION_ERROR = {"gs": "ClientConnectorError", "s3": "EndpointConnectionError"}
"""The error of each client for a refused connection."""


def location(url: str, endpoint: str) -> str:
    """How a store's error names it: with its endpoint for gs:// (the store names no endpoint for s3://)."""
    return f"store {url} at {endpoint}" if url.startswith("gs://") else f"store {url}"


class Failing:
    """A request that fails with `error` every time, counting its calls."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        raise self.error


# -- the policy itself -------------------------------------------------------------------------


def test_final_errors_are_squirrel_errors_and_the_builtins_they_replace() -> None:
    assert issubclass(StoreUnavailable, SquirrelError) and issubclass(StoreUnavailable, ConnectionError)
    assert issubclass(StoreTimeout, StoreUnavailable) and issubclass(StoreTimeout, TimeoutError)
    assert issubclass(DeadlineExceeded, StoreTimeout)
    error = DeadlineExceeded("reading gs://b/k", request="reading gs://b/k", attempts=3, elapsed=1.5)
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries (DataLoader workers, dask)
    assert type(copy) is DeadlineExceeded and str(copy) == "reading gs://b/k"
    assert (copy.request, copy.attempts, copy.elapsed) == ("reading gs://b/k", 3, 1.5)


async def test_exhausted_retries_name_the_request_attempts_and_last_error() -> None:
    request = Failing(ConnectionRefusedError("refused"))
    policy = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.01, deadline=None)
    with pytest.raises(StoreUnavailable) as info:
        await with_retries(request, policy, "reading gs://b/k.msgpack")
    assert type(info.value) is StoreUnavailable and request.calls == 3
    message = str(info.value)
    assert message.startswith("reading gs://b/k.msgpack: gave up after 3 attempts in ")
    assert message.endswith("last error: ConnectionRefusedError: refused")
    assert info.value.__cause__ is request.error and info.value.attempts == 3


async def test_attempts_that_all_time_out_give_a_timeout_error() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    policy = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, request_timeout=0.1, deadline=None)
    with pytest.raises(StoreTimeout, match=r"gs://b/slow: gave up after 2 attempts .* no answer within 0\.1 s"):
        await with_retries(hang, policy, "gs://b/slow")


async def test_permanent_errors_keep_their_types_and_are_tried_once() -> None:
    for error in (FileNotFoundError("gone"), PermissionError("no"), ValueError("bad")):
        request = Failing(error)
        with pytest.raises(type(error)) as info:
            await with_retries(request, SMALL, "gs://b/x")
        assert info.value is error and request.calls == 1


async def test_an_error_whose_retries_ran_out_is_not_retried_again() -> None:
    inner = StoreUnavailable("reading gs://b/x: gave up after 8 attempts")
    assert not is_transient(inner)
    request = Failing(inner)
    with pytest.raises(StoreUnavailable) as info:
        await with_retries(request, SMALL, "outer")
    assert info.value is inner and request.calls == 1


def test_the_default_backoff_window_is_bounded_and_never_empty() -> None:
    """8 default attempts always wait 15.75 to 31.5 s in all: enough to ride out a burst, never minutes."""
    policy = RetryPolicy()
    rng = random.Random(0)
    totals = [sum(policy.backoff(attempt, rng) for attempt in range(1, policy.attempts)) for _ in range(2000)]
    assert min(totals) >= 15.75 and max(totals) <= 31.5
    assert policy.deadline is not None and max(totals) < policy.deadline


async def test_the_policy_marks_the_requests_it_retries() -> None:
    seen = []

    async def request() -> None:
        seen.append(policy_retries_active())

    assert not policy_retries_active()
    await with_retries(request, SMALL, "gs://b/x")
    assert seen == [True] and not policy_retries_active()


# -- gs:// and s3:// against a dead endpoint------------------------------------------------------------


async def test_a_store_at_a_dead_endpoint_fails_within_its_deadline_naming_url_key_and_endpoint(
    scheme: str, dead_endpoint: str
) -> None:
    url = f"{scheme}://dead/data"
    async with AsyncMessagepackStore(url, endpoint_url=dead_endpoint, retry=SMALL) as store:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            await store.fetch("shard_001")
        elapsed = time.monotonic() - started
    assert elapsed < 30  # the deadline is 3 s; generous for a shared, noisy machine
    message = str(info.value)
    assert f"reading {url}/shard_001.msgpack" in message
    assert location(url, dead_endpoint) in message
    assert "attempts in" in message and CONNECTION_ERROR[scheme] in message
    assert info.value.attempts > 1 and info.value.__cause__ is not None
    assert isinstance(info.value, TimeoutError | ConnectionError | OSError)


@pytest.mark.parametrize("operation", ["set", "keys", "exists", "delete"])
async def test_every_store_request_gives_up_clearly(scheme: str, dead_endpoint: str, operation: str) -> None:
    policy = RetryPolicy(attempts=2, initial_backoff=0.05, max_backoff=0.05, request_timeout=5.0, deadline=None)
    url = f"{scheme}://dead/data"
    async with AsyncMessagepackStore(url, endpoint_url=dead_endpoint, retry=policy) as store:
        calls = {
            "set": lambda: store.set(make_shards(1, 2)[0]),
            "keys": store.list_keys,
            "exists": lambda: store.exists("shard_000"),
            "delete": lambda: store.delete("shard_000"),
        }
        with pytest.raises(StoreUnavailable, match="gave up after 2 attempts") as info:
            await calls[operation]()
    assert location(url, dead_endpoint) in str(info.value)


async def test_a_csv_store_at_a_dead_endpoint_gives_up_clearly(scheme: str, dead_endpoint: str) -> None:
    async with AsyncCsvStore(f"{scheme}://dead/table", endpoint_url=dead_endpoint, retry=SMALL) as store:
        with pytest.raises(DeadlineExceeded, match=rf" {scheme}://dead/table/part_0\.csv \(store "):
            await store.read_head("part_0")


@pytest.mark.gcs
async def test_the_default_wiring_leaves_retries_to_the_policy(dead_endpoint: str) -> None:
    """One attempt of the default policy against a dead port fails in well under gcsfs's ~34 s of retries."""
    async with AsyncMessagepackStore("gs://dead/data", endpoint_url=dead_endpoint) as store:
        assert store.retry == RetryPolicy()
        fs = store._fs()
        assert isinstance(fs, GCSFileSystem) and _request_once is not None  # gcsfs still exposes the unwrapped call
        assert fs.requests_timeout.sock_connect == CONNECT_TIMEOUT
        store.retry = ONE_DEFAULT_ATTEMPT
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="gave up after 1 attempt in"):
            await store.fetch("shard_001")
        assert time.monotonic() - started < 10  # gcsfs's own retries would sleep 1+2+4+8+16 s


@pytest.mark.s3
@pytest.mark.usefixtures("s3_server")
async def test_the_default_s3_wiring_leaves_retries_to_the_policy(dead_endpoint: str) -> None:
    """botocore tries each request once and s3fs each call once under the policy: one attempt of the default
    policy against a dead port makes one connection attempt, and its error is the policy's."""
    async with AsyncMessagepackStore("s3://dead/data", endpoint_url=dead_endpoint) as store:
        fs = store._fs()
        assert isinstance(fs, S3FileSystem) and fs.config_kwargs["retries"]["total_max_attempts"] == 1
        store.retry = ONE_DEFAULT_ATTEMPT
        for _ in range(2):  # the first also creates botocore's client, which takes a while
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"gave up after 1 attempt in .*EndpointConnectionError"):
                await store.fetch("shard_001")
        assert time.monotonic() - started < 1  # botocore's own 4 retries back off for seconds


@pytest.mark.s3
@pytest.mark.usefixtures("s3_server")
async def test_an_s3_retry_configuration_of_the_users_is_kept(dead_endpoint: str) -> None:
    own = {"max_attempts": 3, "mode": "standard"}
    async with AsyncMessagepackStore(
        "s3://dead/data", endpoint_url=dead_endpoint, config_kwargs={"retries": own}
    ) as store:
        assert store._fs().config_kwargs["retries"]["max_attempts"] == 3


@pytest.mark.gcs
async def test_without_a_policy_gcsfs_keeps_its_own_retries(dead_endpoint: str) -> None:
    """Outside `with_retries` (zarr, FileDriver), and for plain gcsfs filesystems always, gcsfs still retries:
    its first retry sleeps at least 1 s, so no error arrives within 0.9 s."""
    ours = open_filesystem("gs", {"endpoint_url": dead_endpoint})
    plain = gcsfs.core.GCSFileSystem(
        endpoint_url=dead_endpoint, token="anon", asynchronous=True, skip_instance_cache=True
    )
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await with_retries(lambda: ours._cat_file("dead/x"), ONE_DEFAULT_ATTEMPT, "reading gs://dead/x")
        if time.monotonic() - started > 0.5:
            pytest.skip("the machine is too slow to tell one attempt from a retry")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ours._cat_file("dead/x"), 0.9)
        with pytest.raises(StoreTimeout):  # gcsfs's own class, even under a policy: untouched
            await with_retries(lambda: asyncio.wait_for(plain._cat_file("dead/x"), 0.9), ONE_DEFAULT_ATTEMPT, "x")
    finally:
        for fs in (ours, plain):
            if fs._session is not None:
                await fs._session.close()


@pytest.mark.gcs
async def test_a_whole_object_read_under_a_policy_gives_what_gcsfs_gives(
    gcs_server: GcsServer, gcs_bucket: str
) -> None:
    """The one-GET read of a whole object under a policy (`PolicyRetriedRequests._cat_file`) returns gcsfs's
    bytes for a name that needs quoting, still serves ranges, and raises gcsfs's `FileNotFoundError`."""
    ours = open_filesystem("gs", {"endpoint_url": gcs_server.url})
    plain = gcsfs.core.GCSFileSystem(
        endpoint_url=gcs_server.url, token="anon", asynchronous=True, skip_instance_cache=True
    )
    path, data = f"{gcs_bucket}/a dir/key %+é#1.bin", bytes(range(256)) * 10
    try:
        await plain._pipe_file(path, data)

        async def read(*args: int) -> bytes:
            return await with_retries(lambda: ours._cat_file(path, *args), ONE_DEFAULT_ATTEMPT, path)

        assert await read() == data == await plain._cat_file(path)
        assert await read(3, 700) == data[3:700]
        with pytest.raises(FileNotFoundError, match="missing"):
            await with_retries(lambda: ours._cat_file(f"{gcs_bucket}/missing"), ONE_DEFAULT_ATTEMPT, "x")
    finally:
        for fs in (ours, plain):
            if fs._session is not None:
                await fs._session.close()


@pytest.mark.gcs
@pytest.mark.slow
async def test_the_default_policy_fails_on_a_dead_endpoint_in_under_a_minute(dead_endpoint: str) -> None:
    """The reported bug: ~286 s and a bare aiohttp error. Now 8 attempts over 16 to 32 s, then a clear error."""
    async with AsyncMessagepackStore("gs://dead/data", endpoint_url=dead_endpoint) as store:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="gave up after 8 attempts") as info:
            await store.fetch("shard_001")
        elapsed = time.monotonic() - started
    assert 15 < elapsed < 60
    assert "gs://dead/data/shard_001.msgpack" in str(info.value) and dead_endpoint in str(info.value)


# -- a server that comes back ------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[GcsServer]:
    """A persistent server of this test's own, so killing it touches no other test."""
    server = GcsServer(persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.mark.gcs
async def test_requests_survive_a_server_restarted_within_the_deadline(own_server: GcsServer) -> None:
    own_server.create_bucket("back")
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.3, request_timeout=5.0, deadline=30.0)
    shards = make_shards(2, 3)
    async with AsyncMessagepackStore("gs://back/data", endpoint_url=own_server.url, retry=policy) as store:
        await store.set(shards[0])
        own_server.kill()
        restart = threading.Timer(1.5, own_server.start)
        restart.start()
        try:
            started = time.monotonic()
            assert [s.key for s in await store.fetch("shard_000")] == [s.key for s in shards[0].value]
            assert time.monotonic() - started > 1.0  # it did wait for the server
            await store.set(shards[1])  # and writes go through again
            assert await store.list_keys() == ["shard_000", "shard_001"]
        finally:
            restart.join()


@dataclasses.dataclass(frozen=True)
class _OversleepingPolicy(RetryPolicy):
    """Its backoff runs to just short of the deadline, as a sleep on a busy machine can."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return self.deadline - 0.02 if self.deadline is not None else 0.0


async def test_a_backoff_that_oversleeps_the_deadline_reports_the_real_error() -> None:
    """No attempt is started with less than SHORTEST_ATTEMPT left: it would only time out at once, and its
    timeout would replace the error that made the request fail in the message (a flake seen under load)."""
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("connection refused by 127.0.0.1:9")

    policy = _OversleepingPolicy(attempts=5, request_timeout=1.0, deadline=0.5)
    with pytest.raises(DeadlineExceeded) as info:
        await with_retries(refused, policy, "reading gs://b/k")
    assert calls == 1 and info.value.attempts == 1
    assert "last error: ConnectionRefusedError: connection refused" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert SHORTEST_ATTEMPT > 0.02
