"""Recycled read buffers: reading shard after shard into fresh memory costs a page fault per 4 KiB (the
kernel zeroes every new page), which measured here costs more than the copy itself. A pool hands out
buffers whose previous contents nobody references any more, so a stream settles on a few warm buffers.

Decoded arrays are views into these buffers; a buffer is reused only once every view of it is gone
(its reference count is back to the pool's own), so data a caller still holds is never overwritten.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading

__all__ = ["BufferPool"]

_FREE_REFCOUNT = 3  # the pool's list, the loop variable, and getrefcount's own argument
_GRAIN = 256 * 1024
"""Buffers of this size or more are made in multiples of it: shards a few bytes apart in size (keys of
different lengths) then share buffers, where exact sizes left a pooled buffer too small for the next shard,
so the pool grew. Smaller ones are made to size (a sample keeps its buffer alive)."""


class BufferPool:
    """A bounded set of reusable bytearrays for one stream of reads (thread-safe)."""

    def __init__(self, max_buffers: int = 16) -> None:
        self.max_buffers = max_buffers
        self._buffers: list[bytearray | mmap.mmap] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, int]:
        """Only the bound: buffers are this process's memory (a stream sent to a DataLoader worker starts empty)."""
        return {"max_buffers": self.max_buffers}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.max_buffers = state["max_buffers"]
        self._buffers = []
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        """A writable view of `size` bytes, in a free pooled buffer when there is one.

        Else a new buffer (rounded up to `_GRAIN`) joins the pool, in place of a free one too small to
        serve (so the pool holds the buffers the stream uses, and its memory stays what they need).
        """
        with self._lock:
            too_small = None
            for index in range(len(self._buffers)):
                buffer = self._buffers[index]  # (not enumerate: its tuple would hold a second reference)
                if sys.getrefcount(buffer) == _FREE_REFCOUNT:
                    if len(buffer) >= size:
                        return memoryview(buffer)[:size]
                    too_small = index
            buffer = _fresh(size)
            if too_small is not None:
                self._buffers[too_small] = buffer
            elif len(self._buffers) < self.max_buffers:
                self._buffers.append(buffer)
            return memoryview(buffer)[:size]

    def read_file(self, path: str) -> memoryview:
        """The whole content of the local file `path`, read into a pooled buffer."""
        with open(path, "rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            view = self.take(size)
            filled = 0
            while filled < size:
                count = file.readinto(view[filled:])
                if not count:
                    raise OSError(f"{path} shrank while being read ({filled} of {size} bytes)")
                filled += count
        return view


def _fresh(size: int) -> bytearray | mmap.mmap:
    """A new buffer for `size` bytes: a small one exactly; a large one rounded up to `_GRAIN`, as an anonymous
    mapping, whose pages the kernel zeroes as the read that fills it first writes them, outside the GIL
    (a bytearray is zeroed by Python, holding the GIL: 3-5 ms for a 12 MB shard, which the consumer's
    thread, decoding the previous shard, waited out).

    The mapping is private: a process forked later (a DataLoader worker) copies the pages it writes, where a
    shared one wrote its shards into its parent's and its siblings' buffers; made and filled from the page
    cache, a private 12 MB buffer also took 4.1-4.3 ms against 5.4-5.8. Its pages are not mapped up front
    (``MAP_POPULATE``, 2.9-3 ms): Python holds the GIL while it maps them, and every thread waited."""
    if size < _GRAIN:
        return bytearray(size)
    return mmap.mmap(-1, size + (-size % _GRAIN), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
