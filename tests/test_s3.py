"""s3:// on a real S3-compatible server (moto, on loopback), beyond what the `store_url` parametrisation
covers: storage options instead of the environment (endpoint, credentials, AWS profile), write_shards, index
and loaders on both faces through those options, closing the client, retries against a dead endpoint (more
in tests/test_retry.py and tests/test_faults.py), pickling, and squirrel without s3fs installed."""

from __future__ import annotations

import asyncio
import gc
import pickle
import subprocess
import sys
import textwrap
import time
import warnings
from typing import TYPE_CHECKING, Any

import pytest
import s3fs

from squirrel.aio import AsyncMessagepackLoader, AsyncMessagepackStore
from squirrel.aio.fs import close_filesystem, open_filesystem
from squirrel.aio.retry import RetryPolicy
from squirrel.aio.s3 import S3FileSystem
from squirrel.bulk import write_shards
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Shard
from squirrel.errors import StoreUnavailable
from squirrel.index import INDEX_NAME
from tests.helpers import assert_same_samples, make_samples
from tests.server_process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.s3_server import S3Server

pytestmark = pytest.mark.s3


@pytest.fixture
def no_s3_environment(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither endpoint nor credentials in the environment: only storage options can reach the server."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)


def endpoint_options(server: S3Server) -> dict[str, Any]:
    """What a user passes to reach an S3-compatible server: its URL and credentials."""
    return {"endpoint_url": server.url, "key": "squirrel-key", "secret": "squirrel-secret"}


async def test_aclose_closes_the_s3_client_session(s3_url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with AsyncMessagepackStore(s3_url) as store:
            await store.set(Shard(make_samples(2), key="a"))
        del store
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


@pytest.mark.usefixtures("no_s3_environment")
def test_write_shards_index_and_loaders_through_storage_options(s3_server: S3Server, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/data"
    options = endpoint_options(s3_server)
    samples = make_samples(23)
    keys = write_shards(iter(samples), url, shard_size=10, max_concurrency=2, **options)
    assert keys == ["shard_000000", "shard_000001", "shard_000002"]
    plain = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    names = sorted(path.rsplit("/", 1)[1] for path in plain.ls(f"{s3_bucket}/data", refresh=True))
    assert names == [INDEX_NAME, *(f"{key}.msgpack" for key in keys)]
    index = MessagepackStore(url, **options).read_index()
    assert index is not None and index.keys == keys
    assert [entry.samples for entry in index.entries] == [10, 10, 3]
    assert_same_samples(list(MessagePackDataLoader(url, **options).get_iter()), samples)

    async def read_async() -> list[Any]:
        loader = AsyncMessagepackLoader(url, **options)
        try:
            return await loader.get_iter().collect()
        finally:
            await loader.aclose()

    assert_same_samples(asyncio.run(read_async()), samples)


@pytest.mark.usefixtures("no_s3_environment")
async def test_a_named_aws_profile_is_a_storage_option(
    s3_server: S3Server, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # s3fs hands options it does not name (``profile``) to botocore's session: the profile gives the endpoint
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[profile squirrel-test]\nendpoint_url = {s3_server.url}\nregion = us-east-1\n")
    credentials.write_text("[squirrel-test]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    async with AsyncMessagepackStore(s3_url, profile="squirrel-test") as store:
        await store.set(Shard(make_samples(3), key="profiled"))
        assert [key async for key in store.keys()] == ["profiled"]


async def test_an_unreachable_endpoint_is_unavailable_within_the_policy(s3_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(attempts=2, initial_backoff=0.05, max_backoff=0.1, request_timeout=1.0, deadline=4.0)
    started = time.monotonic()
    async with AsyncMessagepackStore(s3_url, retry=policy, endpoint_url=dead) as store:
        with pytest.raises(StoreUnavailable) as unavailable:
            await store.fetch("anything")
    assert time.monotonic() - started < 6.0
    assert f"{s3_url}/anything.msgpack" in str(unavailable.value)


def test_a_store_lists_objects_another_writer_added(s3_url: str) -> None:
    # s3fs caches listings by default: a long-lived store would never see another process's shards
    store = MessagepackStore(s3_url)
    store.set(Shard(make_samples(2), key="mine"))
    assert list(store.keys()) == ["mine"]
    other = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket_path = s3_url.removeprefix("s3://")
    other.pipe(f"{bucket_path}/theirs.msgpack", other.cat(f"{bucket_path}/mine.msgpack"))
    assert list(store.keys()) == ["mine", "theirs"]
    assert [sample.key for sample in store.get("theirs")] == ["s00000", "s00001"]


async def test_squirrels_s3_class_is_what_a_store_opens_and_it_pickles(s3_server: S3Server) -> None:
    fs = open_filesystem("s3", {"endpoint_url": s3_server.url})
    await close_filesystem(fs)
    assert type(fs) is S3FileSystem
    blocking = S3FileSystem(endpoint_url=s3_server.url, skip_instance_cache=True)
    copy = pickle.loads(pickle.dumps(blocking))
    assert type(copy) is S3FileSystem and copy.endpoint_url == s3_server.url
    assert copy.config_kwargs["retries"]["total_max_attempts"] == 1


def test_squirrel_imports_and_says_what_to_install_without_s3fs() -> None:
    """s3fs and botocore are optional: squirrel imports without them, classifies errors without them, leaves
    s3:// out of the URLs it lists, and an s3:// store's ImportError says to install s3fs."""
    script = textwrap.dedent(
        """
        import sys
        for name in ("s3fs", "botocore", "aiobotocore"):
            sys.modules[name] = None  # as if not installed
        from squirrel.aio import AsyncMessagepackStore
        from squirrel.aio.retry import is_transient
        from squirrel.aio.storage_options import supported_schemes
        assert not is_transient(OSError(5, "i/o")) and is_transient(ConnectionResetError())
        assert "s3://" not in supported_schemes()
        try:
            AsyncMessagepackStore("s3://bucket/store")
        except ImportError as error:
            print(error)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "s3fs" in done.stdout
