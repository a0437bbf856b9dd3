"""The zarr driver on local disk, memory:// and gs:// (a real fake-gcs-server), on both faces: round trips,
the spec's example, concurrent fetches, planned keys, errors that name what and where, releasing the
filesystem, and zarr's blocking API running on squirrel's one IO loop (no second loop, nothing on stderr)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.core.sync

import squirrel.aio.fs
from squirrel._runtime import io_loop
from squirrel.aio import AsyncZarrLoader, AsyncZarrStore
from squirrel.aio.storage_options import split_protocol
from squirrel.aio.stream import AsyncComposable
from squirrel.aio.zarr import AsyncZarrLoaderStream
from squirrel.driver import Sample, Shard, ZarrLoader, ZarrStore
from squirrel.driver.zarr import ZarrLoaderStream
from squirrel.errors import EncodeError
from squirrel.iterstream.base import Composable
from tests.helpers import assert_same_value


def make_sample(i: int) -> Sample:
    """A sample with arrays of several dtypes, a numpy scalar and JSON fields."""
    rng = np.random.default_rng(i)
    return Sample(
        {
            "image": rng.integers(0, 255, (6, 5, 3), dtype=np.uint8),
            "embedding": rng.random(7, dtype=np.float32),
            "score": np.float64(i / 3),
            "label": i,
            "split": "train",
            "meta": {"source": "test", "tags": ["a", "b"]},
        },
        key=f"k{i:03d}",
    )


# -- both faces behind one awaitable interface --


async def settle(result: Any) -> Any:
    """A face's answer made comparable: awaited if awaitable, iterators (sync or async) collected to lists."""
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, AsyncIterable) and not isinstance(result, AsyncComposable):
        return [item async for item in result]
    if isinstance(result, Iterator):
        return list(result)
    return result


class Calls:
    """``await Calls(obj).method(...)``: calls `obj.method` on either face and settles the answer."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._obj, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await settle(method(*args, **kwargs))

        return call


class Face:
    """What differs between the faces: classes, group types, fetchers, closing."""

    name: str
    store_class: type
    loader_class: type
    group_class: type

    @staticmethod
    def image_fetcher() -> Callable[[Any, str], Any]:
        """A fetcher of ``(key, root[key]["image"][:])``."""
        raise NotImplementedError

    async def close(self, obj: Any) -> None:
        raise NotImplementedError

    def opened(self, obj: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        """`obj` as the face's context manager (``with`` or ``async with``)."""
        raise NotImplementedError

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the face's filesystems are bound to."""
        raise NotImplementedError


class SyncFace(Face):
    name = "sync"
    store_class = ZarrStore
    loader_class = ZarrLoader
    group_class = zarr.Group

    @staticmethod
    def image_fetcher() -> Callable[[Any, str], Any]:
        return lambda root, key: (key, root[key]["image"][:])

    async def close(self, obj: Any) -> None:
        obj.close()

    @contextlib.asynccontextmanager
    async def opened(self, obj: Any) -> AsyncIterator[Any]:
        with obj as entered:
            yield entered

    def loop(self) -> asyncio.AbstractEventLoop:
        return io_loop()


class AsyncFace(Face):
    name = "async"
    store_class = AsyncZarrStore
    loader_class = AsyncZarrLoader
    group_class = zarr.AsyncGroup

    @staticmethod
    def image_fetcher() -> Callable[[Any, str], Any]:
        async def fetcher(root: zarr.AsyncGroup, key: str) -> tuple[str, np.ndarray]:
            image = await (await root.getitem(key)).getitem("image")
            return key, await image.getitem(...)

        return fetcher

    async def close(self, obj: Any) -> None:
        await obj.aclose()

    @contextlib.asynccontextmanager
    async def opened(self, obj: Any) -> AsyncIterator[Any]:
        async with obj as entered:
            yield entered

    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()


