"""`Releasable`: the base of async stores and loaders, which hold a filesystem until `aclose` releases it."""

from __future__ import annotations

from typing import Self

__all__ = ["Releasable"]


class Releasable:
    """An object that holds a filesystem (a network session on gs:// and s3://) on the loops it is used on.

    ``async with obj:`` releases it on exit, as `aclose` does; the object stays usable after either (its
    next call acquires a filesystem again). Subclasses define `aclose`.
    """

    async def aclose(self) -> None:
        """Release what this object holds on the running loop."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
