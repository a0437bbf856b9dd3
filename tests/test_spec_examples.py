"""The examples of the user's document (spec/driver.rst) about stores and loaders, run as written.

Only the URLs are pointed at test locations and the numpy typo of the second example is fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from squirrel.driver import MessagepackStore


def test_record_driver_examples(gcs_url: str, tmp_path) -> None:
    from squirrel.driver import RecordLoader, RecordStore, Sample

    url = gcs_url
    RecordStore(url).set(Sample({"image": np.zeros((2, 2)), "split": "train"}, key="seed_sample"))

    for sample in RecordLoader(url).get_iter():
        assert isinstance(sample, Sample)

    record_store = RecordLoader(url).get_store()
    assert isinstance(record_store, RecordStore)

    store = RecordStore(str(tmp_path / "path/to/store"))
    samp = Sample(key="my_key", value={"image": np.random.random((100, 100, 3)), "split": "train", "meta": {}})
    store.set(samp)
    retrieved_sample = list(store.get("my_key"))[0]
    assert isinstance(sample, Sample)
    assert list(store.keys()) == ["my_key"]

    assert isinstance(retrieved_sample, Sample)
    np.testing.assert_array_equal(retrieved_sample.value["image"], samp.value["image"])


def test_messagepack_store_example(tmp_path) -> None:
    from squirrel.driver import Sample, Shard

    store = MessagepackStore(str(tmp_path / "home/user/store"))
    s1 = Sample(key="my_key", value={"image": np.random.random((100, 100, 3)), "split": "train", "meta": {}})
    s2 = Sample(key="another_key", value={"image": np.random.random((100, 100, 3)), "split": "train", "meta": {}})
    shard = Shard(key="shard_1", value=[s1, s2])
    store.set(shard)
    retrieved_shard = list(store.get("shard_1"))
    assert len(retrieved_shard) == 2  # it retrieves individual samples within the shard
    assert isinstance(retrieved_shard[0], Sample)
    assert list(store.keys()) == ["shard_1"]

    # This is for illustrative purpose only, please use MessagePackDataLoader for reading data (see below)
    for k in store.keys():
        for sam in store.get(k):
            print(sam)


def test_jsonl_store_example(tmp_path) -> None:
    """ "Replacing MessagepackStore with JsonlStore in the above example would work the same way."""
    from squirrel.driver import JsonlStore, Sample, Shard

    store = JsonlStore(str(tmp_path / "home/user/store"))
    s1 = Sample(key="my_key", value={"image": np.random.random((100, 100, 3)), "split": "train", "meta": {}})
    s2 = Sample(key="another_key", value={"image": np.random.random((100, 100, 3)), "split": "train", "meta": {}})
    shard = Shard(key="shard_1", value=[s1, s2])
    store.set(shard)
    retrieved_shard = list(store.get("shard_1"))
    assert len(retrieved_shard) == 2
    assert isinstance(retrieved_shard[0], Sample)
    assert list(store.keys()) == ["shard_1"]


def test_loader_example(gcs_url: str) -> None:
    from squirrel.driver import MessagePackDataLoader, RecordStore, Sample, Shard

    MessagepackStore(gcs_url).set(
        Shard(
            [Sample({"split": "train" if i % 3 else "test", "x": np.arange(3) + i}, key=f"k{i}") for i in range(25)],
            key="shard_a",
        )
    )

    from squirrel.iterstream.base import Composable

    url = gcs_url
    record_loader = MessagePackDataLoader(url=url)
    it = record_loader.get_iter()
    assert isinstance(it, Composable)  # same for JsonlLoader, RecordLoader
    rec_store = record_loader.get_store()
    assert isinstance(rec_store, RecordStore)

    def _transform(sample):
        return sample

    batches = []
    for batch in it.filter(lambda sample: sample.values["split"] == "train").map(_transform).batched(10):
        # train your model
        batches.append(batch)

    assert [len(b) for b in batches] == [10, 6]
    assert all(s.values["split"] == "train" for b in batches for s in b)


def test_every_loader_returns_a_composable_and_a_record_store(tmp_path) -> None:
    from squirrel.driver import JsonlLoader, MessagePackDataLoader, RecordLoader, RecordStore
    from squirrel.iterstream.base import Composable

    for loader_class in (JsonlLoader, MessagePackDataLoader, RecordLoader):
        loader = loader_class(str(tmp_path / loader_class.__name__))
        assert isinstance(loader.get_iter(), Composable)
        assert isinstance(loader.get_store(), RecordStore)
        assert loader.get_iter(allow_empty=True).collect() == []
        with pytest.raises(FileNotFoundError, match="nothing is there"):
            loader.get_iter().collect()  # an empty (or mistyped) store is not silently zero samples
