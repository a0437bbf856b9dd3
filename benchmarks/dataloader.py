"""DataLoader benchmark (issue "Training at scale"): a PyTorch `DataLoader` with 2 workers against one
process, over the read benchmark's data, next to PyTorch alone on the same samples held in memory.

Four variants per workload, all through ``DataLoader(batch_size=64)`` with default collation and only
``num_workers`` (0, or 2 forked workers) differing:

- ``squirrel``: ``MessagePackDataLoader(url).get_iter(split_by_worker=True).map(transform)``, read from disk;
- ``pytorch``: a map-style ``Dataset`` over the same images, loaded into one numpy array before the pass (so
  it reads nothing): PyTorch's own ceiling for this transform on this machine.

Three workloads, each the per-sample work of a training input pipeline on 64x64 images:

- ``crop``: random 56x56 crop, random flip, to float CHW, normalise (about 45 µs a sample);
- ``recipe``: torchvision's ImageNet training recipe at this size: RandomResizedCrop(56) with antialiased
  bilinear resize, random flip, ColorJitter(0.4, 0.4, 0.4), normalise (about 200 µs a sample);
- ``multicrop``: DINO-style multi-crop for self-supervised pretraining: the recipe for 2 global views at 56
  and 4 local views at 24 (about 1 ms a sample).

With 2 workers on 2 cores, the main process and both workers share the cores, and every batch crosses a
process boundary (shared memory plus one socket handshake per tensor): that cost is PyTorch's, the
``pytorch`` rows measure it, and the lighter the work the more it weighs. A pass is one epoch in a fresh
process, timed from creating the DataLoader iterator (workers start there) until it is exhausted (workers
joined). CPU s includes the joined workers; peak RSS is this process's RSS plus each worker's private pages
(see `benchmarks._measure.rss_bytes`). Every pass checks it saw every sample exactly once.

    python -m benchmarks.dataloader           # full run: 20,000 samples, 3 rounds
    SQUIRREL_BENCH_SMALL=1 python -m benchmarks.dataloader   # smoke run: 2,000 samples, 1 round
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks._measure import (
    MB,
    RSS_INTERVAL_S,
    TREE_INTERVAL_S,
    Goal,
    PassResult,
    format_table,
    measure,
    medians,
    run_rounds,
    save_report,
)
from benchmarks.core_venv import ensure_core_venv
from benchmarks.read_local import (
    IMAGE_BYTES,
    IMAGE_SHAPE,
    PREFETCH,
    REPO_ROOT,
    SEED,
    WORK,
    Config,
    _size_args,
    ensure_dataset,
    parse_run_args,
    warm_page_cache,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.utils.data

RESULTS = REPO_ROOT / "benchmarks" / "results" / "dataloader.json"
BATCH_SIZE = 64
CROP = 56
LOCAL_CROP = 24
LOCAL_VIEWS = 4
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""The ImageNet channel statistics both workloads normalise with."""
LUMA = (0.299, 0.587, 0.114)
"""RGB -> grey weights (ITU-R 601), as torchvision's ColorJitter uses for contrast and saturation."""
JITTER = 0.4
"""ColorJitter strength: brightness, contrast and saturation factors drawn from [0.6, 1.4]."""
WORKERS = {"1-process": 0, "2-workers": 2}
"""Variant suffix -> DataLoader ``num_workers``."""
WORKLOADS = ("crop", "recipe", "multicrop")
SOURCES = ("squirrel", "pytorch")
PASSES = [f"{workload} {source} {suffix}" for workload in WORKLOADS for source in SOURCES for suffix in WORKERS]
SPEEDUP_GOAL = 1.7
"""The issue's goal: 2 workers vs 1 process, on 2 cores."""
CEILING_GOAL = 0.95
"""Ours with 2 workers against PyTorch alone with 2 workers: what our loader costs inside a DataLoader
(issue 15, goal 9: at least 0.95x in each workload)."""

Transform = Callable[["np.ndarray", int, int], tuple[Any, ...]]


@functools.cache
def _constants() -> dict[str, torch.Tensor]:
    import torch

    return {
        "mean": torch.tensor(MEAN).view(3, 1, 1),
        "std": torch.tensor(STD).view(3, 1, 1),
        "luma": torch.tensor(LUMA).view(3, 1, 1),
    }


def crop(image: np.ndarray, label: int, index: int) -> tuple[torch.Tensor, int, int]:
    """Random 56x56 crop, random horizontal flip, uint8 HWC -> float CHW in [0, 1], normalise.

    Returns ``(image, label, sample index)``; the index lets the pass check its coverage. Randomness comes
    from torch's RNG, which the DataLoader seeds per worker.
    """
    import torch

    top, left = torch.randint(0, IMAGE_SHAPE[0] - CROP + 1, (2,)).tolist()
    patch = image[top : top + CROP, left : left + CROP]
    if torch.rand(()).item() < 0.5:
        patch = patch[:, ::-1]
    tensor = torch.from_numpy(patch.copy()).permute(2, 0, 1).float().div_(255)
    return _normalise(tensor), label, index


