"""`squirrel demo` / ``python -m squirrel.demo``: writes only into a folder it may own, and reruns in place."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from squirrel.cli import main as cli_main
from squirrel.demo import MARKER, main

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {"samples": 40, "shards": 4}


def user_folder(tmp_path: Path) -> Path:
    """A folder holding a file of the user's."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    return folder


def test_refuses_a_folder_it_did_not_create(tmp_path: Path) -> None:
    folder = user_folder(tmp_path)
    with pytest.raises(FileExistsError, match="did not write") as error:
        main(str(folder), **SMALL)
    assert str(folder) in str(error.value)
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_refuses_its_own_folder_once_the_user_added_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    main(str(folder), **SMALL)
    (folder / "notes.txt").write_text("mine")
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        main(str(folder), **SMALL)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("data")
    with pytest.raises(NotADirectoryError, match=re.escape(str(path))):
        main(str(path), **SMALL)
    assert path.read_text() == "data"


def test_runs_twice_on_the_same_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "demo"
    main(str(folder), **SMALL)
    main(str(folder), **SMALL)
    assert capsys.readouterr().out.count("read:  40 samples") == 2
    assert (folder / MARKER).is_file()
    main(str(folder), samples=20, shards=2)  # fewer shards: the earlier run's extra ones are removed
    assert "read:  20 samples" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "shard_00.msgpack", "shard_01.msgpack"]


def test_uses_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    main(str(folder), **SMALL)
    assert "read:  40 samples" in capsys.readouterr().out


def test_cli_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = user_folder(tmp_path)
    assert cli_main(["demo", str(folder)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("squirrel demo: FileExistsError: ") and error.count("\n") == 1 and str(folder) in error
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_module_refuses_in_one_line(tmp_path: Path) -> None:
    folder = user_folder(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "squirrel.demo", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(folder) in result.stderr
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_demo_prints_what_it_measures_as_bench_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from squirrel.cli.measure import MEASURED
    from tests.test_cli import READ_FIGURES

    folder = tmp_path / "demo"
    main(str(folder), **SMALL)
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(f"read:  {READ_FIGURES}", line) for line in lines), lines
    assert f"measured: {MEASURED}" in lines
    assert any("squirrel bench" in line for line in lines)  # how to measure the same in a fresh process
    assert cli_main(["bench", str(folder)]) == 0
    bench = capsys.readouterr().out.splitlines()
    assert re.fullmatch(READ_FIGURES, bench[0]) and f"measured: {MEASURED}" in bench
