"""`SingleFlight`: one call for the concurrent callers on a loop, all woken together; failures call again."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from squirrel.aio.single_flight import SingleFlight


async def test_concurrent_callers_share_one_call_and_return_after_it() -> None:
    flight, calls, ended = SingleFlight(), [], asyncio.Event()

    async def call() -> None:
        calls.append(1)
        await asyncio.sleep(0.01)
        ended.set()

    async def caller() -> bool:
        await flight.run(call)
        return ended.is_set()

    assert await asyncio.gather(*(caller() for _ in range(50))) == [True] * 50
    assert len(calls) == 1
    await flight.run(call)  # a call after the last ended is made again
    assert len(calls) == 2


async def test_a_failed_call_is_raised_to_its_caller_and_the_next_caller_calls_again() -> None:
    flight, calls = SingleFlight(), []

    async def failing() -> None:
        calls.append(1)
        await asyncio.sleep(0.01)
        raise OSError("index unreadable")

    first = asyncio.create_task(flight.run(failing))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(flight.run(failing))
    with pytest.raises(OSError, match="index unreadable"):
        await first
    await waiting  # woken, not failed: callers check the outcome themselves
    with pytest.raises(OSError, match="index unreadable"):
        await flight.run(failing)
    assert len(calls) == 2


async def test_a_cancelled_caller_wakes_the_waiting_ones() -> None:
    flight = SingleFlight()
    first = asyncio.create_task(flight.run(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(flight.run(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(waiting, 1)
    assert first.cancelled()


def test_it_pickles_empty_and_serves_each_loop() -> None:
    flight, calls = SingleFlight(), []

    async def call() -> None:
        calls.append(1)

    async def twice() -> None:
        await asyncio.gather(flight.run(call), flight.run(call))

    asyncio.run(twice())
    asyncio.run(pickle.loads(pickle.dumps(flight)).run(call))
    asyncio.run(twice())
    assert len(calls) == 5  # gather's two calls run one after the other: call never waits
