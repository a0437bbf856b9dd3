"""SVG bar charts of the benchmarks' headline figures, for the documentation site (docs/images/*.svg).

Reads the JSON reports that ``make bench`` writes to benchmarks/results/ and draws one horizontal bar chart
per report, plus ``headline.svg`` with the ratios against the peers. The SVG is written by hand (no
plotting library): labels, bars and values are plain text elements, so the charts stay readable in a diff.
A report that is missing, or a variant a run left out (a smoke run, litdata unavailable), is skipped.
Output depends on the reports only (no dates), so re-running on the same results changes nothing.

    python -m benchmarks.charts                 # benchmarks/results -> docs/images
    python -m benchmarks.charts --results DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"
IMAGES = REPO_ROOT / "docs" / "images"

COLORS = {"ours": "#2b6cb0", "peer": "#a0aec0", "reference": "#68d391"}
"""Bar colour by kind: this project, a peer library, a hand-written reference or bound."""
LEGEND = {"ours": "squirrel", "peer": "peer", "reference": "reference / bound"}

WIDTH = 760
MIN_LABEL_WIDTH = 120
VALUE_WIDTH = 150
ROW = 26
BAR = 18
TOP = 58
BOTTOM = 34


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value, the text printed after it and its kind (a key of `COLORS`)."""

    label: str
    value: float
    text: str
    kind: str = "ours"


@dataclass(frozen=True)
class Chart:
    """A horizontal bar chart: file name (without .svg), title, subtitle, bars; `log` for a log10 axis and
    `reference_line` for a vertical rule at that value (1.0 for ratios)."""

    name: str
    title: str
    subtitle: str
    bars: tuple[Bar, ...]
    log: bool = False
    reference_line: float | None = None


def rate(value: float) -> str:
    """A throughput as printed on a bar: ``107,269/s``, or ``14.5/s`` below 100."""
    return f"{value:,.0f}/s" if value >= 100 else f"{value:,.3g}/s"


def ratio(value: float) -> str:
    """A ratio as printed on a bar: ``57x``, ``4.7x``, ``0.86x``."""
    return f"{value:,.0f}x" if value >= 20 else f"{value:.2g}x" if value < 1 else f"{value:.1f}x"


def _samples_per_s(report: dict[str, Any], variant: str) -> float | None:
    figure = report.get("medians", {}).get(variant, {}).get("samples_per_s")
    return float(figure) if isinstance(figure, int | float) and figure > 0 else None


def _rate_bars(report: dict[str, Any], variants: Sequence[tuple[str, str, str]]) -> tuple[Bar, ...]:
    """Bars of samples/s for `variants` (variant, label, kind) that the report holds."""
    bars = []
    for variant, label, kind in variants:
        value = _samples_per_s(report, variant)
        if value is not None:
            bars.append(Bar(label, value, rate(value), kind))
    return tuple(bars)


def _setting(report: dict[str, Any]) -> str:
    """The dataset and machine of a report, for a subtitle."""
    config, environment = report.get("config", {}), report.get("environment", {})
    parts = []
    if "samples" in config:
        parts.append(f"{config['samples']:,} samples")
    if "shard_size" in config:
        parts.append(f"{config['shard_size']:,} per shard")
    if "cpus" in environment:
        parts.append(f"{environment['cpus']} CPUs")
    return ", ".join(parts)


def read_local_chart(report: dict[str, Any]) -> Chart:
    """Local-disk read throughput: our loader, the references and the peers."""
    variants = [
        ("ours", "MessagePackDataLoader", "ours"),
        ("ours-async", "AsyncMessagepackLoader", "ours"),
        ("ours-gzip", "MessagePackDataLoader, gzip", "ours"),
        ("ref", "hand-written reader (1 thread)", "reference"),
        ("ref-gzip", "hand-written reader, gzip", "reference"),
        ("litdata", "litdata StreamingDataset", "peer"),
        ("core-gzip", "squirrel-core 0.20 (gzip)", "peer"),
    ]
    subtitle = f"samples/s, median of fresh processes; {_setting(report)}"
    return Chart("read_local", "Read from local disk", subtitle, _rate_bars(report, variants))


def read_gcs_chart(report: dict[str, Any]) -> Chart:
    """gs:// read throughput with 20 ms added to every request."""
    delay = report.get("config", {}).get("delay_s", 0.02) * 1000
    variants = [
        ("ours-sync", "MessagePackDataLoader", "ours"),
        ("ours-async", "AsyncMessagepackLoader", "ours"),
        ("core-w16", "squirrel-core 0.20, best setting", "peer"),
    ]
    subtitle = f"samples/s from a local GCS server, {delay:.0f} ms per request; {_setting(report)}"
    return Chart("read_gcs", "Read from gs://", subtitle, _rate_bars(report, variants), log=True)


