"""`write_shards`: shards written concurrently on the IO loop or as dask tasks, then indexed once."""

from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pytest
from distributed import Client, LocalCluster

from squirrel.aio import bulk as aio_bulk
from squirrel.bulk import write_shards
from squirrel.driver import JsonlStore, MessagePackDataLoader, MessagepackStore, Sample
from squirrel.errors import EncodeError
from tests.helpers import assert_same_samples, make_samples

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator

N = 2345  # not a multiple of the shard size


@pytest.fixture(scope="module")
def dask_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """One two-process dask cluster for the module. When a gs:// test will run, the GCS server starts first,
    so the worker processes inherit STORAGE_EMULATOR_HOST."""
    module_items = [item for item in request.session.items if item.module is request.module]
    if any(item.get_closest_marker("gcs") for item in module_items):
        request.getfixturevalue("gcs_server")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
    gc.collect()  # close the cluster's sockets now, not during a later test that counts file descriptors


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store URL that worker processes can reach too (memory:// is per process)."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("gcs_url")


def check_written(url: str, keys: list[str], samples: list[Sample], shard_size: int) -> None:
    """Deterministic keys, every sample once and in order, an index with the right counts."""
    expected_keys = [f"shard_{i:06d}" for i in range(-(-len(samples) // shard_size))]
    assert keys == expected_keys
    store = MessagepackStore(url)
    index = store.read_index()
    assert index is not None and index.keys == expected_keys
    counts = [entry.samples for entry in index.entries]
    assert counts == [shard_size] * (len(counts) - 1) + [len(samples) - shard_size * (len(counts) - 1)]
    assert store.count_samples() == len(samples)
    assert_same_samples(list(MessagePackDataLoader(url).get_iter()), samples)


def test_write_on_the_io_loop(store_url: str) -> None:
    samples = make_samples(N)
    keys = write_shards(iter(samples), store_url, shard_size=500, max_concurrency=3)
    check_written(store_url, keys, samples, 500)


def test_write_with_dask(shared_url: str, dask_client: Client) -> None:
    if shared_url.startswith("gs://"):
        endpoints = dask_client.run(os.environ.get, "STORAGE_EMULATOR_HOST")
        assert set(endpoints.values()) == {os.environ["STORAGE_EMULATOR_HOST"]}
    samples = make_samples(N)
    keys = write_shards(samples, shared_url, shard_size=400, executor=dask_client, max_concurrency=4)
    check_written(shared_url, keys, samples, 400)


def test_write_on_a_thread_pool(tmp_path) -> None:
    samples = make_samples(N)
    with ThreadPoolExecutor(3) as pool:
        keys = write_shards(samples, str(tmp_path), shard_size=1000, executor=pool)
    check_written(str(tmp_path), keys, samples, 1000)


def test_dask_write_error_reaches_the_caller(tmp_path, dask_client: Client) -> None:
    values = [{"ok": 1}] * 10 + [{"bad": np.array([object()], dtype=object)}]
    with pytest.raises(EncodeError, match="object"):
        write_shards(values, str(tmp_path), shard_size=5, executor=dask_client)
    assert MessagepackStore(str(tmp_path)).read_index() is None  # no index for a failed write


def test_plain_values_jsonl_gzip_and_prefix(store_url: str) -> None:
    keys = write_shards(({"i": i} for i in range(7)), store_url, 3, driver="jsonl", compression="gzip", key_prefix="p")
    assert keys == ["p_000000", "p_000001", "p_000002"]
    store = JsonlStore(store_url, "gzip")
    assert [s.value["i"] for key in store.keys() for s in store.get(key)] == list(range(7))
    assert [entry.samples for entry in store.read_index().entries] == [3, 3, 1]


def test_samples_are_drawn_lazily(tmp_path) -> None:
    url, shard_size, max_concurrency = str(tmp_path), 10, 2
    ahead = []

    def samples() -> Iterator[dict[str, int]]:
        for i in range(400):
            if i % shard_size == 0:
                written = len([name for name in os.listdir(url) if name.endswith(".msgpack")])
                ahead.append(i // shard_size - written)
            yield {"i": i}

    assert len(write_shards(samples(), url, shard_size, max_concurrency=max_concurrency)) == 40
    assert max(ahead) <= max_concurrency + 2  # shards in flight, one in the operator, one being drawn


def test_an_encode_error_stops_the_write(tmp_path) -> None:
    values = [{"ok": 1}] * 5 + [{"bad": np.array([object()], dtype=object)}]
    with pytest.raises(EncodeError):
        write_shards(values, str(tmp_path), shard_size=2)
    assert MessagepackStore(str(tmp_path)).read_index() is None


def test_existing_objects_are_indexed_too(tmp_path) -> None:
    url = str(tmp_path)
    write_shards(make_samples(5), url, shard_size=5, key_prefix="old")
    write_shards(make_samples(3, prefix="n"), url, shard_size=2, key_prefix="new", mode="append")
    assert list(MessagepackStore(url).keys()) == ["new_000000", "new_000001", "old_000000"]
    assert MessagepackStore(url).count_samples() == 8


async def test_async_api_takes_async_iterables(store_url: str) -> None:
    async def samples() -> AsyncIterator[Sample]:
        for sample in make_samples(5):
            yield sample

    keys = await aio_bulk.write_shards(samples(), store_url, shard_size=2)
    assert keys == ["shard_000000", "shard_000001", "shard_000002"]
    async with aio_bulk.DRIVERS["messagepack"](store_url) as store:
        index = await store.read_index()
    assert index is not None and [e.samples for e in index.entries] == [2, 2, 1]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [({"shard_size": 0}, "shard_size"), ({"driver": "csv"}, "unknown driver"), ({"key_prefix": "a/b"}, "'/'")],
)
def test_bad_arguments(tmp_path, options: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        write_shards([1], str(tmp_path), **options)


class BadItemError(Exception):
    """Raised by `image_sample` for one item; must reach the caller as itself, with the shard named."""


def image_sample(i: int) -> Sample:
    """A sample made from an int alone (top level, so a dask worker can run it): the same for the same `i`."""
    if i == BAD_ITEM:
        raise BadItemError(f"item {i} is bad")
    image = np.random.default_rng(i).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return Sample({"image": image, "label": i, "pid": os.getpid()}, f"s{i:05d}")


BAD_ITEM = -7
"""The item `image_sample` refuses."""


def read_back(url: str) -> list[Sample]:
    """Every sample of the messagepack store at `url`, in key order."""
    return list(MessagePackDataLoader(url).get_iter())


def without_pid(samples: list[Sample]) -> list[Sample]:
    """`samples` without the ``pid`` field (which process made them), to compare what they hold."""
    return [Sample({k: v for k, v in s.value.items() if k != "pid"}, s.key) for s in samples]


def test_make_sample_builds_each_shard_from_items(store_url: str) -> None:
    keys = write_shards(range(N), store_url, shard_size=500, max_concurrency=3, make_sample=image_sample)
    assert keys == [f"shard_{i:06d}" for i in range(5)]
    index = MessagepackStore(store_url).read_index()
    assert index is not None and [e.samples for e in index.entries] == [500] * 4 + [N - 2000]
    assert_same_samples(without_pid(read_back(store_url)), without_pid([image_sample(i) for i in range(N)]))


def test_make_sample_on_a_thread_pool_matches_the_loop(tmp_path) -> None:
    local, pooled = str(tmp_path / "local"), str(tmp_path / "pooled")
    write_shards(range(N), local, shard_size=1000, make_sample=image_sample)
    with ThreadPoolExecutor(3) as pool:
        write_shards(range(N), pooled, shard_size=1000, make_sample=image_sample, executor=pool)
    assert_same_samples(read_back(pooled), read_back(local))


@pytest.mark.parametrize("items", [[*range(1200), BAD_ITEM, 5], iter([*range(1200), BAD_ITEM])])
def test_make_sample_error_names_the_shard(tmp_path, items: Iterable[int]) -> None:
    with pytest.raises(BadItemError, match="item -7 is bad") as caught:
        write_shards(items, str(tmp_path), shard_size=500, make_sample=image_sample)
    (note,) = caught.value.__notes__
    assert f"make_sample(-7) for item 200 of shard 'shard_000002' of {tmp_path}" in note
    assert MessagepackStore(str(tmp_path)).read_index() is None  # no index for a failed write


async def async_sample(i: int) -> Sample:
    return Sample({"i": i})


@pytest.mark.parametrize(
    ("options", "error", "complaint"),
    [
        ({"make_sample": 3}, TypeError, "make_sample must be a function of one item, got 3"),
        ({"make_sample": async_sample}, TypeError, "make_sample must be a plain function.*async_sample"),
        ({"executor": object()}, TypeError, "executor must have a submit method"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be >= 1, got 0"),
        ({"shard_size": "10"}, TypeError, "shard_size must be an int, got '10'"),
        ({"progress": "yes"}, TypeError, "progress must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, options: dict, error: type, complaint: str) -> None:
    url = str(tmp_path / "store")
    with pytest.raises(error, match=complaint):
        write_shards(range(3), url, **options)
    assert not os.path.exists(url)


def test_samples_that_are_not_iterable_are_refused(tmp_path) -> None:
    with pytest.raises(TypeError, match="samples must be an iterable or an async iterable of samples, got int"):
        write_shards(5, str(tmp_path))  # type: ignore[arg-type]


def test_progress_shows_samples_and_shards_with_the_total(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    write_shards(range(250), str(tmp_path / "sized"), shard_size=100, make_sample=image_sample, progress=True)
    shown = capsys.readouterr().err
    assert "250/250" in shown and "shards=3/3" in shown and "sample" in shown
    write_shards((image_sample(i) for i in range(250)), str(tmp_path / "stream"), shard_size=100, progress=True)
    shown = capsys.readouterr().err
    assert "250sample" in shown.replace(" ", "") and "shards=3" in shown and "/250" not in shown


def test_no_progress_by_default(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    write_shards(range(250), str(tmp_path), shard_size=100, make_sample=image_sample)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_loaders_stream_is_resharded(store_url: str, face: str) -> None:
    # write_shards(loader.get_iter(), url): a re-shard or conversion. A sync stream was iterated on the IO
    # loop, where its pass waits on that loop: RuntimeError before anything was written
    import asyncio

    from squirrel.aio import AsyncMessagepackLoader

    samples = make_samples(23)
    write_shards(iter(samples), store_url, shard_size=5)
    copy = store_url + "-copy"
    if face == "sync":
        keys = write_shards(MessagePackDataLoader(store_url).get_iter(), copy, shard_size=10, compression="gzip")
    else:

        async def reshard() -> list[str]:
            async with AsyncMessagepackLoader(store_url) as loader:
                return await aio_bulk.write_shards(loader.get_iter(), copy, shard_size=10, compression="gzip")

        keys = asyncio.run(reshard())
    assert keys == ["shard_000000", "shard_000001", "shard_000002"]
    assert_same_samples(list(MessagePackDataLoader(copy, compression="gzip").get_iter()), samples)


def test_a_failed_reshard_closes_the_loaders_pass(tmp_path) -> None:
    write_shards(iter(make_samples(30)), str(tmp_path / "in"), shard_size=5)
    stream = MessagePackDataLoader(str(tmp_path / "in")).get_iter().map(_fail_at_the_twentieth)
    with pytest.raises(BadItemError, match="twentieth"):
        write_shards(stream, str(tmp_path / "out"), shard_size=4)
    assert MessagepackStore(str(tmp_path / "out")).read_index() is None
    assert len(list(MessagePackDataLoader(str(tmp_path / "in")).get_iter())) == 30  # the runtime still serves


def _fail_at_the_twentieth(sample: Sample) -> Sample:
    if sample.key == make_samples(30)[19].key:
        raise BadItemError("the twentieth sample")
    return sample
