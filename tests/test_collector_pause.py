"""A pass pauses Python's cycle collector while it decodes an object, and leaves it as it found it."""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from squirrel.aio import AsyncMessagepackLoader
from squirrel.codec import MessagepackCodec
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard
from squirrel.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.codec.messagepack import SampleChunk


@pytest.fixture
def collector_while_decoding(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector was on at each decode of a messagepack object."""
    seen: list[bool] = []
    decode = MessagepackCodec.decode_chunk

    def spied(self: MessagepackCodec, data: Any, source: str) -> SampleChunk:
        seen.append(gc.isenabled())
        return decode(self, data, source)

    monkeypatch.setattr(MessagepackCodec, "decode_chunk", spied)
    return seen


@pytest.fixture
def collector_on() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()  # whatever a failing test left


def _fill(url: str, shards: int = 3) -> None:
    store = MessagepackStore(url)
    for s in range(shards):
        store.set(Shard([Sample({"x": np.full(4, s * 10 + i)}, f"s{s}_{i}") for i in range(5)], f"sh{s}"))


def _read(url: str, face: str) -> list[str]:
    if face == "sync":
        return [sample.key for sample in MessagePackDataLoader(url).get_iter()]

    async def keys() -> list[str]:
        async with AsyncMessagepackLoader(url) as loader:
            return [sample.key async for sample in loader.get_iter()]

    return asyncio.run(keys())


@pytest.mark.parametrize("face", ["sync", "async"])
def test_decoding_pauses_the_collector_and_turns_it_back_on(
    store_url: str, face: str, collector_on: None, collector_while_decoding: list[bool]
) -> None:
    _fill(store_url)
    assert len(_read(store_url, face)) == 15
    assert collector_while_decoding == [False] * 3
    assert gc.isenabled()


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_collector_the_user_turned_off_stays_off(tmp_path: Any, face: str, collector_on: None) -> None:
    _fill(str(tmp_path))
    gc.disable()
    assert len(_read(str(tmp_path), face)) == 15
    assert not gc.isenabled()


def test_a_corrupt_object_leaves_the_collector_on(tmp_path: Any, collector_on: None) -> None:
    _fill(str(tmp_path))
    (tmp_path / "sh1.msgpack").write_bytes(b"SQMP" + b"\0" * 40)
    with pytest.raises(DecodeError, match=r"sh1\.msgpack"):
        _read(str(tmp_path), "sync")
    assert gc.isenabled()


def _samples_alive() -> int:
    return sum(type(item) is Sample for item in gc.get_objects())


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_pass_makes_each_sample_as_it_is_taken(store_url: str, face: str) -> None:
    # a shard's samples made all at once outlived the collections their allocation set off and, moved up
    # the generations, brought on full collections of the heap; made as taken, only the one in hand exists
    store = MessagepackStore(store_url)
    store.set(Shard([Sample({"x": np.full(4, i)}, f"k{i:03d}") for i in range(200)], "only"))
    gc.collect()
    before = _samples_alive()
    if face == "sync":
        samples = iter(MessagePackDataLoader(store_url).get_iter())
        first = next(samples)
        alive = _samples_alive() - before
        rest = [sample.key for sample in samples]
    else:

        async def read() -> tuple[Sample, int, list[str]]:
            async with AsyncMessagepackLoader(store_url) as loader:
                stream = aiter(loader.get_iter())
                first = await anext(stream)
                alive = _samples_alive() - before
                return first, alive, [sample.key async for sample in stream]

        first, alive, rest = asyncio.run(read())
    assert alive <= 2, f"{alive} samples made before the first was taken"
    assert [first.key, *rest] == [f"k{i:03d}" for i in range(200)]


def test_a_sample_chunk_is_a_sequence_of_fresh_samples() -> None:
    codec = MessagepackCodec()
    data = codec.encode([Sample({"x": np.arange(i + 1)}, f"k{i}") for i in range(5)])
    chunk = codec.decode_chunk(data, "mem://x")
    assert len(chunk) == 5 and repr(chunk) == "SampleChunk(5 samples)"
    assert [sample.key for sample in chunk] == [f"k{i}" for i in range(5)]
    assert chunk[2].key == "k2" and (chunk[-1].value["x"] == np.arange(5)).all()
    assert [sample.key for sample in chunk[1:3]] == ["k1", "k2"]
    assert chunk[0] is not chunk[0] and chunk[0].value is chunk[0].value  # a new Sample, the same value
    decoded = codec.decode(data, "mem://x")
    assert isinstance(decoded, list) and [s.key for s in decoded] == [s.key for s in chunk]