@pytest.fixture(params=[SyncFace(), AsyncFace()], ids=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Face:
    """The blocking face, then the async one."""
    return request.param  # type: ignore[no-any-return]


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member)
        and not isinstance(member, type)
        and not name.startswith("_")
        and name not in ("close", "aclose", "wrapping")
    }


@pytest.mark.parametrize(
    ("sync_class", "async_class"),
    [(ZarrStore, AsyncZarrStore), (ZarrLoader, AsyncZarrLoader), (ZarrLoaderStream, AsyncZarrLoaderStream)],
)
def test_faces_have_the_same_methods(sync_class: type, async_class: type) -> None:
    sync_methods, async_methods = _public_methods(sync_class), _public_methods(async_class)
    assert sync_methods.keys() == async_methods.keys()
    for name, signature in sync_methods.items():
        parameters, async_parameters = signature.parameters.values(), async_methods[name].parameters.values()
        assert [p.name for p in parameters] == [p.name for p in async_parameters], name
        different = ("fetcher_func",)  # each face's default fetcher is its own `fetch`
        assert [p.default for p in parameters if p.name not in different] == [
            p.default for p in async_parameters if p.name not in different
        ], name
    if sync_class is not ZarrLoaderStream:
        assert callable(sync_class.close) and callable(async_class.aclose)
        assert hasattr(sync_class, "__enter__") and hasattr(async_class, "__aenter__")


# -- one suite, both faces, every filesystem --


async def test_zarr_store_round_trip(face: Face, store_url: str) -> None:
    async with face.opened(face.store_class(store_url)) as opened:
        store = Calls(opened)
        assert await store.keys() == []
        samples = [make_sample(i) for i in range(4)]
        await store.set(samples[0])
        await store.set(Shard(samples[1:], key="ignored"))  # a shard writes one group per sample
        assert await store.keys() == ["k000", "k001", "k002", "k003"]
        assert await store.list_keys() == ["k000", "k001", "k002", "k003"]
        for sample in samples:
            (got,) = await store.get(sample.key)
            assert got.key == sample.key
            assert_same_value(got.value, sample.value)
        (fetched,) = await store.fetch("k002")
        assert_same_value(fetched.value, samples[2].value)
        await store.set(Sample({"image": np.zeros(2, np.int16)}, key="k000"))  # replaces the old group entirely
        (got,) = await store.get("k000")
        assert_same_value(got.value, {"image": np.zeros(2, np.int16)})
        root = await store.open_root()
        assert isinstance(root, face.group_class)


async def test_faces_read_each_other(store_url: str) -> None:
    with ZarrStore(store_url) as store:
        store.set(make_sample(0))
        async with AsyncZarrStore(store_url) as async_store:
            await async_store.set(make_sample(1))
            assert [key async for key in async_store.keys()] == ["k000", "k001"]
            (got,) = await async_store.fetch("k000")
            assert_same_value(got.value, make_sample(0).value)
        (got,) = store.fetch("k001")
        assert_same_value(got.value, make_sample(1).value)


async def test_zarr_loader_reads_every_key_in_order(face: Face, store_url: str) -> None:
    with ZarrStore(store_url) as writer:
        writer.set(Shard([make_sample(i) for i in range(6)]))
    async with face.opened(face.loader_class(store_url)) as loader:
        it = loader.get_iter(fetcher_func=face.image_fetcher())
        assert isinstance(it, Composable if face.name == "sync" else AsyncComposable)
        got = await settle(it.collect())
        assert [key for key, _ in got] == [f"k{i:03d}" for i in range(6)]
        for i, (_, image) in enumerate(got):
            np.testing.assert_array_equal(image, make_sample(i).value["image"])
        assert (await settle(it.collect()))[0][0] == "k000"  # re-iterable
        subset = await settle(loader.get_iter(lambda root, key: key, key_iterator=["k004", "k001"]).collect())
        assert subset == ["k004", "k001"]
        shuffled = [
            await settle(loader.get_iter(lambda r, k: k, shuffle_key_buffer=6, seed=1).collect()) for _ in range(2)
        ]
        assert shuffled[0] == shuffled[1] and sorted(shuffled[0]) == [f"k{i:03d}" for i in range(6)]
        other_epoch = loader.get_iter(lambda r, k: k, shuffle_key_buffer=6, seed=1, epoch=1)
        assert other_epoch.epoch() == 1
        assert await settle(other_epoch.collect()) != shuffled[0]
        other_epoch.set_epoch(0)  # a method, like every loader stream's, so torch wrappers reach it
        assert other_epoch.epoch() == 0 and await settle(other_epoch.collect()) == shuffled[0]
        default = await settle(loader.get_iter(key_iterator=["k002"]).collect())
        assert isinstance(default[0], face.group_class) and default[0].attrs["label"] == 2