def write_bulk_chart(report: dict[str, Any]) -> Chart:
    """Bulk write throughput to local disk."""
    variants = [
        ("ours", "write_shards, uncompressed", "ours"),
        ("ours-gzip", "write_shards, gzip", "ours"),
        ("core-gzip", "squirrel-core 0.20 (gzip)", "peer"),
    ]
    subtitle = f"samples/s written to local disk; {_setting(report)}"
    return Chart("write_bulk", "Bulk write", subtitle, _rate_bars(report, variants))


def read_records_chart(report: dict[str, Any]) -> Chart:
    """One-sample records: the loader against a plain serial loop."""
    variants = [("loader", "RecordLoader", "ours"), ("serial", "serial open/read/decode loop", "reference")]
    records = report.get("config", {}).get("records", 0)
    subtitle = f"samples/s over {records:,} one-sample records on local disk"
    return Chart("read_records", "Read one-sample records", subtitle, _rate_bars(report, variants))


def cache_chart(report: dict[str, Any]) -> Chart:
    """The local shard cache: remote reads without, with a cold and with a warm cache."""
    delay = report.get("config", {}).get("delay_s", 0.02) * 1000
    variants = [
        ("local", "local disk", "reference"),
        ("remote", f"gs:// ({delay:.0f} ms/request), no cache", "ours"),
        ("cold", "gs://, cold cache (first epoch)", "ours"),
        ("warm", "gs://, warm cache (later epochs)", "ours"),
    ]
    subtitle = f"samples/s, get_iter(cache_dir=..., cache_limit=...); {_setting(report)}"
    return Chart("cache", "Shard cache", subtitle, _rate_bars(report, variants))


def dataloader_chart(report: dict[str, Any]) -> Chart:
    """PyTorch DataLoader: the speed-up of 2 workers over 1 process, ours and PyTorch alone."""
    ratios = report.get("ratios", {})
    names = {"crop": "crop", "recipe": "ImageNet recipe", "multicrop": "multi-crop"}
    bars = []
    for workload, name in names.items():
        for who, label, kind in (("squirrel", "squirrel", "ours"), ("pytorch", "PyTorch alone", "peer")):
            value = ratios.get(f"{workload} {who}: 2-workers / 1-process")
            if isinstance(value, int | float) and value > 0:
                bars.append(Bar(f"{name}: {label}", value, ratio(value), kind))
    subtitle = "samples/s with 2 workers / in 1 process (1.0x: no gain); PyTorch alone reads from memory"
    return Chart("dataloader", "DataLoader workers", subtitle, tuple(bars), reference_line=1.0)


def write_dask_chart(report: dict[str, Any]) -> Chart:
    """dask: one task per shard against one task per sample."""
    summary = report.get("summary", {})
    labels = {"per-shard": ("one task per shard", "ours"), "per-sample": ("one task per sample", "reference")}
    bars = []
    for variant, (label, kind) in labels.items():
        value = summary.get(variant, {}).get("samples_per_s")
        if isinstance(value, int | float) and value > 0:
            bars.append(Bar(label, value, rate(value), kind))
    workers = report.get("config", {}).get("workers", 2)
    subtitle = f"samples/s written by write_shards on a {workers}-worker LocalCluster"
    return Chart("write_dask", "Bulk write on dask", subtitle, tuple(bars), log=True)


def _ratio_of(report: dict[str, Any], ours: str, peer: str) -> float | None:
    numerator, denominator = _samples_per_s(report, ours), _samples_per_s(report, peer)
    return numerator / denominator if numerator and denominator else None


