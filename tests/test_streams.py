"""Both stream faces, one suite: every operator behaviour is written once and run on `Composable` (sync) and
`AsyncComposable` (async) through the `face` fixture.

A face is a small adapter: `source(items)` builds a stream, `collect`/`join`/`iterate` run it to the end
(the async face in ``asyncio.run``), and `drive` iterates it item by item, calling back the test between
items, where read-ahead and error tests look at what the pipeline did. Behaviours that only one face has
are in the face-specific sections at the end.

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
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squirrel.aio import AsyncComposable, AsyncIterableSource
from squirrel.iterstream import Composable, IterableSource

PROPERTY = settings(max_examples=60, deadline=None)
KINDS = ["coroutine", "thread", "thread_executor", "process"]
LOCAL_KINDS = ["coroutine", "thread", "thread_executor"]  # those whose calls can share counters with the test

Settle = Callable[[int], bool] | bool | None


# --- helpers -------------------------------------------------------------------------------------------------------


# Module-level so that a spawned process can import them.
def _process_square(x: int) -> int:
    time.sleep((x * 7919 % 5) / 1000)
    return x * x


def _process_fail_at_five(x: int) -> int:
    if x == 5:
        raise ValueError(f"bad item {x}")
    time.sleep(0.005)
    return x * x


def _eventually(predicate: Callable[[], bool], patience: float = 5.0) -> bool:
    """Poll `predicate` until it holds or `patience` seconds pass; return whether it held."""
    deadline = time.monotonic() + patience
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


async def _eventually_async(predicate: Callable[[], bool], patience: float = 5.0) -> bool:
    """`_eventually` for coroutines: polls without blocking the loop it runs on."""
    deadline = time.monotonic() + patience
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


class _CountingSource:
    """A re-iterable source that counts how many items have been pulled from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            yield i


# User stages for `compose`: each face subclasses its own base class.
class _SyncDoubler(Composable):
    def __iter__(self):
        for item in self.source:
            yield 2 * item


class _SyncAddN(Composable):
    def __init__(self, n: int, *, sign: int = 1) -> None:
        super().__init__()
        self.n = n * sign

    def __iter__(self):
        return (item + self.n for item in self.source)


class _AsyncDoubler(AsyncComposable):
    async def __aiter__(self):
        async for item in self.source:
            yield 2 * item


class _AsyncAddN(AsyncComposable):
    def __init__(self, n: int, *, sign: int = 1) -> None:
        super().__init__()
        self.n = n * sign

    async def __aiter__(self):
        async for item in self.source:
            yield item + self.n


# --- the two faces -------------------------------------------------------------------------------------------------


class SyncFace:
    """`IterableSource`/`Composable`, run in the test's thread."""

    name = "sync"
    composable = Composable
    doubler = _SyncDoubler
    add_n = _SyncAddN

    def source(self, items: Any) -> Composable:
        return IterableSource(items)

    def collect(self, stream: Composable) -> list[Any]:
        return stream.collect()

    def join(self, stream: Composable) -> None:
        return stream.join()

    def iterate(self, stream: Composable) -> list[Any]:
        """The items, through the iteration protocol rather than `collect`."""
        return list(stream)

    def drive(
        self,
        stream: Composable,
        on_item: Callable[[Any], None] | None = None,
        *,
        stop_after: int | None = None,
        settle: Settle = None,
        on_end: Callable[[], None] | None = None,
        linger: float = 0.0,
    ) -> list[Any]:
        """Iterate `stream` item by item and return the items; see `AsyncFace.drive`."""
        items: list[Any] = []
        iterator = iter(stream)
        try:
            for item in iterator:
                items.append(item)
                if settle is not None:
                    if callable(settle):
                        _eventually(lambda: settle(len(items)))
                    time.sleep(0.002)  # a chance for background work to over-read
                if on_item is not None:
                    on_item(item)
                if stop_after is not None and len(items) >= stop_after:
                    break
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            if on_end is not None:
                on_end()
            time.sleep(linger)
        return items


