"""Leaving a stream early leaks nothing: no task (on the test's loop or the IO loop), no thread, no fd.

Each pipeline runs over 200 items and is left after 10, while calls for later items are in flight: by
`break`, by an exception in the loop body, by an exception in the mapped function, by closing the iterator,
or by dropping it without closing. Coroutine calls for items >= 10 (>= 20 in the chain, whose last
async_map reads ahead) sleep for an hour, so any that is not cancelled shows up as a leftover task; every
started call must have completed or been cancelled. The async face cleans up a dropped (or `break`-ed)
async generator through the loop's asyncgen finalizer, so that is polled for (bounded); the sync face has
cleaned up before control returns to the caller.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
import time
from collections import Counter

import pytest

from squirrel._runtime import io_loop
from squirrel.aio import AsyncIterableSource
from squirrel.iterstream import IterableSource

PIPELINES = ["async_map_coroutine", "async_map_plain", "prefetch", "async_map_prefetch", "chain"]
IO_LOOP_THREAD = "squirrel-io"  # the process's IO loop, started on first use and then kept

pytestmark = pytest.mark.timeout(60)  # a stream that waits for an hour-long call instead of cancelling it


class _Probe:
    """Mapped functions that count their calls: started, completed, cancelled."""

    def __init__(self, slow_from: int = 10, fail_at: int | None = None, fail_in: str = "coro") -> None:
        self.slow_from = slow_from  # later items take an hour (coroutines) or 20 ms (threads, not cancellable)
        self.fail_at = fail_at
        self.fail_in = fail_in
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def bump(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def __getitem__(self, key: str) -> int:
        with self.lock:
            return self.counts[key]

    def _check(self, x: int, where: str) -> None:
        if x == self.fail_at and where == self.fail_in:
            raise LookupError(f"no item {x}")

    async def fetch(self, x: int) -> int:
        self.bump("coro_started")
        try:
            self._check(x, "coro")
            await asyncio.sleep(random.random() / 1000 if x < self.slow_from else 3600)
        except asyncio.CancelledError:
            self.bump("coro_cancelled")
            raise
        self.bump("coro_completed")
        return x

    def decode(self, x: int) -> int:
        self.bump("plain_started")
        try:
            self._check(x, "plain")
            time.sleep(random.random() / 1000 if x < self.slow_from else 0.02)
        except LookupError:
            self.bump("plain_failed")
            raise
        self.bump("plain_completed")
        return x

    def coroutines_settled(self) -> bool:
        failed = 1 if self.fail_in == "coro" and self.fail_at is not None and self["coro_started"] > self.fail_at else 0
        return self["coro_started"] == self["coro_completed"] + self["coro_cancelled"] + failed

    def plain_settled(self) -> bool:
        return self["plain_started"] == self["plain_completed"] + self["plain_failed"]


def _async_pipeline(kind: str, probe: _Probe):
    source = AsyncIterableSource(range(200))
    if kind == "async_map_coroutine":
        return source.async_map(probe.fetch, 8)
    if kind == "async_map_plain":
        return source.async_map(probe.decode, 8)
    if kind == "prefetch":
        return source.map(probe.fetch).prefetch(4)
    if kind == "async_map_prefetch":  # left while the prefetch producer waits on an hour-long call upstream
        return source.async_map(probe.fetch, 8).prefetch(4)
    return source.async_map(probe.fetch, 8).prefetch(4).async_map(probe.decode, 4).zip_index().map(lambda p: p[1])


def _sync_pipeline(kind: str, probe: _Probe):
    source = IterableSource(range(200))
    if kind == "async_map_coroutine":
        return source.async_map(probe.fetch, 8)
    if kind == "async_map_plain":
        return source.async_map(probe.decode, 8)
    if kind == "prefetch":
        return source.map(probe.decode).prefetch(4)
    if kind == "async_map_prefetch":  # left while the prefetch producer thread waits on an hour-long call upstream
        return source.async_map(probe.fetch, 8).prefetch(4)
    return source.async_map(probe.fetch, 8).prefetch(4).async_map(probe.decode, 4).zip_index().map(lambda p: p[1])


def _uses_coroutines(kind: str, face: str) -> bool:
    return kind in ("async_map_coroutine", "async_map_prefetch", "chain") or (kind == "prefetch" and face == "async")


def _make_probe(kind: str, face: str, exit_by: str) -> _Probe:
    # The chain's last async_map reads 3 items past the 10th before yielding it: those must come through.
    slow_from = 20 if kind == "chain" else 10
    fail_in = "plain" if kind in ("async_map_plain", "chain") or (kind == "prefetch" and face == "sync") else "coro"
    return _Probe(slow_from, fail_at=10 if exit_by == "fn_error" else None, fail_in=fail_in)


def _must_cancel(kind: str, face: str, exit_by: str) -> bool:
    """Whether a coroutine call is under way when the stream is left (a failing sequential map has none)."""
    return _uses_coroutines(kind, face) and not (kind == "prefetch" and exit_by == "fn_error")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _io_loop_tasks() -> set[asyncio.Task]:
    async def tasks() -> set[asyncio.Task]:
        return asyncio.all_tasks() - {asyncio.current_task()}

    return asyncio.run_coroutine_threadsafe(tasks(), io_loop()).result(5)


_RUNTIME_TASKS: set[asyncio.Task] = set()
"""The IO loop's tasks when the test started (e.g. its anyio portal, once a FileDriver used it)."""