async def test_loader_splits_keys_by_rank(face: Face, store_url: str) -> None:
    with ZarrStore(store_url) as writer:
        writer.set(Shard([make_sample(i) for i in range(7)]))
    async with face.opened(face.loader_class(store_url)) as loader:
        shares = []
        for rank in range(3):
            stream = loader.get_iter(
                lambda r, k: k, shuffle_key_buffer=7, seed=3, split_by_rank=True, rank=rank, world_size=3
            )
            assert stream.split_kinds() == frozenset({"rank"})
            shares.append(await settle(stream.collect()))
        assert sorted(key for share in shares for key in share) == [f"k{i:03d}" for i in range(7)]
        assert [len(share) for share in shares] == [3, 2, 2]
        assert loader.get_iter().split_kinds() == frozenset()


async def test_errors_name_key_and_url(face: Face, store_url: str) -> None:
    async with face.opened(face.loader_class(store_url)) as loader, face.opened(face.store_class(store_url)) as opened:
        store = Calls(opened)
        with pytest.raises(FileNotFoundError, match=store_url):
            await settle(loader.get_store())
        with pytest.raises(FileNotFoundError, match=store_url):
            await settle(loader.get_iter().collect())
        await store.set(make_sample(0))
        with pytest.raises(KeyError) as missing:
            await store.get("nope")
        assert "nope" in str(missing.value) and store_url in str(missing.value)
        with pytest.raises(KeyError, match="nope"):
            await store.fetch("nope")
        with pytest.raises(EncodeError, match="object array"):
            await store.set(Sample({"x": np.array([{}, None], dtype=object)}, key="bad"))
        with pytest.raises(EncodeError, match="JSON"):
            await store.set(Sample({"x": b"bytes"}, key="bad"))
        with pytest.raises(ValueError):
            await store.set(Sample({"a/b": np.zeros(1)}, key="bad"))
        with pytest.raises(TypeError, match="Sample or a Shard"):
            await store.set({"x": 1})
        with pytest.raises(ValueError, match="max_concurrency"):
            loader.get_iter(max_concurrency=0)
        assert await store.keys() == ["k000"]  # nothing bad was written


def _pooled(face: Face, protocol: str, options: dict[str, Any]) -> Any:
    """The filesystem the pool holds for (`protocol`, `options`) on the face's loop, or None."""
    entries = squirrel.aio.fs._pool.by_loop.get(face.loop(), {})
    entry = entries.get(squirrel.aio.fs._pool_key(protocol, options))
    return entry.fs if entry is not None else None


async def test_close_and_context_managers_release_the_filesystem(face: Face, store_url: str) -> None:
    # An option no other test uses gives these objects a filesystem of their own in the shared pool.
    protocol, _ = split_protocol(store_url)
    options: dict[str, object] = (
        {"max_connections": 37} if protocol != "s3" else {"config_kwargs": {"max_pool_connections": 37}}
    )
    async with face.opened(face.store_class(store_url, **options)) as store:
        await settle(store.set(Shard([make_sample(i) for i in range(3)])))
        fs = _pooled(face, protocol, options)
        assert fs is not None
        session = getattr(fs, "_session", None)
        assert protocol != "gs" or (session is not None and not session.closed)
    assert _pooled(face, protocol, options) is None
    assert session is None or session.closed

    loader = face.loader_class(store_url, **options)
    root = await settle(loader.get_store())
    assert isinstance(root, face.group_class)
    assert len(await settle(loader.get_iter(face.image_fetcher()).collect())) == 3
    assert _pooled(face, protocol, options) is not None
    await face.close(loader)
    assert _pooled(face, protocol, options) is None
    await face.close(loader)  # closing twice is harmless

    async with face.opened(loader):  # a closed loader opens its filesystem again when used
        assert len(await settle(loader.get_iter(lambda r, k: k).collect())) == 3
        assert _pooled(face, protocol, options) is not None
    assert _pooled(face, protocol, options) is None