def headline_chart(reports: dict[str, dict[str, Any]]) -> Chart:
    """The ratios of this project's figures to its peers', one bar each, from every report present."""
    found: list[tuple[str, float | None]] = []
    if "read_local" in reports:
        found.append(("local read vs squirrel-core", _ratio_of(reports["read_local"], "ours", "core-gzip")))
        found.append(("local read, gzip vs squirrel-core", _ratio_of(reports["read_local"], "ours-gzip", "core-gzip")))
        found.append(("local read vs litdata", _ratio_of(reports["read_local"], "ours", "litdata")))
    if "read_gcs" in reports:
        found.append(("gs:// read vs squirrel-core", _ratio_of(reports["read_gcs"], "ours-sync", "core-w16")))
    if "write_bulk" in reports:
        found.append(("bulk write, gzip vs squirrel-core", _ratio_of(reports["write_bulk"], "ours-gzip", "core-gzip")))
    if "write_dask" in reports:
        speedup = reports["write_dask"].get("speedup")
        found.append(("dask, per shard vs per sample", float(speedup) if isinstance(speedup, int | float) else None))
    if "cache" in reports:
        found.append(("warm cache vs no cache (gs://)", _ratio_of(reports["cache"], "warm", "remote")))
    bars = tuple(Bar(label, value, ratio(value)) for label, value in found if value)
    subtitle = "this project's throughput / the peer's, same machine, same data; 1x: equal"
    return Chart("headline", "Headline ratios", subtitle, bars, log=True, reference_line=1.0)


CHARTS: dict[str, Callable[[dict[str, Any]], Chart]] = {
    "read_local": read_local_chart,
    "read_gcs": read_gcs_chart,
    "read_records": read_records_chart,
    "write_bulk": write_bulk_chart,
    "write_dask": write_dask_chart,
    "dataloader": dataloader_chart,
    "cache": cache_chart,
}
"""The chart of each report, by the report's file name (without .json)."""


def _label_width(chart: Chart) -> int:
    """The width of the label column: the longest label at about 7.2 px a character (13 px sans-serif)."""
    return max(MIN_LABEL_WIDTH, round(7.2 * max(len(bar.label) for bar in chart.bars)) + 16)


def _scale(chart: Chart, span: float) -> Callable[[float], float]:
    """Bar length in pixels of a value, linear from 0 or log10 from a power of ten below the smallest."""
    values = [bar.value for bar in chart.bars] + ([chart.reference_line] if chart.reference_line else [])
    if chart.log:
        low = 10 ** math.floor(math.log10(min(values)))
        if low == min(values):
            low /= 10
        high = math.log10(max(values) / low)
        return lambda value: span * math.log10(value / low) / high
    top = max(values)
    return lambda value: span * value / top


def render(chart: Chart) -> str:
    """The chart as a standalone SVG document."""
    height = TOP + ROW * len(chart.bars) + BOTTOM
    left = _label_width(chart)
    subtitle = f"{chart.subtitle} (log scale)" if chart.log else chart.subtitle
    scale = _scale(chart, WIDTH - left - VALUE_WIDTH)
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">{escape(chart.title)}</text>',
        f'<text x="10" y="42" fill="#4a5568">{escape(subtitle)}</text>',
    ]
    if chart.reference_line is not None:  # drawn first, so bars and values stay on top of it
        x = left + scale(chart.reference_line)
        rule = f'x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{TOP + ROW * len(chart.bars)}"'
        lines.append(f'<line {rule} stroke="#e53e3e" stroke-dasharray="4 3"/>')
    for row, bar in enumerate(chart.bars):
        y = TOP + row * ROW
        length = max(scale(bar.value), 1.0)
        lines += [
            f'<text x="{left - 8}" y="{y + BAR - 5}" text-anchor="end">{escape(bar.label)}</text>',
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{BAR}" fill="{COLORS[bar.kind]}"/>',
            f'<text x="{left + length + 6:.1f}" y="{y + BAR - 5}">{escape(bar.text)}</text>',
        ]
    legend_y = height - 12
    kinds = sorted({bar.kind for bar in chart.bars}, key=list(COLORS).index)
    x = 10
    for kind in kinds:
        lines.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{COLORS[kind]}"/>')
        lines.append(f'<text x="{x + 18}" y="{legend_y}">{LEGEND[kind]}</text>')
        x += 40 + 8 * len(LEGEND[kind])
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def load_reports(results: Path) -> dict[str, dict[str, Any]]:
    """The reports in `results` that have a chart, by name; unreadable or missing ones are left out."""
    reports = {}
    for name in CHARTS:
        path = results / f"{name}.json"
        try:
            reports[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return reports


def write_charts(results: Path = RESULTS, out: Path = IMAGES) -> list[Path]:
    """Draw every chart whose report is in `results` into `out` (created if needed); the paths written."""
    reports = load_reports(results)
    charts = [CHARTS[name](report) for name, report in reports.items()]
    charts.append(headline_chart(reports))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        if not chart.bars:
            continue
        path = out / f"{chart.name}.svg"
        path.write_text(render(chart))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON reports")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder of the SVG charts")
    args = parser.parse_args(argv)
    for path in write_charts(args.results, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
