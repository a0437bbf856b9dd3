"""The `squirrel` console script, run for real in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from squirrel.driver import MessagepackStore
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
    assert sorted(p.name for p in Path(target).iterdir()) == ["shard_000000.csv.gz", "shard_000001.csv.gz"]
    rows = run("cat", target, "shard_000001", "--driver", "csv", "--compression", "gzip", "--json")
    assert [json.loads(line)["value"]["name"] for line in rows.stdout.splitlines()] == ["n4", "n5", "n6"]
