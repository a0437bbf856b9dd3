"""Weighted mixing of streams (`squirrel.iterstream.mixing`, its async twin `squirrel.aio.mixing`, and the pure
chooser they share, `squirrel.mixing`).

Each behaviour is written once and runs on both faces through the `face` fixture: `make` builds a mix,
`collect` iterates it (the async face in ``asyncio.run``), `take` stops after some items and returns the
mix's state there. Sources are plain lists of ``(source, index)`` pairs, or two messagepack stores on disk.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch.utils.data

from squirrel.aio import AsyncMessagepackLoader, AsyncMixedStream
from squirrel.aio.mixing import mix as async_mix
from squirrel.aio.operators import close
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Shard
from squirrel.iterstream import IterableSource, MixedStream
from squirrel.iterstream.mixing import mix
from squirrel.mixing import BLOCK, Chooser
from tests.helpers import interrupt_and_resume, make_samples

END = object()


def items(name: str, count: int) -> list[tuple[str, int]]:
    return [(name, i) for i in range(count)]


class Face:
    """A face of mixing: `make` builds a sync or async mix; `collect` and `take` iterate it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.async_loaders: list[AsyncMessagepackLoader] = []

    def make(self, sources: list[Any], **kwargs: Any) -> Any:
        return mix(sources, **kwargs) if self.name == "sync" else async_mix(sources, **kwargs)

    def loader_stream(self, url: str, **kwargs: Any) -> Any:
        if self.name == "sync":
            return MessagePackDataLoader(url).get_iter(**kwargs)
        loader = AsyncMessagepackLoader(url)
        self.async_loaders.append(loader)
        return loader.get_iter(**kwargs)

    def take(self, stream: Any, limit: int | None = None, save: bool = True) -> tuple[list[Any], dict[str, Any]]:
        """The first `limit` items (all when None), and the mix's `state_dict` right after the last (when
        `save`; else an empty dict)."""
        if self.name == "sync":
            taken = list(itertools.islice(stream, limit))  # islice pulls no item beyond the limit
            return taken, stream.state_dict() if save else {}

        async def run() -> tuple[list[Any], dict[str, Any]]:
            taken: list[Any] = []
            iterator = aiter(stream)
            try:
                while limit is None or len(taken) < limit:  # pull no item beyond the limit
                    item = await anext(iterator, END)
                    if item is END:
                        break
                    taken.append(item)
                return taken, stream.state_dict() if save else {}
            finally:
                await close(iterator)
                for loader in self.async_loaders:
                    await loader.aclose()

        return asyncio.run(run())

    def collect(self, stream: Any, limit: int | None = None) -> list[Any]:
        return self.take(stream, limit, save=False)[0]


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Face:
    return Face(request.param)


SOURCES = {"a": 10, "b": 40, "c": 25}


def three(face: Face, **kwargs: Any) -> Any:
    """A mix of sources a, b, c of unequal lengths, weights 1:2:1 unless given."""
    kwargs.setdefault("weights", [1, 2, 1])
    return face.make([items(name, count) for name, count in SOURCES.items()], **kwargs)


# --- the draw -------------------------------------------------------------------------------------------------------


def test_the_same_seed_and_epoch_give_the_same_mix(face: Face) -> None:
    first = face.collect(three(face, seed=1, stop="all"))
    assert face.collect(three(face, seed=1, stop="all")) == first
    assert face.collect(three(face, seed=2, stop="all")) != first
    later = three(face, seed=1, stop="all")
    later.set_epoch(1)
    assert later.epoch() == 1
    assert face.collect(later) != first
    again = three(face, seed=1, stop="all")
    again.set_epoch(1)
    assert face.collect(again) == face.collect(later)


