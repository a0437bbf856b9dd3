"""litdata 0.2.x as a reference of the local read benchmark, run under its own venv (`benchmarks.litdata_venv`).

The same samples as ``read_local`` (``read_local.shard_samples``: key, uint8 64x64x3 image, label) are written
once with litdata's ``optimize()`` into ``<data>/litdata/``, one chunk per shard of ours (``chunk_size`` =
shard size, one worker, so the chunks hold the same samples in the same order). A pass iterates
``StreamingDataset`` in this process, plain or shuffled, and counts each sample and its image bytes as our
loader's pass does. Iterating the dataset directly is litdata's fastest single-process face here:
``StreamingDataLoader`` with no worker adds a DataLoader step per sample, and its workers pickle every sample
back to the main process (both measured slower on this data), so the dataset is the stricter reference.

    <litdata venv>/bin/python -m benchmarks.litdata_reference --write [--samples N --shard-size M]
    <litdata venv>/bin/python -m benchmarks.litdata_reference --pass litdata-shuffled

Top-level imports are standard library only; litdata's own check for a newer version on PyPI is turned off.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

from benchmarks._measure import PassResult, measure, write_json

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from benchmarks.reference_dataset import Config

FORMAT = "litdata"
"""The dataset's folder under the run's data folder."""
PASSES = ("litdata", "litdata-shuffled")


def data_dir(config: Config) -> Path:
    """Where litdata's copy of the dataset lives."""
    return config.data / FORMAT


def _marker(config: Config) -> Path:
    return config.data / f"{FORMAT}.complete.json"


def is_written(config: Config) -> bool:
    """Whether litdata's copy was fully written for this config (its marker is written last)."""
    try:
        marker = json.loads(_marker(config).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return marker.get("samples") == config.samples and marker.get("shard_size") == config.shard_size


def chunk_files(config: Config) -> list[Path]:
    """litdata's chunk files of the dataset (its ``index.json`` aside)."""
    return sorted(data_dir(config).glob("*.bin"))


def _shard(shard: tuple[int, int]) -> Iterator[dict[str, Any]]:
    """optimize()'s function: the samples of shard ``(index, shard size)``, one item each (a generator)."""
    from benchmarks.reference_dataset import shard_samples

    yield from shard_samples(*shard)


def write(config: Config) -> None:
    """Write the dataset with litdata's optimize(), then the marker; `RuntimeError` on a wrong chunk count."""
    from litdata import optimize

    target = data_dir(config)
    shutil.rmtree(target, ignore_errors=True)
    _marker(config).unlink(missing_ok=True)
    optimize(
        fn=_shard,
        inputs=[(index, config.shard_size) for index in range(config.shards)],
        output_dir=str(target),
        chunk_size=config.shard_size,
        num_workers=1,
        verbose=False,
    )
    files = chunk_files(config)
    if len(files) != config.shards:
        raise RuntimeError(f"optimize() wrote {len(files)} chunks to {target}, expected {config.shards}")
    info = {
        "samples": config.samples,
        "shard_size": config.shard_size,
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
    }
    write_json(_marker(config), info)


def _weigh(sample: dict[str, Any]) -> tuple[int, int]:
    return 1, sample["image"].nbytes


def read_pass(config: Config, shuffled: bool) -> PassResult:
    """One timed pass over ``StreamingDataset`` (created inside the timed region, as our loader's stream)."""
    from litdata import StreamingDataset

    from benchmarks.reference_dataset import SEED

    url = str(data_dir(config))

    def stream() -> StreamingDataset:
        return StreamingDataset(url, shuffle=shuffled, seed=SEED)

    return measure("litdata-shuffled" if shuffled else "litdata", stream, _weigh)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # no request to PyPI in a timed pass
    from benchmarks.read_local import parse_run_args

    def write_flag(parser: Any) -> None:
        parser.add_argument("--write", action="store_true", help="write litdata's copy of the dataset")

    args, config = parse_run_args(argv, "litdata_reference", __doc__ or "", PASSES, configure=write_flag)
    if args.write:
        write(config)
    elif args.pass_name:
        print(read_pass(config, shuffled=args.pass_name == "litdata-shuffled").to_json(), flush=True)
    else:
        raise SystemExit("give --write or --pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
