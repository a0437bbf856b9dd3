"""The read-buffer pool recycles only buffers nobody references, so held samples never change."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from squirrel.aio.buffer_pool import BufferPool
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard

SIZES = pytest.mark.parametrize("size", [1000, 3_000_000], ids=["small", "large"])  # a bytearray; a mapping


@SIZES
def test_a_held_view_is_never_reused(tmp_path, size: int) -> None:
    pool = BufferPool(max_buffers=2)
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"A" * size)
    second.write_bytes(b"B" * size)
    held = pool.read_file(str(first))
    for _ in range(5):
        other = pool.read_file(str(second))
        assert bytes(held) == b"A" * size and bytes(other) == b"B" * size
        del other
    assert len(pool._buffers) == 2


@SIZES
def test_a_released_buffer_is_reused(tmp_path, size: int) -> None:
    pool = BufferPool(max_buffers=4)
    path = tmp_path / "f"
    path.write_bytes(b"x" * size)
    buffers = set()
    for _ in range(10):
        view = pool.read_file(str(path))
        buffers.add(id(view.obj))
        assert np.frombuffer(view, np.uint8).sum() == ord("x") * size  # decoded arrays are views of it
        del view
        gc.collect()
    assert len(buffers) == 1


def test_samples_kept_from_a_stream_keep_their_values(tmp_path) -> None:
    store = MessagepackStore(str(tmp_path))
    for s in range(12):
        store.set(
            Shard([Sample({"x": np.full(256, s * 100 + i, np.int64)}, f"s{s}_{i}") for i in range(3)], f"sh{s:02d}")
        )
    kept = [sample for n, sample in enumerate(MessagePackDataLoader(str(tmp_path)).get_iter(prefetch=2)) if n % 5 == 0]
    for sample in kept:
        shard, index = (int(part) for part in sample.key[1:].split("_"))
        assert (sample.value["x"] == shard * 100 + index).all()


def test_sizes_a_few_bytes_apart_share_one_buffer() -> None:
    # shards differ by a few bytes (keys of different lengths): exact-size buffers left the pooled one too
    # small for the next shard, and the pool grew by a buffer per size (its memory with it)
    pool = BufferPool(max_buffers=8)
    for size in [12_364_672, 12_364_736, 12_364_600, 12_364_800]:
        view = pool.take(size)
        assert len(view) == size
        del view
    assert len(pool._buffers) == 1


def test_a_free_buffer_too_small_is_replaced_not_kept() -> None:
    pool = BufferPool(max_buffers=8)
    small = pool.take(1000)
    del small
    large = pool.take(4_000_000)
    assert len(pool._buffers) == 1 and pool._buffers[0] is large.obj


def test_a_loader_keeps_its_buffers_from_epoch_to_epoch(tmp_path) -> None:
    # a pool per pass faulted in fresh memory every epoch (measured: 18k page faults per 20-shard pass)
    store = MessagepackStore(str(tmp_path))
    for s in range(6):
        store.set(Shard([Sample({"x": np.full(40_000, s, np.int64)}, f"s{s}_{i}") for i in range(4)], f"sh{s:02d}"))
    loader = MessagePackDataLoader(str(tmp_path))  # shards of 1.3 MB: large, read into pooled buffers
    stream = loader.get_iter(prefetch=2)
    for _ in stream:
        pass
    buffers = [id(buffer) for buffer in stream.aio.pool._buffers]
    assert buffers
    for epoch in range(3):  # the same stream again, and a new stream per epoch as training loops make them
        for _ in stream if epoch == 0 else loader.get_iter(prefetch=2, seed=epoch, shuffle_key_buffer=6):
            pass
        kept = [id(buffer) for buffer in stream.aio.pool._buffers]
        assert set(buffers) <= set(kept)  # the first epoch's buffers serve the later ones


def test_a_pool_pickles_empty() -> None:
    import pickle

    pool = BufferPool(max_buffers=3)
    view = pool.take(1000)
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.max_buffers == 3 and copy._buffers == [] and len(copy.take(10)) == 10
    del view


def test_a_small_buffer_is_made_to_size() -> None:
    # a sample keeps its object's buffer alive: a 1 KB record must not pin a rounded-up 256 KiB
    view = BufferPool(max_buffers=2).take(1000)
    assert len(view.obj) == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is what shares memory with a child")
def test_a_forked_child_writes_its_own_copy_of_a_buffer() -> None:
    # a pool's buffers were shared mappings: a DataLoader worker forked from a process whose stream had
    # read before reused the parent's free buffers and wrote into the parent's memory (and its siblings')
    pool = BufferPool(max_buffers=1)
    held = pool.take(1_000_000)
    held[:] = b"p" * len(held)
    child = os.fork()
    if child == 0:  # the child lets go of its copy of the sample, so the buffer is free there
        del held
        reused = pool.take(1_000_000)
        reused[:] = b"c" * len(reused)
        os._exit(0 if reused.obj is pool._buffers[0] else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bytes(held) == b"p" * len(held)