def test_the_choice_is_a_pure_function_of_the_position() -> None:
    chooser = Chooser([1, 2, 1], "sample", 7, 0)
    forward = [chooser.choose(position, frozenset()) for position in range(3 * BLOCK)]
    jumping = Chooser([1, 2, 1], "sample", 7, 0)
    for position in np.random.default_rng(0).permutation(3 * BLOCK)[:200].tolist():
        assert jumping.choose(position, frozenset()) == forward[position]
    assert (
        Chooser([1, 2, 1], "sample", 7, 0).counts(2 * BLOCK + 5)
        == np.bincount(forward[: 2 * BLOCK + 5], minlength=3).tolist()
    )


@pytest.mark.parametrize("weights", [[0.5, 0.3, 0.2], [1, 0, 9], [5, 5]])
def test_the_proportions_follow_the_weights(face: Face, weights: list[float]) -> None:
    sources = [items(str(index), 7 + index) for index in range(len(weights))]
    mixed = face.collect(face.make(sources, weights=weights, seed=3, stop="never"), limit=100_000)
    counts = Counter(name for name, _ in mixed)
    for index, weight in enumerate(weights):
        assert abs(counts[str(index)] / len(mixed) - weight / sum(weights)) < 0.02, (index, counts)
    if 0 in weights:
        assert counts[str(weights.index(0))] == 0  # a source of weight zero is never drawn


# --- stopping ---------------------------------------------------------------------------------------------------------


def test_stop_first_ends_at_the_first_source_drawn_after_it_ran_out(face: Face) -> None:
    first = face.collect(three(face, seed=4, stop="first"))
    everything = face.collect(three(face, seed=4, stop="all"))
    assert first == everything[: len(first)]  # the same draws until then
    counts = Counter(name for name, _ in first)
    assert counts["a"] == SOURCES["a"]  # the shortest source ran out first: all of it came
    assert counts["b"] < SOURCES["b"] and counts["c"] < SOURCES["c"]


def test_stop_all_gives_every_item_once_in_each_source_order(face: Face) -> None:
    mixed = face.collect(three(face, seed=5, stop="all"))
    for name, count in SOURCES.items():
        assert [item for item in mixed if item[0] == name] == items(name, count)
    assert len(mixed) == sum(SOURCES.values())


def test_stop_all_ends_when_only_sources_of_weight_zero_are_left(face: Face) -> None:
    mixed = face.collect(face.make([items("a", 5), items("z", 5)], weights=[1, 0], seed=0, stop="all"))
    assert mixed == items("a", 5)


def test_stop_never_loops_the_sources_that_ran_out(face: Face) -> None:
    mixed = face.collect(three(face, seed=6, stop="never"), limit=500)
    assert len(mixed) == 500
    for name, count in SOURCES.items():
        own = [index for source, index in mixed if source == name]
        assert own == [i % count for i in range(len(own))]  # pass after pass, in order
        assert len(own) > count


def test_stop_never_with_a_source_that_yields_nothing_raises(face: Face) -> None:
    with pytest.raises(ValueError, match=r"mix source 1 \(list\) yielded nothing in a pass"):
        face.collect(face.make([items("a", 3), []], seed=0, stop="never"), limit=100)


