"""Scale benchmark (issue 15, goal 8): the cost of each object as a store grows from 1,000 to 50,000 objects.

Dataset: N one-sample shards, N in {1,000, 10,000, 50,000}: shard ``i`` is
``Shard([Sample({"image": uint8 8x8x3, "label": i}, key="sample_<i>")], key="shard_<i>")``, stored by one
``MessagepackStore(url).set(shard)`` call each, then indexed with ``write_index()``. On local disk it is written
once under ``benchmarks/.work/scale/`` and reused while its completion marker and index are there. memory://
lives in one process, so each memory pass loads it itself, untimed, before its timed region: it copies the
local dataset's files byte for byte into ``memory://scale-<N>`` (a second for 50,000 objects, where replaying
the N ``set`` calls, which the ``set`` variant times, takes 15-20 s).

Variants, per filesystem (``local``, ``memory``) and N, each a fresh process:

- ``read``: ``MessagePackDataLoader(url).get_iter()``, the whole pass (objects/s, first sample ms);
- ``read-shuffled``: the same with ``shuffle_key_buffer=N, seed=0`` (every key shuffled);
- ``write_index``: ``MessagepackStore(url).write_index()`` (local: its index removed first, untimed; memory:
  the files loaded without it);
- ``set``: N ``store.set(shard)`` calls into an empty store (local: a fresh folder; memory: a fresh root),
  shards built before the timed region.

All variants run interleaved round-robin over warm page cache (each local pass reads its files first,
untimed), 3 rounds (``--small``: 1 round, N up to 10,000). One sample per object, so the table's samples/s
are objects/s. Goals, each on the median of its per-round values: every streamed pass (plain and shuffled,
every N and filesystem) at least 40,000 objects/s; the cost per object (1 / objects/s) at the largest N at
most 1.25x that at 1,000 (flat; ratio taken within each round); first sample at most 50 ms at the largest
N; ``write_index`` at least 20,000 objects/s. ``set`` objects/s is printed, not judged.

    python -m benchmarks.scale            # full run: 1k, 10k, 50k objects, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.scale   # smoke run (or --small): 1k, 10k objects, 1 round

A pass alone: ``python -m benchmarks.scale --pass read --fs memory --objects 10000`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import Goal, LabelTouch, PassResult, format_table, measure, medians, run_rounds, save_report
from benchmarks.read_local import REPO_ROOT, SEED, WORK, parse_run_args
from benchmarks.reference_stats import format_spread_table, goal_over_rounds, round_ratios, round_values
from squirrel.index import INDEX_NAME

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from squirrel.driver import Shard

RESULTS = REPO_ROOT / "benchmarks" / "results" / "scale.json"
DATA = WORK / "scale"
SIZES = (1_000, 10_000, 50_000)
SMALL_MAX = 10_000
"""A smoke run's largest N."""
FILESYSTEMS = ("local", "memory")
VARIANTS = ("read", "read-shuffled", "write_index", "set")
STREAMED = ("read", "read-shuffled")
IMAGE_SHAPE = (8, 8, 3)
IMAGE_BYTES = 8 * 8 * 3

STREAM_GOAL = 40_000
"""Objects/s every streamed pass reaches."""
FLAT_GOAL = 1.25
"""Cost per object at the largest N over that at the smallest, at most."""
FIRST_SAMPLE_MS = 50
"""First sample at the largest N, at most."""
WRITE_INDEX_GOAL = 20_000
"""Objects/s of `write_index`."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Size of one run."""

    rounds: int = 3
    small: bool = False

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(n for n in SIZES if n <= SMALL_MAX) if self.small else SIZES

    @property
    def results(self) -> Path:
        """Where the figures go: smoke runs stay in the git-ignored work folder."""
        return WORK / "scale-small.json" if self.small else RESULTS


def variant_name(fs: str, objects: int, variant: str) -> str:
    return f"{fs}/{objects // 1000}k/{variant}"


# -- dataset ---------------------------------------------------------------------------------------


def local_data(objects: int) -> Path:
    return DATA / f"local-{objects}"


