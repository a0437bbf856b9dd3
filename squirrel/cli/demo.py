"""`squirrel demo` and `make demo`: write 10,000 samples as 10 messagepack shards on local disk, stream them
back, report speed (the read timed as `squirrel bench` times it: `squirrel.cli.measure`).

Run it as ``squirrel demo [FOLDER]`` or ``python -m squirrel.demo [FOLDER]`` (default: ./demo-data). The
folder becomes the demo's own: it must be missing or empty the first time, and the demo marks it with a
`MARKER` file. A later run on a marked folder replaces what the earlier one wrote, so ``make demo`` can run
again and again. A folder holding anything the demo did not write is refused, and nothing in it is touched.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from squirrel.aio.stores.local import TEMP_SUFFIX
from squirrel.cli.measure import MEASURED, measure_read
from squirrel.cli.output import emit
from squirrel.driver import MessagePackDataLoader, MessagepackStore, Sample, Shard

if TYPE_CHECKING:
    import argparse

__all__ = [
    "IMAGE_SHAPE",
    "MARKER",
    "SAMPLES",
    "SHARDS",
    "WARM_PROCESS",
    "claim_folder",
    "cmd_demo",
    "main",
    "make_shards",
    "rate",
]

SAMPLES = 10_000
SHARDS = 10
IMAGE_SHAPE = (64, 64, 3)

MARKER = "SQUIRREL_DEMO"
"""The file that marks a folder as the demo's own (no store suffix: it is never listed as a key)."""
_MARKER_TEXT = "Written by `python -m squirrel.demo`, which replaces this folder's shards on every run.\n"
_OWN_NAME = re.compile(r"(shard_\d+\.msgpack)|(\.shard_\d+\.msgpack\.[0-9a-f]{32}" + re.escape(TEMP_SUFFIX) + ")")
"""A shard the demo writes, or the temp file such a write leaves when it is killed midway."""
_NAMES_SHOWN = 3

WARM_PROCESS = (
    "this process wrote the data just before, so the read's one-off start-up is already paid; "
    "`squirrel bench {folder} --passes 2` times a fresh process's first pass and a warm one the same way"
)
"""Why the demo's read is faster than a first `squirrel bench` of the same folder, and how to compare."""


def make_shards(rng: np.random.Generator, samples: int = SAMPLES, shards: int = SHARDS) -> list[Shard]:
    """The demo dataset: `samples` {"image": uint8 64x64x3, "label": int} samples in `shards` equal shards.

    `ValueError` unless `shards` is positive and divides `samples`.
    """
    if shards < 1 or samples % shards:
        raise ValueError(f"{samples} samples do not split into {shards} equal shards")
    per_shard = samples // shards
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
        for s in range(shards)
    ]


def rate(count: int, payload_bytes: int, seconds: float) -> str:
    """``N samples/s, M MB/s`` for the timed write (`payload_bytes`: the image bytes written)."""
    return f"{count / seconds:,.0f} samples/s, {payload_bytes / seconds / 1e6:,.1f} MB/s ({seconds:.2f} s)"


def claim_folder(root: Path) -> None:
    """Make `root` an empty folder of the demo's own: create (or take an empty) folder and mark it, or
    remove the shards an earlier run wrote into a marked one.

    `NotADirectoryError` if `root` is a file. `FileExistsError` naming `root` and what it holds if it holds
    anything the demo did not write (an unmarked folder: anything at all): nothing is removed then.
    """
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"demo folder {root} is a file: pass a folder the demo may own")
    root.mkdir(parents=True, exist_ok=True)
    names = set(os.listdir(root))
    own = {MARKER, *filter(_OWN_NAME.fullmatch, names)} if MARKER in names else set()
    if foreign := names - own:
        raise FileExistsError(
            f"refusing to write the demo into {root}: it holds {_listed(foreign)}, which the demo did not write "
            "(it only reuses a folder it created); pass a new or empty folder"
        )
    for name in names - {MARKER}:
        (root / name).unlink()
    (root / MARKER).write_text(_MARKER_TEXT)


def _listed(names: set[str]) -> str:
    """A few of `names`, for a message."""
    ordered = sorted(names)
    shown = ", ".join(repr(name) for name in ordered[:_NAMES_SHOWN])
    return shown if len(ordered) <= _NAMES_SHOWN else f"{shown} and {len(ordered) - _NAMES_SHOWN} more"


def main(folder: str = "demo-data", *, samples: int = SAMPLES, shards: int = SHARDS) -> None:
    """Write `samples` samples in `shards` shards into `folder`, read them back, check the count and print
    the figures and what they measure. Raises what `claim_folder` raises for a folder the demo may not use;
    `SystemExit` if the read finds another number of samples."""
    root = Path(folder).resolve()
    claim_folder(root)
    dataset = make_shards(np.random.default_rng(0), samples, shards)
    payload = samples * int(np.prod(IMAGE_SHAPE))

    store = MessagepackStore(str(root))
    started = time.perf_counter()
    for shard in dataset:
        store.set(shard)
    written = rate(samples, payload, time.perf_counter() - started)
    emit(f"write: {samples:,} samples in {shards} shards to {root}: {written}")

    timing = measure_read(MessagePackDataLoader(str(root)).get_iter())
    if timing.samples != samples or timing.first is None:
        raise SystemExit(f"read back {timing.samples} samples, expected {samples}")
    emit(f"read:  {timing.figures()}")
    emit(f"measured: {MEASURED}")
    emit(WARM_PROCESS.format(folder=root))
    first, image = timing.first, timing.first.value["image"]
    emit(f"first sample: key={first.key!r} image={image.dtype}{list(image.shape)} label={first.value['label']}")


def cmd_demo(args: argparse.Namespace) -> None:
    """`squirrel demo [FOLDER]`: `main` on ``args.folder``."""
    main(args.folder)