def _io_loop_task_count() -> int:
    return len(_io_loop_tasks() - _RUNTIME_TASKS)


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.name != IO_LOOP_THREAD]


def _wait(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


async def _until(predicate) -> None:
    """Return once `predicate()` holds, checking every 5 ms; the caller bounds the wait with `asyncio.timeout`.

    Polled on purpose: it watches what the code under test does in other threads and tasks (call counters,
    tasks ending), which offers no event to wait on.
    """
    while not predicate():  # noqa: ASYNC110  (polling is the point: see the docstring)
        await asyncio.sleep(0.005)


def _other_tasks() -> set[asyncio.Task]:
    return asyncio.all_tasks() - {asyncio.current_task()}


class _BodyError(Exception):
    pass


@pytest.fixture(autouse=True)
def _io_loop_started():
    io_loop()  # its thread and fds exist before anything is counted
    gc.collect()
    _RUNTIME_TASKS.clear()
    _RUNTIME_TASKS.update(_io_loop_tasks())


# --- async face ----------------------------------------------------------------------------------------------------


async def _until_in_flight(probe: _Probe, coroutines: bool) -> None:
    """Wait until some call for an item >= 10 is under way."""
    async with asyncio.timeout(5):
        if coroutines:
            await _until(lambda: probe["coro_started"] > probe.slow_from)
        else:
            await _until(lambda: probe["plain_started"] > 10)


async def _leave_async_early(kind: str, probe: _Probe, exit_by: str, coroutines: bool) -> list[int]:
    """Take 10 items of the async pipeline `kind`, then leave it by `exit_by`; return the items taken."""
    received = []
    if exit_by == "break":
        async for item in _async_pipeline(kind, probe):
            received.append(item)
            if len(received) == 10:
                await _until_in_flight(probe, coroutines)
                break
    elif exit_by in ("body_error", "fn_error"):
        with pytest.raises(_BodyError if exit_by == "body_error" else LookupError):
            async for item in _async_pipeline(kind, probe):
                received.append(item)
                if len(received) == 10:
                    await _until_in_flight(probe, coroutines)
                    if exit_by == "body_error":
                        raise _BodyError("stop")
    else:
        iterator = aiter(_async_pipeline(kind, probe))
        for _ in range(10):
            received.append(await anext(iterator))
        await _until_in_flight(probe, coroutines)
        if exit_by == "aclose":
            await iterator.aclose()
            assert not _other_tasks()  # closing waited for the cancelled work
            if coroutines:
                assert probe.coroutines_settled()
        else:
            del iterator
            gc.collect()
            await asyncio.sleep(0.01)
    return received


@pytest.mark.parametrize("exit_by", ["break", "body_error", "fn_error", "aclose", "drop"])
@pytest.mark.parametrize("kind", PIPELINES)
async def test_async_leaving_early_leaks_nothing(kind: str, exit_by: str) -> None:
    threads, fds = set(threading.enumerate()), _fd_count()
    probe = _make_probe(kind, "async", exit_by)
    received = await _leave_async_early(kind, probe, exit_by, _uses_coroutines(kind, "async"))
    assert received == list(range(10))

    async with asyncio.timeout(2):
        await _until(lambda: not _other_tasks())
    async with asyncio.timeout(2):
        await _until(probe.coroutines_settled)
    if _must_cancel(kind, "async", exit_by):
        assert probe["coro_cancelled"] >= 1  # in-flight calls were cancelled, not awaited to the end
    assert _wait(lambda: not _new_threads(threads)), _new_threads(threads)
    assert _wait(probe.plain_settled), probe.counts
    assert _io_loop_task_count() == 0
    assert _fd_count() <= fds  # a leak adds descriptors; unrelated idle connections may close meanwhile


# --- sync face -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exit_by", ["break", "body_error", "fn_error", "close", "drop"])
@pytest.mark.parametrize("kind", PIPELINES)
def test_sync_leaving_early_leaks_nothing(kind: str, exit_by: str) -> None:
    threads, fds = set(threading.enumerate()), _fd_count()
    probe = _make_probe(kind, "sync", exit_by)
    coroutines = _uses_coroutines(kind, "sync")
    received = []

    def until_in_flight() -> None:  # some call for an item >= 10 is under way
        assert _wait(lambda: probe["coro_started" if coroutines else "plain_started"] > probe.slow_from, 5)

    if exit_by == "break":
        for item in _sync_pipeline(kind, probe):
            received.append(item)
            if len(received) == 10:
                until_in_flight()
                break
    elif exit_by in ("body_error", "fn_error"):
        with pytest.raises(_BodyError if exit_by == "body_error" else LookupError):
            for item in _sync_pipeline(kind, probe):
                received.append(item)
                if len(received) == 10:
                    until_in_flight()
                    if exit_by == "body_error":
                        raise _BodyError("stop")
    else:
        iterator = iter(_sync_pipeline(kind, probe))
        for _ in range(10):
            received.append(next(iterator))
        until_in_flight()
        if exit_by == "close":
            iterator.close()
        else:
            del iterator
            gc.collect()
    assert received == list(range(10))

    # The sync face has cleaned up by the time control is back here: nothing is polled for.
    assert probe.coroutines_settled(), probe.counts
    if _must_cancel(kind, "sync", exit_by):
        assert probe["coro_cancelled"] >= 1
    assert probe.plain_settled(), probe.counts
    assert _io_loop_task_count() == 0
    assert not _new_threads(threads)
    assert _fd_count() <= fds  # a leak adds descriptors; unrelated idle connections may close meanwhile


# --- a finished stream leaves nothing either -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", PIPELINES)
async def test_async_finished_stream_leaks_nothing(kind: str) -> None:
    threads, fds = set(threading.enumerate()), _fd_count()
    probe = _Probe(slow_from=1000)
    assert await _async_pipeline(kind, probe).take(12).collect() == list(range(12))
    async with asyncio.timeout(2):
        await _until(lambda: not _other_tasks())
    async with asyncio.timeout(2):
        await _until(probe.coroutines_settled)
    assert _wait(lambda: not _new_threads(threads)), _new_threads(threads)
    assert _wait(probe.plain_settled), probe.counts
    assert _fd_count() <= fds  # a leak adds descriptors; unrelated idle connections may close meanwhile


@pytest.mark.parametrize("kind", PIPELINES)
def test_sync_finished_stream_leaks_nothing(kind: str) -> None:
    threads, fds = set(threading.enumerate()), _fd_count()
    probe = _Probe(slow_from=1000)
    assert _sync_pipeline(kind, probe).take(12).collect() == list(range(12))
    assert probe.coroutines_settled(), probe.counts
    assert probe.plain_settled(), probe.counts
    assert _io_loop_task_count() == 0
    assert not _new_threads(threads)
    assert _fd_count() <= fds  # a leak adds descriptors; unrelated idle connections may close meanwhile


_UNCLOSED_LOADERS = """
import asyncio, sys
from squirrel.driver import MessagePackDataLoader, MessagepackStore
from squirrel.errors import DecodeError
from tests.helpers import make_shards

url = sys.argv[1]
store = MessagepackStore(url)
for shard in make_shards(12, 20):
    store.set(shard)
with open(f"{url}/shard_005.msgpack", "r+b") as file:
    file.seek(40)
    file.write(b"\\xff" * 30)


async def leave_by_break() -> None:
    loader = MessagePackDataLoader.async_class(url)
    async for _ in loader.get_iter(max_concurrency=8, prefetch=8):
        break  # the stream is left to the garbage collector and the loop's shutdown
    await loader.aclose()


async def leave_by_decode_error() -> None:
    loader = MessagePackDataLoader.async_class(url)
    try:
        async for _ in loader.get_iter(max_concurrency=4, prefetch=4).async_map(lambda s: s, 4):
            pass
    except DecodeError:
        pass
    await loader.aclose()


for seed in range(15):
    asyncio.run(leave_by_break())
    asyncio.run(leave_by_decode_error())
    try:
        for _ in MessagePackDataLoader(url).get_iter(max_concurrency=4, prefetch=4, shuffle_key_buffer=4, seed=seed):
            pass
    except DecodeError:
        pass
print("finished")
"""


def test_streams_left_to_the_loop_shutdown_close_cleanly(tmp_path) -> None:
    """A stream left by `break` (closed by the garbage collector and `asyncio.run`'s shutdown, which cancels
    the closing task and then closes every live generator at once) or by a `DecodeError` closes without
    "aclose(): asynchronous generator is already running" or any other complaint, in dev mode."""
    import subprocess
    import sys

    (tmp_path / "store").mkdir()
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _UNCLOSED_LOADERS, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if "took" not in line and "Executing" not in line]
    assert result.returncode == 0 and result.stdout.strip() == "finished", result.stderr[-3000:]
    assert complaints == [], "\n".join(complaints[:40])
