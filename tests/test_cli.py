"""The `squirrel` console script, run for real in a subprocess."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from squirrel.cli import main
from squirrel.driver import MessagepackStore, Sample, Shard
from squirrel.index import INDEX_NAME
from tests.helpers import make_shards

SCRIPT = str(Path(sys.executable).with_name("squirrel"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    url = str(tmp_path / "store")
    store = MessagepackStore(url)
    for shard in make_shards(3, 4):
        store.set(shard)
    return url


def test_ls_lists_shards_with_counts_and_sizes(store_path: str) -> None:
    result = run("ls", store_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["shard_000", "shard_001", "shard_002"]
    assert all(r[1] == "4" and int(r[2]) > 0 for r in rows)
    assert "12 samples" in result.stderr


def test_cat_json_summarises_arrays(store_path: str) -> None:
    result = run("cat", store_path, "shard_001", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["key"] for r in records] == ["sh1_00000", "sh1_00001", "sh1_00002", "sh1_00003"]
    assert records[0]["value"] == {"image": "uint8[4, 4, 3]", "label": 0}


def test_errors_are_one_line_and_a_nonzero_exit(store_path: str) -> None:
    result = run("cat", store_path, "missing")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "missing" in result.stderr and "Traceback" not in result.stderr
    debug = run("--debug", "cat", store_path, "missing")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_convert_to_jsonl_and_back(store_path: str, tmp_path: Path) -> None:
    jsonl = str(tmp_path / "as-jsonl")
    result = run("convert", store_path, jsonl, "--to", "jsonl", "--shard-size", "5")
    assert result.returncode == 0, result.stderr
    listed = run("ls", jsonl, "--driver", "jsonl")
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["5", "5", "2"]
    assert "\r" not in result.stderr  # no progress bar when not on a terminal


def test_bench_and_module_entry_point(store_path: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "squirrel", "bench", store_path], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("12 samples in ")


def test_demo_command(tmp_path: Path) -> None:
    result = run("demo", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "read:  10,000 samples" in result.stdout


def test_index_builds_verifies_and_feeds_ls(store_path: str) -> None:
    assert run("index", store_path, "--verify").returncode == 1  # no index yet: one clear line
    built = run("index", store_path)
    assert built.returncode == 0, built.stderr
    assert "indexed 3 objects, 12 samples" in built.stderr
    assert run("index", store_path, "--verify").returncode == 0
    Path(store_path, "shard_001.msgpack").write_bytes(b"changed")
    Path(store_path, "extra.msgpack").write_bytes(b"new")
    checked = run("index", store_path, "--verify")
    assert checked.returncode == 1
    assert "changed:" in checked.stdout and "shard_001" in checked.stdout
    assert "unlisted:" in checked.stdout and "extra" in checked.stdout
    listed = run("ls", store_path)  # from the index: no object is read
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["shard_000", "shard_001", "shard_002"]


def test_convert_to_csv_with_gzip(tmp_path: Path) -> None:
    source = str(tmp_path / "source")
    from squirrel.driver import Sample, Shard

    MessagepackStore(source).set(Shard([Sample({"label": i, "name": f"n{i}"}, key=f"k{i}") for i in range(7)], key="a"))
    target = str(tmp_path / "as-csv")
    result = run("convert", source, target, "--to", "csv", "--to-compression", "gzip", "--shard-size", "4")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in Path(target).iterdir()) == [INDEX_NAME, "shard_000000.csv.gz", "shard_000001.csv.gz"]
    rows = run("cat", target, "shard_000001", "--driver", "csv", "--compression", "gzip", "--json")
    assert [json.loads(line)["value"]["name"] for line in rows.stdout.splitlines()] == ["n4", "n5", "n6"]


def run_inline(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`squirrel ARGS` run in this process (faster than a subprocess); an exception it lets out fails the test."""
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code if isinstance(exit.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def write_index_bytes(store_path: str, data: bytes) -> None:
    Path(store_path, INDEX_NAME).write_bytes(data)


DEEP_INDEX = b"[" * 100_000 + b"]" * 100_000
HUGE_NUMBER_INDEX = (
    b'{"format": "squirrel-index", "version": 1, "suffix": ".msgpack", "compression": null, "objects": '
    b'[{"key": "shard_000", "samples": ' + str(10**400).encode() + b', "bytes": 1, "crc32c": "AAAAAA=="}]}'
)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake: a non-zero exit, one line on stderr naming `needles`, no traceback."""
    assert result.returncode != 0
    assert result.stderr.startswith("squirrel ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize(
    "command",
    [["ls", "{store}"], ["index", "{store}", "--verify"], ["bench", "{store}"], ["convert", "{store}", "{store}-c"]],
    ids=["ls", "index-verify", "bench", "convert"],
)
def test_commands_reading_a_corrupt_index_print_one_line(
    store_path: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_index_bytes(store_path, DEEP_INDEX)
    args = [part.format(store=store_path) for part in command] + (["--to", "jsonl"] if "convert" in command else [])
    assert_one_line_error(run_inline(capsys, *args), "DecodeError", f"{store_path}/{INDEX_NAME}", "nested deeper")


@pytest.mark.parametrize(
    "data", [HUGE_NUMBER_INDEX, gzip.compress(b"garbage"), b'{"format": '], ids=["huge number", "gzip", "truncated"]
)
def test_ls_on_a_corrupt_index_is_one_line(store_path: str, data: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    write_index_bytes(store_path, data)
    assert_one_line_error(run_inline(capsys, "ls", store_path), "DecodeError", f"{store_path}/{INDEX_NAME}")


def test_corrupt_index_shows_no_traceback_unless_debug(store_path: str) -> None:
    write_index_bytes(store_path, DEEP_INDEX)
    assert_one_line_error(run("ls", store_path), "DecodeError", "nested deeper")
    debug = run("--debug", "ls", store_path)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "DecodeError" in debug.stderr


def test_user_errors_inside_an_exception_group_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(tmp_path / "source")
    MessagepackStore(source).set(Shard([Sample({"x": i}, key=f"k{i}") for i in range(3)], key="a"))
    target = tmp_path / "target"
    target.write_text("a file where the target folder should be")
    result = run_inline(capsys, "convert", source, str(target), "--to", "record", "--shard-size", "3")
    assert_one_line_error(result, str(target))


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, store_path: str) -> None:
    def broken(_: object) -> None:
        raise AssertionError("a bug")

    monkeypatch.setattr("squirrel.cli.cmd_ls", broken)
    with pytest.raises(AssertionError, match="a bug"):
        main(["ls", store_path])


HOSTILE_KEYS = [
    "clear\x1b[2J\x1b[Hscreen",
    "forged\nshard_999\t1\t1",
    "carriage\rreturn",
    "c1\x85next-line\x9bcsi",
    "bidi\u202eevil\u2066",
    "tab\tinside",
    "zero\u200bwidth\ufeffbom",
    "line\u2028separator",
    "delete\x7fchar",
]
PRINTABLE_KEY = "plain-ünïcode-中文"


def assert_printable(text: str) -> None:
    """Only printable characters, tabs and newlines: nothing a terminal would act on."""
    assert all(c.isprintable() or c in "\t\n" for c in text), repr(text)


@pytest.fixture
def hostile_store(tmp_path: Path) -> str:
    url = str(tmp_path / "hostile")
    store = MessagepackStore(url)
    for key in [*HOSTILE_KEYS, PRINTABLE_KEY]:
        store.set(Shard([Sample({"x": 1}, key="s")], key=key))
    return url


@pytest.mark.parametrize("indexed", [False, True], ids=["listing", "index"])
def test_ls_escapes_control_characters_in_keys(
    hostile_store: str, indexed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if indexed:
        assert run_inline(capsys, "index", hostile_store).returncode == 0
    result = run_inline(capsys, "ls", hostile_store)
    assert result.returncode == 0, result.stderr
    assert_printable(result.stdout + result.stderr)
    lines = result.stdout.split("\n")
    assert lines.pop() == "" and len(lines) == len(HOSTILE_KEYS) + 1 == len(result.stdout.splitlines())
    assert all(len(line.split("\t")) == 3 for line in lines)
    keys = [line.split("\t")[0] for line in lines]
    assert "clear\\x1b[2J\\x1b[Hscreen" in keys and "bidi\\u202eevil\\u2066" in keys
    assert "forged\\nshard_999\\t1\\t1" in keys and PRINTABLE_KEY in keys


def test_verify_escapes_object_urls(hostile_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inline(capsys, "index", hostile_store).returncode == 0
    for key in ("unlisted\x1b[31m", "two\nlines"):
        Path(hostile_store, f"{key}.msgpack").write_bytes(b"new")
    result = run_inline(capsys, "index", hostile_store, "--verify")
    assert result.returncode == 1
    assert_printable(result.stdout + result.stderr)
    assert len(result.stdout.splitlines()) == 2 and "unlisted\\x1b[31m" in result.stdout


def test_error_messages_escape_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(tmp_path / "no\nindex\x1b[2J")
    result = run_inline(capsys, "index", folder, "--verify")
    assert_printable(result.stderr)
    assert_one_line_error(result, "no\\nindex\\x1b[2J")
    missing = run_inline(capsys, "cat", folder, "gone\x1b]0;title\x07")
    assert_printable(missing.stderr)
    assert_one_line_error(missing, "gone")
    usage = run_inline(capsys, "ls", folder, "extra\x1b[2J", "argument\u202e")
    assert usage.returncode == 2
    assert_printable(usage.stderr)
    assert "extra\\x1b[2J" in usage.stderr and "argument\\u202e" in usage.stderr


@pytest.mark.parametrize(
    ("args", "looked_for"),
    [
        (["ls", "{typo}"], "'.msgpack'"),
        (["index", "{typo}"], "'.msgpack'"),
        (["bench", "{typo}"], "'.msgpack'"),
        (["convert", "{typo}", "{out}", "--to", "jsonl"], "'.msgpack'"),
        (["ls", "{store}", "--driver", "jsonl"], "'.jsonl'"),
        (["ls", "{store}", "--compression", "gzip"], "'.msgpack.gz'"),
    ],
)
def test_reading_nothing_is_an_error_not_zero_samples(
    store_path: str, tmp_path: Path, args: list[str], looked_for: str
) -> None:
    """A typo'd path, the wrong --driver or --compression: one line naming the url and what was looked for,
    exit 1; never "0 shards, 0 samples" and exit 0."""
    filled = [a.format(typo=store_path + "-typo", store=store_path, out=str(tmp_path / "out")) for a in args]
    result = run(*filled)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert f"holds no object ending in {looked_for}" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- the CLI guides its user (issue 14) ------------------------------------------------------------

COMMANDS = ["ls", "index", "cat", "convert", "bench", "inspect", "demo"]


def test_version_prints_the_distribution_version() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"squirrel {version('squirrel-aio')}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_help_has_a_description_and_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    usage, description, *_ = result.stdout.split("\n\n")
    assert usage.startswith(f"usage: squirrel {command}") and len(description.strip()) > 20
    assert "examples:\n" in result.stdout
    examples = result.stdout.split("examples:\n", 1)[1]
    assert f"  squirrel {command} " in examples  # the epilog keeps its line breaks


def test_top_level_help_lists_every_command_on_one_line() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        (line,) = [line for line in lines if line.split()[:1] == [command] or line.startswith(f"    {command} ")]
        assert len(line.split()) > 2, line  # the command, then what it does
    assert "--version" in result.stdout and "info" in result.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_or_after_the_subcommand(store_path: str, where: str) -> None:
    args = ["cat", store_path, "missing"]
    result = run("--debug", *args) if where == "before" else run(*args, "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert run(*args).returncode == 1  # and without it, still one line


def label_store(url: str, count: int = 7, compression: str | None = None) -> str:
    """A messagepack store of `count` CSV-friendly samples (an int and a str) in one shard."""
    samples = [Sample({"label": i, "name": f"n{i}"}, key=f"k{i}") for i in range(count)]
    MessagepackStore(url, compression).set(Shard(samples, key="a"))
    return url


@pytest.mark.parametrize("driver", ["messagepack", "jsonl", "csv", "record"])
def test_convert_writes_an_index_that_verifies(tmp_path: Path, driver: str) -> None:
    source = label_store(str(tmp_path / "source"))
    target = str(tmp_path / "target")
    result = run("convert", source, target, "--to", driver, "--shard-size", "3")
    assert result.returncode == 0, result.stderr
    assert "wrote 7 samples" in result.stderr
    assert (Path(target) / INDEX_NAME).exists()
    verified = run("index", target, "--verify", "--driver", driver)
    assert verified.returncode == 0, verified.stderr + verified.stdout
    listed = run("ls", target, "--driver", driver)
    assert sum(int(line.split("\t")[1]) for line in listed.stdout.splitlines()) == 7


def test_convert_reads_compression_and_writes_to_compression(tmp_path: Path) -> None:
    source = label_store(str(tmp_path / "source"), compression="gzip")
    target = str(tmp_path / "target")
    args = ["convert", source, target, "--compression", "gzip", "--to", "jsonl", "--to-compression", "gzip"]
    result = run(*args, "--to-level", "9")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in Path(target).glob("*.jsonl.gz")] == ["shard_000000.jsonl.gz"]
    assert run("index", target, "--verify", "--driver", "jsonl", "--compression", "gzip").returncode == 0
    help_text = run("convert", "--help").stdout
    assert "--compression" in help_text and "--to-compression" in help_text and "source" in help_text
    refused = run("convert", source, str(tmp_path / "t2"), "--compression", "gzip", "--to", "jsonl", "--to-level", "3")
    assert refused.returncode != 0 and "needs a compression" in refused.stderr


def test_convert_refuses_a_destination_that_holds_data(tmp_path: Path) -> None:
    source = label_store(str(tmp_path / "source"))
    target = str(tmp_path / "target")
    assert run("convert", source, target, "--to", "jsonl").returncode == 0
    before = sorted(p.name for p in Path(target).iterdir())
    assert_one_line_error(run("convert", source, target, "--to", "jsonl"), target, "not empty")
    assert sorted(p.name for p in Path(target).iterdir()) == before


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        ([], "`squirrel index {url}`"),
        (["--driver", "jsonl", "--compression", "gzip"], "`squirrel index {url} --driver jsonl --compression gzip`"),
        (["--format", "squirrel-core"], "`squirrel index {url} --compression gzip --format squirrel-core`"),
    ],
    ids=["defaults", "jsonl-gzip", "squirrel-core"],
)
def test_index_hints_carry_the_flags_that_work(
    tmp_path: Path, flags: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "store")
    result = run_inline(capsys, "index", url, "--verify", *flags)
    assert_one_line_error(result, hint.format(url=url))


def test_inspect_shows_one_screen_about_an_indexed_store(store_path: str) -> None:
    assert run("index", store_path).returncode == 0
    result = run("inspect", store_path)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    fields = {name.strip(): value.strip() for name, value in fields.items()}
    size = sum(p.stat().st_size for p in Path(store_path).glob("*.msgpack"))
    assert fields["driver"] == "messagepack" and fields["compression"] == "none" and fields["format"] == "squirrel"
    assert fields["shards"] == "3" and fields["samples"] == "12" and fields["bytes"] == str(size)
    assert fields["field image"] == "uint8 (4, 4, 3)" and fields["field label"] == "int"
    assert fields["index"] == "fresh"
    assert run("info", store_path).stdout == result.stdout  # the alias


def test_inspect_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    url = label_store(str(tmp_path / "store"), compression="gzip")
    result = run("inspect", url, "--compression", "gzip")
    assert result.returncode == 0, result.stderr
    assert f"unknown (no index: run `squirrel index {url} --compression gzip`)" in result.stdout
    assert "field name:" in result.stdout and "str" in result.stdout
    assert result.stdout.splitlines()[-1].split() == ["index:", "none"]


def test_inspect_says_when_the_index_is_stale(store_path: str) -> None:
    assert run("index", store_path).returncode == 0
    Path(store_path, "shard_001.msgpack").write_bytes(b"changed")
    Path(store_path, "extra.msgpack").write_bytes(Path(store_path, "shard_000.msgpack").read_bytes())
    result = run("inspect", store_path)
    assert result.returncode == 0, result.stderr
    assert "stale: 2 objects differ" in result.stdout


def test_inspect_escapes_field_names_and_refuses_an_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "hostile")
    MessagepackStore(url).set(Shard([Sample({"evil\x1b[2J\nfield": 1})], key="a"))
    result = run_inline(capsys, "inspect", url)
    assert result.returncode == 0, result.stderr
    assert_printable(result.stdout)
    assert "evil\\x1b[2J\\nfield" in result.stdout
    empty = run_inline(capsys, "inspect", str(tmp_path / "nothing"))
    assert_one_line_error(empty, "holds no object ending in '.msgpack'")


# -- progress bars (issue 14) ------------------------------------------------------------------------

TERMINAL_COLUMNS = 120
BAR_WITH_TOTAL = r"100%\|[^|\n\r]*\| {done}/{done} \[\d\d:\d\d<\d\d:\d\d"
"""tqdm's finished bar with a total: the fraction, ``done/total`` and the ETA after the elapsed time."""


def read_terminal(master: int, process: subprocess.Popen[str]) -> str:
    """All `process` writes to the terminal whose master side is `master`, until it closes it."""
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            process.kill()
            raise AssertionError(f"{process.args} wrote nothing to its terminal for 120 s")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every process holding the terminal's side exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def run_on_a_terminal(*args: str) -> subprocess.CompletedProcess[str]:
    """`squirrel ARGS` with standard error on a pseudo-terminal (an interactive shell), standard output piped:
    `stderr` is what the terminal showed."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, TERMINAL_COLUMNS, 0, 0))
    try:
        with subprocess.Popen(
            [SCRIPT, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, text=True
        ) as process:
            os.close(terminal)
            terminal = -1
            shown = read_terminal(master, process)
            assert process.stdout is not None
            stdout = process.stdout.read()
            code = process.wait(timeout=120)
    finally:
        os.close(master)
        if terminal >= 0:
            os.close(terminal)
    return subprocess.CompletedProcess([SCRIPT, *args], code, stdout, shown)


def assert_no_bar(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "%|" not in result.stderr and "\x1b[" not in result.stderr, result.stderr


def assert_bar(result: subprocess.CompletedProcess[str], done: int) -> None:
    assert result.returncode == 0, result.stderr
    assert re.search(BAR_WITH_TOTAL.format(done=done), result.stderr), result.stderr


def indexed(url: str) -> str:
    assert run("index", url).returncode == 0
    return url


@pytest.mark.parametrize(
    ("args", "done"),
    [
        (["index", "{store}"], 3),  # objects, from a listing
        (["index", "{indexed}", "--verify"], 3),  # objects, from the index
        (["bench", "{store}"], 3),  # objects, from a listing (no index: the sample count is unknown)
        (["bench", "{indexed}"], 12),  # samples, from the index
        (["convert", "{store}", "{out}", "--to", "jsonl", "--shard-size", "5"], 3),
        (["convert", "{indexed}", "{out}", "--to", "record"], 12),
    ],
    ids=["index", "index-verify", "bench-listing", "bench-index", "convert-listing", "convert-index"],
)
def test_long_commands_show_a_bar_with_a_total_on_a_terminal_only(tmp_path: Path, args: list[str], done: int) -> None:
    def filled(name: str) -> list[str]:
        store = str(tmp_path / name / "store")
        for shard in make_shards(3, 4):
            MessagepackStore(store).set(shard)
        if "{indexed}" in args:
            indexed(store)
        return [a.format(store=store, indexed=store, out=str(tmp_path / name / "out")) for a in args]

    assert_no_bar(run(*filled("piped")))
    assert_bar(run_on_a_terminal(*filled("terminal")), done)


# -- what bench and the demo measure (issue 14) ------------------------------------------------------

READ_FIGURES = (
    r"(?P<samples>[\d,]+) samples in \d+\.\d\d s: [\d,]+ samples/s, [\d,]+\.\d MB/s; "
    r"first sample after \d+ ms, then [\d,]+ samples/s"
)
"""The figures of a timed read, as `ReadTiming.figures` prints them for both `squirrel bench` and the demo."""


def test_measure_read_counts_samples_stored_bytes_and_the_first_sample(store_path: str) -> None:
    from squirrel.cli.measure import measure_read
    from squirrel.driver import MessagePackDataLoader

    timing = measure_read(MessagePackDataLoader(store_path).get_iter())
    assert timing.samples == 12
    assert timing.stored_bytes == sum(p.stat().st_size for p in Path(store_path).glob("*.msgpack"))
    assert 0 < timing.first_seconds <= timing.seconds
    assert timing.first is not None and timing.first.key == "sh0_00000"
    assert re.fullmatch(READ_FIGURES, timing.figures())


def test_bench_says_what_it_measures(store_path: str) -> None:
    from squirrel.cli.measure import MEASURED

    result = run("bench", store_path, "--passes", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    passes = [re.fullmatch(rf"pass (\d) of 2: {READ_FIGURES}", line) for line in lines[:2]]
    assert [(match[1], match["samples"]) for match in passes if match] == [("1", "12"), ("2", "12")]
    assert f"measured: {MEASURED}" in lines
    assert any("fresh process" in line for line in lines)


def test_cli_is_a_package_of_small_modules_behind_the_same_entry_point() -> None:
    import ast
    from importlib.metadata import entry_points

    import squirrel.cli

    (script,) = [point for point in entry_points(group="console_scripts") if point.name == "squirrel"]
    assert script.value == "squirrel.cli:main" and script.load() is squirrel.cli.main
    modules = sorted(Path(squirrel.cli.__file__).parent.glob("*.py"))
    assert len(modules) > 4
    for module in modules:
        text = module.read_text()
        assert len(text.splitlines()) < 350, module
        tree = ast.parse(text)
        assigned = [n.targets[0] for n in tree.body if isinstance(n, ast.Assign)]
        assert any(isinstance(t, ast.Name) and t.id == "__all__" for t in assigned), module
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
        if module.name != "__init__.py":  # no cycle: a command module never imports the package or the demo script
            assert not imported & {"squirrel.cli", "squirrel.demo", "squirrel"}, module
