"""Small shared helpers for the test suite."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING, Any

import numpy as np

from squirrel.errors import DecodeError
from squirrel.sample import Sample, Shard

if TYPE_CHECKING:
    from collections.abc import Callable


def make_samples(n: int, prefix: str = "s", size: int = 4) -> list[Sample]:
    """`n` samples with a small uint8 image and an int label, keys ``{prefix}{i:05d}``."""
    rng = np.random.default_rng(n)
    return [
        Sample({"image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "label": i}, f"{prefix}{i:05d}")
        for i in range(n)
    ]


def make_shards(n_shards: int, per_shard: int) -> list[Shard]:
    """`n_shards` shards of `per_shard` samples each, keys ``shard_{i:03d}``, sample keys unique."""
    return [Shard(make_samples(per_shard, prefix=f"sh{i}_"), key=f"shard_{i:03d}") for i in range(n_shards)]


def assert_same_value(left: Any, right: Any) -> None:
    """Deep equality that understands numpy arrays (same dtype, shape and values)."""
    if isinstance(left, np.ndarray):
        assert isinstance(right, np.ndarray)
        assert left.dtype == right.dtype and left.shape == right.shape
        np.testing.assert_array_equal(left, right)
    elif isinstance(left, dict):
        assert isinstance(right, dict) and left.keys() == right.keys()
        for key in left:
            assert_same_value(left[key], right[key])
    elif isinstance(left, list | tuple):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            assert_same_value(a, b)
    else:
        assert left == right


def assert_same_samples(left: list[Sample], right: list[Sample]) -> None:
    """Same keys in the same order and the same values."""
    assert [s.key for s in left] == [s.key for s in right]
    for a, b in zip(left, right, strict=True):
        assert_same_value(a.value, b.value)


def interrupt_and_resume(
    fresh: Callable[[], Any], batches: int, batch_size: int = 4, num_workers: int = 0
) -> tuple[list[Any], list[Any]]:
    """Run a DataLoader over ``fresh()`` for `batches` batches, then resume a new ``fresh()`` from its
    `state_dict`; returns (items consumed before, items after the resume)."""
    import torch.utils.data

    dataset = fresh()
    consumed: list[Any] = []
    for count, batch in enumerate(torch.utils.data.DataLoader(dataset, batch_size, num_workers=num_workers), 1):
        consumed.extend(batch)
        if count == batches:
            break
    resumed = fresh()
    resumed.load_state_dict(
        dataset.state_dict(batches_consumed=batches, batch_size=batch_size, num_workers=num_workers)
    )
    loader = torch.utils.data.DataLoader(resumed, batch_size, num_workers=num_workers)
    return consumed, [item for batch in loader for item in batch]


def traced_peak(call: Any) -> tuple[Any, int]:
    """What `call()` returns (or the `DecodeError` it raises) and the peak of Python-allocated memory meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except DecodeError as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