class AsyncFace:
    """`AsyncIterableSource`/`AsyncComposable`, each run in a fresh ``asyncio.run``."""

    name = "async"
    composable = AsyncComposable
    doubler = _AsyncDoubler
    add_n = _AsyncAddN

    def source(self, items: Any) -> AsyncComposable:
        return AsyncIterableSource(items)

    def collect(self, stream: AsyncComposable) -> list[Any]:
        return asyncio.run(stream.collect())

    def join(self, stream: AsyncComposable) -> None:
        return asyncio.run(stream.join())

    def iterate(self, stream: AsyncComposable) -> list[Any]:
        """The items, through the iteration protocol (``async for``) rather than `collect`."""

        async def run() -> list[Any]:
            return [item async for item in stream]

        return asyncio.run(run())

    def drive(
        self,
        stream: AsyncComposable,
        on_item: Callable[[Any], None] | None = None,
        *,
        stop_after: int | None = None,
        settle: Settle = None,
        on_end: Callable[[], None] | None = None,
        linger: float = 0.0,
    ) -> list[Any]:
        """Iterate `stream` item by item and return the items (or raise what the iteration raised).

        After each item: with `settle`, give background work a chance to run (first waiting until
        ``settle(items so far)`` holds, if it is a predicate), then call `on_item(item)`. Stop (closing the
        iterator) after `stop_after` items. When the iteration ends, however it ends, call `on_end()` and
        then wait `linger` seconds, both still on the loop that ran it: ``asyncio.run`` cancels whatever is
        left once it returns, which would hide work still running after an error.
        """

        async def run() -> list[Any]:
            items: list[Any] = []
            iterator = aiter(stream)
            try:
                async for item in iterator:
                    items.append(item)
                    if settle is not None:
                        if callable(settle):
                            await _eventually_async(lambda: settle(len(items)))
                        for _ in range(10):
                            await asyncio.sleep(0)  # a chance for background work to over-read
                    if on_item is not None:
                        on_item(item)
                    if stop_after is not None and len(items) >= stop_after:
                        break
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                if on_end is not None:
                    on_end()
                await asyncio.sleep(linger)
            return items

        return asyncio.run(run())


SYNC, ASYNC = SyncFace(), AsyncFace()
Face = SyncFace | AsyncFace


@pytest.fixture(params=[SYNC, ASYNC], ids=lambda face: face.name, scope="module")
def face(request: pytest.FixtureRequest) -> Face:
    """Each face in turn (module-scoped, so that hypothesis tests may use it)."""
    return request.param


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


# --- properties of the plain operators ---------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(0, 120), size=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_shuffle_is_a_bounded_permutation(face: Face, n: int, size: int, seed: int) -> None:
    items = list(range(n))  # each item is its own input position
    stream = face.source(items).shuffle(size, seed=seed)
    out = face.collect(stream)
    assert sorted(out) == items
    # A buffer of `size` items only emits once it is full: output position i is emitted when input i + size
    # arrives (or at the drain), so it can only hold an item from input positions <= i + size - 1.
    assert all(item <= i + size - 1 for i, item in enumerate(out))
    assert face.collect(stream) == out  # same seed, same order (and the stream is re-iterable)
    assert face.iterate(face.source(items).shuffle(size, seed=seed)) == out
    if size == 1:
        assert out == items


def test_shuffle_without_seed_is_still_a_permutation(face: Face) -> None:
    assert sorted(face.collect(face.source(range(100)).shuffle(10))) == list(range(100))


@PROPERTY
@given(
    items=st.lists(st.integers(), max_size=60),
    size=st.integers(1, 12),
    drop_last=st.booleans(),
    collate=st.sampled_from([None, tuple, sum]),
)
def test_batched(face: Face, items: list[int], size: int, drop_last: bool, collate) -> None:
    out = face.collect(face.source(items).batched(size, drop_last, collate))
    full, rest = divmod(len(items), size)
    expected = [items[i * size : (i + 1) * size] for i in range(full)]
    if rest and not drop_last:
        expected.append(items[full * size :])
    if collate is not None:
        expected = [collate(batch) for batch in expected]
    assert out == expected
    raw = face.collect(face.source(items).batched(size, drop_last))
    assert all(len(batch) == size for batch in raw[:-1])
    if raw:
        assert len(raw[-1]) == size if drop_last else 1 <= len(raw[-1]) <= size


