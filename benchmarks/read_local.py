"""Local read benchmark (issue "Streams and loaders"): our loader against squirrel-core 0.20.2 and the bounds.

Dataset: samples ``{"key", "image": uint8 64x64x3, "label": int}``, 1,000 per shard, written once under
``benchmarks/.work/`` in four formats: ours uncompressed, ours gzip, squirrel-core's own (gzip msgpack with
msgpack-numpy, written with squirrel-core's API in its venv), and plain msgpack + msgpack-numpy files (what
the serial read+decode bound decodes). Every pass is a fresh process; the variants run interleaved
round-robin over warm page cache, and the medians are reported.

    python -m benchmarks.read_local            # full run: 20,000 samples, 5 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.read_local   # smoke run: 2,000 samples, 1 round

A pass alone: ``python -m benchmarks.read_local --pass ours [--small]`` prints one JSON line. Top-level
imports are standard library only: the squirrel-core pass runs this module under the core venv's python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    format_table,
    measure,
    medians,
    run_rounds,
    save_report,
    write_json,
)
from benchmarks.core_venv import CORE_VERSION, ensure_core_venv

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK = REPO_ROOT / "benchmarks" / ".work"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "read_local.json"

IMAGE_SHAPE = (64, 64, 3)
IMAGE_BYTES = 64 * 64 * 3
SEED = 0
PREFETCH = 4
"""Shards our loader holds ahead of the consumer; the RSS goal is ``PREFETCH x shard size + 30 MB``."""
KEY_BUFFER, ITEM_BUFFER = 20, 1000
CORE_MAX_WORKERS = 4
RSS_SLACK_MB = 30
FIRST_SAMPLE_MS = 50

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
        _run_module(core_python, "--write-core", *_size_args(config))
    for fmt in missing:
        _mark_complete(config, fmt)
    return missing


def warm_page_cache(config: Config) -> None:
    """Read every shard file once, so every pass reads from the page cache."""
    for fmt in FORMATS:
        for path in shard_files(config, fmt):
            path.read_bytes()


# -- passes ----------------------------------------------------------------------------------------


def _weigh_sample(sample: Any) -> tuple[int, int]:
    return 1, sample.value["image"].nbytes


def _weigh_dict(sample: dict[str, Any]) -> tuple[int, int]:
    return 1, sample["image"].nbytes


def _ours_pass(variant: str, fmt: str, shuffled: bool) -> Callable[[Config], PassResult]:
    compression = None if fmt == "ours" else "gzip"

    def run(config: Config) -> PassResult:
        from squirrel.driver import MessagePackDataLoader

        url = str(config.data / fmt)
        shuffle = {"shuffle_key_buffer": KEY_BUFFER, "shuffle_item_buffer": ITEM_BUFFER, "seed": SEED}
        options = shuffle if shuffled else {}

        def stream() -> Iterable[Any]:
            return MessagePackDataLoader(url, compression=compression).get_iter(prefetch=PREFETCH, **options)

        return measure(variant, stream, _weigh_sample)

    return run


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


def _core_pass(config: Config) -> PassResult:
    driver_class = _import_core_driver()
    url = str(config.data / "core")
    return measure("core-gzip", lambda: driver_class(url).get_iter(max_workers=CORE_MAX_WORKERS), _weigh_dict)


def _read_bound_pass(config: Config) -> PassResult:
    """Plain read of every uncompressed shard file of ours, in a tight loop."""
    paths = shard_files(config, "ours")
    per_file = (config.shard_size, config.shard_size * IMAGE_BYTES)

    def stream() -> Iterator[bytes]:
        for path in paths:
            with open(path, "rb") as file:
                yield file.read()

    return measure("bound-read", stream, lambda _: per_file)


def _decode_bound_pass(config: Config) -> PassResult:
    """msgpack + msgpack-numpy decode of the plain copy, all bytes in memory first (not timed)."""
    import msgpack
    import msgpack_numpy

    blobs = [path.read_bytes() for path in shard_files(config, "plain")]

    def stream() -> Iterator[dict[str, Any]]:
        for blob in blobs:
            yield from msgpack.unpackb(blob, object_hook=msgpack_numpy.decode)

    return measure("bound-decode", stream, _weigh_dict)


def _serial_bound_pass(config: Config) -> PassResult:
    """Serial read+decode bound: read each plain msgpack file and decode it, single-threaded."""
    import msgpack
    import msgpack_numpy

    paths = shard_files(config, "plain")

    def stream() -> Iterator[dict[str, Any]]:
        for path in paths:
            with open(path, "rb") as file:
                data = file.read()
            yield from msgpack.unpackb(data, object_hook=msgpack_numpy.decode)

    return measure("bound-read+decode", stream, _weigh_dict)


PASSES: dict[str, Callable[[Config], PassResult]] = {
    "ours": _ours_pass("ours", "ours", shuffled=False),
    "ours-shuffled": _ours_pass("ours-shuffled", "ours", shuffled=True),
    "ours-gzip": _ours_pass("ours-gzip", "ours-gzip", shuffled=False),
    "ours-gzip-shuffled": _ours_pass("ours-gzip-shuffled", "ours-gzip", shuffled=True),
    "core-gzip": _core_pass,
    "bound-read": _read_bound_pass,
    "bound-decode": _decode_bound_pass,
    "bound-read+decode": _serial_bound_pass,
}
"""Variant -> pass. ``core-gzip`` runs under the core venv's python: 0.20.2's MessagepackDriver is gzip-only."""

OURS = [name for name in PASSES if name.startswith("ours")]


# -- driver ----------------------------------------------------------------------------------------


def _size_args(config: Config) -> list[str]:
    return ["--samples", str(config.samples), "--shard-size", str(config.shard_size)]


def _module_command(python: Path | str, *args: str) -> list[str]:
    return [str(python), "-m", "benchmarks.read_local", *args]


def _run_module(python: Path | str, *args: str) -> None:
    import subprocess

    subprocess.run(_module_command(python, *args), cwd=REPO_ROOT, check=True)


def ratios(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Throughput ratios (samples/s) the goals are about, plus a few for context."""

    def ratio(a: str, b: str) -> float:
        return rows[a]["samples_per_s"] / rows[b]["samples_per_s"]

    return {
        "ours / core-gzip": ratio("ours", "core-gzip"),
        "ours / bound-read+decode": ratio("ours", "bound-read+decode"),
        "ours-gzip / core-gzip": ratio("ours-gzip", "core-gzip"),
        "ours-shuffled / ours": ratio("ours-shuffled", "ours"),
        "ours-gzip-shuffled / ours-gzip": ratio("ours-gzip-shuffled", "ours-gzip"),
        "ours / bound-read": ratio("ours", "bound-read"),
        "ours / bound-decode": ratio("ours", "bound-decode"),
    }


