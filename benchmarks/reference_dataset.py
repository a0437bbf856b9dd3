"""The dataset of the local read benchmarks, which our loader and every reference read: its samples, its
formats on disk, written once under ``benchmarks/.work/`` and reused while complete.

Samples are ``{"key", "image": uint8 64x64x3, "label": int}``, the same on every call and in every venv
(numpy only). Top-level imports are standard library only: squirrel-core's venv imports this module to
write its format with squirrel-core's own API (`write_core`), which must not meet this repo's ``squirrel``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._measure import write_json
from benchmarks.core_venv import CORE_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK = REPO_ROOT / "benchmarks" / ".work"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "read_local.json"

IMAGE_SHAPE = (64, 64, 3)
IMAGE_BYTES = 64 * 64 * 3
SEED = 0

FORMATS = {"ours": ".msgpack", "ours-gzip": ".msgpack.gz", "plain": ".msgpack", "core": ".gz"}
"""Dataset format -> suffix of its shard files; each format lives in ``<data>/<format>/``."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Size of one run."""

    samples: int = 20_000
    shard_size: int = 1_000
    rounds: int = 5

    def __post_init__(self) -> None:
        if self.samples % self.shard_size:
            raise ValueError("samples must be a multiple of shard_size")

    @property
    def shards(self) -> int:
        return self.samples // self.shard_size

    @property
    def data(self) -> Path:
        return WORK / f"read_local-{self.samples}"

    @property
    def small(self) -> bool:
        return self.samples < Config.samples

    @property
    def results(self) -> Path:
        """Where the figures go: smoke runs stay in the git-ignored work folder."""
        return WORK / "read_local-small.json" if self.small else RESULTS


# -- dataset ---------------------------------------------------------------------------------------


def size_args(config: Config) -> list[str]:
    """The command-line flags giving a pass the size of `config`."""
    return ["--samples", str(config.samples), "--shard-size", str(config.shard_size)]


def shard_key(index: int) -> str:
    return f"shard-{index:04d}"


def shard_samples(index: int, shard_size: int) -> list[dict[str, Any]]:
    """The samples of shard `index`, the same on every call and in every venv."""
    import numpy as np

    rng = np.random.default_rng([SEED, index])
    images = rng.integers(0, 256, size=(shard_size, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 1000, size=shard_size)
    first = index * shard_size
    return [{"key": f"{first + i:06d}", "image": images[i].copy(), "label": int(labels[i])} for i in range(shard_size)]


def _marker(config: Config, fmt: str) -> Path:
    return config.data / f"{fmt}.complete.json"


def shard_files(config: Config, fmt: str) -> list[Path]:
    """The shard files of one format, sorted."""
    return sorted(p for p in (config.data / fmt).glob(f"*{FORMATS[fmt]}") if not p.name.startswith("."))


def is_complete(config: Config, fmt: str) -> bool:
    """Whether format `fmt` was fully written for this config (its marker is written last)."""
    try:
        marker = json.loads(_marker(config, fmt).read_text())
    except (FileNotFoundError, ValueError):
        return False
    expected = {"samples": config.samples, "shard_size": config.shard_size}
    return {k: marker.get(k) for k in expected} == expected and len(shard_files(config, fmt)) == config.shards


def _mark_complete(config: Config, fmt: str) -> None:
    files = shard_files(config, fmt)
    info = {
        "samples": config.samples,
        "shard_size": config.shard_size,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    write_json(_marker(config, fmt), info)


def mean_shard_bytes(config: Config, fmt: str) -> float:
    """Mean stored size of a shard of `fmt`."""
    marker = json.loads(_marker(config, fmt).read_text())
    return marker["bytes"] / marker["files"]


def _write_ours(config: Config, formats: list[str]) -> None:
    """Write our formats (and the plain msgpack copy) from one generation of each shard."""
    import msgpack
    import msgpack_numpy

    from squirrel.driver import MessagepackStore, Sample, Shard

    stores = {
        fmt: MessagepackStore(str(config.data / fmt), compression=None if fmt == "ours" else "gzip")
        for fmt in formats
        if fmt != "plain"
    }
    for index in range(config.shards):
        samples = shard_samples(index, config.shard_size)
        for store in stores.values():
            store.set(Shard([Sample(value=s, key=s["key"]) for s in samples], key=shard_key(index)))
        if "plain" in formats:
            data = msgpack.packb(samples, default=msgpack_numpy.encode)
            (config.data / "plain" / f"{shard_key(index)}{FORMATS['plain']}").write_bytes(data)


def write_core(config: Config) -> None:
    """Write the squirrel-core dataset with squirrel-core's API (run under the core venv's python)."""
    driver_class = _import_core_driver()
    store = driver_class(str(config.data / "core")).store
    for index in range(config.shards):
        store.set(shard_samples(index, config.shard_size), key=shard_key(index))


def ensure_dataset(config: Config, core_python: Path) -> list[str]:
    """Write every format that is missing or incomplete; returns the formats written."""
    missing = [fmt for fmt in FORMATS if not is_complete(config, fmt)]
    for fmt in missing:
        shutil.rmtree(config.data / fmt, ignore_errors=True)
        _marker(config, fmt).unlink(missing_ok=True)
        (config.data / fmt).mkdir(parents=True)
    if ours := [fmt for fmt in missing if fmt != "core"]:
        _write_ours(config, ours)
    if "core" in missing:
        command = [str(core_python), "-m", "benchmarks.read_local", "--write-core", *size_args(config)]
        subprocess.run(command, cwd=REPO_ROOT, check=True)
    for fmt in missing:
        _mark_complete(config, fmt)
    return missing


def warm_page_cache(config: Config) -> None:
    """Read every shard file once, so every pass reads from the page cache."""
    for fmt in FORMATS:
        for path in shard_files(config, fmt):
            path.read_bytes()


def _import_core_driver() -> type:
    """squirrel-core's `MessagepackDriver`, never this repo's package (which the cwd on sys.path would shadow it
    with); refuses to run outside the core venv."""
    if "squirrel" in sys.modules:
        raise RuntimeError("this repo's squirrel is imported already: cannot import squirrel-core")
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != REPO_ROOT]
    from importlib.metadata import PackageNotFoundError, version

    import squirrel
    from squirrel.driver import MessagepackDriver

    try:
        found = version("squirrel-core")
    except PackageNotFoundError:
        found = None
    if found != CORE_VERSION or not Path(squirrel.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()):
        raise RuntimeError(f"expected squirrel-core {CORE_VERSION}, got {found} at {squirrel.__file__}")
    return MessagepackDriver
