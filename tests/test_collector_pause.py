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


@pytest.fixture
def collector_while_decoding(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector was on at each decode of a messagepack object."""
    seen: list[bool] = []
    decode = MessagepackCodec.decode

    def spied(self: MessagepackCodec, data: Any, source: str) -> list[Sample]:
        seen.append(gc.isenabled())
        return decode(self, data, source)

    monkeypatch.setattr(MessagepackCodec, "decode", spied)
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