def recipe(image: np.ndarray, label: int, index: int) -> tuple[torch.Tensor, int, int]:
    """torchvision's ImageNet training transform at this size: RandomResizedCrop(56, scale=(0.08, 1)),
    random horizontal flip, ColorJitter(0.4, 0.4, 0.4), normalise. Returns ``(image, label, index)``."""
    return _view(image, CROP, (0.08, 1.0)), label, index


def multicrop(image: np.ndarray, label: int, index: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """DINO-style multi-crop for self-supervised pretraining, scaled to 64x64 images: 2 global views
    (`recipe` at 56, scale 0.4-1) and 4 local views (`recipe` at 24, scale 0.05-0.4).

    Returns ``(global views 2x3x56x56, local views 4x3x24x24, label, index)``.
    """
    import torch

    global_views = torch.stack([_view(image, CROP, (0.4, 1.0)) for _ in range(2)])
    local_views = torch.stack([_view(image, LOCAL_CROP, (0.05, 0.4)) for _ in range(LOCAL_VIEWS)])
    return global_views, local_views, label, index


def _view(image: np.ndarray, size: int, scale: tuple[float, float]) -> torch.Tensor:
    """One augmented view: random resized crop (antialiased bilinear) to `size`, random horizontal flip,
    ColorJitter(0.4, 0.4, 0.4) in random order, normalise; written with torch ops."""
    import torch
    import torch.nn.functional as F

    top, left, height, width = _random_resized_box(*image.shape[:2], scale)
    patch = torch.from_numpy(image[top : top + height, left : left + width].copy()).permute(2, 0, 1)
    tensor = F.interpolate(patch[None].float(), size=(size, size), mode="bilinear", antialias=True)[0]
    tensor = tensor.div_(255).clamp_(0, 1)
    if torch.rand(()).item() < 0.5:
        tensor = tensor.flip(-1)
    factors = torch.empty(3).uniform_(1 - JITTER, 1 + JITTER).tolist()
    for adjust in torch.randperm(3).tolist():
        tensor = _JITTERS[adjust](tensor, factors[adjust])
    return _normalise(tensor)


def _random_resized_box(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random box covering a `scale` fraction of the area with aspect 3/4
    to 4/3; the whole image after 10 misses, as torchvision's RandomResizedCrop does."""
    import torch

    for _ in range(10):
        area = height * width * torch.empty(()).uniform_(*scale).item()
        aspect = math.exp(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3)).item())
        box_w, box_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < box_w <= width and 0 < box_h <= height:
            top = int(torch.randint(0, height - box_h + 1, ()))
            left = int(torch.randint(0, width - box_w + 1, ()))
            return top, left, box_h, box_w
    return 0, 0, height, width


