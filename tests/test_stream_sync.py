"""The sync stream (`Composable`): operator properties, `async_map` order/bound/errors, read-ahead bounds.

Nothing here compares durations: sleeps only shuffle completion order or give work time to pile up, and
every wait for something to happen is a bounded poll on a count.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import random
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squirrel.iterstream import Composable, IterableSource

PROPERTY = settings(max_examples=60, deadline=None)
KINDS = ["coroutine", "thread", "thread_executor", "process"]
LOCAL_KINDS = ["coroutine", "thread", "thread_executor"]  # those whose calls can share counters with the test


# Module-level so that a spawned process can import them.
def _process_square(x: int) -> int:
    time.sleep((x * 7919 % 5) / 1000)
    return x * x


def _process_fail_at_five(x: int) -> int:
    if x == 5:
        raise ValueError(f"bad item {x}")
    time.sleep(0.005)
    return x * x


@pytest.fixture(scope="module")
def process_pool():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def thread_pool():
    with ThreadPoolExecutor(16, thread_name_prefix="test-pool") as pool:
        yield pool


def _executor(kind: str, thread_pool, process_pool):
    return {"thread_executor": thread_pool, "process": process_pool}.get(kind)


def _eventually(predicate, timeout: float = 5.0) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.002)
    return predicate()


async def _eventually_async(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    return predicate()


class _CountingSource:
    """A re-iterable source that counts how many items have been pulled from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self):
        for i in range(self.n):
            self.pulled += 1
            yield i


# --- properties of the plain operators ---------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(0, 120), size=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_shuffle_is_a_bounded_permutation(n: int, size: int, seed: int) -> None:
    items = list(range(n))  # each item is its own input position
    stream = IterableSource(items).shuffle(size, seed=seed)
    out = stream.collect()
    assert sorted(out) == items
    # A buffer of `size` items only emits once it is full: output position i is emitted when input i + size
    # arrives (or at the drain), so it can only hold an item from input positions <= i + size - 1.
    assert all(item <= i + size - 1 for i, item in enumerate(out))
    assert stream.collect() == out  # same seed, same order (and the stream is re-iterable)
    assert list(IterableSource(items).shuffle(size, seed=seed)) == out
    if size == 1:
        assert out == items


def test_shuffle_without_seed_is_still_a_permutation() -> None:
    assert sorted(IterableSource(range(100)).shuffle(10)) == list(range(100))


@PROPERTY
@given(
    items=st.lists(st.integers(), max_size=60),
    size=st.integers(1, 12),
    drop_last=st.booleans(),
    collate=st.sampled_from([None, tuple, sum]),
)
def test_batched(items: list[int], size: int, drop_last: bool, collate) -> None:
    out = IterableSource(items).batched(size, drop_last, collate).collect()
    full, rest = divmod(len(items), size)
    expected = [items[i * size : (i + 1) * size] for i in range(full)]
    if rest and not drop_last:
        expected.append(items[full * size :])
    if collate is not None:
        expected = [collate(batch) for batch in expected]
    assert out == expected
    raw = IterableSource(items).batched(size, drop_last).collect()
    assert all(len(batch) == size for batch in raw[:-1])
    if raw:
        assert len(raw[-1]) == size if drop_last else 1 <= len(raw[-1]) <= size


