"""Compression benchmark (issue 13): zstd against gzip and no compression, writing and reading shards.

Datasets, 8 shards of 256 samples ``{"image": uint8 64x64x3, "label": i}`` each (about 3 MB a shard):

- ``gradients``: smooth colour gradients, one pixel value in ten off by one (compressible, like rendered images);
- ``tokens``: int32 token ids drawn from a Zipf law, 3,072 per sample in place of the image (like text);
- ``random``: uniform random pixels (incompressible, like already-compressed images).

Per dataset and compression (None, "gzip", "zstd" at the parameters `squirrel.codec.zstd.zstd_parameters`
picks), on local disk (warm page cache):

- ``write`` (one thread, so the codec's CPU is what differs) writes every shard's ``compress(MessagepackCodec().
  encode(shard), c)`` to its file under ``benchmarks/.work/compression/``;
- ``read`` (codec level, one thread) reads every file back and ``MessagepackCodec().decode(decompress(data, c,
  path), path)``;
- ``loader read`` is what users see: one whole pass of ``MessagePackDataLoader(folder, compression=c).get_iter()``
  over the same files, where objects are read and inflated in worker threads beside the consumer (both cores);
- ``size`` is the stored bytes over the raw ones.

Throughput is raw (uncompressed) megabytes per second. Rounds are interleaved (each round runs every variant
once, in a rotated order; within a variant: write, read, loader read) and every ratio is taken within a round,
then reported as its median and spread (min-max) over the rounds.

Goals: zstd reads >= 3x gzip and >= 0.6x uncompressed, judged on the loader read (the codec-level read, one
thread, is printed beside it, not judged); zstd writes >= 3x gzip; zstd's size <= gzip's (level 6, gzip's
default) on the compressible datasets.

On ``random`` both codecs store the data (gzip's stored blocks, zstd's raw blocks) at copy speed, so against
gzip there is no 3x to find: reading uncompressed data is itself only about 2x a gzip read there (the
ceiling is printed each run). There zstd is judged not to be slower than gzip, reading or writing, and to
read at >= 0.6x uncompressed; its 3x ratios are printed, not judged.

    python -m benchmarks.compression            # full run: 7 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.compression   # smoke run: 2 shards a dataset, 1 round
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import MB, Goal
from benchmarks.read_local import WORK

if TYPE_CHECKING:
    from collections.abc import Callable

    from squirrel.sample import Sample

SHARDS = 8
PER_SHARD = 256
SIDE = 64
COMPRESSIONS: tuple[str | None, ...] = (None, "gzip", "zstd")
DATASETS = ("gradients", "tokens", "random")
SEED = 0
FOLDER = WORK / "compression"


def make_dataset(name: str, shards: int) -> list[list[Sample]]:
    """`shards` shards of `PER_SHARD` samples of dataset `name` (see the module docstring)."""
    import numpy as np

    from squirrel.sample import Sample

    rng = np.random.default_rng(SEED)
    ramp = np.linspace(0.0, 1.0, SIDE)
    out = []
    for shard in range(shards):
        samples = []
        for i in range(PER_SHARD):
            if name == "gradients":
                slopes = rng.uniform(40, 200, size=3)
                base = ramp[:, None, None] * slopes + ramp[None, :, None] * slopes[::-1]
                noise = rng.integers(-1, 2, size=base.shape) * (rng.random(base.shape) < 0.1)
                value = np.clip(base + noise, 0, 255).astype(np.uint8)
            elif name == "tokens":
                value = np.minimum(rng.zipf(1.3, size=SIDE * SIDE * 3 // 4), 50_000).astype(np.int32)
            else:
                value = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
            samples.append(Sample({"image": value, "label": shard * PER_SHARD + i}, key=f"s{shard:02d}_{i:03d}"))
        out.append(samples)
    return out


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def one_variant(shards: list[list[Sample]], compression: str | None) -> dict[str, float]:
    """Write every shard of `shards` with `compression`, read them back at the codec, then through a loader:
    seconds of each and the stored bytes."""
    from squirrel.codec import COMPRESSIONS, MessagepackCodec, compress, decompress
    from squirrel.driver import MessagePackDataLoader

    codec = MessagepackCodec()
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir(parents=True)
    paths = [FOLDER / f"shard_{i:03d}{codec.suffix}{COMPRESSIONS[compression]}" for i in range(len(shards))]

    def write() -> None:
        for path, shard in zip(paths, shards, strict=True):
            path.write_bytes(compress(codec.encode(shard), compression))

    def read() -> list[list[Sample]]:
        return [codec.decode(decompress(path.read_bytes(), compression, str(path)), str(path)) for path in paths]

    def loader_read() -> int:
        return sum(1 for _ in MessagePackDataLoader(str(FOLDER), compression=compression).get_iter())

    write_s, _ = timed(write)
    read_s, decoded = timed(read)
    loader_s, loaded = timed(loader_read)
    expected = sum(map(len, shards))
    if sum(map(len, decoded)) != expected or loaded != expected:
        raise RuntimeError(f"{compression}: read back {sum(map(len, decoded))} and {loaded} of {expected} samples")
    raw = sum(len(codec.encode(shard)) for shard in shards)
    return {
        "write_s": write_s,
        "read_s": read_s,
        "loader_s": loader_s,
        "raw_mb": raw / MB,
        "size": sum(p.stat().st_size for p in paths) / raw,
    }


def run_rounds(datasets: dict[str, list[list[Sample]]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Every (dataset, compression) once a round, the order rotated each round; the rounds' figures.

    One shard of each compression goes through first, untimed: the first loader of a process starts its
    runtime, which would otherwise slow whichever variant comes first in the first round."""
    variants = [(name, compression) for name in datasets for compression in COMPRESSIONS]
    for name, compression in variants[: len(COMPRESSIONS)]:
        one_variant(datasets[name][:1], compression)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in datasets}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        figures: dict[tuple[str, str | None], dict[str, float]] = {}
        for name, compression in variants[shift:] + variants[:shift]:
            figures[name, compression] = one_variant(datasets[name], compression)
        for name in datasets:
            results[name].append({str(c): figures[name, c] for c in COMPRESSIONS})
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def report(name: str, rounds: list[dict[str, Any]]) -> tuple[list[Goal], list[Goal]]:
    """Print the dataset's table (throughput and size per compression, ratios per round); its judged goals
    (loader-level reads, writes, sizes) and its codec-level read goals (one thread, printed, not judged)."""
    print(f"-- {name}: {rounds[0]['None']['raw_mb']:.1f} MB raw, {len(rounds)} round(s); median (min-max)")
    print(f"{'compression':<12} {'write MB/s':>22} {'read MB/s (codec)':>22} {'read MB/s (loader)':>22} stored/raw")
    for compression in COMPRESSIONS:
        rows = [r[str(compression)] for r in rounds]
        write = spread([row["raw_mb"] / row["write_s"] for row in rows])
        read = spread([row["raw_mb"] / row["read_s"] for row in rows])
        loader = spread([row["raw_mb"] / row["loader_s"] for row in rows])
        print(f"{compression!s:<12} {write:>22} {read:>22} {loader:>22} {rows[0]['size']:>10.3f}")
    ratios = {
        "zstd/gzip read (loader)": [r["gzip"]["loader_s"] / r["zstd"]["loader_s"] for r in rounds],
        "zstd/none read (loader)": [r["None"]["loader_s"] / r["zstd"]["loader_s"] for r in rounds],
        "zstd/gzip read (codec)": [r["gzip"]["read_s"] / r["zstd"]["read_s"] for r in rounds],
        "zstd/none read (codec)": [r["None"]["read_s"] / r["zstd"]["read_s"] for r in rounds],
        "zstd/gzip write": [r["gzip"]["write_s"] / r["zstd"]["write_s"] for r in rounds],
        "zstd/gzip size": [r["zstd"]["size"] / r["gzip"]["size"] for r in rounds],
    }
    for ratio, values in ratios.items():
        print(f"{ratio:<24} {spread(values)}")

    def goal(title: str, ratio: str, target: float, at_most: bool = False) -> Goal:
        values = ratios[ratio]
        return Goal(f"{name}: {title}", statistics.median(values), target, at_most, min(values), max(values))

    compressible = name != "random"
    against_gzip = 3.0 if compressible else 1.0  # see the module docstring: gzip stores random data
    judged = [
        goal("zstd/gzip read speed (loader)", "zstd/gzip read (loader)", against_gzip),
        goal("zstd/uncompressed read speed (loader)", "zstd/none read (loader)", 0.6),
        goal("zstd/gzip write speed", "zstd/gzip write", against_gzip),
    ]
    if compressible:
        judged.append(goal("zstd/gzip stored size", "zstd/gzip size", 1.0, at_most=True))
    else:
        ceiling = statistics.median(r["gzip"]["loader_s"] / r["None"]["loader_s"] for r in rounds)
        print(f"{'none/gzip read (loader)':<24} {ceiling:7.2f}: the ceiling of zstd/gzip here")
    codec_level = [
        goal("zstd/gzip read speed (codec, one thread)", "zstd/gzip read (codec)", against_gzip),
        goal("zstd/uncompressed read speed (codec, one thread)", "zstd/none read (codec)", 0.6),
    ]
    return judged, codec_level


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compression", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="smoke size: 2 shards a dataset, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds (default 7, 1 with --small)")
    args = parser.parse_args(argv)
    small = args.small or bool(os.environ.get("SQUIRREL_BENCH_SMALL"))
    rounds = args.rounds or (1 if small else 7)
    datasets = {name: make_dataset(name, 2 if small else SHARDS) for name in DATASETS}
    try:
        results = run_rounds(datasets, rounds)
    finally:
        shutil.rmtree(FOLDER, ignore_errors=True)
    reports = [report(name, results[name]) for name in DATASETS]
    print("-- goals (medians of per-round ratios; reads judged at the loader, what users see)")
    for judged, _ in reports:
        for goal in judged:
            print(goal)
    print("-- codec-level reads, one thread (printed beside the judged goals, not judged)")
    for _, codec_level in reports:
        for goal in codec_level:
            print(goal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
