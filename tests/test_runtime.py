"""The private runtime: the IO loop, `run_sync` (results, errors, timeout and Ctrl-C cancel, re-entry), fork
safety, and `iterate` (order, errors, its bound, closing early)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time

import pytest

from squirrel._runtime import io_loop, io_thread, iterate, on_io_loop, run_sync


async def _value(value: int) -> int:
    await asyncio.sleep(0)
    return value


async def _fail() -> None:
    await asyncio.sleep(0)
    raise LookupError("from the loop")


def test_run_sync_returns_results_and_raises_errors_on_the_io_loop() -> None:
    assert run_sync(_value(7)) == 7
    with pytest.raises(LookupError, match="from the loop"):
        run_sync(_fail())

    async def where() -> tuple[bool, threading.Thread]:
        return on_io_loop(), threading.current_thread()

    assert run_sync(where()) == (True, io_thread())
    assert not on_io_loop()


def test_a_timeout_cancels_the_coroutine_and_waits_until_it_has_unwound() -> None:
    unwound = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)  # unwinding takes a while: run_sync must wait for it
            unwound.set()

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
        run_sync(slow(), timeout=0.2)
    assert unwound.is_set()
    assert time.monotonic() - started < 5


def test_ctrl_c_while_waiting_cancels_the_coroutine() -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))  # a real Ctrl-C wakes the wait
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sync(slow())
    finally:
        timer.cancel()
    assert cancelled.is_set()


def test_blocking_calls_are_refused_on_the_io_loop() -> None:
    async def reenter() -> None:
        run_sync(_value(1))

    with pytest.raises(RuntimeError, match="own IO loop"):
        run_sync(reenter())

    async def iterate_here() -> None:
        next(iterate(lambda: _numbers(3)))

    with pytest.raises(RuntimeError, match="own IO loop"):
        run_sync(iterate_here())


def _child_runs_its_own_loop(parent_loop_id: int, result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    result.put((id(io_loop()) != parent_loop_id, run_sync(_value(5)), io_thread().is_alive()))


def test_a_forked_child_starts_a_loop_of_its_own() -> None:
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    run_sync(_value(0))  # the parent's loop runs (and its lock may be taken) when the child is forked
    child = context.Process(target=_child_runs_its_own_loop, args=(id(io_loop()), result))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert result.get(timeout=5) == (True, 5, True)


async def _numbers(n: int, fail_at: int | None = None, produced: list[int] | None = None):
    for i in range(n):
        if i == fail_at:
            raise LookupError(f"item {i}")
        if produced is not None:
            produced.append(i)
        yield i
        if i % 7 == 0:
            await asyncio.sleep(0)


def test_iterate_yields_every_item_in_order_then_the_error() -> None:
    assert list(iterate(lambda: _numbers(1000), capacity=16)) == list(range(1000))
    seen = []
    with pytest.raises(LookupError, match="item 50"):
        for item in iterate(lambda: _numbers(100, fail_at=50), capacity=8):
            seen.append(item)
    assert seen == list(range(50))


def test_iterate_holds_at_most_capacity_items_ahead_of_the_consumer() -> None:
    produced: list[int] = []
    for consumed, _ in enumerate(iterate(lambda: _numbers(500, produced=produced), capacity=10), start=1):
        time.sleep(0.0005)
        # the item being yielded, up to `capacity` waiting, and one the producer holds before it waits
        assert len(produced) - consumed <= 10 + 1


def test_closing_iterate_early_cancels_its_producer_and_waits_for_it() -> None:
    closed = threading.Event()

    async def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            closed.set()

    items = iterate(endless, capacity=4)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set()