def test_round_robin_takes_the_sources_in_turn(face: Face) -> None:
    sources = [items("a", 3), items("b", 5), items("c", 1)]
    assert face.collect(face.make(sources, mode="round_robin", stop="first")) == [
        ("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1),
    ]  # fmt: skip
    # Once c has run out, the turn is the position modulo the sources left.
    assert face.collect(face.make(sources, mode="round_robin", stop="all")) == [
        ("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("b", 2), ("a", 2), ("b", 3), ("b", 4),
    ]  # fmt: skip
    looped = face.collect(face.make(sources, mode="round_robin", stop="never"), limit=9)
    assert [name for name, _ in looped] == list("abc" * 3)


# --- resume ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["first", "all", "never"])
def test_a_resumed_mix_continues_exactly_where_it_was(face: Face, stop: str) -> None:
    limit = 200 if stop == "never" else None
    full = face.collect(three(face, seed=8, stop=stop), limit)
    for cut in range(len(full) + 1):  # every point, before and after a source ran out
        before, state = face.take(three(face, seed=8, stop=stop), cut)
        assert state["position"] == cut
        resumed = three(face, seed=8, stop=stop)
        resumed.load_state_dict(state)
        rest = face.collect(resumed, None if limit is None else limit - cut)
        assert before + rest == full, cut


def test_a_resume_restores_the_epoch(face: Face) -> None:
    stream = three(face, seed=9, stop="all")
    stream.set_epoch(4)
    full = face.collect(stream)
    before, state = face.take(stream, 13)
    resumed = three(face, seed=9, stop="all")
    resumed.load_state_dict(state)
    assert resumed.epoch() == 4
    assert before + face.collect(resumed) == full
    assert face.collect(resumed) == full  # the state applies to the next pass only


@pytest.mark.parametrize("stop", ["first", "all", "never"])
def test_resumed_skip_replays_the_draws_of_the_skipped_items(stop: str) -> None:
    sync = Face("sync")
    limit = 200 if stop == "never" else None
    full = sync.collect(three(sync, seed=10, stop=stop), limit)
    for skip in range(len(full) + 2):
        rest = three(sync, seed=10, stop=stop).resumed(skip)
        assert list(itertools.islice(rest, None if limit is None else max(limit - skip, 0))) == full[skip:], skip


def test_the_state_of_an_unseeded_draw_cannot_be_saved(face: Face) -> None:
    stream = three(face)
    with pytest.raises(ValueError, match=r"mix\(seed=None\)"):
        stream.state_dict()
    with pytest.raises(ValueError, match="give a seed"):
        stream.load_state_dict({"epoch": 0, "position": 0, "taken": [0, 0, 0], "exhausted": []})
    assert three(face, mode="round_robin", weights=None).state_dict()["position"] == 0  # no draw to replay


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"epoch": 0, "position": 0, "taken": [0, 0]}, "'exhausted'"),
        ({"epoch": 0, "position": 0, "taken": [0, 0], "exhausted": []}, "need 3 non-negative counts"),
        ({"epoch": 0, "position": 0, "taken": [0, 0, 0], "exhausted": [3]}, "indices below 3"),
        ({"epoch": 0, "position": -1, "taken": [0, 0, 0], "exhausted": []}, "'position'"),
    ],
)
def test_a_state_that_does_not_fit_the_mix_is_refused(face: Face, state: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        three(face, seed=0).load_state_dict(state)


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [1, -1, 1]}, "weight 1 is -1.0: weights must be finite and non-negative"),
        ({"weights": [1, float("nan"), 1]}, "weight 1 is nan"),
        ({"weights": [1, 1]}, "2 weights for 3 sources"),
        ({"weights": [0, 0, 0]}, "all zero"),
        ({"stop": "sometimes"}, "stop='sometimes': choose one of 'first', 'all', 'never'"),
        ({"mode": "random"}, "mode='random': choose one of 'sample', 'round_robin'"),
        ({"mode": "round_robin"}, "round_robin.*give no weights"),
    ],
)
def test_bad_arguments_are_refused(face: Face, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        three(face, **kwargs)


def test_a_mix_needs_a_source(face: Face) -> None:
    with pytest.raises(ValueError, match="at least one source"):
        face.make([])


def test_both_faces_are_exported() -> None:
    assert isinstance(mix([[1]]), MixedStream)
    assert isinstance(async_mix([[1]]), AsyncMixedStream)


# --- loaders -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two messagepack stores on local disk: 6 shards of 5 samples, and 4 shards of 3."""
    urls = []
    for name, (shards, per_shard) in {"left": (6, 5), "right": (4, 3)}.items():
        url = str(tmp_path_factory.mktemp(name) / "store")
        store = MessagepackStore(url)
        for index in range(shards):
            store.set(Shard(make_samples(per_shard, prefix=f"{name}{index}_"), key=f"shard_{index:03d}"))
        store.write_index()
        urls.append(url)
    return urls


def keys(samples: list[Any]) -> list[str]:
    return [sample.key for sample in samples]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_mix_their_own_shares_and_together_every_sample(face: Face, stores: list[str], world_size: int) -> None:
    every_source, every_mixed = [], []
    for rank in range(world_size):
        split = {"split_by_rank": True, "rank": rank, "world_size": world_size, "seed": 1, "shuffle_item_buffer": 4}
        sources = [face.loader_stream(url, **split) for url in stores]
        own = [key for source in sources for key in keys(face.collect(source))]
        mixed = face.make([face.loader_stream(url, **split) for url in stores], weights=[2, 1], seed=0, stop="all")
        assert mixed.split_kinds() == frozenset({"rank"})
        mixed_keys = keys(face.collect(mixed))
        assert sorted(mixed_keys) == sorted(own)  # the mix does not split again
        every_source += own
        every_mixed += mixed_keys
    assert sorted(every_mixed) == sorted(every_source)
    assert len(set(every_mixed)) == len(every_mixed) == 6 * 5 + 4 * 3  # no rank read another's samples


def test_a_split_counts_only_when_every_source_applies_it(stores: list[str]) -> None:
    split = MessagePackDataLoader(stores[0]).get_iter(split_by_rank=True, rank=0, world_size=2)
    whole = MessagePackDataLoader(stores[1]).get_iter()
    assert mix([split, whole]).split_kinds() == frozenset()
    assert mix([split, IterableSource([1])]).split_kinds() == frozenset()


def test_set_epoch_reaches_the_loaders_and_changes_their_order(face: Face, stores: list[str]) -> None:
    order = {"seed": 2, "shuffle_item_buffer": 8}
    stream = face.make([face.loader_stream(url, **order) for url in stores], seed=3, stop="all")
    first = keys(face.collect(stream))
    stream.set_epoch(5)
    assert [source.epoch() for source in stream.sources] == [5, 5]
    assert keys(face.collect(stream)) != first
    assert sorted(keys(face.collect(stream))) == sorted(first)


@pytest.mark.parametrize("stop", ["first", "all"])
def test_a_mix_of_loaders_resumes_exactly(face: Face, stores: list[str], stop: str) -> None:
    order = {"seed": 2, "shuffle_key_buffer": 3, "shuffle_item_buffer": 6}

    def fresh() -> Any:
        return face.make([face.loader_stream(url, **order) for url in stores], weights=[1, 3], seed=4, stop=stop)

    full = keys(face.collect(fresh()))
    for cut in [0, 5, 17, len(full) - 1]:
        before, state = face.take(fresh(), cut)
        resumed = fresh()
        resumed.load_state_dict(state)
        assert keys(before) + keys(face.collect(resumed)) == full, cut


def test_resumed_skip_passes_over_whole_shards_of_the_loaders(stores: list[str]) -> None:
    def fresh() -> MixedStream:
        return mix([MessagePackDataLoader(url).get_iter() for url in stores], weights=[5, 3], seed=4, stop="first")

    full = keys(list(fresh()))  # no source ran out among these: the draws replay without reading
    stream = fresh()
    assert keys(list(stream.resumed(len(full) - 1))) == full[-1:]
    # of the 10 shards, each source reads at most the one holding its last skipped sample and the next
    assert sum(metrics.objects for metrics in stream.loader_metrics()) <= 4


def test_a_mix_resumes_through_a_torch_dataloader(stores: list[str]) -> None:
    def fresh() -> torch.utils.data.IterableDataset:
        order = {"seed": 2, "shuffle_item_buffer": 6}
        sources = [MessagePackDataLoader(url).get_iter(**order) for url in stores]
        return mix(sources, weights=[1, 1], seed=7, stop="all").map(lambda sample: sample.key).to_torch_iterable()

    full = [key for batch in torch.utils.data.DataLoader(fresh(), batch_size=4) for key in batch]
    consumed, rest = interrupt_and_resume(fresh, batches=3)
    assert consumed + rest == full
