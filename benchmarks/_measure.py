"""Measuring tools shared by the benchmarks: one pass in-process, passes as subprocesses, tables and goals.

A pass runs in a fresh process and prints one JSON line (`PassResult`); the driver runs the passes of every
variant interleaved round-robin (`run_rounds`) and reports medians. Standard library only: passes may run
under another venv's python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

T = TypeVar("T")

MB = 1_000_000
"""Payload and throughput are reported in decimal megabytes."""

RSS_INTERVAL_S = 0.005
TREE_INTERVAL_S = 0.25
"""How often `RssSampler` reads descendants' memory: each read costs ~4 ms of CPU per DataLoader worker."""
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Memory of this process and its live descendants (DataLoader workers) right now, each page once.

    This process counts its RSS; a descendant counts only the pages it alone maps (``Private_*`` of its
    ``smaps_rollup``): a forked worker shares the parent's pages until it writes them, and batches in shared
    memory are mapped by a worker and the parent, so summing RSS would count those pages once per process.
    """
    return _own_rss_bytes() + _descendants_private_bytes()


def _own_rss_bytes() -> int:
    """The resident set size of this process."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def _descendants_private_bytes() -> int:
    """The private pages of every live descendant; ~4 ms per worker (the kernel walks its page tables)."""
    total = 0
    pending = _children(os.getpid())
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
                fields = dict(line.split(b":", 1) for line in rollup.read().splitlines()[1:])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a child that exited meanwhile
        total += sum(int(fields[name].split()[0]) for name in (b"Private_Clean", b"Private_Dirty")) * 1024
        pending.extend(_children(pid))
    return total


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (of any of its threads)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as children:
                found.extend(int(child) for child in children.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass  # exited meanwhile
    return found


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far, all threads and waited-for children included."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class RssSampler:
    """Samples `rss_bytes` in a daemon thread and keeps the peak: this process's RSS every `interval`
    seconds, its descendants' private memory (costlier to read) every `tree_interval` seconds.

    Use as a context manager; the peak includes a full sample taken on entry and one on exit.
    """

    def __init__(self, interval: float = RSS_INTERVAL_S, tree_interval: float = TREE_INTERVAL_S) -> None:
        self.interval = interval
        self.tree_interval = tree_interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        descendants, due = 0, 0.0
        while not self._stop.wait(self.interval):
            if time.monotonic() >= due:
                descendants, due = _descendants_private_bytes(), time.monotonic() + self.tree_interval
            self.peak = max(self.peak, _own_rss_bytes() + descendants)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@dataclasses.dataclass
class PassResult:
    """What one pass measured; `seconds` and `cpu_s` cover the timed region only (not imports or setup)."""

    variant: str
    samples: int
    payload_bytes: int
    seconds: float
    cpu_s: float
    first_sample_s: float
    baseline_rss_bytes: int
    peak_rss_bytes: int

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / MB / self.seconds

    @property
    def peak_rss_above_baseline_mb(self) -> float:
        return max(0, self.peak_rss_bytes - self.baseline_rss_bytes) / MB

    def metrics(self) -> dict[str, float]:
        """The reported figures of this pass, by name (see `METRICS`)."""
        return {
            "samples_per_s": self.samples_per_s,
            "mb_per_s": self.mb_per_s,
            "cpu_s": self.cpu_s,
            "peak_rss_mb": self.peak_rss_above_baseline_mb,
            "first_sample_ms": self.first_sample_s * 1000,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> PassResult:
        return cls(**json.loads(line))


METRICS: dict[str, tuple[str, str]] = {
    "samples_per_s": ("samples/s", ",.0f"),
    "mb_per_s": ("MB/s", ",.1f"),
    "cpu_s": ("CPU s", ".2f"),
    "peak_rss_mb": ("peak RSS MB", ".1f"),
    "first_sample_ms": ("first sample ms", ".1f"),
}
"""Metric name -> (column header, number format), in table order."""


class _Tally:
    """Counts one pass's items as they arrive: samples, payload bytes, and when the first came."""

    def __init__(self, weigh: Callable[[Any], tuple[int, int]]) -> None:
        self.weigh = weigh
        self.samples = self.payload = 0
        self.first: float | None = None
        self.start = time.perf_counter()

    def add(self, item: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start
        count, size = self.weigh(item)
        self.samples += count
        self.payload += size


@contextlib.contextmanager
def _timed_pass(variant: str, weigh: Callable[[Any], tuple[int, int]], out: list[PassResult]) -> Iterator[_Tally]:
    """Time, CPU and peak RSS of the pass run in the block; appends its `PassResult` to `out`."""
    gc.collect()
    baseline = rss_bytes()
    with RssSampler() as sampler:
        cpu0 = cpu_seconds()
        tally = _Tally(weigh)
        yield tally
        seconds, cpu = time.perf_counter() - tally.start, cpu_seconds() - cpu0
    first = tally.first or seconds
    out.append(PassResult(variant, tally.samples, tally.payload, seconds, cpu, first, baseline, sampler.peak))


def measure(variant: str, open_stream: Callable[[], Iterable[T]], weigh: Callable[[T], tuple[int, int]]) -> PassResult:
    """Time one pass over ``open_stream()`` in this process.

    `weigh(item)` gives ``(samples, payload bytes)`` of each item. The RSS baseline is taken right before
    the timed region, so call this after imports and setup; `open_stream` itself is timed.
    """
    out: list[PassResult] = []
    with _timed_pass(variant, weigh, out) as tally:
        for item in open_stream():
            tally.add(item)
    return out[0]


async def measure_async(
    variant: str, open_stream: Callable[[], AsyncIterable[T]], weigh: Callable[[T], tuple[int, int]]
) -> PassResult:
    """`measure` for ``async for`` over ``open_stream()`` on the running loop."""
    out: list[PassResult] = []
    with _timed_pass(variant, weigh, out) as tally:
        async for item in open_stream():
            tally.add(item)
    return out[0]


def run_pass(command: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> PassResult:
    """Run one pass as a fresh subprocess; its last stdout line is the `PassResult` JSON."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pass {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return PassResult.from_json(done.stdout.strip().splitlines()[-1])


def run_rounds(
    commands: Mapping[str, Sequence[str]], rounds: int, cwd: Path | None = None, log: bool = True
) -> dict[str, list[PassResult]]:
    """Run every variant's pass `rounds` times, interleaved round-robin (each round starting one later)."""
    names = list(commands)
    results: dict[str, list[PassResult]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = run_pass(commands[name], cwd)
            results[name].append(result)
            if log:
                print(
                    f"  round {round_index + 1}/{rounds} {name:<22} {result.samples_per_s:>12,.0f} samples/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def medians(passes: Sequence[PassResult]) -> dict[str, float]:
    """The median of each metric over `passes`."""
    per_pass = [result.metrics() for result in passes]
    return {name: statistics.median(metrics[name] for metrics in per_pass) for name in METRICS}


def format_table(rows: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = tuple(METRICS)) -> str:
    """A plain-text table: one row per variant, one column per metric of `METRICS` (those in `metrics`)."""
    columns = {name: METRICS[name] for name in metrics}
    headers = ["variant", *(header for header, _ in columns.values())]
    body = [[name, *(format(row[metric], spec) for metric, (_, spec) in columns.items())] for name, row in rows.items()]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = zip(cells, widths, strict=True)
        return "  ".join([first[0].ljust(first[1]), *(cell.rjust(width) for cell, width in rest)])

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(cells) for cells in body)])


@dataclasses.dataclass
class Goal:
    """A target a figure must meet: ``value >= target`` (or ``<=`` when `at_most`)."""

    name: str
    value: float
    target: float
    at_most: bool = False
    low: float | None = None
    """The smallest of the per-round values `value` is the median of (None: a single figure)."""
    high: float | None = None
    """The largest of the per-round values."""

    @property
    def passed(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    def __str__(self) -> str:
        relation = "<=" if self.at_most else ">="
        verdict = "PASS" if self.passed else "FAIL"
        text = f"{verdict}  {self.name}: {self.value:,.3g} {relation} {self.target:,.3g}"
        if self.low is not None and self.high is not None:
            text += f"  (rounds {self.low:,.3g} .. {self.high:,.3g})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` (creating its folder), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=2) + "\n")
    temp.replace(path)


def save_report(
    path: Path,
    benchmark: str,
    config: dict[str, Any],
    results: Mapping[str, Sequence[PassResult]],
    started: float,
    goals: Sequence[Goal],
    **figures: Any,
) -> dict[str, Any]:
    """Print the wall time and write the run's JSON: config, this machine, `figures` (medians, ratios...),
    the goals and every pass."""
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:,.1f} s; results in {path}")
    report = {
        "benchmark": benchmark,
        "config": config,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
        **figures,
        "goals": [goal.to_dict() for goal in goals],
        "passes": {name: [dataclasses.asdict(p) for p in passes] for name, passes in results.items()},
        "wall_s": wall,
    }
    write_json(path, report)
    return report


class LabelTouch:
    """Touches each sample the same way in every variant (its label, its image's size) and sums the labels
    (0, 1, ... n - 1 in the benchmarks that use it), so a pass can check it saw every sample exactly once."""

    def __init__(self) -> None:
        self.labels = 0

    def __call__(self, sample: Any) -> tuple[int, int]:
        value = sample.value
        self.labels += value["label"]
        return 1, value["image"].nbytes

    def check(self, variant: str, count: int) -> None:
        """`RuntimeError` unless the labels seen sum to those of `count` samples labelled 0 .. count - 1."""
        expected = count * (count - 1) // 2
        if self.labels != expected:
            raise RuntimeError(f"{variant}: labels sum to {self.labels}, expected {expected}")
