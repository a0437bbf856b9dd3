"""`cleanup()` on local disk removes only the stale temp files squirrel's own atomic writes left behind."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

import pytest

from squirrel.aio.stores.local import remove_stale_temp_files, write_local_atomically
from squirrel.driver import MessagepackStore, Sample

if TYPE_CHECKING:
    from pathlib import Path

HOUR = 3600.0
OURS = ".data.msgpack.0123456789abcdef0123456789abcdef.tmp"


def _age(path: Path, seconds: float) -> None:
    """Set `path`'s modification time `seconds` in the past (not following a symlink)."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _make_user_entries(folder: Path) -> list[Path]:
    """Stale entries that look like temp files but that squirrel did not write."""
    (folder / ".notes.tmp").write_text("a user's notes")
    (folder / ".x.tmp").mkdir()
    (folder / ".x.tmp" / "inside").write_text("kept")
    (folder / f".{'a' * 10}.{'0' * 31}.tmp").write_text("31 hex digits")
    (folder / f".data.{'A' * 32}.tmp").write_text("upper-case hex")
    (folder / f"data.{'0' * 32}.tmp").write_text("not hidden")
    (folder / f"..{'0' * 32}.tmp").write_text("no name")
    (folder / f".data.{'0' * 32}.tmp.bak").write_text("other ending")
    (folder / f".link.{'0' * 32}.tmp").symlink_to(folder / ".notes.tmp")
    entries = sorted(folder.iterdir())
    for entry in entries:
        _age(entry, HOUR)
    return entries


def test_a_users_hidden_tmp_file_and_folder_survive_cleanup(tmp_path: Path) -> None:
    kept = _make_user_entries(tmp_path)
    (tmp_path / OURS).write_bytes(b"partial")
    _age(tmp_path / OURS, HOUR)
    assert remove_stale_temp_files(str(tmp_path), older_than=60) == [str(tmp_path / OURS)]
    assert sorted(tmp_path.iterdir()) == kept
    assert (tmp_path / ".notes.tmp").read_text() == "a user's notes"
    assert (tmp_path / ".x.tmp" / "inside").read_text() == "kept"


def test_a_fresh_temp_file_survives_and_a_stale_one_goes(tmp_path: Path) -> None:
    fresh = tmp_path / ".fresh.msgpack.fedcba9876543210fedcba9876543210.tmp"
    fresh.write_bytes(b"a write under way")
    (tmp_path / OURS).write_bytes(b"left by a killed writer")
    _age(tmp_path / OURS, HOUR)
    assert remove_stale_temp_files(str(tmp_path), older_than=60) == [str(tmp_path / OURS)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name]


def test_the_name_write_local_atomically_uses_is_the_one_cleanup_removes(tmp_path: Path, monkeypatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def keep_a_copy(source: str, target: str) -> None:
        seen.append(os.path.basename(source))
        with open(source, "rb") as file, open(source + ".copy", "wb") as copy:
            copy.write(file.read())
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", keep_a_copy)
    write_local_atomically(str(tmp_path / "obj.msgpack"), b"data")
    monkeypatch.undo()
    assert re.fullmatch(r"\.obj\.msgpack\.[0-9a-f]{32}\.tmp", seen[0])
    os.rename(tmp_path / (seen[0] + ".copy"), tmp_path / seen[0])  # as if the rename never happened
    _age(tmp_path / seen[0], HOUR)
    assert remove_stale_temp_files(str(tmp_path), older_than=60) == [str(tmp_path / seen[0])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.msgpack"]


@pytest.mark.parametrize("older_than", [0.0, 60.0])
def test_store_cleanup_removes_only_its_own_stale_temp_file(tmp_path: Path, older_than: float) -> None:
    store = MessagepackStore(str(tmp_path))
    store.set(Sample({"x": 1}, key="real"))
    kept = _make_user_entries(tmp_path)
    (tmp_path / OURS).write_bytes(b"partial")
    _age(tmp_path / OURS, HOUR)
    assert store.cleanup(older_than=older_than) == [str(tmp_path / OURS)]
    assert sorted(tmp_path.iterdir()) == kept
    assert next(store.get("real")).value == {"x": 1}
