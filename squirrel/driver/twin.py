"""How a sync class is the blocking face of its async twin (``self.aio``), one line per member.

`constructor` builds the twin from the same arguments, `shared` reads an attribute of the twin,
`delegated` calls one of its plain methods (`delegated_stream` one that returns a stream), and `blocking`
runs one of its coroutine methods on the IO loop (`squirrel._runtime.run_sync`). Each keeps the twin's
signature and docstring (``functools.wraps``), so ``help()``, `inspect.signature` and type checkers show
them, written once.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from squirrel._runtime import run_sync
from squirrel.arguments import check_call
from squirrel.docstrings import complete_arguments

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["SyncTwin", "blocking", "blocking_function", "constructor", "delegated", "delegated_stream", "shared"]

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A")


class shared(Generic[T]):
    """A read-only attribute that is the async twin's attribute of the same name."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> shared[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> T | shared[T]:
        if instance is None:
            return self
        value: T = getattr(instance.aio, self.name)  # type: ignore[attr-defined]
        return value


def constructor(
    async_class: Callable[P, object],
) -> Callable[[Callable[[Any], None]], Callable[Concatenate[Any, P], None]]:
    """Decorates a sync class's ``__init__`` to take the arguments of `async_class` (the twin's class, or the base
    that declares them): it builds the twin, ``self.aio = type(self).async_class(...)``, then runs the decorated
    body (further set-up, or only a docstring). The arguments are declared and checked once, by the twin, and
    type checkers and ``help()`` see them on the sync class."""

    def decorate(init: Callable[[Any], None]) -> Callable[Concatenate[Any, P], None]:
        def __init__(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> None:
            self.aio = type(self).async_class(*args, **kwargs)
            init(self)

        functools.update_wrapper(__init__, async_class.__init__)  # its signature, for help()
        __init__.__doc__ = init.__doc__
        return __init__

    return decorate


def delegated(method: Callable[Concatenate[Any, P], T]) -> Callable[Concatenate[Any, P], T]:
    """A method that calls the async twin's plain (non-async) method of the same name."""
    name = method.__name__

    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = getattr(self.aio, name)(*args, **kwargs)
        return result

    functools.update_wrapper(call, method)
    return call


def delegated_stream(
    method: Callable[Concatenate[Any, P], A], wrap: Callable[[A], T]
) -> Callable[Concatenate[Any, P], T]:
    """A method that calls the async twin's method of the same name, which returns an async stream, and
    returns ``wrap(stream)``, the stream's blocking face (`wrap`: its class, or a function that builds it).
    The arguments are the twin's, checked by it; one that does not fit raises a `TypeError` naming this
    class's method."""
    name = method.__name__

    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            stream = getattr(self.aio, name)(*args, **kwargs)
        except TypeError:
            check_call(self, method, args, kwargs)  # the error names the sync class, not its twin
            raise
        return wrap(stream)

    functools.update_wrapper(call, method)
    returns = wrap.__name__ if isinstance(wrap, type) else inspect.signature(wrap).return_annotation
    call.__signature__ = inspect.signature(method).replace(return_annotation=returns)  # type: ignore[attr-defined]
    return call


def blocking(method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]) -> Callable[Concatenate[Any, P], T]:
    """A method that runs the async twin's coroutine method of the same name on the IO loop and returns
    its result (or raises its error)."""
    name = method.__name__

    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = run_sync(getattr(self.aio, name)(*args, **kwargs))
        return result

    functools.update_wrapper(call, method)
    return call


def blocking_function(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """A function that runs the coroutine function `function` on the IO loop and returns its result."""

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(function(*args, **kwargs))

    functools.update_wrapper(call, function)
    return call


class SyncTwin:
    """Base of a blocking class whose async twin is ``self.aio``: wrapping, closing and ``with``.

    `close` runs the twin's ``aclose`` on the IO loop, releasing its filesystem (a later call opens it
    again); ``with`` closes on exit. A subclass's docstring describes every constructor argument, from its
    async class's (`squirrel.docstrings`).
    """

    aio: Any
    async_class: ClassVar[type]
    url: shared[str] = shared("The URL the async twin reads: a store's root, a zarr root group.")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        complete_arguments(cls, [*cls.__mro__[1:], *cls.async_class.__mro__])

    @classmethod
    def wrapping(cls, aio: Any) -> Self:
        """The blocking face of the async object `aio` (sharing its state: closing either releases it)."""
        twin = cls.__new__(cls)
        twin.aio = aio
        return twin

    def close(self) -> None:
        """Release the filesystem on the IO loop (a later call opens it again)."""
        run_sync(self.aio.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.aio.url!r})"