def marker(objects: int) -> Path:
    return DATA / f"local-{objects}.complete.json"


def object_files(folder: Path) -> list[Path]:
    """The shard files of `folder`, sorted by key; the index and temp files of interrupted writes left out."""
    return sorted(p for p in folder.glob("shard_*.msgpack") if not p.name.startswith("."))


def make_shards(objects: int) -> list[Shard]:
    """The N one-sample shards, the same on every call."""
    import numpy as np

    from squirrel.driver import Sample, Shard

    images = np.random.default_rng(SEED).integers(0, 256, size=(objects, *IMAGE_SHAPE), dtype=np.uint8)
    return [
        Shard([Sample({"image": images[i], "label": i}, key=f"sample_{i:06d}")], key=f"shard_{i:06d}")
        for i in range(objects)
    ]


def ensure_dataset(objects: int) -> bool:
    """Write the local dataset of N objects unless it is complete, and index it if its index is missing
    (an interrupted ``write_index`` pass removes it); returns whether the objects were written."""
    from squirrel.driver import MessagepackStore

    folder = local_data(objects)
    try:
        complete = json.loads(marker(objects).read_text()).get("objects") == objects
    except (FileNotFoundError, ValueError):
        complete = False
    complete = complete and len(object_files(folder)) == objects
    if complete:
        if not (folder / INDEX_NAME).exists():
            MessagepackStore(str(folder)).write_index()
        return False
    shutil.rmtree(folder, ignore_errors=True)
    marker(objects).unlink(missing_ok=True)
    folder.mkdir(parents=True)
    store = MessagepackStore(str(folder))
    for shard in make_shards(objects):
        store.set(shard)
    index = store.write_index()
    if index.num_samples != objects or len(object_files(folder)) != objects:
        raise RuntimeError(f"wrote {len(object_files(folder))} objects / {index.num_samples} samples, not {objects}")
    info = {"objects": objects, "bytes": sum(entry.size for entry in index.entries)}
    marker(objects).write_text(json.dumps(info) + "\n")
    return True


def warm_page_cache(objects: int) -> None:
    """Read every file of the local dataset once, so every pass reads from the page cache."""
    for path in local_data(objects).iterdir():
        path.read_bytes()


