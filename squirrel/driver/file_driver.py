"""`FileDriver`: one file at a URL (a model checkpoint, say), opened as a blocking file object.

``with FileDriver(url).get_store(mode="wb", create_if_not_exists=True) as f: torch.jit.save(model, f)``.
The blocking face of `squirrel.aio.AsyncFileDriver`: the same `StagedFile` coroutines stage the file and
commit or discard it, run on the process's IO loop; in between, ``f`` is a plain local file object on the
staged file (``read``, ``write``, ``seek``, ``tell``), so reads and writes cost no trip to the loop. Writes
land only when the block exits without an error; a block that fails leaves the previous file as it was.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from squirrel._runtime import run_sync
from squirrel.aio.file_driver import MODES, FileDriverBase

if TYPE_CHECKING:
    from squirrel.aio.file_driver import StagedFile

__all__ = ["MODES", "File", "FileDriver"]


class FileDriver(FileDriverBase):
    """One file at `url` on any fsspec filesystem: ``with FileDriver(url).get_store("rb") as f: ...``.

    Safe to use from threads, from code that runs its own event loop, and in forked child processes; not
    from squirrel's own IO loop (`RuntimeError`: await `AsyncFileDriver` there).
    """

    def get_store(self, mode: str = "rb", create_if_not_exists: bool = False) -> File:
        """A context manager giving the file opened in `mode` ("rb", "r", "wb", "w", "ab") as a plain file object.

        `create_if_not_exists` makes missing parent folders of a local file being written (object stores
        need none). Raises `ValueError` for an unknown mode now; on entering the block, `FileNotFoundError`
        naming the url for a missing file in a read mode, or for a missing local folder to write in.
        """
        return File(self._staged(mode, create_if_not_exists))


class File:
    """The file of a `FileDriver`: opened on ``__enter__``, closed (and a write committed) on ``__exit__``."""

    def __init__(self, staged: StagedFile) -> None:
        """Wrap `staged`, not yet open."""
        self._staged = staged
        self._file: IO[Any] | None = None

    def __enter__(self) -> IO[Any]:
        """Stage the file on the IO loop, then open it here as a plain file; raises what
        `StagedFile.open` raises (`FileNotFoundError` for a missing file or local folder)."""
        path = run_sync(self._staged.open())
        try:
            self._file = open(path, self._staged.mode, encoding=self._staged.encoding)
        except BaseException:
            run_sync(self._staged.close(commit=False))
            raise
        return self._file

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """Close the file; commit a write (on the IO loop) only if the block raised nothing; always clean up."""
        clean = False
        try:
            file, self._file = self._file, None
            if file is not None:
                file.close()
            clean = exc_type is None  # a failed close (a write that did not flush) commits nothing either
        finally:
            run_sync(self._staged.close(commit=clean))