@PROPERTY
@given(items=st.lists(st.integers(), max_size=40), n=st.integers(0, 60), k=st.integers(0, 4), m=st.integers(0, 100))
def test_take_and_loop_counts(face: Face, items: list[int], n: int, k: int, m: int) -> None:
    source = face.source(items)
    assert face.collect(source.take(n)) == items[:n]
    assert len(face.collect(source.take(n))) == min(n, len(items))
    assert face.collect(source.loop(k)) == items * k
    if items:
        assert face.collect(source.loop().take(m)) == (items * (m // len(items) + 1))[:m]
        assert face.collect(source.loop(None).take(m).zip_index()) == list(enumerate((items * (m + 1))[:m]))


def test_looping_an_empty_source_ends(face: Face) -> None:
    """A pass that yields nothing ends the loop (it used to spin forever)."""
    assert face.collect(face.source([]).loop()) == []
    assert face.collect(face.source([]).loop().take(3)) == []


@PROPERTY
@given(items=st.lists(st.text(max_size=3), max_size=40))
def test_zip_index(face: Face, items: list[str]) -> None:
    assert face.collect(face.source(items).zip_index()) == list(enumerate(items))


# --- squirrel-core 0.20's conveniences (expected outputs read off squirrel-core 0.20.2 itself) -------------------


def test_take_none_is_no_limit_and_shuffle_has_a_default_size(face: Face) -> None:
    items = list(range(2500))
    assert face.collect(face.source(items).take(None)) == items
    shuffled = face.collect(face.source(items).shuffle(seed=3))
    assert sorted(shuffled) == items and shuffled != items
    ahead = max(item - position for position, item in enumerate(shuffled))  # items come out at most a buffer early
    assert 900 < ahead <= 1000  # a 1,000-item buffer
    assert face.collect(face.source(items).shuffle(0)) == items  # 0 or 1: no shuffle, as in squirrel-core
    with pytest.raises(ValueError, match="shuffle buffer size must be >= 0, got -1"):
        face.source(items).shuffle(-1)


def test_map_and_async_map_pass_extra_arguments(face: Face) -> None:
    def scaled(x: int, factor: int, offset: int = 0) -> int:
        return x * factor + offset

    assert face.collect(face.source([1, 2, 3]).map(scaled, 10, offset=1)) == [11, 21, 31]
    assert face.collect(face.source([1, 2, 3]).async_map(scaled, 2, factor=10)) == [10, 20, 30]


def test_zip_index_pads_like_squirrel_core(face: Face) -> None:
    assert face.collect(face.source(["a", "b"]).zip_index(pad_length=3)) == [("000", "a"), ("001", "b")]
    assert face.collect(face.source(range(12)).zip_index(pad_length=1))[-1] == ("11", 11)


SLIDING_CASES = [  # (options, windows of range(7)): squirrel-core 0.20.2's output for each
    ({}, [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]]),
    ({"stride": 2}, [[0, 1, 2], [2, 3, 4], [4, 5, 6]]),
    ({"stride": 2, "drop_last_if_not_full": False}, [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6]]),
    ({"stride": 3, "drop_last_if_not_full": False, "min_window_size": 2}, [[0, 1, 2], [3, 4, 5]]),
    (
        {"drop_last_if_not_full": False, "fill_nan_on_partial": True},
        [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6, None], [6, None, None]],
    ),
]


@pytest.mark.parametrize(("options", "expected"), SLIDING_CASES)
def test_sliding_windows_match_squirrel_core(face: Face, options: dict[str, Any], expected: list[Any]) -> None:
    assert face.collect(face.source(range(7)).sliding(3, **options)) == expected


