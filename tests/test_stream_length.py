"""Streams know their length: ``len(stream)``, `Stage.length` and the tqdm total (issue 14).

Each behaviour runs on both faces through the `face` fixture: the sync face asks ``stream.length()`` (reading
a store's index on the IO loop), the async face ``await stream.load_length()`` on the loop it iterates on.
Every length is checked against the items a pass really yields. Loader streams run over local disk,
memory://, gs:// and s3:// (`store_url`).
"""

from __future__ import annotations

import asyncio
import io
import itertools
from typing import Any

import pytest

from squirrel._runtime import run_sync
from squirrel.aio import AsyncIterableSource, AsyncMessagepackLoader
from squirrel.aio.mixing import mix as async_mix
from squirrel.batching import Window
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.iterstream import IterableSource
from squirrel.iterstream.mixing import mix as sync_mix
from squirrel.lengths import window_count
from squirrel.stages import EndlessStream, UnknownLength

SIZES = [5, 1, 7, 3, 4, 2, 6]  # samples per shard: 28 in all, uneven so that splits and equalize differ


class Face:
    """One face: `source` and `loader` build its streams, `measure` asks a stream's length as a user of the
    face does and runs one pass (on one loop for the async face, closing its loaders there)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loaders: list[AsyncMessagepackLoader] = []

    def source(self, items: Any) -> Any:
        return IterableSource(items) if self.name == "sync" else AsyncIterableSource(items)

    def mix(self, *args: Any, **kwargs: Any) -> Any:
        return sync_mix(*args, **kwargs) if self.name == "sync" else async_mix(*args, **kwargs)

    def loader(self, url: str) -> Any:
        if self.name == "sync":
            return MessagePackDataLoader(url)
        loader = AsyncMessagepackLoader(url)
        self.loaders.append(loader)
        return loader

    def measure(self, stream: Any) -> tuple[int | None, list[Any]]:
        """The stream's length as the face asks it, and the items of one pass."""
        if self.name == "sync":
            return stream.length(), stream.collect()

        async def run() -> tuple[int | None, list[Any]]:
            try:
                return await stream.load_length(), await stream.collect()
            finally:
                for loader in self.loaders:
                    await loader.aclose()

        return asyncio.run(run())

    def len_error(self, stream: Any) -> str:
        """The message of the `TypeError` ``len(stream)`` raises once the face has asked for the length."""
        if self.name == "sync":
            with pytest.raises(TypeError) as raised:
                len(stream)
            assert isinstance(raised.value, UnknownLength)
            return str(raised.value)

        async def run() -> str:
            try:
                assert await stream.load_length() is None
                with pytest.raises(UnknownLength) as raised:
                    len(stream)
                return str(raised.value)
            finally:
                for loader in self.loaders:
                    await loader.aclose()

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Face:
    return Face(request.param)


def write_store(url: str, index: bool = True) -> str:
    store = MessagepackStore(url)
    for number, size in enumerate(SIZES):
        store.set(Shard([Sample({"i": j}, key=f"s{number}_{j}") for j in range(size)], key=f"shard_{number}"))
    if index:
        store.write_index()
    return url


def _identity(item: Any) -> Any:
    return item


# --- sized sources and the operators ---------------------------------------------------------------------------------

KNOWN = {
    "source": lambda s: s,
    "map": lambda s: s.map(str),
    "async_map": lambda s: s.async_map(_identity, max_concurrency=3),
    "prefetch": lambda s: s.prefetch(4),
    "shuffle": lambda s: s.shuffle(5, seed=1),
    "zip_index": lambda s: s.zip_index(pad_length=3),
    "monitor": lambda s: s.monitor(lambda _: None),
    "tqdm": lambda s: s.tqdm(disable=True),
    "batched": lambda s: s.batched(5),
    "batched_drop": lambda s: s.batched(5, drop_last_if_not_full=True),
    "take": lambda s: s.take(7),
    "take_more": lambda s: s.take(100),
    "take_none": lambda s: s.take(None),
    "loop": lambda s: s.loop(3),
    "loop_take": lambda s: s.loop().take(50),
    "sliding": lambda s: s.sliding(4, stride=3, drop_last_if_not_full=False, min_window_size=2),
    "chain": lambda s: s.map(str).batched(4).take(5).zip_index(),
    "compose": lambda s: s.compose(type(s)),
}


@pytest.mark.parametrize("count", [0, 23])
@pytest.mark.parametrize("build", KNOWN.values(), ids=KNOWN.keys())
def test_a_sized_source_and_the_operators_that_keep_count_know_the_length(face: Face, build: Any, count: int) -> None:
    stream = build(face.source(list(range(count))))
    length, items = face.measure(stream)
    assert length == len(items)
    assert len(stream) == len(items)


UNKNOWN = {
    "filter": (lambda s: s.filter(bool), "filter()"),
    "flatten": (lambda s: s.map(lambda x: [x]).flatten(), "flatten()"),
    "filter_then_batched": (lambda s: s.filter(bool).batched(2), "filter()"),
    "endless": (lambda s: s.loop(), "forever"),
}