# -- the sync face: thread-pool fetchers, the spec's example, one IO loop --


def test_spec_zarr_example(gcs_url: str) -> None:
    ZarrStore(f"{gcs_url}/dataset.zarr").set(Shard([make_sample(i) for i in range(3)]))

    # The spec's example, as written; only the URL differs.
    from squirrel.driver import ZarrLoader

    zarr_url = f"{gcs_url}/dataset.zarr"

    def fetcher(store, key):
        return store[key]

    zarr_loader = ZarrLoader(zarr_url)
    it = zarr_loader.get_iter(fetcher_func=fetcher)
    root = zarr_loader.get_store()

    assert isinstance(root, zarr.Group)
    assert sorted(root.group_keys()) == ["k000", "k001", "k002"]
    groups = list(it)
    assert [group.attrs["label"] for group in groups] == [0, 1, 2]
    np.testing.assert_array_equal(groups[2]["image"][:], make_sample(2).value["image"])


def test_sync_fetchers_overlap(tmp_path) -> None:
    url = str(tmp_path / "data.zarr")
    ZarrStore(url).set(Shard([make_sample(i) for i in range(12)]))
    lock = threading.Lock()
    in_flight = max_in_flight = 0

    def slow_fetcher(root: zarr.Group, key: str) -> np.ndarray:
        nonlocal in_flight, max_in_flight
        with lock:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
        try:
            time.sleep(0.05)  # stands in for a slow read; the count, not the time, is asserted
            return root[key]["embedding"][:]
        finally:
            with lock:
                in_flight -= 1

    got = ZarrLoader(url).get_iter(fetcher_func=slow_fetcher, max_concurrency=4).collect()
    assert 1 < max_in_flight <= 4
    for i, embedding in enumerate(got):  # order kept despite concurrency
        np.testing.assert_array_equal(embedding, make_sample(i).value["embedding"])


def test_zarr_runs_on_squirrels_io_loop(gcs_url: str) -> None:
    url = f"{gcs_url}/one-loop.zarr"
    ZarrStore(url).set(Shard([make_sample(i) for i in range(3)]))
    loader = ZarrLoader(url)
    root = loader.get_store()
    labels = list(loader.get_iter(fetcher_func=lambda group, key: group[key].attrs["label"]))
    assert labels == [0, 1, 2] and root["k001"]["embedding"].shape == (7,)
    assert zarr.core.sync.loop[0] is io_loop()
    thread = zarr.core.sync.iothread[0]
    assert thread is not None and thread.name == "squirrel-io" and thread.is_alive()
    names = [t.name for t in threading.enumerate()]
    assert "zarr_io" not in names and names.count("squirrel-io") == 1
    loader.close()


def _read_in_child(loader: ZarrLoader, queue: multiprocessing.Queue) -> None:
    labels = list(loader.get_iter(fetcher_func=lambda group, key: group[key].attrs["label"]))
    root = loader.get_store()
    thread = zarr.core.sync.iothread[0]
    queue.put(
        (
            labels,
            sorted(root.group_keys()),
            zarr.core.sync.loop[0] is io_loop(),
            thread.name if thread is not None else None,
            "zarr_io" in [t.name for t in threading.enumerate()],
        )
    )
    loader.close()


