"""Local-disk specifics of stores: atomic writes by rename, and the cleanup of what killed writers left."""

from __future__ import annotations

import contextlib
import os
import time
import uuid

__all__ = ["TEMP_SUFFIX", "local_names", "remove_stale_temp_files", "write_local_atomically"]

TEMP_SUFFIX = ".tmp"


def write_local_atomically(path: str, data: bytes) -> None:
    """Write `data` to a hidden temp file beside `path`, then rename it over `path` (atomic on POSIX).

    A writer killed midway leaves only a dot-file, which is never listed as a key.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def remove_stale_temp_files(folder: str, older_than: float) -> list[str]:
    """Delete the temp files of `write_local_atomically` in `folder` last modified over `older_than` s ago."""
    removed = []
    cutoff = time.time() - older_than
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(entry.path)
    return removed


def local_names(folder: str) -> list[str]:
    """The names in `folder` (none when it does not exist yet)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