@pytest.mark.parametrize(("build", "reason"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_operator_whose_count_depends_on_the_items_says_so(face: Face, build: Any, reason: str) -> None:
    assert reason in face.len_error(build(face.source(range(5))))


@pytest.mark.parametrize(
    ("source", "reason"),
    [(lambda: iter(range(5)), "has no len()"), (lambda: lambda: range(5), "callable")],
    ids=["iterator", "callable"],
)
def test_a_source_without_len_gives_no_length_and_still_streams(face: Face, source: Any, reason: str) -> None:
    assert face.measure(face.source(source())) == (None, [0, 1, 2, 3, 4])
    assert reason in face.len_error(face.source(source()))


def test_list_ignores_an_unknown_length_and_a_stream_is_always_true() -> None:
    stream = IterableSource(range(6)).filter(lambda x: x % 2)
    assert list(stream) == [1, 3, 5]  # CPython asks len() for a size hint and ignores its TypeError
    assert bool(stream) and bool(IterableSource([])) and bool(AsyncIterableSource(iter([])))


def test_take_after_an_endless_stream_is_exact_and_loop_of_nothing_is_empty(face: Face) -> None:
    assert face.measure(face.source(range(3)).loop().take(8)) == (8, [0, 1, 2, 0, 1, 2, 0, 1])
    assert face.measure(face.source([]).loop()) == (0, [])
    with pytest.raises(EndlessStream):
        face.source(range(3)).loop().batched(2).known_length()


def test_window_count_matches_the_windows_given() -> None:
    options = itertools.product(range(12), range(2, 6), range(1, 6), [False, True], range(1, 5), [False, True])
    for items, size, stride, drop_last, min_size, fill in options:
        if stride > size or min_size >= size:
            continue
        window = Window(size, False, stride, drop_last, min_size, fill)
        given = sum(len(list(window.push(item))) for item in range(items)) + len(list(window.drain()))
        assert window_count(items, size, stride, drop_last, min_size, fill) == given, (items, size, stride)


def test_a_split_of_items_counts_this_readers_share() -> None:
    source = IterableSource(range(10))
    for rank, expected in [(0, 4), (1, 3), (2, 3)]:
        stream = source.split_by_rank_pytorch(rank=rank, world_size=3)
        assert len(stream) == expected == len(list(stream))


# --- loader streams --------------------------------------------------------------------------------------------------

LOADER_OPTIONS = {
    "plain": {},
    "shuffled": {"shuffle_key_buffer": 3, "shuffle_item_buffer": 5, "seed": 2},
    "rank0": {"split_by_rank": True, "rank": 0, "world_size": 3, "seed": 1, "shuffle_key_buffer": 4},
    "rank2": {"split_by_rank": True, "rank": 2, "world_size": 3, "seed": 1, "shuffle_key_buffer": 4},
    "unseeded_rank": {"split_by_rank": True, "rank": 1, "world_size": 2, "shuffle_key_buffer": 4},
    "drop": {"split_by_rank": True, "rank": 1, "world_size": 3, "equalize": "drop"},
    "pad": {"split_by_rank": True, "rank": 1, "world_size": 3, "equalize": "pad"},
    "key_iterator": {"key_iterator": ["shard_2", "shard_0"]},
}


@pytest.mark.parametrize("options", LOADER_OPTIONS.values(), ids=LOADER_OPTIONS.keys())
def test_a_loader_stream_knows_its_readers_length_from_the_index(face: Face, store_url: str, options: Any) -> None:
    stream = face.loader(write_store(store_url)).get_iter(**options)
    length, items = face.measure(stream)
    assert length == len(items)
    assert len(stream) == len(items)  # the async face answers len() once load_length() read the index


def test_the_splits_and_equalize_give_the_lengths_of_the_shares(tmp_path: Any) -> None:
    loader = MessagePackDataLoader(write_store(str(tmp_path / "store")))
    options = {"split_by_rank": True, "world_size": 3}  # shards 0,3,6 / 1,4 / 2,5 of SIZES
    assert [len(loader.get_iter(rank=rank, **options)) for rank in range(3)] == [14, 5, 9]
    assert [len(loader.get_iter(rank=rank, equalize="drop", **options)) for rank in range(3)] == [5, 5, 5]
    assert [len(loader.get_iter(rank=rank, equalize="pad", **options)) for rank in range(3)] == [14, 14, 14]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda s: s.map(str), 28),
        (lambda s: s.batched(4), 7),
        (lambda s: s.batched(5), 6),
        (lambda s: s.batched(5, drop_last_if_not_full=True), 5),
        (lambda s: s.take(10), 10),
        (lambda s: s.filter(bool), None),
    ],
    ids=["map", "batched", "batched_partial", "batched_drop", "take", "filter"],
)
def test_the_chains_of_a_loader_stream(face: Face, store_url: str, build: Any, expected: int | None) -> None:
    stream = build(face.loader(write_store(store_url)).get_iter())
    length, items = face.measure(stream)
    assert length == expected
    assert expected is None or length == len(items)


