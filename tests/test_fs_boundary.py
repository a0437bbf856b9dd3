"""The filesystem boundary: unclosed gs:// stores, unsupported URLs, misspelt storage options, missing buckets.

gs:// cases run against the real fake-gcs-server (`tests/conftest.py`); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from squirrel.aio import AsyncCsvStore, AsyncFileDriver, AsyncMessagepackStore, AsyncRecordStore, AsyncZarrStore
from squirrel.driver import MessagePackDataLoader, MessagepackStore
from squirrel.sample import Sample

if TYPE_CHECKING:
    from pathlib import Path

    from tests.gcs_server import GcsServer

UNCLOSED = "unclosed squirrel store"
RUNS = 50
FD_SLACK = 5
"""Descriptors the process may gain over `RUNS` runs for reasons of its own (a lazily started thread, say)."""


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _closed_loops() -> set[int]:
    """The ids of the closed event loops the garbage collector still tracks."""
    gc.collect()
    return {id(o) for o in gc.get_objects() if issubclass(type(o), asyncio.BaseEventLoop) and o.is_closed()}


# -- item 12: a gs:// store used without aclose -----------------------------------------------------------------


async def _use_without_closing(url: str, loops: list[weakref.ReferenceType[asyncio.AbstractEventLoop]]) -> None:
    """Write and list through a fresh store, then drop it unclosed (the leak under test)."""
    loops.append(weakref.ref(asyncio.get_running_loop()))
    store = AsyncMessagepackStore(url)
    await store.set(Sample({"v": 1}, key="k"))
    assert await store.list_keys() == ["k"]


@pytest.mark.gcs
def test_unclosed_gcs_stores_leak_no_sockets_and_no_loops(gcs_url: str) -> None:
    loops: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []
    kept_elsewhere = _closed_loops()  # by other libraries (tornado's map of asyncio loops, once dask ran)
    with pytest.warns(ResourceWarning, match=UNCLOSED) as caught:
        asyncio.run(_use_without_closing(gcs_url, loops))  # imports and first-use allocations, not counted
        before = _fd_count()
        for _ in range(RUNS):
            asyncio.run(_use_without_closing(gcs_url, loops))
        grown = _fd_count() - before  # before any garbage collection: released as each store was dropped
        gc.collect()
    assert grown <= FD_SLACK, f"{grown} file descriptors more after {RUNS} runs"
    unclosed = [str(warning.message) for warning in caught if UNCLOSED in str(warning.message)]
    assert len(unclosed) == RUNS + 1
    assert "call aclose() or use async with" in unclosed[0]
    assert [str(warning.message) for warning in caught if UNCLOSED not in str(warning.message)] == []
    del caught, unclosed
    gc.collect()
    assert [loop for ref in loops if (loop := ref()) is not None] == []
    assert _closed_loops() <= kept_elsewhere


@pytest.mark.gcs
def test_one_store_used_across_runs_without_closing_keeps_no_dead_loops(gcs_url: str) -> None:
    """A long-lived store used in one ``asyncio.run`` after another (never closed) drops each dead loop's
    filesystem when it is next used, so loops and sockets do not pile up with the runs."""
    stores = [AsyncMessagepackStore(gcs_url)]
    loops: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []

    async def use() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await stores[0].list_keys()

    kept_elsewhere = _closed_loops()
    with warnings.catch_warnings(record=True) as caught:  # ours, and asyncio's for a dead loop's socket
        warnings.simplefilter("always")
        asyncio.run(use())
        before = _fd_count()
        for _ in range(RUNS):
            asyncio.run(use())
        gc.collect()
        grown = _fd_count() - before
        stores.clear()  # the store goes too, with the last run's filesystem (its loop is closed)
        gc.collect()
    assert any(UNCLOSED in str(warning.message) for warning in caught)
    assert grown <= FD_SLACK, f"{grown} file descriptors more after {RUNS} runs"
    del caught  # warnings hold their sources (a transport, its loop)
    gc.collect()
    assert [loop for ref in loops if (loop := ref()) is not None] == []
    assert _closed_loops() <= kept_elsewhere


@pytest.mark.gcs
def test_closed_gcs_stores_do_not_warn(gcs_url: str) -> None:
    async def use() -> None:
        async with AsyncMessagepackStore(gcs_url) as store:
            await store.set(Sample({"v": 1}, key="k"))
        other = AsyncMessagepackStore(gcs_url)
        assert await other.list_keys() == ["k"]
        await other.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            asyncio.run(use())
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.gcs
def test_blocking_stores_need_no_closing(gcs_url: str) -> None:
    """The blocking face's stores share filesystems on squirrel's IO loop, which lives with the process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            store = MessagepackStore(gcs_url)
            store.set(Sample({"v": i}, key=f"k{i}"))
            assert len(store.list_keys()) == i + 1
            del store
            gc.collect()
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.gcs
def test_a_proper_script_exits_without_noise(gcs_url: str, tmp_path: Path) -> None:
    script = tmp_path / "proper.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from squirrel.aio import AsyncMessagepackStore
            from squirrel.sample import Sample

            async def main():
                async with AsyncMessagepackStore({gcs_url!r}) as store:
                    await store.set(Sample({{"v": 1}}, key="k"))
                    assert await store.list_keys() == ["k"]
                    assert (await store.fetch("k"))[0].value == {{"v": 1}}

            asyncio.run(main())
            print("done")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    for noise in ("Unclosed", "unclosed", "Task was destroyed", "ResourceWarning", "Exception ignored"):
        assert noise not in result.stderr, result.stderr


# -- a) unsupported URLs ------------------------------------------------------------------------------------------

UNSUPPORTED = ["http://example.com/data", "https://example.com/data", "ftp://example.com/data", "nosuch://x/y"]