@PROPERTY
@given(items=st.lists(st.integers(), max_size=40), n=st.integers(0, 60), k=st.integers(0, 4), m=st.integers(0, 100))
def test_take_and_loop_counts(items: list[int], n: int, k: int, m: int) -> None:
    source = IterableSource(items)
    assert source.take(n).collect() == items[:n]
    assert len(source.take(n).collect()) == min(n, len(items))
    assert source.loop(k).collect() == items * k
    if items:
        assert source.loop().take(m).collect() == (items * (m // len(items) + 1))[:m]
        assert source.loop(None).take(m).zip_index().collect() == list(enumerate((items * (m + 1))[:m]))


@PROPERTY
@given(items=st.lists(st.text(max_size=3), max_size=40))
def test_zip_index(items: list[str]) -> None:
    assert IterableSource(items).zip_index().collect() == list(enumerate(items))


@PROPERTY
@given(nested=st.lists(st.lists(st.integers(), max_size=5), max_size=20))
def test_flatten(nested: list[list[int]]) -> None:
    flat = [x for inner in nested for x in inner]
    assert IterableSource(nested).flatten().collect() == flat
    assert IterableSource(nested).map(tuple).flatten().collect() == flat


@PROPERTY
@given(items=st.lists(st.integers(-1000, 1000), max_size=60))
def test_filter_and_map_equal_python(items: list[int]) -> None:
    stream = IterableSource(items).filter(lambda x: x % 2 == 0).map(lambda x: 3 * x)
    assert stream.collect() == [3 * x for x in items if x % 2 == 0]
    assert list(IterableSource(items).map(abs)) == list(map(abs, items))
    assert list(IterableSource(items).filter(lambda x: x > 0)) == [x for x in items if x > 0]


def test_sources_callable_and_errors() -> None:
    def numbers():
        return iter(range(5))

    stream = IterableSource(numbers).map(lambda x: x + 1)  # a callable is called anew per iteration
    assert stream.collect() == [1, 2, 3, 4, 5]
    assert stream.collect() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        Composable().collect()


def test_join_runs_for_side_effects() -> None:
    seen = []
    assert IterableSource(range(7)).map(seen.append).join() is None
    assert seen == list(range(7))


# --- async_map -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_async_map_keeps_order(kind: str, thread_pool, process_pool) -> None:
    delays = {i: random.Random(i).random() / 200 for i in range(40)}

    async def coroutine_square(x):
        await asyncio.sleep(delays[x])
        return x * x

    def thread_square(x):
        time.sleep(delays[x])
        return x * x

    fn = {"coroutine": coroutine_square, "process": _process_square}.get(kind, thread_square)
    stream = IterableSource(range(40)).async_map(fn, 8, executor=_executor(kind, thread_pool, process_pool))
    assert stream.collect() == [x * x for x in range(40)]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_async_map_honours_its_bound(kind: str, ordered: bool, thread_pool) -> None:
    limit = 4
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    full = threading.Event()  # set once `limit` calls are in flight together: proves the bound is reached

    def enter():
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            if state["now"] == limit:
                full.set()

    def leave():
        with lock:
            state["now"] -= 1

    async def coroutine_fn(x):
        enter()
        await _eventually_async(full.is_set)
        await asyncio.sleep(random.random() / 1000)
        leave()
        return x

    def thread_fn(x):
        enter()
        full.wait(5)
        time.sleep(random.random() / 1000)
        leave()
        return x

    fn = coroutine_fn if kind == "coroutine" else thread_fn
    stream = IterableSource(range(40)).async_map(
        fn, limit, ordered=ordered, executor=_executor(kind, thread_pool, None)
    )
    out = stream.collect()
    assert out == list(range(40)) if ordered else sorted(out) == list(range(40))
    assert state["max"] == limit


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_async_map_unordered_yields_in_completion_order(kind: str, thread_pool) -> None:
    n = 6
    received: set[int] = set()

    # Item i cannot finish before item i + 1 has reached the consumer, so completion order is n-1, ..., 0.
    async def coroutine_fn(x):
        await _eventually_async(lambda: x + 1 >= n or x + 1 in received)
        return x

    def thread_fn(x):
        _eventually(lambda: x + 1 >= n or x + 1 in received)
        return x

    fn = coroutine_fn if kind == "coroutine" else thread_fn
    out = []
    for x in IterableSource(range(n)).async_map(fn, n, ordered=False, executor=_executor(kind, thread_pool, None)):
        received.add(x)
        out.append(x)
    assert out == list(reversed(range(n)))


@pytest.mark.parametrize("kind", KINDS)
def test_async_map_unordered_yields_every_item_once(kind: str, thread_pool, process_pool) -> None:
    delays = {i: random.Random(-i).random() / 200 for i in range(50)}

    async def coroutine_square(x):
        await asyncio.sleep(delays[x])
        return x * x

    def thread_square(x):
        time.sleep(delays[x])
        return x * x

    fn = {"coroutine": coroutine_square, "process": _process_square}.get(kind, thread_square)
    executor = _executor(kind, thread_pool, process_pool)
    out = IterableSource(range(50)).async_map(fn, 7, ordered=False, executor=executor).collect()
    assert Counter(out) == Counter(x * x for x in range(50))


def test_async_map_error_cancels_inflight_coroutines() -> None:
    n, k, limit = 30, 5, 4
    counts = Counter()  # only touched on the IO loop's thread

    async def fetch_or_fail(x):
        counts["started"] += 1
        try:
            if x < k:
                return x
            if x == k:
                await _eventually_async(lambda: counts["started"] >= k + limit)  # every other slot is in flight
                raise KeyError(f"missing {x}")
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            counts["cancelled"] += 1
            raise
        finally:
            counts["ended"] += 1

    received = []
    with pytest.raises(KeyError, match="missing 5") as info:
        for item in IterableSource(range(n)).async_map(fetch_or_fail, limit):
            received.append(item)
    assert received == list(range(k))  # raised when iteration reached item k, not before
    assert "fetch_or_fail" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    # No +1 tolerance is needed: k + limit calls started, the failing one and limit - 1 cancelled ones.
    assert counts["started"] == k + limit
    assert counts["ended"] == counts["started"]  # nothing still running once the error surfaced
    assert counts["cancelled"] == limit - 1


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", ["thread", "thread_executor", "process"])
def test_async_map_error_propagates_from_plain_functions(kind: str, ordered: bool, thread_pool, process_pool) -> None:
    lock = threading.Lock()
    started = Counter()

    def square_or_fail(x):
        with lock:
            started[x] += 1
        if x == 5:
            raise ValueError(f"bad item {x}")
        time.sleep(0.005)
        return x * x

    fn = _process_fail_at_five if kind == "process" else square_or_fail
    executor = _executor(kind, thread_pool, process_pool)
    received = []
    with pytest.raises(ValueError, match="bad item 5") as info:
        for item in IterableSource(range(100)).async_map(fn, 4, ordered=ordered, executor=executor):
            received.append(item)
    if ordered:
        assert received == [x * x for x in range(5)]
    else:
        assert len(received) < 100
    if kind == "process":  # the frames are in the worker; they come back as the cause's text
        assert "_process_fail_at_five" in str(info.value.__cause__)
    else:
        assert "square_or_fail" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        with lock:
            seen = sum(started.values())
        assert seen <= len(received) + 1 + 4
        time.sleep(0.05)
        with lock:
            assert sum(started.values()) == seen  # nothing new starts after the error
        assert max(started.values()) == 1


def test_async_map_error_in_first_item_and_invalid_bound() -> None:
    async def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        IterableSource(range(3)).async_map(boom, 2).collect()
    with pytest.raises(ValueError):
        IterableSource(range(3)).async_map(boom, 0).collect()
    with pytest.raises(ValueError):
        IterableSource(range(3)).prefetch(0).collect()


def test_async_map_on_empty_and_short_sources() -> None:
    async def double(x):
        return 2 * x

    assert IterableSource([]).async_map(double, 4).collect() == []
    assert IterableSource([1, 2]).async_map(double, 8).collect() == [2, 4]
    assert IterableSource([]).async_map(abs, 4, ordered=False).collect() == []


def test_errors_upstream_of_prefetch_reach_the_consumer() -> None:
    def explode(x):
        if x == 3:
            raise LookupError("upstream")
        return x

    received = []
    with pytest.raises(LookupError, match="upstream") as info:
        for item in IterableSource(range(10)).map(explode).prefetch(2):
            received.append(item)
    assert received == [0, 1, 2]
    assert "explode" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]


# --- read-ahead bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("limit", [1, 3, 8])
@pytest.mark.parametrize("kind", ["coroutine", "thread"])
def test_async_map_reads_at_most_limit_ahead(kind: str, limit: int, ordered: bool) -> None:
    source = _CountingSource(100)

    async def coroutine_identity(x):
        await asyncio.sleep(0)
        return x

    fn = coroutine_identity if kind == "coroutine" else (lambda x: x)
    iterator = iter(IterableSource(source).async_map(fn, limit, ordered=ordered))
    try:
        for consumed in range(1, 40):
            next(iterator)
            assert source.pulled <= consumed + limit  # no tolerance needed (ordered: exactly consumed + limit - 1)
    finally:
        iterator.close()


@pytest.mark.parametrize("size", [1, 4])
def test_prefetch_reads_at_most_size_plus_one_ahead(size: int) -> None:
    source = _CountingSource(100)
    iterator = iter(IterableSource(source).prefetch(size))
    try:
        for consumed in range(1, 30):
            assert next(iterator) == consumed - 1
            # `size` queued, plus the one the producer thread holds while waiting for room.
            assert _eventually(lambda consumed=consumed: source.pulled >= consumed + size + 1)
            time.sleep(0.002)  # a chance to over-read
            assert source.pulled == consumed + size + 1
    finally:
        iterator.close()
    assert IterableSource(source).prefetch(size).collect() == list(range(100))


def test_composed_read_ahead_and_take_stop_pulling() -> None:
    source = _CountingSource(1000)
    assert IterableSource(source).take(10).collect() == list(range(10))
    assert source.pulled == 10
    source.pulled = 0
    iterator = iter(IterableSource(source).async_map(abs, 3).prefetch(2))
    try:
        for consumed in range(1, 20):
            next(iterator)
            time.sleep(0.002)
            assert source.pulled <= consumed + 2 + 1 + 3
    finally:
        iterator.close()


# --- re-iterability, compose, monitor, tqdm ------------------------------------------------------------------------


def test_same_pipeline_iterated_twice_gives_the_same_result() -> None:
    async def slow_double(x):
        await asyncio.sleep(random.random() / 1000)
        return 2 * x

    stream = (
        IterableSource(range(60))
        .shuffle(16, seed="epoch-0")
        .async_map(slow_double, 5)
        .prefetch(3)
        .async_map(lambda x: x + 1, 3)
        .filter(lambda x: x % 3)
        .batched(4)
    )
    first = stream.collect()
    assert stream.collect() == first
    assert list(stream) == first
    assert sorted(x for batch in first for x in batch) == [2 * x + 1 for x in range(60) if (2 * x + 1) % 3]


class _Doubler(Composable):
    def __iter__(self):
        for item in self.source:
            yield 2 * item


class _AddN(Composable):
    def __init__(self, n: int, *, sign: int = 1) -> None:
        super().__init__()
        self.n = n * sign

    def __iter__(self):
        return (item + self.n for item in self.source)


def test_compose_user_stages() -> None:
    stream = IterableSource(range(5)).compose(_Doubler).compose(_AddN, 10, sign=-1).map(str)
    assert stream.collect() == [str(2 * x - 10) for x in range(5)]
    assert stream.collect() == [str(2 * x - 10) for x in range(5)]
    assert IterableSource(range(3)).compose(_Doubler).take(2).collect() == [0, 2]


def test_monitor_reports_the_item_count_at_the_end() -> None:
    calls = []
    assert IterableSource(range(25)).monitor(calls.append, every=3600).collect() == list(range(25))
    assert len(calls) == 1
    assert calls[-1]["items"] == 25
    calls.clear()
    IterableSource(range(5)).monitor(calls.append, every=0).join()
    assert calls[-1]["items"] == 5
    assert len(calls) == 6  # one per item with every=0, then the final one


def test_tqdm() -> None:
    out = io.StringIO()
    assert IterableSource(range(10)).tqdm(file=out, mininterval=0).collect() == list(range(10))
    assert "10it" in out.getvalue()
    assert IterableSource(range(10)).tqdm(disable=True).take(3).collect() == [0, 1, 2]


def test_a_bridge_closed_on_the_io_loop_closes_its_async_iterator_there() -> None:
    """The GC may finalise an abandoned sync iterator on the IO loop's thread, where it cannot block."""
    import asyncio
    from collections.abc import AsyncIterator

    from squirrel.iterstream.bridge import iterate_on_io_loop
    from squirrel.runtime import run_sync

    closed = asyncio.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for n in range(10):
                yield n
        finally:
            closed.set()

    items = iterate_on_io_loop(numbers)
    assert next(items) == 0

    async def close_here_and_wait() -> None:
        items.close()
        await asyncio.wait_for(closed.wait(), timeout=5)

    run_sync(close_here_and_wait())
    assert closed.is_set()
