"""`Releasable`: the base of async stores and loaders, which hold a filesystem until `aclose` releases it."""

from __future__ import annotations

from typing import Any, Self

from squirrel.docstrings import complete_arguments

__all__ = ["Releasable"]


class Releasable:
    """An object that holds a filesystem (a network session on gs:// and s3://) on the loops it is used on.

    ``async with obj:`` releases it on exit, as `aclose` does; the object stays usable after either (its
    next call acquires a filesystem again). Subclasses define `aclose`; each one's docstring describes every
    constructor argument, those its bases introduce included (`squirrel.docstrings`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        complete_arguments(cls, cls.__mro__[1:])

    async def aclose(self) -> None:
        """Release what this object holds on the running loop."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