def goals(config: Config, rows: dict[str, dict[str, float]], ratio: dict[str, float]) -> list[Goal]:
    """The issue's goals, checked on the medians."""
    found = [
        Goal("uncompressed vs squirrel-core (gzip), x", ratio["ours / core-gzip"], 10),
        Goal("uncompressed vs serial read+decode bound, x", ratio["ours / bound-read+decode"], 1.2),
        Goal("gzip vs squirrel-core (gzip), x", ratio["ours-gzip / core-gzip"], 1.8),
        Goal("shuffle cost, uncompressed", 1 - ratio["ours-shuffled / ours"], 0.05, at_most=True),
        Goal("shuffle cost, gzip", 1 - ratio["ours-gzip-shuffled / ours-gzip"], 0.05, at_most=True),
    ]
    for name in OURS:
        fmt = "ours-gzip" if "gzip" in name else "ours"
        limit = PREFETCH * mean_shard_bytes(config, fmt) / MB + RSS_SLACK_MB
        found.append(Goal(f"peak RSS above baseline MB, {name}", rows[name]["peak_rss_mb"], limit, at_most=True))
    for name in OURS:
        found.append(Goal(f"first sample ms, {name}", rows[name]["first_sample_ms"], FIRST_SAMPLE_MS, at_most=True))
    return found