@pytest.mark.parametrize("url", UNSUPPORTED)
@pytest.mark.parametrize("make", [AsyncMessagepackStore, AsyncRecordStore, AsyncZarrStore, MessagePackDataLoader])
def test_unsupported_urls_are_refused_when_built(url: str, make: Any) -> None:
    with pytest.raises(ValueError, match="unsupported URL") as refused:
        make(url)
    message = str(refused.value)
    assert repr(url) in message
    assert f"{url.split('://')[0]}://" in message
    for scheme in ("a local path", "file://", "memory://", "gs://", "gcs://"):
        assert scheme in message


def test_supported_urls_are_accepted(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path}/b", "memory://boundary/c", "gs://bucket/d", "gcs://bucket/e"):
        assert AsyncMessagepackStore(url).url == url


# -- b) a write into a missing bucket -----------------------------------------------------------------------------


@pytest.mark.gcs
async def test_a_write_into_a_missing_bucket_names_it(gcs_server: GcsServer) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    async with AsyncMessagepackStore(f"gs://{bucket}/store") as store:
        with pytest.raises(FileNotFoundError) as missing:
            await store.set(Sample({"v": 1}, key="k"))
    assert str(missing.value) == f"bucket {bucket!r} does not exist (writing gs://{bucket}/store/k.msgpack)"


@pytest.mark.gcs
async def test_a_file_uploaded_into_a_missing_bucket_names_it(gcs_server: GcsServer) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(FileNotFoundError, match=rf"^bucket '{bucket}' does not exist \(writing gs://{bucket}/m\.pt\)$"):
        async with AsyncFileDriver(f"gs://{bucket}/m.pt").get_store("wb") as file:
            await file.write(b"weights")


@pytest.mark.gcs
async def test_writes_into_an_existing_bucket_still_work(gcs_url: str) -> None:
    async with AsyncMessagepackStore(gcs_url) as store:
        await store.set(Sample({"v": 1}, key="k"))
        assert await store.list_keys() == ["k"]


# -- c) storage options the url's filesystem does not take ---------------------------------------------------------


@pytest.fixture(params=["local", "memory", pytest.param("gcs", marks=pytest.mark.gcs)])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on local disk, memory:// or gs:// (the fake server's, so gcsfs's plain class)."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "memory":
        return f"memory://boundary-{uuid.uuid4().hex}/store"
    return str(request.getfixturevalue("gcs_url"))


def test_a_misspelt_parameter_is_refused_with_a_suggestion(any_url: str) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'compresion'") as refused:
        AsyncMessagepackStore(any_url, compresion="gzip")
    assert any_url in str(refused.value)
    assert str(refused.value).endswith("did you mean 'compression'?")


def test_the_blocking_loader_refuses_a_misspelt_parameter(any_url: str) -> None:
    with pytest.raises(TypeError, match=r"'compresion' .*did you mean 'compression'\?"):
        MessagePackDataLoader(any_url, compresion="gzip")


@pytest.mark.parametrize(
    ("make", "typo", "meant"),
    [
        (AsyncCsvStore, "dtype", "dtypes"),
        (AsyncMessagepackStore, "fromat", "format"),
        (AsyncRecordStore, "verify_checksum", "verify_checksums"),
        (AsyncZarrStore, "max_connection", "max_connections"),
    ],
)
def test_each_store_suggests_its_own_parameters(any_url: str, make: Any, typo: str, meant: str) -> None:
    with pytest.raises(TypeError, match=rf"'{typo}' .*did you mean '{meant}'\?"):
        make(any_url, **{typo: True})


def test_a_misspelt_filesystem_option_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"'auto_mkdri' .*LocalFileSystem; did you mean 'auto_mkdir'\?"):
        AsyncMessagepackStore(str(tmp_path / "store"), auto_mkdri=True)


@pytest.mark.gcs
def test_a_misspelt_gcs_option_is_refused_with_a_suggestion(gcs_url: str) -> None:
    with pytest.raises(TypeError, match=r"'endpoint' .*did you mean 'endpoint_url'\?"):
        AsyncMessagepackStore(gcs_url, endpoint="http://127.0.0.1:1")


def test_an_unknown_option_lists_the_filesystem_options() -> None:
    with pytest.raises(
        TypeError, match=r"'zzzz' for memory://x: .*MemoryFileSystem \(its storage options: .*max_connections"
    ):
        AsyncMessagepackStore("memory://x", zzzz=1)


@pytest.mark.parametrize("name", ["loop", "asynchronous", "skip_instance_cache"])
def test_options_squirrel_sets_itself_are_refused(any_url: str, name: str) -> None:
    with pytest.raises(TypeError, match=rf"storage option '{name}' of .* is set by squirrel"):
        AsyncMessagepackStore(any_url, **{name: True})


async def test_valid_local_and_memory_options_still_work(tmp_path: Path) -> None:
    local = str(tmp_path / "store")
    memory = f"memory://boundary-{uuid.uuid4().hex}/store"
    for url, options in ((local, {"auto_mkdir": True, "max_connections": 2}), (memory, {"max_connections": 2})):
        async with AsyncMessagepackStore(url, "gzip", **options) as store:
            await store.set(Sample({"v": 1}, key="k"))
            assert [sample.value for sample in await store.fetch("k")] == [{"v": 1}]


@pytest.mark.gcs
async def test_valid_gcs_options_still_work(gcs_url: str, gcs_server: GcsServer) -> None:
    options: dict[str, Any] = {"token": "anon", "endpoint_url": gcs_server.url, "max_connections": 4}
    async with AsyncMessagepackStore(gcs_url, "gzip", **options) as store:
        await store.set(Sample({"v": 1}, key="k"))
        assert [sample.value for sample in await store.fetch("k")] == [{"v": 1}]
