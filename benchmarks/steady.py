"""Steady benchmark (issue 15, goal 7): the same pass, 15 times back to back in one process.

Dataset: the local read benchmark's (`benchmarks.read_local`), its uncompressed ``ours`` format only:
samples ``{"key", "image": uint8 64x64x3, "label": int}``, 1,000 per shard, 20,000 samples (``--small``:
2,000), written once under ``benchmarks/.work/`` and read over warm page cache.

A run is a fresh process that makes one ``MessagePackDataLoader(url)``, reads one untimed warm-up pass (the
one-time costs, lazy imports, thread and loop start, are read_local's first-sample goal, not this one's),
then times 15 whole passes of ``get_iter(prefetch=read_local.PREFETCH)`` back to back, touching each sample
as read_local does (its image's ``nbytes``). Nothing else runs between or during the passes: no
``gc.collect()``, no RSS sampler thread (peak RSS is the process's high-water mark, ``ru_maxrss``), as a
training loop runs its epochs. Variants, interleaved round-robin over 3 rounds (``--small``: 1):

- ``sync``: ``for sample in loader.get_iter(...)``, the blocking face;
- ``async``: ``async for sample in loader.aio.get_iter(...)``, the async face, every pass in one
  ``asyncio.run``.

Printed per variant and round: the fastest, median and slowest pass (ms) and slowest/fastest, also with
each pass's time in the garbage collector taken out; and, to tell where the slowest pass lost its time, its
excess over the fastest in wall time, the consumer thread's time on a core, in the collector (any thread),
waiting runnable for a core (preempted: other processes on a shared machine) and blocked (waiting for the
loader's threads), and page faults (fresh memory touched). The JSON keeps these per pass.
Goal 7, for each variant, on the median over rounds: the slowest pass at most 1.3x the fastest.

    python -m benchmarks.steady            # full run: 20,000 samples, 3 rounds
    python -m benchmarks.steady --small    # smoke run (or SQUIRREL_BENCH_SMALL=1): 2,000 samples, 1 round

A run alone: ``python -m benchmarks.steady --pass sync [--small]`` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks._measure import PassResult, cpu_seconds, format_table, medians, rss_bytes, save_report
from benchmarks.core_venv import ensure_core_venv
from benchmarks.read_local import PREFETCH, WORK, parse_run_args
from benchmarks.reference_dataset import IMAGE_BYTES, REPO_ROOT, Config, ensure_dataset, shard_files, size_args
from benchmarks.reference_stats import goal_over_rounds

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from benchmarks._measure import Goal

RESULTS = REPO_ROOT / "benchmarks" / "results" / "steady.json"
FORMAT = "ours"
PASSES_PER_RUN = 15
STEADY_GOAL = 1.3
"""The slowest of a run's passes over its fastest, at most."""


# -- one run: 15 passes in this process -------------------------------------------------------------


