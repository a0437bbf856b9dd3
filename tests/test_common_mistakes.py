"""A new user's mistakes get a clear error naming what and where, never zero samples and exit 0.

Each case runs on both faces (the sync loader and its async twin), on local disk, memory:// and a real GCS
server where the mistake can be made there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from squirrel.bulk import write_shards
from squirrel.driver import JsonlLoader, MessagePackDataLoader, RecordLoader
from tests.helpers import make_samples


def read(face: str, loader_class: type[RecordLoader], url: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Every sample of ``loader_class(url, *args).get_iter(**kwargs)`` on the sync face or its async twin."""
    if face == "sync":
        return list(loader_class(url, *args).get_iter(**kwargs))

    async def run() -> list[Any]:
        async with loader_class.async_class(url, *args) as loader:
            return await loader.get_iter(**kwargs).collect()

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_store_that_does_not_exist_is_an_error_naming_it(face: str, store_url: str) -> None:
    typo = store_url + "-typo"
    with pytest.raises(FileNotFoundError, match="nothing is there") as error:
        read(face, MessagePackDataLoader, typo)
    assert typo in str(error.value) and "'.msgpack'" in str(error.value) and "allow_empty=True" in str(error.value)
    assert read(face, MessagePackDataLoader, typo, allow_empty=True) == []


def test_a_url_without_its_gs_prefix_says_how_to_name_a_bucket(
    face: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path that names nothing here
    with pytest.raises(FileNotFoundError, match="A bucket is read as gs://my-bucket/images"):
        read(face, MessagePackDataLoader, "my-bucket/images")


def test_the_wrong_driver_or_compression_names_what_would_read_it(face: str, store_url: str) -> None:
    write_shards(make_samples(20), store_url, shard_size=5, compression="gzip")
    MessagePackDataLoader(store_url, "gzip").get_store().drop_index()  # no index: the objects are listed
    with pytest.raises(FileNotFoundError) as plain:
        read(face, MessagePackDataLoader, store_url)
    assert "no object ending in '.msgpack'" in str(plain.value)
    assert "4 ending in '.msgpack.gz' (driver 'messagepack', compression='gzip')" in str(plain.value)
    with pytest.raises(FileNotFoundError, match=r"no object ending in '\.jsonl'.*'\.msgpack\.gz'"):
        read(face, JsonlLoader, store_url)
    assert len(read(face, MessagePackDataLoader, store_url, "gzip")) == 20


def test_an_index_of_another_format_is_named(face: str, store_url: str) -> None:
    write_shards(make_samples(20), store_url, shard_size=5, compression="gzip")
    with pytest.raises(ValueError, match="compression='gzip'"):
        read(face, MessagePackDataLoader, store_url)


def test_a_folder_of_other_files_says_so(face: str, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a shard")
    with pytest.raises(FileNotFoundError, match=r"1 other file\(s\) \('notes.txt'\), none of them squirrel's"):
        read(face, MessagePackDataLoader, str(tmp_path))


@pytest.mark.parametrize("loader_class", [MessagePackDataLoader, JsonlLoader])
def test_a_get_iter_typo_names_the_class_called_and_the_closest_keyword(face: str, loader_class: type) -> None:
    loader = loader_class("memory://typo") if face == "sync" else loader_class.async_class("memory://typo")
    with pytest.raises(TypeError) as error:
        loader.get_iter(shufle_item_buffer=10)
    assert str(error.value) == (
        f"{type(loader).__name__}.get_iter() got an unexpected keyword argument 'shufle_item_buffer'; "
        "did you mean 'shuffle_item_buffer'?"
    )


def test_a_zstd_store_read_without_its_compression_names_it(face: str, store_url: str) -> None:
    write_shards(make_samples(10), store_url, shard_size=5, compression="zstd")
    MessagePackDataLoader(store_url, "zstd").get_store().drop_index()
    with pytest.raises(
        FileNotFoundError, match=r"2 ending in '\.msgpack\.zst' \(driver 'messagepack', compression='zstd'\)"
    ):
        read(face, MessagePackDataLoader, store_url)