def load_memory(objects: int, with_index: bool) -> str:
    """Copy the local dataset's files (and its index, `with_index`) into ``memory://scale-<N>``; its url."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/scale-{objects}"
    folder = local_data(objects)
    names = [path.name for path in object_files(folder)] + ([INDEX_NAME] if with_index else [])
    for name in names:
        fs.pipe_file(f"{root}/{name}", (folder / name).read_bytes())
    return f"memory://{root.lstrip('/')}"


# -- passes ----------------------------------------------------------------------------------------


def _url(fs: str, objects: int, with_index: bool = True) -> str:
    """The dataset's url on `fs`, loaded into memory:// first (untimed) when `fs` is memory; on local disk
    its files are read once first (untimed): the other variants' passes (50,000 files written, 50,000
    objects in memory://) evicted them between rounds, and the first read of a round then ran at 9-18k
    objects/s from disk instead of 60-70k from the page cache."""
    if fs == "memory":
        return load_memory(objects, with_index)
    warm_page_cache(objects)
    return str(local_data(objects))


def _read_pass(shuffled: bool) -> Callable[[str, int], PassResult]:
    def run(fs: str, objects: int) -> PassResult:
        from squirrel.driver import MessagePackDataLoader

        url = _url(fs, objects)
        options: dict[str, Any] = {"shuffle_key_buffer": objects, "seed": 0} if shuffled else {}
        variant = variant_name(fs, objects, "read-shuffled" if shuffled else "read")
        touch = LabelTouch()
        result = measure(variant, lambda: MessagePackDataLoader(url).get_iter(**options), touch)
        touch.check(variant, objects)
        return result

    return run


def _write_index_pass(fs: str, objects: int) -> PassResult:
    """`write_index` over a store without an index; counts the objects it indexed. Its "first sample" is the
    whole call."""
    from squirrel.driver import MessagepackStore

    url = _url(fs, objects, with_index=False)
    if fs == "local":
        (local_data(objects) / INDEX_NAME).unlink(missing_ok=True)
    store = MessagepackStore(url)
    result = measure(
        variant_name(fs, objects, "write_index"),
        lambda: store.write_index().entries,
        lambda entry: (entry.samples, entry.samples * IMAGE_BYTES),
    )
    if fs == "local" and not (local_data(objects) / INDEX_NAME).exists():
        raise RuntimeError(f"write_index left no index in {local_data(objects)}")
    return result


def _set_pass(fs: str, objects: int) -> PassResult:
    """N ``store.set(shard)`` calls into an empty store; its "first sample" is the first call."""
    from squirrel.driver import MessagepackStore

    folder = DATA / f"set-{objects}"
    if fs == "local":
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    url = str(folder) if fs == "local" else f"memory://scale-set-{objects}"
    shards = make_shards(objects)
    store = MessagepackStore(url)

    def stream() -> Iterator[Shard]:
        for shard in shards:
            store.set(shard)
            yield shard

    result = measure(variant_name(fs, objects, "set"), stream, lambda _: (1, IMAGE_BYTES))
    written = len(store.list_keys())
    if written != objects:
        raise RuntimeError(f"set wrote {written} objects, expected {objects}")
    if fs == "local":
        shutil.rmtree(folder)
        os.sync()  # untimed: the writes' writeback would otherwise run during the next variant's pass
    return result


PASSES: dict[str, Callable[[str, int], PassResult]] = {
    "read": _read_pass(shuffled=False),
    "read-shuffled": _read_pass(shuffled=True),
    "write_index": _write_index_pass,
    "set": _set_pass,
}


# -- driver ----------------------------------------------------------------------------------------


def _check(results: dict[str, list[PassResult]]) -> None:
    """Every pass must have handled all of its N objects."""
    for name, passes in results.items():
        objects = int(name.split("/")[1][:-1]) * 1000
        for result in passes:
            if (result.samples, result.payload_bytes) != (objects, objects * IMAGE_BYTES):
                raise RuntimeError(f"{name} handled {result.samples} objects / {result.payload_bytes} B")


def cost_per_object(passes: list[PassResult]) -> tuple[float, float]:
    """Median µs per object over `passes`: of the whole pass, and after its first object (what each further
    object costs, start-up left out; meaningless for write_index, a single call)."""
    whole = statistics.median(1e6 * result.seconds / result.samples for result in passes)
    after = statistics.median(
        1e6 * (result.seconds - result.first_sample_s) / max(1, result.samples - 1) for result in passes
    )
    return whole, after


def goals(config: Config, results: dict[str, list[PassResult]]) -> list[Goal]:
    """Goal 8 of issue 15, each on the median of its per-round values (throughputs in thousands of objects/s)."""
    smallest, largest = config.sizes[0], config.sizes[-1]
    found: list[Goal] = []
    for fs in FILESYSTEMS:
        for variant in STREAMED:
            for objects in config.sizes:
                name = variant_name(fs, objects, variant)
                values = [value / 1000 for value in round_values(results[name], "samples_per_s")]
                found.append(goal_over_rounds(f"k objects/s, {name}", values, STREAM_GOAL / 1000))
    for fs in FILESYSTEMS:
        for variant in STREAMED:
            large, small = (results[variant_name(fs, n, variant)] for n in (largest, smallest))
            # cost per object at the largest N over that at the smallest = objects/s at the smallest over the largest
            flat = round_ratios(small, large)
            name = f"cost per object {largest // 1000}k / {smallest // 1000}k, {fs}/{variant}"
            found.append(goal_over_rounds(name, flat, FLAT_GOAL, at_most=True))
    for fs in FILESYSTEMS:
        for variant in STREAMED:
            name = variant_name(fs, largest, variant)
            values = round_values(results[name], "first_sample_ms")
            found.append(goal_over_rounds(f"first sample ms, {name}", values, FIRST_SAMPLE_MS, at_most=True))
    for fs in FILESYSTEMS:
        for objects in config.sizes:
            name = variant_name(fs, objects, "write_index")
            values = [value / 1000 for value in round_values(results[name], "samples_per_s")]
            found.append(goal_over_rounds(f"k objects/s, {name}", values, WRITE_INDEX_GOAL / 1000))
    return found


def run_benchmark(config: Config) -> dict[str, Any]:
    """Prepare the local datasets, run the rounds, print the tables and goals, and write the JSON."""
    started = time.perf_counter()
    written = [objects for objects in config.sizes if ensure_dataset(objects)]
    for objects in config.sizes:
        warm_page_cache(objects)
    print(
        f"scale: {', '.join(f'{n:,}' for n in config.sizes)} one-sample shards ({IMAGE_BYTES} B image) on "
        f"{' and '.join(FILESYSTEMS)}, {config.rounds} round(s); local data "
        f"{'written for ' + ', '.join(f'{n:,}' for n in written) if written else 'reused'}",
        flush=True,
    )
    commands = {
        variant_name(fs, objects, variant): [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--pass",
            variant,
            "--fs",
            fs,
            "--objects",
            str(objects),
        ]
        for fs in FILESYSTEMS
        for objects in config.sizes
        for variant in VARIANTS
    }
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    _check(results)

    rows = {name: medians(passes) for name, passes in results.items()}
    checked = goals(config, results)
    reads = {name: row for name, row in rows.items() if name.rsplit("/", 1)[1] in STREAMED}
    writes = {name: row for name, row in rows.items() if name.rsplit("/", 1)[1] not in STREAMED}
    print(f"\nmedians of {config.rounds} pass(es) each, fresh processes; one sample per object (samples/s = objects/s)")
    print(format_table(reads, ("samples_per_s", "first_sample_ms", "cpu_s", "peak_rss_mb")))
    print()
    print(format_table(writes, ("samples_per_s", "cpu_s", "peak_rss_mb")))
    costs = {name: cost_per_object(passes) for name, passes in results.items()}
    print("\ncost per object, µs (medians): whole pass, and after the first object (start-up left out)")
    for name, (whole, after_first) in costs.items():
        after = "-" if name.endswith("write_index") else f"{after_first:.1f}"  # one call: no "after the first"
        print(f"  {name:<26} {whole:>8.1f} {after:>8}")
    print(f"\nspread over the {config.rounds} round(s):")
    print(format_spread_table(results))
    print("\ngoals (median of the per-round values):")
    for goal in checked:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "sizes": config.sizes,
        "image_shape": IMAGE_SHAPE,
        "read": "MessagePackDataLoader(url).get_iter() (defaults), store indexed",
        "read-shuffled": "get_iter(shuffle_key_buffer=N, seed=0)",
        "write_index": "MessagepackStore(url).write_index() over a store without an index",
        "set": "N MessagepackStore(url).set(one-sample shard) calls into an empty store",
        "memory": "local dataset's files copied into memory:// in the pass process, untimed",
        "object_bytes": {n: json.loads(marker(n).read_text())["bytes"] / n for n in config.sizes},
    }
    cost_us = {name: {"whole_pass": whole, "after_first": after} for name, (whole, after) in costs.items()}
    return save_report(
        config.results, "scale", settings, results, started, medians=rows, cost_per_object_us=cost_us, goals=checked
    )


def main(argv: list[str] | None = None) -> int:
    def scale_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fs", choices=FILESYSTEMS, help=argparse.SUPPRESS)
        parser.add_argument("--objects", type=int, choices=SIZES, help=argparse.SUPPRESS)

    args, shared = parse_run_args(argv, "scale", __doc__, PASSES, default_rounds=3, configure=scale_flags)
    if args.pass_name:
        if args.fs is None or args.objects is None:
            raise SystemExit("--pass needs --fs and --objects")
        print(PASSES[args.pass_name](args.fs, args.objects).to_json(), flush=True)
    else:
        run_benchmark(Config(shared.rounds, shared.small))
    return 0


if __name__ == "__main__":
    sys.exit(main())
