"""DataLoader benchmark (issue "Training at scale"): a PyTorch `DataLoader` with 2 workers against one
process, over the read benchmark's data, with the per-sample work of a real input pipeline.

Each pass is a fresh process; peak RSS counts the whole process tree (workers included).

    python -m benchmarks.dataloader           # full run: 20,000 samples, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.dataloader
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Any

from benchmarks._measure import (
    MB,
    Goal,
    PassResult,
    format_table,
    measure,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import ensure_core_venv
from benchmarks.read_local import IMAGE_BYTES, REPO_ROOT, WORK, Config, ensure_dataset, parse_run_args

RESULTS = REPO_ROOT / "benchmarks" / "results" / "dataloader.json"
BATCH_SIZE = 64
PASSES = ("1-process", "2-workers")


@functools.cache
def _normalisation() -> tuple[Any, Any]:
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return mean, std


def to_tensors(sample: Any) -> tuple[Any, int]:
    """What a training input pipeline does per sample: a random 56x56 crop, a random horizontal flip,
    then HWC uint8 -> CHW float normalised per channel (the ImageNet means and deviations)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(int(sample.value["label"]) + len(sample.key))
    top, left = rng.integers(0, 9, size=2)
    image = sample.value["image"][top : top + 56, left : left + 56]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    mean, std = _normalisation()
    return (tensor - mean) / std, sample.value["label"]


def _weigh_batch(batch: tuple[Any, Any]) -> tuple[int, int]:
    images, _ = batch
    return len(images), len(images) * IMAGE_BYTES  # payload read: the stored images, before cropping


def run_pass(name: str, config: Config) -> PassResult:
    """One epoch through a DataLoader, in this process or with 2 workers."""
    import torch
    import torch.utils.data

    from squirrel.driver import MessagePackDataLoader

    torch.set_num_threads(1)
    workers = 2 if name == "2-workers" else 0
    url = str(config.data / "ours")

    def epoch() -> torch.utils.data.DataLoader:
        stream = MessagePackDataLoader(url).get_iter(split_by_worker=workers > 0, prefetch=4)
        return torch.utils.data.DataLoader(stream.map(to_tensors).to_torch_iterable(), BATCH_SIZE, num_workers=workers)

    return measure(name, epoch, _weigh_batch)


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run the interleaved rounds, print the table, the ratio and the goal, and save them."""
    started = time.perf_counter()
    ensure_dataset(config, ensure_core_venv())
    sizes = ["--samples", str(config.samples), "--shard-size", str(config.shard_size)]
    commands = {name: [sys.executable, "-m", "benchmarks.dataloader", "--pass", name, *sizes] for name in PASSES}
    print(f"dataloader: {config.samples:,} samples, batch {BATCH_SIZE}, {config.rounds} round(s)", flush=True)
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    rows = {name: medians(passes) for name, passes in results.items()}
    speedup = rows["2-workers"]["samples_per_s"] / rows["1-process"]["samples_per_s"]
    goal = Goal("2 workers vs 1 process, x", speedup, 1.7)
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print(f"\nratio 2-workers / 1-process: {speedup:.2f}\ngoal:\n  {goal}")
    results_path = WORK / "dataloader-small.json" if config.small else RESULTS
    settings = {**dataclasses.asdict(config), "batch_size": BATCH_SIZE, "cpus": os.cpu_count()}
    return save_report(
        results_path, "dataloader", settings, results, started, medians=rows, ratio=speedup, goals=[goal.to_dict()]
    )


def main(argv: list[str] | None = None) -> int:
    args, config = parse_run_args(argv, "dataloader", __doc__, PASSES)
    if args.pass_name:
        print(run_pass(args.pass_name, config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