def test_sliding_short_sources_copies_and_bad_sizes(face: Face) -> None:
    assert face.collect(face.source([0, 1]).sliding(3, drop_last_if_not_full=False)) == [[0, 1]]
    assert face.collect(face.source([0, 1]).sliding(3, drop_last_if_not_full=False, fill_nan_on_partial=True)) == [
        [0, 1, None]
    ]
    assert face.collect(face.source([0, 1]).sliding(3)) == []
    assert face.collect(face.source([]).sliding(3, drop_last_if_not_full=False)) == []  # squirrel-core: [None]
    items = [[0], [1], [2]]
    shared, copied = (face.collect(face.source(items).sliding(2, deepcopy=deep)) for deep in (False, True))
    assert shared == copied == [[[0], [1]], [[1], [2]]]
    assert shared[0][1] is shared[1][0] and copied[0][1] is not copied[1][0]
    for bad, message in [
        ({"window_size": 1}, "window_size must be >= 2, got 1"),
        ({"window_size": 3, "stride": 4}, r"stride must be from 1 to window_size \(3\), got 4"),
        ({"window_size": 3, "min_window_size": 3}, r"min_window_size must be from 1 to window_size - 1 \(2\), got 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            face.source(items).sliding(**bad)


@PROPERTY
@given(items=st.lists(st.integers(), max_size=30), size=st.integers(2, 6), data=st.data())
def test_sliding_full_windows_are_every_stride_th_slice(face: Face, items: list[int], size: int, data: Any) -> None:
    stride = data.draw(st.integers(1, size))
    expected = [items[start : start + size] for start in range(0, len(items) - size + 1, stride)]
    assert face.collect(face.source(items).sliding(size, stride=stride)) == expected


@PROPERTY
@given(nested=st.lists(st.lists(st.integers(), max_size=5), max_size=20))
def test_flatten(face: Face, nested: list[list[int]]) -> None:
    flat = [x for inner in nested for x in inner]
    assert face.collect(face.source(nested).flatten()) == flat
    assert face.collect(face.source(nested).map(tuple).flatten()) == flat


@PROPERTY
@given(items=st.lists(st.integers(-1000, 1000), max_size=60))
def test_filter_and_map_equal_python(face: Face, items: list[int]) -> None:
    stream = face.source(items).filter(lambda x: x % 2 == 0).map(lambda x: 3 * x)
    assert face.collect(stream) == [3 * x for x in items if x % 2 == 0]
    assert face.iterate(stream) == [3 * x for x in items if x % 2 == 0]
    assert face.iterate(face.source(items).map(abs)) == list(map(abs, items))
    assert face.iterate(face.source(items).filter(lambda x: x > 0)) == [x for x in items if x > 0]


def test_sources_callable_and_errors(face: Face) -> None:
    def numbers():
        return iter(range(5))

    stream = face.source(numbers).map(lambda x: x + 1)  # a callable is called anew per iteration
    assert face.collect(stream) == [1, 2, 3, 4, 5]
    assert face.collect(stream) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        face.collect(face.composable())


def test_join_runs_for_side_effects(face: Face) -> None:
    seen = []
    assert face.join(face.source(range(7)).map(seen.append)) is None
    assert seen == list(range(7))


# --- async_map -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_async_map_keeps_order(face: Face, kind: str, thread_pool, process_pool) -> None:
    delays = {i: random.Random(i).random() / 200 for i in range(40)}

    async def coroutine_square(x):
        await asyncio.sleep(delays[x])
        return x * x

    def thread_square(x):
        time.sleep(delays[x])
        return x * x

    fn = {"coroutine": coroutine_square, "process": _process_square}.get(kind, thread_square)
    stream = face.source(range(40)).async_map(fn, 8, executor=_executor(kind, thread_pool, process_pool))
    assert face.collect(stream) == [x * x for x in range(40)]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_async_map_honours_its_bound(face: Face, kind: str, ordered: bool, thread_pool) -> None:
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
    stream = face.source(range(40)).async_map(fn, limit, ordered=ordered, executor=_executor(kind, thread_pool, None))
    out = face.collect(stream)
    assert out == list(range(40)) if ordered else sorted(out) == list(range(40))
    assert state["max"] == limit


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_async_map_unordered_yields_in_completion_order(face: Face, kind: str, thread_pool) -> None:
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
    stream = face.source(range(n)).async_map(fn, n, ordered=False, executor=_executor(kind, thread_pool, None))
    assert face.drive(stream, received.add) == list(reversed(range(n)))


@pytest.mark.parametrize("kind", KINDS)
def test_async_map_unordered_yields_every_item_once(face: Face, kind: str, thread_pool, process_pool) -> None:
    delays = {i: random.Random(-i).random() / 200 for i in range(50)}

    async def coroutine_square(x):
        await asyncio.sleep(delays[x])
        return x * x

    def thread_square(x):
        time.sleep(delays[x])
        return x * x

    fn = {"coroutine": coroutine_square, "process": _process_square}.get(kind, thread_square)
    executor = _executor(kind, thread_pool, process_pool)
    out = face.collect(face.source(range(50)).async_map(fn, 7, ordered=False, executor=executor))
    assert Counter(out) == Counter(x * x for x in range(50))


def test_async_map_error_cancels_inflight_coroutines(face: Face) -> None:
    n, k, limit = 30, 5, 4
    counts = Counter()  # only touched on the loop that runs the coroutines
    at_error = Counter()

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
        face.drive(
            face.source(range(n)).async_map(fetch_or_fail, limit),
            received.append,
            on_end=lambda: at_error.update(counts),
        )
    assert received == list(range(k))  # raised when iteration reached item k, not before
    assert "fetch_or_fail" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    # No +1 tolerance is needed: k + limit calls started, the failing one and limit - 1 cancelled ones.
    assert at_error["started"] == k + limit
    assert at_error["ended"] == at_error["started"]  # nothing still running once the error surfaced
    assert at_error["cancelled"] == limit - 1


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", ["thread", "thread_executor", "process"])
def test_async_map_error_propagates_from_plain_functions(
    face: Face, kind: str, ordered: bool, thread_pool, process_pool
) -> None:
    lock = threading.Lock()
    started = Counter()
    seen_at_error = []

    def square_or_fail(x):
        with lock:
            started[x] += 1
        if x == 5:
            raise ValueError(f"bad item {x}")
        time.sleep(0.005)
        return x * x

    def note_started():
        with lock:
            seen_at_error.append(sum(started.values()))

    fn = _process_fail_at_five if kind == "process" else square_or_fail
    stream = face.source(range(100)).async_map(
        fn, 4, ordered=ordered, executor=_executor(kind, thread_pool, process_pool)
    )
    received = []
    with pytest.raises(ValueError, match="bad item 5") as info:
        face.drive(stream, received.append, on_end=note_started, linger=0.05)  # a chance to start more
    if ordered:
        assert received == [x * x for x in range(5)]
    else:
        assert len(received) < 100
    if kind == "process":  # the frames are in the worker; they come back as the cause's text
        assert "_process_fail_at_five" in str(info.value.__cause__)
    else:
        assert "square_or_fail" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        [seen] = seen_at_error
        assert seen <= len(received) + 1 + 4
        with lock:
            assert sum(started.values()) == seen  # nothing new started after the error
        assert max(started.values()) == 1


def test_async_map_error_in_first_item_and_invalid_bound(face: Face) -> None:
    async def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        face.collect(face.source(range(3)).async_map(boom, 2))
    with pytest.raises(ValueError):
        face.collect(face.source(range(3)).async_map(boom, 0))
    with pytest.raises(ValueError):
        face.collect(face.source(range(3)).prefetch(0))


def test_async_map_on_empty_and_short_sources(face: Face) -> None:
    async def double(x):
        return 2 * x

    assert face.collect(face.source([]).async_map(double, 4)) == []
    assert face.collect(face.source([1, 2]).async_map(double, 8)) == [2, 4]
    assert face.collect(face.source([]).async_map(double, 4, ordered=False)) == []
    assert face.collect(face.source([]).async_map(abs, 4, ordered=False)) == []


def test_errors_upstream_of_prefetch_reach_the_consumer(face: Face) -> None:
    def explode(x):
        if x == 3:
            raise LookupError("upstream")
        return x

    received = []
    with pytest.raises(LookupError, match="upstream") as info:
        face.drive(face.source(range(10)).map(explode).prefetch(2), received.append)
    assert received == [0, 1, 2]
    assert "explode" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]


# --- read-ahead bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("limit", [1, 3, 8])
@pytest.mark.parametrize("kind", ["coroutine", "thread"])
def test_async_map_reads_at_most_limit_ahead(face: Face, kind: str, limit: int, ordered: bool) -> None:
    source = _CountingSource(100)
    consumed = []

    async def coroutine_identity(x):
        await asyncio.sleep(0)
        return x

    def check(item):
        consumed.append(item)
        assert source.pulled <= len(consumed) + limit  # no tolerance needed (ordered: exactly consumed + limit - 1)

    fn = coroutine_identity if kind == "coroutine" else (lambda x: x)
    stream = face.source(source).async_map(fn, limit, ordered=ordered)
    assert len(face.drive(stream, check, stop_after=39, settle=True)) == 39


@pytest.mark.parametrize("size", [1, 4])
def test_prefetch_reads_at_most_size_plus_one_ahead(face: Face, size: int) -> None:
    source = _CountingSource(100)
    consumed = []

    def check(item):
        consumed.append(item)
        assert item == len(consumed) - 1
        # `size` queued, plus the one the producer holds while waiting for room.
        assert source.pulled == len(consumed) + size + 1

    stream = face.source(source).prefetch(size)
    face.drive(stream, check, stop_after=29, settle=lambda n: source.pulled >= n + size + 1)
    assert face.collect(face.source(source).prefetch(size)) == list(range(100))


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
def test_composed_read_ahead_and_take_stop_pulling(face: Face, kind: str) -> None:
    source = _CountingSource(1000)
    assert face.collect(face.source(source).take(10)) == list(range(10))
    assert source.pulled == 10
    source.pulled = 0
    consumed = []

    async def identity(x):
        return x

    def check(item):
        consumed.append(item)
        assert source.pulled <= len(consumed) + 2 + 1 + 3

    fn = identity if kind == "coroutine" else abs
    face.drive(face.source(source).async_map(fn, 3).prefetch(2), check, stop_after=19, settle=True)


# --- re-iterability, compose, monitor, tqdm ------------------------------------------------------------------------


def test_same_pipeline_iterated_twice_gives_the_same_result(face: Face) -> None:
    async def slow_double(x):
        await asyncio.sleep(random.random() / 1000)
        return 2 * x

    stream = (
        face.source(range(60))
        .shuffle(16, seed="epoch-0")
        .async_map(slow_double, 5)
        .prefetch(3)
        .async_map(lambda x: x + 1, 3)
        .filter(lambda x: x % 3)
        .batched(4)
    )
    first = face.collect(stream)
    assert face.collect(stream) == first
    assert face.iterate(stream) == first
    assert sorted(x for batch in first for x in batch) == [2 * x + 1 for x in range(60) if (2 * x + 1) % 3]


def test_compose_user_stages(face: Face) -> None:
    stream = face.source(range(5)).compose(face.doubler).compose(face.add_n, 10, sign=-1).map(str)
    assert face.collect(stream) == [str(2 * x - 10) for x in range(5)]
    assert face.collect(stream) == [str(2 * x - 10) for x in range(5)]
    assert face.collect(face.source(range(3)).compose(face.doubler).take(2)) == [0, 2]


def test_monitor_reports_the_item_count_at_the_end(face: Face) -> None:
    calls = []
    assert face.collect(face.source(range(25)).monitor(calls.append, every=3600)) == list(range(25))
    assert len(calls) == 1
    assert calls[-1]["items"] == 25
    calls.clear()
    face.join(face.source(range(5)).monitor(calls.append, every=0))
    assert calls[-1]["items"] == 5
    assert len(calls) == 6  # one per item with every=0, then the final one


def test_tqdm(face: Face) -> None:
    out = io.StringIO()
    assert face.collect(face.source(range(10)).tqdm(file=out, mininterval=0)) == list(range(10))
    assert "10/10" in out.getvalue()  # a sized source: the bar has its total
    assert face.collect(face.source(range(10)).tqdm(disable=True).take(3)) == [0, 1, 2]


# --- both faces at once --------------------------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(0, 120), size=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_shuffle_gives_the_same_order_on_both_faces(n: int, size: int, seed: int) -> None:
    items = list(range(n))
    assert ASYNC.collect(ASYNC.source(items).shuffle(size, seed=seed)) == SYNC.collect(
        SYNC.source(items).shuffle(size, seed=seed)
    )


# --- async face only: async callables and async iterables ----------------------------------------------------------
# The sync face calls `map`/`filter`/`monitor` callbacks in the consumer's thread and iterates sync iterables only.


@PROPERTY
@given(nested=st.lists(st.lists(st.integers(), max_size=5), max_size=20))
def test_async_flatten_accepts_async_iterables(nested: list[list[int]]) -> None:
    async def agen(inner):
        for x in inner:
            yield x

    assert ASYNC.collect(ASYNC.source(nested).map(agen).flatten()) == [x for inner in nested for x in inner]


@PROPERTY
@given(items=st.lists(st.integers(-1000, 1000), max_size=60))
def test_async_filter_and_map_accept_coroutine_functions(items: list[int]) -> None:
    def is_even(x):
        return x % 2 == 0

    async def async_is_even(x):
        await asyncio.sleep(0)
        return x % 2 == 0

    async def async_triple(x):
        await asyncio.sleep(0)
        return 3 * x

    expected = [3 * x for x in items if x % 2 == 0]
    assert ASYNC.collect(ASYNC.source(items).filter(async_is_even).map(async_triple)) == expected
    assert ASYNC.iterate(ASYNC.source(items).filter(is_even).map(async_triple)) == expected


def test_async_sources_async_generator_function_and_async_iterable() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    stream = ASYNC.source(numbers).map(lambda x: x + 1)  # an async generator function is called anew per iteration
    assert ASYNC.collect(stream) == [1, 2, 3, 4, 5]
    assert ASYNC.collect(stream) == [1, 2, 3, 4, 5]

    assert ASYNC.collect(ASYNC.source(numbers())) == [0, 1, 2, 3, 4]  # an async iterable, iterated once


def test_async_monitor_accepts_a_coroutine_callback() -> None:
    calls = []

    async def async_callback(stats):
        calls.append(stats)

    ASYNC.join(ASYNC.source(range(5)).monitor(async_callback, every=0))
    assert calls[-1]["items"] == 5
    assert len(calls) == 6  # one per item with every=0, then the final one


# --- sync face only: the bridge from the IO loop to the consumer's thread ------------------------------------------


def test_sync_bridge_closed_on_the_io_loop_closes_its_async_iterator_there() -> None:
    """The GC may finalise an abandoned sync iterator on the IO loop's thread, where it cannot block."""
    from squirrel._runtime import iterate, run_sync

    closed = asyncio.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for n in range(10):
                yield n
        finally:
            closed.set()

    items = iterate(numbers, capacity=1)  # capacity 1: the producer is still waiting for room when closed
    assert next(items) == 0

    async def close_here_and_wait() -> None:
        items.close()
        await asyncio.wait_for(closed.wait(), timeout=5)

    run_sync(close_here_and_wait())
    assert closed.is_set()


async def test_run_all_keeps_order_bounds_concurrency_and_raises_the_first_error() -> None:
    import functools

    from squirrel.aio.operators import run_all

    running, peak = 0, 0

    async def work(value: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (5 - value % 5))
        running -= 1
        if value == 7:
            raise ValueError("seven")
        return value * 2

    assert await run_all([functools.partial(work, i) for i in range(6)], limit=2) == [0, 2, 4, 6, 8, 10]
    assert peak == 2
    with pytest.raises(ValueError, match="seven"):  # itself, not inside an ExceptionGroup
        await run_all([functools.partial(work, i) for i in range(10)])
