"""Faults injected by a `FaultProxy` in front of a real fake-gcs-server or moto server (503, 429, 500, 403,
404, an outage of the endpoint), on gs:// and s3:// alike: squirrel's `RetryPolicy` alone retries the
transient ones, one request per attempt, and a permanent one is tried once, its error naming the object.
The clients are the real gcsfs and s3fs; nothing is mocked, and all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import TYPE_CHECKING, Literal

import pytest
import s3fs

from squirrel.aio import AsyncMessagepackStore
from squirrel.aio.fs import close_filesystem, open_filesystem
from squirrel.aio.retry import RetryPolicy, StoreUnavailable, with_retries
from squirrel.driver import Shard
from tests.fault_proxy import FaultProxy
from tests.helpers import make_samples, make_shards

if TYPE_CHECKING:
    from tests.server_process import LoopbackServer

ONE_DEFAULT_ATTEMPT = dataclasses.replace(RetryPolicy(), attempts=1)
"""The default policy cut to one attempt."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """A store root in a fresh bucket of a real server, and what a `FaultProxy` in front of it speaks."""

    url: str
    server: LoopbackServer
    flavour: Literal["gcs", "s3"]

    def object_path(self, key: str) -> str:
        """The path of shard `key`'s object as the proxy sees it in a request: ``<bucket>/o/<name>`` in GCS's
        JSON API, ``<bucket>/<name>`` in S3's."""
        bucket, _, prefix = self.url.split("://", 1)[1].partition("/")
        return f"{bucket}/o/{prefix}/{key}.msgpack" if self.flavour == "gcs" else f"{bucket}/{prefix}/{key}.msgpack"


@pytest.fixture(params=[pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)])
def remote(request: pytest.FixtureRequest) -> Remote:
    """``gs://<fresh bucket>/data`` on the session's fake-gcs-server, or ``s3://...`` on its moto server."""
    flavour = request.param
    scheme = "gs" if flavour == "gcs" else "s3"
    bucket = request.getfixturevalue(f"{flavour}_bucket")
    return Remote(f"{scheme}://{bucket}/data", request.getfixturevalue(f"{flavour}_server"), flavour)


FLAKY = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, request_timeout=10.0, deadline=None)
"""Three quick attempts, no deadline: a test counts them."""


async def _stored_shard(remote: Remote) -> list[str]:
    """Store shard "shard_000" at `remote` (straight to the server) and return its sample keys."""
    shard = Shard(make_samples(3), key="shard_000")
    async with AsyncMessagepackStore(remote.url, endpoint_url=remote.server.url) as store:
        await store.set(shard)
    return [sample.key for sample in shard.value]


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_transient_fault_is_retried_by_the_policy_alone(remote: Remote, status: int) -> None:
    keys = await _stored_shard(remote)
    path = remote.object_path("shard_000")
    with FaultProxy(remote.server.url, remote.flavour) as proxy:
        async with AsyncMessagepackStore(remote.url, endpoint_url=proxy.url, retry=FLAKY) as store:
            assert [s.key for s in await store.fetch("shard_000")] == keys
            clean = proxy.count(path)  # the requests a fetch makes when nothing fails
            proxy.fail(path, status, times=2)
            assert [s.key for s in await store.fetch("shard_000")] == keys
            assert proxy.count(path) == 2 * clean + 2  # each fault cost one request: no retry underneath
            proxy.fail(path, status)
            with pytest.raises(StoreUnavailable, match="gave up after 3 attempts") as info:
                await store.fetch("shard_000")
    assert proxy.count(path) == 2 * clean + 2 + 3  # the policy's 3 attempts, one request each
    assert f"reading {remote.url}/shard_000.msgpack" in str(info.value)


@pytest.mark.parametrize(("status", "raised"), [(403, OSError), (404, KeyError)])
async def test_a_permanent_fault_is_tried_once_and_its_error_names_the_object(
    remote: Remote, status: int, raised: type[Exception]
) -> None:
    await _stored_shard(remote)
    path = remote.object_path("shard_000")
    with FaultProxy(remote.server.url, remote.flavour) as proxy:
        proxy.fail(path, status)
        async with AsyncMessagepackStore(remote.url, endpoint_url=proxy.url, retry=FLAKY) as store:
            with pytest.raises(raised) as info:
                await store.fetch("shard_000")
    assert proxy.count(path) == 1
    shown = "".join(traceback.format_exception(info.value))
    assert f"{remote.url}/shard_000.msgpack" in shown


async def test_requests_survive_an_endpoint_outage_within_the_deadline(remote: Remote) -> None:
    keys = await _stored_shard(remote)
    policy = RetryPolicy(attempts=100, initial_backoff=0.05, max_backoff=0.3, request_timeout=5.0, deadline=30.0)
    proxy = FaultProxy(remote.server.url, remote.flavour)
    proxy.start()
    try:
        async with AsyncMessagepackStore(remote.url, endpoint_url=proxy.url, retry=policy) as store:
            assert [s.key for s in await store.fetch("shard_000")] == keys
            proxy.stop()
            back = threading.Timer(1.0, proxy.start)
            back.start()
            try:
                started = time.monotonic()
                assert [s.key for s in await store.fetch("shard_000")] == keys
                assert time.monotonic() - started > 0.5  # it did wait for the endpoint
                await store.set(make_shards(2, 2)[1])  # and writes go through again
                assert await store.list_keys() == ["shard_000", "shard_001"]
            finally:
                back.join()
    finally:
        proxy.stop()


@pytest.mark.s3
async def test_without_a_policy_s3fs_keeps_its_own_retries(s3_server: LoopbackServer, s3_bucket: str) -> None:
    """Outside `with_retries` (zarr, FileDriver) s3fs still retries a throttled call (5 tries); under a policy
    it tries it once, and the policy retries it."""
    path = f"{s3_bucket}/throttled"
    s3fs.S3FileSystem(endpoint_url=s3_server.url, skip_instance_cache=True).pipe(path, b"data")
    with FaultProxy(s3_server.url, "s3") as proxy:
        proxy.fail(path, 429, method="GET")  # S3's "SlowDown"
        fs = open_filesystem("s3", {"endpoint_url": proxy.url})
        try:
            with pytest.raises(OSError, match="Too Many Requests"):
                await fs._cat_file(path)
            assert proxy.count(path, "GET") == s3fs.S3FileSystem.retries
            with pytest.raises(StoreUnavailable, match="gave up after 1 attempt"):
                await with_retries(lambda: fs._cat_file(path), ONE_DEFAULT_ATTEMPT, f"reading s3://{path}")
            assert proxy.count(path, "GET") == s3fs.S3FileSystem.retries + 1
        finally:
            await close_filesystem(fs)