def test_forked_child_binds_zarr_to_its_own_io_loop(tmp_path, request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "fork.zarr")
    ZarrStore(url).set(Shard([make_sample(i) for i in range(3)]))
    loader = ZarrLoader(url)
    assert len(list(loader.get_iter())) == 3  # bound in the parent before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_read_in_child, args=(loader, queue))
    process.start()
    process.join(120)
    assert process.exitcode == 0
    labels, keys, same_loop, thread, zarr_thread = queue.get(timeout=10)
    assert labels == [0, 1, 2] and keys == ["k000", "k001", "k002"]
    assert same_loop and thread == "squirrel-io" and not zarr_thread
    assert zarr.core.sync.loop[0] is io_loop()  # the parent still works on its own loop
    assert loader.get_store()["k002"].attrs["label"] == 2
    loader.close()


_CHILD = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    import zarr.core.sync
    from squirrel._runtime import io_loop
    from squirrel.driver import Sample, Shard, ZarrLoader, ZarrStore

    def io_loop_threads():  # threads that are not worker pools (of squirrel, asyncio and zarr)
        pools = ("squirrel-map", "asyncio_", "zarr_pool", "ThreadPoolExecutor")
        return sorted(t.name for t in threading.enumerate() if not t.name.startswith(pools))

    url, close = sys.argv[1], sys.argv[2] == "close"
    store = ZarrStore(url)
    store.set(Shard([Sample({"x": np.arange(i, i + 3), "label": i}, key=f"k{i}") for i in range(5)]))
    zarr_loader = ZarrLoader(url)
    it = zarr_loader.get_iter(fetcher_func=lambda root, key: root[key]["x"][:])
    root = zarr_loader.get_store()
    assert [a.tolist() for a in it] == [[i, i + 1, i + 2] for i in range(5)]
    assert root["k3"].attrs["label"] == 3 and list(store.keys()) == [f"k{i}" for i in range(5)]
    assert zarr.core.sync.loop[0] is io_loop()
    assert io_loop_threads() == ["MainThread", "squirrel-io"], io_loop_threads()
    if close:
        zarr_loader.close()
        store.close()
    print("ok")
    """
)


@pytest.mark.parametrize("close", ["close", "no-close"])
def test_a_process_using_gcs_zarr_exits_quietly(gcs_url: str, close: str) -> None:
    # STORAGE_EMULATOR_HOST, set by the gcs_server fixture, is inherited by the child.
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, f"{gcs_url}/quiet.zarr", close],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert result.stderr == ""


# -- the async face: coroutine fetchers --


async def test_async_loader_with_coroutine_fetcher(store_url: str) -> None:
    root = ZarrLoader(store_url).get_store(mode="a")
    for i in range(8):
        root.create_array(f"a{i}", data=np.arange(i, i + 5, dtype=np.int32))
    in_flight = max_in_flight = 0

    async def fetch(group: zarr.AsyncGroup, key: str) -> np.ndarray:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            arr = await group.getitem(key)
            await asyncio.sleep(0.01)
            return await arr.getitem(slice(None))
        finally:
            in_flight -= 1

    async with AsyncZarrLoader(store_url) as loader:
        it = loader.get_iter(fetcher_func=fetch, max_concurrency=4)
        assert isinstance(it, AsyncComposable)
        got = await it.collect()
        assert isinstance(await loader.get_store(), zarr.AsyncGroup)
    assert max_in_flight > 1
    assert [a.tolist() for a in got] == [list(range(i, i + 5)) for i in range(8)]


async def test_sync_loader_gives_coroutine_fetchers_the_async_group(tmp_path) -> None:
    url = str(tmp_path / "coro.zarr")
    with ZarrStore(url) as store:
        store.set(Shard([make_sample(i) for i in range(3)]))

    async def fetch(group: zarr.AsyncGroup, key: str) -> int:
        assert isinstance(group, zarr.AsyncGroup)  # it runs on the IO loop, where blocking calls cannot
        return (await group.getitem(key)).attrs["label"]

    with ZarrLoader(url) as loader:
        assert loader.get_iter(fetcher_func=fetch).collect() == [0, 1, 2]
