"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, its pages hold their code,
the API reference names every public name, and every ```python block of docs/ runs.

The site is built once per module into a temporary folder with ``mkdocs build --strict``, so a broken link, a
missing page or a docstring griffe cannot parse fails CI. Each page's python blocks run in order, as one
script, in a fresh process and an empty working directory (what a reader pasting them would get). A page that
uses ``gs://my-bucket`` or ``s3://my-bucket`` runs against the test servers, its bucket name replaced by a
fresh bucket's.
"""

from __future__ import annotations

import html
import importlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmarks import charts

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC_MODULES = (
    "squirrel",
    "squirrel.driver",
    "squirrel.driver.file_driver",
    "squirrel.aio",
    "squirrel.aio.bulk",
    "squirrel.aio.retry",
    "squirrel.bulk",
    "squirrel.iterstream",
    "squirrel.iterstream.base",
    "squirrel.iterstream.mixing",
    "squirrel.iterstream.torch",
    "squirrel.sample",
    "squirrel.index",
    "squirrel.metrics",
    "squirrel.errors",
    "squirrel.codec",
)
"""The modules a user imports from (the README's and the docs' examples); each has an API page."""
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
DOC_BUCKET = "my-bucket"
BLOCK_TIMEOUT_S = 120
WARNINGS = (
    "error",
    # torchdata 0.11 (its latest release) calls torch.set_vital, which torch 2.13 deprecates, in every constructor.
    "ignore:'set_vital' is deprecated:UserWarning",
)
"""The examples run with warnings as errors (as the tests do), but for these third-party ones."""


class _Page(HTMLParser):
    """The element ids and the text of each ``<pre>`` code block of a built page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.blocks: list[str] = []
        self._pre: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)
        if tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self._pre is not None:
            self.blocks.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._pre.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def _markdown_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def _built(site: Path, page: Path) -> Path:
    """The HTML file mkdocs builds from markdown `page` (``a/b.md`` -> ``a/b/index.html``)."""
    relative = page.relative_to(DOCS).with_suffix("")
    if relative.name == "index":
        return site / relative.parent / "index.html"
    return site / relative / "index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
    done = subprocess.run([*command, "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_page_is_built_with_its_code_blocks(site: Path) -> None:
    for page in _markdown_pages():
        built = _built(site, page)
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built (is it in mkdocs.yml's nav?)"
        blocks = [html.unescape(block) for block in _parse(built).blocks]
        for source in _python_blocks(page):
            assert source in blocks, f"{built.relative_to(site)} lacks this block of {page.name}:\n{source}"


def test_quickstart_holds_sync_async_gcs_and_s3_examples(site: Path) -> None:
    blocks = _parse(site / "quickstart" / "index.html").blocks
    code = "\n".join(html.unescape(block) for block in blocks)
    for needle in ("MessagePackDataLoader(", "asyncio.run(", "gs://", "s3://", "write_shards("):
        assert needle in code, f"the quickstart's code blocks lack {needle!r}"


@pytest.fixture(scope="module")
def api(site: Path) -> dict[str, _Page]:
    """The built API reference pages, by file name (``driver``, ``aio``, ...)."""
    return {path.parent.name: _parse(path) for path in sorted((site / "api").glob("*/index.html"))}


def test_api_pages_hold_their_signatures(api: dict[str, _Page]) -> None:
    assert {"driver", "aio", "iterstream", "bulk", "data", "errors", "codec"} <= set(api)
    for name, page in api.items():
        assert page.blocks, f"api/{name} holds no code block"
    signatures = "\n".join(html.unescape(block) for block in api["aio"].blocks)
    assert re.search(r"get_iter\(\s*key_iterator", signatures), "AsyncRecordLoader.get_iter's signature is missing"
    assert "shuffle_item_buffer: int = 1" in signatures


def _documented(name: str, ids: set[str]) -> bool:
    """Whether object `name` (``module.attribute``) has an API entry, under this name or another public one
    (a re-export, an alias: ``MessagepackLoader`` is ``MessagePackDataLoader``)."""
    if name in ids:
        return True
    module, attribute = name.rsplit(".", 1)
    target = getattr(importlib.import_module(module), attribute)
    for entry in ids:
        parent, _, child = entry.rpartition(".")
        if parent in PUBLIC_MODULES and getattr(importlib.import_module(parent), child, None) is target:
            return True
    return False


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_has_every_public_name(site: Path, api: dict[str, _Page], module: str) -> None:
    ids = set().union(*(page.ids for page in api.values()))
    text = "\n".join(path.read_text() for path in (site / "api").glob("*/index.html"))
    assert module in ids, f"no API entry for the module {module}"
    for name in importlib.import_module(module).__all__:
        assert re.search(rf"\b{re.escape(name)}\b", text), f"{module}.{name} is not named in the API reference"
        assert _documented(f"{module}.{name}", ids), f"{module}.{name} has no entry in the API reference"


def _script(page: Path, buckets: dict[str, str]) -> str:
    """The python blocks of `page` as one script, each after a comment naming its place in the page."""
    text = page.read_text()
    parts = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 2
        source = match.group(1)
        for scheme, bucket in buckets.items():
            source = source.replace(f"{scheme}://{DOC_BUCKET}/", f"{scheme}://{bucket}/")
        parts.append(f"# {page.relative_to(ROOT)}, line {line}\n{source}")
    return "\n".join(parts)


PAGES_WITH_CODE = [page for page in _markdown_pages() if _python_blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(DOCS)) for p in PAGES_WITH_CODE])
def test_python_blocks_run(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    text = page.read_text()
    buckets = {}
    if f"gs://{DOC_BUCKET}/" in text:
        buckets["gs"] = request.getfixturevalue("gcs_bucket")
    if f"s3://{DOC_BUCKET}/" in text:
        buckets["s3"] = request.getfixturevalue("s3_bucket")
    script = tmp_path / "docs_example.py"
    script.write_text(_script(page, buckets))
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, *(f"-W{rule}" for rule in WARNINGS), str(script)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert done.returncode == 0, f"the python blocks of {page.relative_to(ROOT)} failed:\n{done.stderr[-4000:]}"


def test_benchmark_charts_are_drawn_from_the_results_and_shown(tmp_path: Path) -> None:
    written = charts.write_charts(out=tmp_path)
    names = {path.stem for path in written}
    assert "headline" in names and names <= {*charts.CHARTS, "headline"}
    page = (DOCS / "benchmarks.md").read_text()
    for path in written:
        svg = ET.fromstring(path.read_text())
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.findall(".//{http://www.w3.org/2000/svg}rect")
        assert (DOCS / "images" / path.name).is_file(), f"docs/images/{path.name} is missing: run make bench"
        assert f"images/{path.name}" in page, f"docs/benchmarks.md does not show {path.name}"


def test_a_chart_leaves_out_what_a_run_did_not_measure() -> None:
    chart = charts.read_local_chart({"medians": {"ours": {"samples_per_s": 1000.0}, "core-gzip": {}}})
    assert [bar.label for bar in chart.bars] == ["MessagePackDataLoader"]
    assert "1,000/s" in charts.render(chart)