def test_without_an_index_the_length_is_unknown_and_the_message_says_how_to_fix_it(face: Face, store_url: str) -> None:
    url = write_store(store_url, index=False)
    message = face.len_error(face.loader(url).get_iter())
    assert "no index at" in message and "write_index()" in message and url.split("://")[-1] in message
    length, items = face.measure(face.loader(url).get_iter())
    assert (length, len(items)) == (None, 28)


def test_an_index_written_after_the_first_question_is_found(tmp_path: Any) -> None:
    url = write_store(str(tmp_path / "store"), index=False)
    stream = MessagePackDataLoader(url).get_iter()
    assert stream.length() is None
    assert len(list(stream)) == 28  # list() asks len() for a hint and ignores its TypeError
    MessagepackStore(url).write_index()
    assert stream.length() == 28


def test_an_async_stream_asks_to_await_its_length_before_len(store_url: str) -> None:
    async def run() -> None:
        async with AsyncMessagepackLoader(write_store(store_url)) as loader:
            stream = loader.get_iter().map(str)
            with pytest.raises(TypeError, match=r"await stream.load_length\(\)"):
                len(stream)
            assert stream.length() is None  # reads nothing
            assert await stream.load_length() == 28
            assert len(stream) == 28

    asyncio.run(run())


def test_a_stream_that_is_not_asked_reads_no_index(tmp_path: Any) -> None:
    url = write_store(str(tmp_path / "store"))
    stream = MessagePackDataLoader(url).get_iter(key_iterator=["shard_1"])  # a pass that needs no index
    assert bool(stream) and stream.collect() and [sample for sample in stream]
    assert stream.aio.store._index is None  # nothing read it: not the passes, not bool(), not collect()
    assert len(stream) == 1


def test_len_of_a_sync_stream_on_the_io_loop_reads_nothing(tmp_path: Any) -> None:
    """``write_shards`` asks ``len(samples)`` on squirrel's IO loop, which must not wait on itself."""
    stream = MessagePackDataLoader(write_store(str(tmp_path / "store"))).get_iter()

    async def on_the_loop() -> int | None:
        return stream.length()

    assert run_sync(on_the_loop()) is None  # the index is not read yet: unknown, not a deadlock or RuntimeError
    assert len(stream) == 28
    assert run_sync(on_the_loop()) == 28  # read before: answered


# --- mixes -----------------------------------------------------------------------------------------------------------

MIXES = {
    "first": {"weights": [3, 1, 1], "seed": 5},
    "first_epoch_weight_zero": {"weights": [1, 0, 2], "seed": 5},
    "all": {"weights": [3, 1, 1], "seed": 5, "stop": "all"},
    "all_unseeded": {"stop": "all"},
    "round_robin_first": {"mode": "round_robin"},
    "round_robin_all": {"mode": "round_robin", "stop": "all"},
}


@pytest.mark.parametrize("options", MIXES.values(), ids=MIXES.keys())
@pytest.mark.parametrize("sizes", [(40, 9, 30), (5000, 3000, 6000)], ids=["small", "blocks"])
def test_a_mix_knows_where_its_pass_ends(face: Face, options: dict[str, Any], sizes: tuple[int, ...]) -> None:
    mixed = face.mix([face.source(range(size)) for size in sizes], **options)
    mixed.set_epoch(3)
    length, items = face.measure(mixed)
    assert length == len(items)


def test_a_mix_without_seed_or_that_never_stops_has_no_length(face: Face) -> None:
    sources = [face.source(range(4)), face.source(range(6))]
    assert "seed=None" in face.len_error(face.mix(sources))
    assert "never ends" in face.len_error(face.mix(sources, stop="never", seed=0))
    assert face.measure(face.mix(sources, stop="never", seed=0).take(25))[0] == 25


def test_a_mix_of_loader_streams_reads_their_indexes(face: Face, tmp_path: Any) -> None:
    urls = [write_store(str(tmp_path / name)) for name in ("a", "b")]
    mixed = face.mix([face.loader(url).get_iter() for url in urls], stop="all", seed=0)
    assert face.measure(mixed)[0] == 56


# --- tqdm ------------------------------------------------------------------------------------------------------------


def test_tqdm_shows_the_total_of_a_loader_stream(face: Face, store_url: str) -> None:
    out = io.StringIO()
    stream = face.loader(write_store(store_url)).get_iter(split_by_rank=True, rank=0, world_size=3)
    face.measure(stream.tqdm(file=out, mininterval=0))
    assert "14/14" in out.getvalue()


def test_tqdm_writes_its_total_to_stderr(face: Face, capsys: pytest.CaptureFixture[str]) -> None:
    face.measure(face.source(range(9)).map(str).tqdm(mininterval=0))
    assert "9/9" in capsys.readouterr().err


def test_a_total_given_to_tqdm_wins_and_an_unknown_length_shows_none(face: Face) -> None:
    given, unknown = io.StringIO(), io.StringIO()
    face.measure(face.source(range(9)).tqdm(file=given, total=20, mininterval=0))
    face.measure(face.source(range(9)).filter(bool).tqdm(file=unknown, mininterval=0))
    assert "9/20" in given.getvalue()
    assert "8it" in unknown.getvalue() and "8/" not in unknown.getvalue()  # a count and a rate, no total