class _GcClock:
    """Time spent in the garbage collector and full (generation 2) collections so far, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2


class _Pass:
    """Counts one pass's samples and payload as they arrive, and when the first came."""

    def __init__(self) -> None:
        self.samples = self.payload = 0
        self.first: float | None = None
        self.start = time.perf_counter()

    def add(self, sample: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start
        self.samples += 1
        self.payload += sample.value["image"].nbytes


@dataclasses.dataclass
class Run:
    """What one run measured: its warm-up pass, its timed passes and, per timed pass, where its time went."""

    variant: str
    warmup: PassResult
    passes: list[PassResult]
    diagnostics: list[dict[str, float]]
    """Per timed pass, the consumer's thread (the one iterating) split into ``oncpu_ms`` (running, GC
    included), ``runqueue_ms`` (runnable but waiting for a core: preempted) and ``blocked_ms`` (the rest of the
    wall time: waiting for the loader's other threads); ``gc_ms`` (in the collector), ``gc_full`` (generation 2
    collections), ``faults`` (minor page faults: fresh memory touched), ``vcsw`` and ``ivcsw`` (voluntary and
    involuntary context switches of all the process's threads)."""

    @property
    def seconds(self) -> list[float]:
        """Each timed pass's wall time, in order."""
        return [result.seconds for result in self.passes]

    @property
    def ratio(self) -> float:
        """The slowest pass over the fastest."""
        return max(self.seconds) / min(self.seconds)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Run:
        data = json.loads(line)
        warmup, passes = PassResult(**data.pop("warmup")), [PassResult(**p) for p in data.pop("passes")]
        return cls(warmup=warmup, passes=passes, **data)


def _thread_schedstat() -> tuple[float, float]:
    """Seconds the calling thread has run on a core, and waited runnable for one (Linux schedstat)."""
    with open("/proc/thread-self/schedstat", "rb") as stat:
        oncpu, runqueue, _ = stat.read().split()
    return int(oncpu) / 1e9, int(runqueue) / 1e9


class _Recorder:
    """Builds a run's `PassResult`s and diagnostics: `begin` right before a pass, `end` right after it."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.gc = _GcClock()
        self.baseline = rss_bytes()
        self.passes: list[PassResult] = []
        self.diagnostics: list[dict[str, float]] = []

    def begin(self) -> _Pass:
        self._cpu, self._gc, self._full = cpu_seconds(), self.gc.seconds, self.gc.full
        self._usage, self._sched = resource.getrusage(resource.RUSAGE_SELF), _thread_schedstat()
        return _Pass()

    def end(self, tally: _Pass) -> None:
        seconds = time.perf_counter() - tally.start
        oncpu, runqueue = (after - before for after, before in zip(_thread_schedstat(), self._sched, strict=True))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        peak = usage.ru_maxrss * 1024
        first = seconds if tally.first is None else tally.first
        cpu = cpu_seconds() - self._cpu
        result = PassResult(self.variant, tally.samples, tally.payload, seconds, cpu, first, self.baseline, peak)
        self.passes.append(result)
        self.diagnostics.append(
            {
                "oncpu_ms": oncpu * 1000,
                "runqueue_ms": runqueue * 1000,
                "blocked_ms": (seconds - oncpu - runqueue) * 1000,
                "gc_ms": (self.gc.seconds - self._gc) * 1000,
                "gc_full": self.gc.full - self._full,
                "vcsw": usage.ru_nvcsw - self._usage.ru_nvcsw,
                "ivcsw": usage.ru_nivcsw - self._usage.ru_nivcsw,
                "faults": usage.ru_minflt - self._usage.ru_minflt,
            }
        )

    def run(self) -> Run:
        """The warm-up pass (the first recorded) and the timed ones."""
        warmup, *passes = self.passes
        return Run(self.variant, warmup, passes, self.diagnostics[1:])


def _sync_run(config: Config) -> Run:
    from squirrel.driver import MessagePackDataLoader

    loader = MessagePackDataLoader(str(config.data / FORMAT))
    recorder = _Recorder("sync")
    for _ in range(1 + PASSES_PER_RUN):
        tally = recorder.begin()
        for sample in loader.get_iter(prefetch=PREFETCH):
            tally.add(sample)
        recorder.end(tally)
    loader.close()
    return recorder.run()


def _async_run(config: Config) -> Run:
    from squirrel.driver import MessagePackDataLoader

    async def run() -> Run:
        loader = MessagePackDataLoader(str(config.data / FORMAT)).aio
        recorder = _Recorder("async")
        for _ in range(1 + PASSES_PER_RUN):
            tally = recorder.begin()
            async for sample in loader.get_iter(prefetch=PREFETCH):
                tally.add(sample)
            recorder.end(tally)
        await loader.aclose()
        return recorder.run()

    return asyncio.run(run())


GAPS = ("oncpu_ms", "gc_ms", "runqueue_ms", "blocked_ms", "faults")
"""The diagnostics (see `Run.diagnostics`) whose slowest-minus-fastest gap is printed."""

RUNS: dict[str, Callable[[Config], Run]] = {"sync": _sync_run, "async": _async_run}
"""Variant -> one run of it in this process."""


# -- driver ----------------------------------------------------------------------------------------


def _run_process(command: Sequence[str]) -> Run:
    """One run as a fresh subprocess; its last stdout line is the `Run` JSON. `RuntimeError` if it fails."""
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Run.from_json(done.stdout.strip().splitlines()[-1])


def run_rounds(commands: Mapping[str, Sequence[str]], rounds: int) -> dict[str, list[Run]]:
    """Every variant's run `rounds` times, interleaved round-robin (each round starting one later), as
    `benchmarks._measure.run_rounds` does with single passes; each run's pass times logged."""
    names = list(commands)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            run = _run_process(commands[name])
            runs[name].append(run)
            times = " ".join(f"{seconds * 1000:.0f}" for seconds in run.seconds)
            print(f"  round {round_index + 1}/{rounds} {name:<6} ms: {times}", file=sys.stderr, flush=True)
    return runs


def _check(config: Config, runs: Mapping[str, Sequence[Run]]) -> None:
    """Every pass must have read every sample and its whole payload."""
    for name, variant_runs in runs.items():
        for result in (pass_ for run in variant_runs for pass_ in [run.warmup, *run.passes]):
            if (result.samples, result.payload_bytes) != (config.samples, config.samples * IMAGE_BYTES):
                raise RuntimeError(f"{name} read {result.samples} samples / {result.payload_bytes} B")


def run_figures(run: Run) -> dict[str, float]:
    """The spread of one run's passes (ms); slowest/fastest with each pass's time in the collector taken out;
    the slowest pass minus the fastest in wall time and each of `GAPS`."""
    ms = [seconds * 1000 for seconds in run.seconds]
    slow, fast = ms.index(max(ms)), ms.index(min(ms))

    def gap(values: Sequence[float]) -> float:
        return values[slow] - values[fast]

    return {
        "warmup_ms": run.warmup.seconds * 1000,
        "fastest_ms": ms[fast],
        "median_ms": statistics.median(ms),
        "slowest_ms": ms[slow],
        "slowest_over_fastest": run.ratio,
        "without_gc": _ratio([t - d["gc_ms"] for t, d in zip(ms, run.diagnostics, strict=True)]),
        "gap_wall_ms": gap(ms),
        **{f"gap_{key}": gap([d[key] for d in run.diagnostics]) for key in GAPS},
    }


def _ratio(values: Sequence[float]) -> float:
    return max(values) / min(values)


COLUMNS = {
    "warmup_ms": ("warm-up ms", ".0f"),
    "fastest_ms": ("fastest ms", ".0f"),
    "median_ms": ("median ms", ".0f"),
    "slowest_ms": ("slowest ms", ".0f"),
    "slowest_over_fastest": ("slowest/fastest", ".2f"),
    "without_gc": ("w/o GC", ".2f"),
    "gap_wall_ms": ("slow-fast: wall ms", ".0f"),
    "gap_oncpu_ms": ("on-CPU", ".0f"),
    "gap_gc_ms": ("GC", ".0f"),
    "gap_runqueue_ms": ("run-queue", ".0f"),
    "gap_blocked_ms": ("blocked", ".0f"),
    "gap_faults": ("page faults", ".0f"),
}
"""Figure of `run_figures` -> (column header, number format), in table order."""


def format_spread(figures: Mapping[str, Sequence[Mapping[str, float]]]) -> str:
    """One row per variant and round, then the median over rounds of each figure (a plain-text table)."""
    headers = ["variant", "round", *(header for header, _ in COLUMNS.values())]
    rows: list[list[str]] = []
    for name, per_round in figures.items():
        median_row = {key: statistics.median(row[key] for row in per_round) for key in COLUMNS}
        for label, row in [*((str(i + 1), r) for i, r in enumerate(per_round)), ("median", median_row)]:
            rows.append([name, label, *(format(row[key], spec) for key, (_, spec) in COLUMNS.items())])
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(cells) for cells in rows)])