def _brightness(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    return tensor.mul_(factor).clamp_(0, 1)


def _contrast(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    mean_grey = (tensor * _constants()["luma"]).sum(0).mean()
    return tensor.mul_(factor).add_((1 - factor) * mean_grey).clamp_(0, 1)


def _saturation(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    grey = (tensor * _constants()["luma"]).sum(0, keepdim=True)
    return tensor.mul_(factor).add_((1 - factor) * grey).clamp_(0, 1)


_JITTERS = (_brightness, _contrast, _saturation)


def _normalise(tensor: torch.Tensor) -> torch.Tensor:
    constants = _constants()
    return tensor.sub_(constants["mean"]).div_(constants["std"])


TRANSFORMS: dict[str, Transform] = {"crop": crop, "recipe": recipe, "multicrop": multicrop}


def squirrel_dataset(url: str, transform: Transform) -> torch.utils.data.IterableDataset:
    """Our loader as a user writes it: split by worker on shard keys, transform each sample."""
    from squirrel.driver import MessagePackDataLoader

    stream = MessagePackDataLoader(url).get_iter(split_by_worker=True, prefetch=PREFETCH)
    return stream.map(lambda s: transform(s.value["image"], s.value["label"], int(s.key))).to_torch_iterable()


def pytorch_dataset(url: str, transform: Transform) -> torch.utils.data.Dataset[Any]:
    """PyTorch alone: every image already in one numpy array (read before the pass), indexed by sample."""
    import numpy as np
    import torch.utils.data

    from squirrel.driver import MessagePackDataLoader

    samples = sorted(MessagePackDataLoader(url).get_iter(), key=lambda s: int(s.key))
    images = np.stack([s.value["image"] for s in samples])
    labels = [int(s.value["label"]) for s in samples]

    class InMemory(torch.utils.data.Dataset[tuple[Any, ...]]):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, index: int) -> tuple[Any, ...]:
            return transform(images[index], labels[index], index)

    return InMemory()


def run_pass(name: str, config: Config) -> PassResult:
    """One epoch of variant `name` ("<workload> <source> <workers>"); one intra-op thread per process."""
    import torch
    import torch.utils.data

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    workload, source, suffix = name.split()
    url = str(config.data / "ours")
    transform = TRANSFORMS[workload]
    if source == "pytorch":
        dataset = pytorch_dataset(url, transform)  # built before the timed pass
    else:
        from squirrel.driver import MessagePackDataLoader  # noqa: F401  (imported before the timed pass)
    seen: set[int] = set()

    def epoch() -> torch.utils.data.DataLoader:
        data = dataset if source == "pytorch" else squirrel_dataset(url, transform)
        return torch.utils.data.DataLoader(data, BATCH_SIZE, num_workers=WORKERS[suffix])

    def weigh(batch: list[torch.Tensor]) -> tuple[int, int]:
        indices = batch[-1]
        seen.update(indices.tolist())
        return len(indices), len(indices) * IMAGE_BYTES  # payload read: the stored images, before cropping

    result = measure(name, epoch, weigh)
    if result.samples != config.samples or seen != set(range(config.samples)):
        raise RuntimeError(f"{name}: {result.samples} samples, {len(seen)} distinct, expected {config.samples}")
    return result


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run the interleaved rounds, print the table, the ratios and the goals, and save them."""
    started = time.perf_counter()
    ensure_dataset(config, ensure_core_venv())
    warm_page_cache(config)
    print(
        f"dataloader: {config.samples:,} samples, {config.shard_size:,} per shard, batch {BATCH_SIZE}, "
        f"{config.rounds} round(s); workloads: {', '.join(WORKLOADS)}",
        flush=True,
    )
    module = [sys.executable, "-m", "benchmarks.dataloader"]
    commands = {name: [*module, "--pass", name, *_size_args(config)] for name in PASSES}
    results = run_rounds(commands, config.rounds, cwd=REPO_ROOT)
    rows = {name: medians(passes) for name, passes in results.items()}

    def rate(workload: str, source: str, suffix: str) -> float:
        return rows[f"{workload} {source} {suffix}"]["samples_per_s"]

    ratios: dict[str, float] = {}
    for workload in WORKLOADS:
        for source in SOURCES:
            ratios[f"{workload} {source}: 2-workers / 1-process"] = rate(workload, source, "2-workers") / rate(
                workload, source, "1-process"
            )
        for suffix in WORKERS:
            ratios[f"{workload} {suffix}: squirrel / pytorch"] = rate(workload, "squirrel", suffix) / rate(
                workload, "pytorch", suffix
            )
    goals = [
        *(
            Goal(
                f"{workload}, squirrel: 2 workers vs 1 process (samples/s), x",
                ratios[f"{workload} squirrel: 2-workers / 1-process"],
                SPEEDUP_GOAL,
            )
            for workload in WORKLOADS
        ),
        *(
            Goal(
                f"{workload}, 2 workers: squirrel vs PyTorch alone (samples/s), x",
                ratios[f"{workload} 2-workers: squirrel / pytorch"],
                CEILING_GOAL,
            )
            for workload in WORKLOADS
        ),
    ]
    print(f"\nmedians of {config.rounds} pass(es) each; payload {config.samples * IMAGE_BYTES / MB:,.2f} MB")
    print(format_table(rows))
    print("(first sample ms: time to the first batch, worker start-up included; CPU s and RSS include workers)")
    print("\nratios (samples/s):")
    print("\n".join(f"  {name}: {value:.3f}" for name, value in ratios.items()))
    print("\ngoals:\n" + "\n".join(f"  {goal}" for goal in goals))
    settings = {
        **dataclasses.asdict(config),
        "batch_size": BATCH_SIZE,
        "num_workers": WORKERS,
        "prefetch": PREFETCH,
        "workloads": {name: (TRANSFORMS[name].__doc__ or "").split("\n\n")[0] for name in WORKLOADS},
        "torch_threads_per_process": 1,
        "rss": "own RSS + Private_Clean + Private_Dirty of each descendant (smaps_rollup)",
        "rss_sampling_s": {"own": RSS_INTERVAL_S, "workers": TREE_INTERVAL_S},
    }
    return save_report(
        WORK / "dataloader-small.json" if config.small else RESULTS,
        "dataloader",
        settings,
        results,
        started,
        medians=rows,
        ratios=ratios,
        goals=goals,
    )


def main(argv: list[str] | None = None) -> int:
    args, config = parse_run_args(argv, "dataloader", __doc__, PASSES, default_rounds=3)
    if args.pass_name:
        print(run_pass(args.pass_name, config).to_json(), flush=True)
    else:
        run_benchmark(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
