"""The ``max_connections`` storage option: how many HTTP connections a gs:// store's filesystem keeps open.

Against the real fake-gcs-server; a small TCP proxy in front of it counts the connections open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from typing import TYPE_CHECKING, Any

import pytest

from squirrel.aio import AsyncMessagepackLoader, AsyncMessagepackStore, AsyncRecordStore
from squirrel.aio.connections import DEFAULT_MAX_CONNECTIONS
from squirrel.aio.fs import filesystem_class_and_options
from squirrel.driver import MessagePackDataLoader, MessagepackStore, RecordStore
from squirrel.driver.file_driver import FileDriver
from squirrel.sample import Sample, Shard
from tests.helpers import make_samples

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.gcs_server import GcsServer

pytestmark = pytest.mark.gcs

GETS = 50


class CountingProxy:
    """A loopback TCP proxy to `upstream_port` that counts the connections open through it at once.

    Each client->server chunk waits `delay` seconds, so concurrent requests overlap and need their own
    connections (a reply passes straight through).
    """

    def __init__(self, upstream_port: int, delay: float = 0.005) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.open = 0
        self.peak = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            pipes = {
                asyncio.ensure_future(self._pipe(client_reader, upstream_writer, self.delay)),
                asyncio.ensure_future(self._pipe(upstream_reader, client_writer, 0)),
            }
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self.open -= 1
            self._tasks.discard(task)
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()


async def _write_records(url: str, n: int) -> list[Sample]:
    samples = make_samples(n)
    async with AsyncRecordStore(url) as store:
        await store.set(Shard(samples))
    return samples


async def _get_all(store: AsyncRecordStore, keys: list[str]) -> None:
    async def get(key: str) -> None:
        assert [sample.key async for sample in store.get(key)] == [key]

    async with asyncio.TaskGroup() as group:
        for key in keys:
            group.create_task(get(key))


def _session_limit(store: AsyncRecordStore) -> int:
    """The connection limit of the aiohttp session of `store`'s filesystem (it must have made a request)."""
    (fs,) = store._filesystems._by_loop.values()
    return fs._session.connector.limit


async def _limit_and_peak(server: GcsServer, url: str, gets: int, **options: Any) -> tuple[int, int]:
    """`gets` concurrent gets through a `CountingProxy`: the session's connection limit, and the most
    connections that were open at once."""
    samples = await _write_records(url, gets)
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(CountingProxy(server.port))
        store = await stack.enter_async_context(AsyncRecordStore(url, endpoint_url=proxy.url, **options))
        await _get_all(store, [sample.key for sample in samples])
        limit = _session_limit(store)
    return limit, proxy.peak


async def test_max_connections_bounds_open_connections(gcs_server: GcsServer, gcs_url: str) -> None:
    # 50 gets at once used the three connections, and never more
    assert await _limit_and_peak(gcs_server, gcs_url, GETS, max_connections=3) == (3, 3)


async def test_default_is_aiohttps_100(gcs_server: GcsServer, gcs_url: str) -> None:
    assert DEFAULT_MAX_CONNECTIONS == 100
    assert await _limit_and_peak(gcs_server, gcs_url, 120) == (100, 100)


async def test_a_higher_limit_runs_more_at_once(gcs_server: GcsServer, gcs_url: str) -> None:
    limit, peak = await _limit_and_peak(gcs_server, gcs_url, 120, max_connections=200)
    assert limit == 200
    assert 100 < peak <= 120


async def test_async_entry_points(gcs_url: str) -> None:
    async with AsyncMessagepackStore(gcs_url, max_connections=5) as store:
        await store.set(Shard(make_samples(3), key="shard"))
        assert _session_limit(store) == 5
    async with AsyncMessagepackLoader(gcs_url, max_connections=6) as loader:
        assert len([sample async for sample in loader.get_iter()]) == 3
        assert _session_limit(loader._store) == 6


def test_sync_entry_points(gcs_url: str) -> None:
    store = MessagepackStore(gcs_url, max_connections=7)
    store.set(Shard(make_samples(3), key="shard"))
    assert _session_limit(store.aio) == 7
    loader = MessagePackDataLoader(gcs_url, max_connections=8)
    assert len(list(loader.get_iter())) == 3
    assert _session_limit(loader.aio._store) == 8
    assert loader.get_store().aio.storage_options["max_connections"] == 8
    records = RecordStore(gcs_url + "-records", max_connections=9)
    records.set(Sample({"x": 1}, key="one"))
    assert [s.value for s in records.get("one")] == [{"x": 1}]
    assert _session_limit(records.aio) == 9


def test_sync_filesystem_and_pickling(gcs_bucket: str) -> None:
    """gcsfs's blocking face (`FileDriver`'s) builds its session on fsspec's own loop, with the limit."""
    cls, options = filesystem_class_and_options("gs", {"max_connections": 4})
    assert "max_connections" in options  # taken off by squirrel's subclass, before gcsfs's own __init__
    fs = cls(skip_instance_cache=True, **options)
    assert fs.ls(gcs_bucket) == []
    assert fs._session.connector.limit == 4
    assert pickle.loads(pickle.dumps(fs)).max_connections == 4
    with FileDriver(f"gs://{gcs_bucket}/file.bin", max_connections=4).get_store("wb") as file:
        file.write(b"abc")
    with FileDriver(f"gs://{gcs_bucket}/file.bin", max_connections=4).get_store("rb") as file:
        assert file.read() == b"abc"


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("10", TypeError), (True, TypeError)],
)
@pytest.mark.parametrize(
    "make",
    [AsyncRecordStore, AsyncMessagepackStore, RecordStore, MessagepackStore, MessagePackDataLoader, FileDriver],
)
def test_bad_values_are_refused_clearly(make: Callable[..., Any], value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"max_connections must be a positive int, got {value!r}"):
        make("gs://bucket/store", max_connections=value)


def test_a_connector_and_a_limit_conflict(gcs_server: GcsServer) -> None:
    cls, options = filesystem_class_and_options("gs", {"max_connections": 4, "session_kwargs": {"connector": None}})
    with pytest.raises(ValueError, match="either max_connections or a connector"):
        cls(skip_instance_cache=True, **options)


@pytest.mark.parametrize("url", ["memory://connections/store", "LOCAL"])
async def test_local_and_memory_ignore_it(url: str, tmp_path: Any) -> None:
    url = str(tmp_path / "store") if url == "LOCAL" else url
    async with AsyncRecordStore(url, max_connections=3) as store:
        await store.set(Sample({"x": 1}, key="one"))
        assert [s.value async for s in store.get("one")] == [{"x": 1}]
    with pytest.raises(ValueError, match="max_connections must be a positive int, got 0"):
        AsyncRecordStore(url, max_connections=0)


def test_other_protocols_refuse_it() -> None:
    with pytest.raises(ValueError, match=r"max_connections is supported for gs://.*not for s3://"):
        AsyncRecordStore("s3://bucket/store", max_connections=3)
    assert (
        AsyncRecordStore("s3://bucket/store", max_connections=None).url == "s3://bucket/store"
    )  # None: no limit asked
