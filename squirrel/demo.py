"""`make demo`: write 10,000 samples as 10 messagepack shards on local disk, stream them back, report speed.

Run it as ``python -m squirrel.demo [FOLDER]`` (default: ./demo-data).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard

__all__ = ["IMAGE_SHAPE", "SAMPLES", "SHARDS", "main", "make_shards", "rate"]

SAMPLES = 10_000
SHARDS = 10
IMAGE_SHAPE = (64, 64, 3)


def make_shards(rng: np.random.Generator) -> list[Shard]:
    """The demo dataset: {"image": uint8 64x64x3, "label": int} samples, 1,000 per shard."""
    per_shard = SAMPLES // SHARDS
    return [
        Shard(
            [
                Sample(
                    {"image": rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8), "label": int(rng.integers(0, 10))},
                    key=f"sample_{s * per_shard + i:05d}",
                )
                for i in range(per_shard)
            ],
            key=f"shard_{s:02d}",
        )
        for s in range(SHARDS)
    ]


def rate(count: int, payload_bytes: int, seconds: float) -> str:
    """``N samples/s, M MB/s`` for a timed pass."""
    return f"{count / seconds:,.0f} samples/s, {payload_bytes / seconds / 1e6:,.1f} MB/s ({seconds:.2f} s)"


def main(folder: str = "demo-data") -> None:
    """Write, read back, check the count and print the figures."""
    root = Path(folder).resolve()
    shutil.rmtree(root, ignore_errors=True)
    shards = make_shards(np.random.default_rng(0))
    payload = SAMPLES * int(np.prod(IMAGE_SHAPE))

    store = MessagepackStore(str(root))
    started = time.perf_counter()
    for shard in shards:
        store.set(shard)
    written = rate(SAMPLES, payload, time.perf_counter() - started)
    print(f"write: {SAMPLES:,} samples in {SHARDS} shards to {root}: {written}")

    loader = MessagePackDataLoader(str(root))
    started = time.perf_counter()
    count = 0
    first: Sample | None = None
    for sample in loader.get_iter():
        first = first or sample
        count += 1
    elapsed = time.perf_counter() - started
    if count != SAMPLES or first is None:
        raise SystemExit(f"read back {count} samples, expected {SAMPLES}")
    print(f"read:  {count:,} samples via MessagePackDataLoader.get_iter(): {rate(count, payload, elapsed)}")
    image = first.value["image"]
    print(f"first sample: key={first.key!r} image={image.dtype}{list(image.shape)} label={first.value['label']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
