"""`FileDriver`: one file at a URL (a model checkpoint, say), opened as a blocking file object.

``with FileDriver(url).get_store(mode="wb", create_if_not_exists=True) as f: torch.jit.save(model, f)``.
The blocking face of `squirrel.aio.AsyncFileDriver`: the same `AsyncFile` stages the file and commits or
discards it, run on the process's IO loop (`squirrel._runtime.sync_context`); in between, ``f`` is a plain
local file object on the staged file (``read``, ``write``, ``seek``, ``tell``), so reads and writes cost no
trip to the loop. Writes land only when the block exits without an error; a block that fails leaves the
previous file as it was.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from squirrel._runtime import sync_context
from squirrel.aio.file_driver import MODES, AsyncFileDriver, FileDriverBase, open_plain_file

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["MODES", "FileDriver"]


class FileDriver(FileDriverBase):
    """One file at `url` on any fsspec filesystem: ``with FileDriver(url).get_store("rb") as f: ...``.

    Safe to use from threads, from code that runs its own event loop, and in forked child processes; not
    from squirrel's own IO loop (`RuntimeError`: await `AsyncFileDriver` there).
    """

    def get_store(self, mode: str = "rb", create_if_not_exists: bool = False) -> AbstractContextManager[IO[Any]]:
        return sync_context(self._file(mode, create_if_not_exists, open_plain_file))

    get_store.__doc__ = AsyncFileDriver.get_store.__doc__  # written once, on the async face