def _check(config: Config, results: dict[str, list[PassResult]]) -> None:
    """Every pass must have read every sample and its whole payload."""
    for name, passes in results.items():
        for result in passes:
            if (result.samples, result.payload_bytes) != (config.samples, config.samples * IMAGE_BYTES):
                raise RuntimeError(f"{name} read {result.samples} samples / {result.payload_bytes} B")


def run_benchmark(config: Config) -> dict[str, Any]:
    """Prepare everything, run the rounds, print the table, ratios and goals, and write the JSON."""
    started = time.perf_counter()
    core_python = ensure_core_venv()
    written = ensure_dataset(config, core_python)
    warm_page_cache(config)
    loader = "MessagePackDataLoader.get_iter"
    data = f"written: {', '.join(written)}" if written else "reused"
    print(
        f"read_local: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s), "
        f"prefetch {PREFETCH}; ours read via {loader}; data {data}",
        flush=True,
    )
    commands = {name: _module_command(sys.executable, "--pass", name, *_size_args(config)) for name in PASSES}
    commands["core-gzip"] = _module_command(core_python, "--pass", "core-gzip", *_size_args(config))
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    _check(config, results)

    rows = {name: medians(passes) for name, passes in results.items()}
    ratio = ratios(rows)
    checked = goals(config, rows, ratio)
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print("\nratios (samples/s; squirrel-core 0.20.2 MessagepackDriver is gzip-only, so core = core-gzip):")
    for name, value in ratio.items():
        print(f"  {name:<32} {value:8.3f}")
    print("\ngoals:")
    for goal in checked:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "image_shape": IMAGE_SHAPE,
        "payload_mb": config.samples * IMAGE_BYTES / MB,
        "prefetch": PREFETCH,
        "shuffle_key_buffer": KEY_BUFFER,
        "shuffle_item_buffer": ITEM_BUFFER,
        "core_max_workers": CORE_MAX_WORKERS,
        "ours_reader": loader,
        "core": f"squirrel-core {CORE_VERSION} MessagepackDriver (gzip msgpack + msgpack-numpy)",
        "shard_bytes": {fmt: mean_shard_bytes(config, fmt) for fmt in FORMATS},
    }
    return save_report(
        config.results,
        "read_local",
        settings,
        results,
        started,
        medians=rows,
        ratios=ratio,
        goals=checked,
    )


def config_from(args: argparse.Namespace) -> Config:
    """The run's size: the flags, else ``SQUIRREL_BENCH_SMALL=1`` (2,000 samples, 1 round), else the full size."""
    small = args.small or os.environ.get("SQUIRREL_BENCH_SMALL", "") not in ("", "0")
    default = Config(samples=2_000, rounds=1) if small else Config()
    rounds = args.rounds or int(os.environ.get("SQUIRREL_BENCH_ROUNDS", default.rounds))
    return Config(args.samples or default.samples, args.shard_size or default.shard_size, rounds)


def parse_run_args(
    argv: list[str] | None,
    module: str,
    doc: str,
    passes: Iterable[str],
    default_rounds: int = 3,
    configure: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> tuple[argparse.Namespace, Config]:
    """The command line every benchmark module shares (size, rounds, one hidden ``--pass``), parsed;
    `configure` adds a module's own flags."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="smoke size: 2,000 samples, 1 round")
    parser.add_argument("--rounds", type=int, help=f"passes per variant (default {default_rounds})")
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shard-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pass", dest="pass_name", choices=list(passes), help=argparse.SUPPRESS)
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    config = config_from(args)
    if not args.rounds and not os.environ.get("SQUIRREL_BENCH_ROUNDS") and not config.small:
        config = dataclasses.replace(config, rounds=default_rounds)
    return args, config


def main(argv: list[str] | None = None) -> int:
    def write_core_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--write-core", action="store_true", help=argparse.SUPPRESS)

    args, config = parse_run_args(argv, "read_local", __doc__, PASSES, default_rounds=5, configure=write_core_flag)
    if args.pass_name:
        print(PASSES[args.pass_name](config).to_json(), flush=True)
    elif args.write_core:
        write_core(config)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
