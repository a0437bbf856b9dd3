"""`RecordStore`: the blocking face of `AsyncRecordStore`, and the base of every sync store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Self

from squirrel.aio.stores.record import AsyncRecordStore
from squirrel.codec.compression import DEFAULT_MAX_DECOMPRESSED_SIZE
from squirrel._runtime import run_sync
from squirrel.aio.retry import RetryPolicy
from squirrel.index import Index, IndexEntry
from squirrel.sample import Sample, Shard

__all__ = ["RecordStore"]


class RecordStore:
    """Map-style blocking access to a folder of samples (one object per sample).

    Every method runs the same-named method of its async twin (`self.aio`) on the process's IO loop.
    Safe to use from threads, from code that runs its own event loop, and in forked child processes.
    """

    async_class: ClassVar[type[AsyncRecordStore]] = AsyncRecordStore

    def __init__(
        self,
        url: str,
        compression: str | None = None,
        *,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        verify_checksums: bool = False,
        retry: RetryPolicy | None = None,
        **storage_options: Any,
    ) -> None:
        self.aio = self.async_class(
            url,
            compression,
            max_decompressed_size=max_decompressed_size,
            verify_checksums=verify_checksums,
            retry=retry,
            **storage_options,
        )

    @classmethod
    def wrapping(cls, aio: AsyncRecordStore) -> Self:
        """The blocking face of the async store `aio` (sharing its layout, options and index)."""
        store = cls.__new__(cls)
        store.aio = aio
        return store

    @property
    def url(self) -> str:
        """The store's root URL."""
        return self.aio.url

    @property
    def compression(self) -> str | None:
        """The compression of stored objects (None or "gzip")."""
        return self.aio.compression

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, compression={self.compression!r})"

    def get(self, key: str) -> Iterator[Sample]:
        """The samples stored under `key`; `KeyError` if there are none."""
        return iter(run_sync(self.aio.fetch(key)))

    def set(self, item: Sample | Shard) -> None:
        """Store a sample or a shard atomically."""
        run_sync(self.aio.set(item))

    def keys(self) -> Iterator[str]:
        """Every key in the store, sorted."""
        return iter(run_sync(self.aio.list_keys()))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return run_sync(self.aio.exists(key))

    def cleanup(self, older_than: float = 3600.0) -> list[str]:
        """Remove what crashed writers left behind (local temp files older than `older_than` s)."""
        return run_sync(self.aio.cleanup(older_than))

    def delete(self, key: str) -> None:
        """Remove the object stored under `key`; `KeyError` if there is none."""
        run_sync(self.aio.delete(key))

    def list_objects(self) -> dict[str, int]:
        """The stored size of every object under the root, by key, from a listing (never from the index)."""
        return run_sync(self.aio.list_objects())

    def write_index(self, known: Iterable[IndexEntry] = (), max_concurrency: int = 16) -> Index:
        """Index every object (key, sample count, size, crc32c) at the store's root; call it after writing.

        See `AsyncRecordStore.write_index`.
        """
        return run_sync(self.aio.write_index(known, max_concurrency))

    def read_index(self) -> Index | None:
        """The store's index, or None when it has none."""
        return run_sync(self.aio.read_index())

    def count_samples(self) -> int:
        """The number of samples in the store, from its index (`FileNotFoundError` when it has none)."""
        return run_sync(self.aio.count_samples())