def goals(runs: Mapping[str, Sequence[Run]]) -> list[Goal]:
    """Goal 7 for each variant, on the median over rounds of each run's slowest/fastest pass."""
    return [
        goal_over_rounds(
            f"7. slowest/fastest of {PASSES_PER_RUN} passes, {name}",
            [run.ratio for run in rs],
            STEADY_GOAL,
            at_most=True,
        )
        for name, rs in runs.items()
    ]


def run_benchmark(config: Config) -> dict[str, Any]:
    """Prepare the dataset, run the rounds, print the tables and goals, and write the JSON."""
    started = time.perf_counter()
    written = ensure_dataset(config, ensure_core_venv())
    for path in shard_files(config, FORMAT):
        path.read_bytes()  # warm page cache
    commands = {name: [sys.executable, "-m", "benchmarks.steady", "--pass", name, *size_args(config)] for name in RUNS}
    data = f"written: {', '.join(written)}" if written else "reused"
    print(
        f"steady: {config.samples:,} samples, {config.shard_size:,} per shard, {config.rounds} round(s) of one "
        f"process per variant, 1 warm-up + {PASSES_PER_RUN} timed passes each, prefetch {PREFETCH}; data {data}",
        flush=True,
    )
    runs = run_rounds(commands, config.rounds)
    _check(config, runs)

    results = {name: [p for run in rs for p in run.passes] for name, rs in runs.items()}
    rows = {name: medians(passes) for name, passes in results.items()}
    figures = {name: [run_figures(run) for run in rs] for name, rs in runs.items()}
    checked = goals(runs)
    print(f"\nmedians of the {PASSES_PER_RUN} x {config.rounds} timed passes of each variant")
    print(format_table(rows, ("samples_per_s", "cpu_s", "first_sample_ms", "peak_rss_mb")))
    print("\nspread of the timed passes, per round (slow-fast: the slowest pass minus the fastest):")
    print(format_spread(figures))
    print("\ngoals (median of the per-round values):")
    for goal in checked:
        print(f"  {goal}")
    settings = {
        **dataclasses.asdict(config),
        "format": FORMAT,
        "prefetch": PREFETCH,
        "passes_per_run": PASSES_PER_RUN,
        "warmup_passes": 1,
        "ours_reader": "MessagePackDataLoader(url).get_iter / .aio.get_iter",
    }
    diagnostics = {name: [run.diagnostics for run in rs] for name, rs in runs.items()}
    warmups = {name: [dataclasses.asdict(run.warmup) for run in rs] for name, rs in runs.items()}
    return save_report(
        WORK / "steady-small.json" if config.small else RESULTS,
        "steady",
        settings,
        results,
        started,
        checked,
        medians=rows,
        rounds=figures,
        warmup=warmups,
        diagnostics=diagnostics,
    )


def main(argv: list[str] | None = None) -> int:
    args, config = parse_run_args(argv, "steady", __doc__, RUNS, default_rounds=3)
    if args.pass_name:
        print(RUNS[args.pass_name](config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
