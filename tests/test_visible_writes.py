"""No write made through squirrel is invisible to its readers, and a re-run never mixes two datasets.

`set` and `delete` remove the store's index once they are done, `write_index` lists again after writing
and re-indexes when a writer changed the store meanwhile, and `write_shards` refuses a non-empty url unless
told to overwrite (the new index first, then the old objects go) or append. Each behaviour runs on local
disk, memory:// and a real GCS server, and the store behaviours on both faces.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from squirrel.aio import AsyncMessagepackStore
from squirrel.aio.fs import filesystem_class_and_options
from squirrel.aio.storage_options import split_protocol
from squirrel.bulk import write_shards
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Shard
from squirrel.errors import StoreChanged
from squirrel.index import INDEX_NAME
from tests.helpers import make_samples

if TYPE_CHECKING:
    from collections.abc import Iterator

    from squirrel.sample import Sample


def raw_filesystem(url: str) -> tuple[Any, str]:
    protocol, path = split_protocol(url)
    cls, options = filesystem_class_and_options(protocol, {})
    return cls(**options), path


class StoreFace:
    """`call(name, *args)` runs a store method on the sync `MessagepackStore` or on its async twin (in
    ``asyncio.run``, closing the store there)."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.name == "sync":
            result = getattr(MessagepackStore(self.url), method)(*args, **kwargs)
            return list(result) if method == "keys" else result

        async def run() -> Any:
            async with AsyncMessagepackStore(self.url) as store:
                result = getattr(store, method)(*args, **kwargs)
                if method == "keys":
                    return [key async for key in result]
                return await result

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, store_url: str) -> StoreFace:
    return StoreFace(request.param, store_url)


def loaded_keys(url: str, **options: Any) -> list[str]:
    return [sample.key for sample in MessagePackDataLoader(url, **options).get_iter()]


def shard(i: int, size: int = 10) -> Shard:
    return Shard(make_samples(size, prefix=f"sh{i}_"), key=f"shard_{i}")


def test_a_shard_set_after_indexing_is_read(face: StoreFace) -> None:
    for i in range(10):
        face.call("set", shard(i))
    face.call("write_index")
    face.call("set", shard(10))  # used to be skipped by loaders: 100 of 110 samples
    assert len(loaded_keys(face.url)) == 110
    assert len(loaded_keys(face.url, verify_checksums=True)) == 110
    assert face.call("read_index") is None  # the write removed it: readers list the store
    assert face.call("write_index").num_samples == 110
    assert len(loaded_keys(face.url)) == 110


def test_a_delete_after_indexing_is_seen(face: StoreFace) -> None:
    for i in range(3):
        face.call("set", shard(i))
    face.call("write_index")
    face.call("delete", "shard_1")
    assert face.call("keys") == ["shard_0", "shard_2"]
    assert len(loaded_keys(face.url)) == 20


def test_a_fresh_index_is_read_instead_of_listing(store_url: str) -> None:
    store = MessagepackStore(store_url)
    for i in range(2):
        store.set(shard(i))
    store.write_index()
    fs, root = raw_filesystem(store_url)
    fs.pipe_file(f"{root}/shard_9.msgpack", b"not listed")  # behind squirrel's back: the index does not know it
    assert list(store.keys()) == ["shard_0", "shard_1"]
    assert len(loaded_keys(store_url)) == 20


def test_an_index_written_while_a_writer_adds_a_shard_includes_it(store_url: str) -> None:
    """The writer's removal of the index lands before the index is written: `write_index` lists again, sees
    the new shard and indexes again."""

    class RacedStore(AsyncMessagepackStore):
        raced = False

        async def _write_index_object(self, data: bytes) -> None:
            if not self.raced:
                self.raced = True
                async with AsyncMessagepackStore(self.url) as writer:  # a second writer, all done meanwhile
                    await writer.set(shard(7))
            await super()._write_index_object(data)

    async def run() -> list[str]:
        async with RacedStore(store_url) as store:
            await store.set(shard(0))
            index = await store.write_index()
            assert (await store.read_index()) == index
            return index.keys

    assert asyncio.run(run()) == ["shard_0", "shard_7"]


def test_an_index_that_never_settles_is_removed() -> None:
    """A store that changes at every listing is never left with an index that misses a write."""

    class BusyStore(AsyncMessagepackStore):
        async def _write_index_object(self, data: bytes) -> None:
            await super()._write_index_object(data)
            await self.set(shard(len(await self.list_objects())), keep_index=True)

    async def run() -> None:
        async with BusyStore("memory://busy-store") as store:
            await store.set(shard(0))
            with pytest.raises(StoreChanged, match="kept changing"):
                await store.write_index()
            assert await store.read_index() is None

    asyncio.run(run())


# --- write_shards modes ----------------------------------------------------------------------------------------


def samples(n: int, prefix: str) -> list[Sample]:
    return make_samples(n, prefix=prefix)


def test_write_shards_refuses_a_non_empty_url_by_default(store_url: str) -> None:
    write_shards(samples(100, "old"), store_url, shard_size=10)
    with pytest.raises(FileExistsError, match="mode='overwrite'") as error:
        write_shards(samples(30, "new"), store_url, shard_size=10)
    assert store_url in str(error.value) and INDEX_NAME in str(error.value)
    assert len(loaded_keys(store_url)) == 100  # nothing lost, nothing added
    with pytest.raises(ValueError, match="unknown mode 'replace'"):
        write_shards(samples(1, "x"), store_url, mode="replace")  # type: ignore[arg-type]


def test_write_shards_refuses_a_folder_holding_anything(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        write_shards(samples(3, "a"), str(tmp_path), shard_size=2)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_the_dataset_and_readers_never_see_a_mix(store_url: str) -> None:
    write_shards(samples(100, "old"), store_url, shard_size=10)
    seen: list[list[str]] = []

    def new_samples() -> Iterator[Sample]:
        for i, sample in enumerate(samples(30, "new")):
            if i % 10 == 0 and i:  # shards of the new run are being written: a reader sees the old dataset
                seen.append(loaded_keys(store_url))
            yield sample

    keys = write_shards(new_samples(), store_url, shard_size=10, mode="overwrite", max_concurrency=1)
    assert keys == ["shard_000010", "shard_000011", "shard_000012"]  # numbered past the old shards
    assert seen and all(len(keys) == 100 and all(k.startswith("old") for k in keys) for keys in seen)
    read = loaded_keys(store_url)
    assert len(read) == 30 and all(key.startswith("new") for key in read)  # 30 written, 30 read back
    assert list(MessagepackStore(store_url).list_objects()) == keys  # the old objects are gone
    assert MessagepackStore(store_url).count_samples() == 30


def test_append_adds_to_the_dataset(store_url: str) -> None:
    write_shards(samples(25, "old"), store_url, shard_size=10)
    keys = write_shards(samples(15, "new"), store_url, shard_size=10, mode="append")
    assert keys == ["shard_000003", "shard_000004"]
    assert MessagepackStore(store_url).count_samples() == 40
    assert sorted(loaded_keys(store_url)) == sorted(s.key for s in samples(25, "old") + samples(15, "new"))
