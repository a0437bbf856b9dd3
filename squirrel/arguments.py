"""Calls with a mistyped keyword get an error that names the class the user called and the closest keyword.

Python's own message names the class that defines a method (``AsyncRecordLoader.get_iter() got an
unexpected keyword argument``) and offers no suggestion; a user who called ``MessagePackDataLoader`` is
left guessing.

`bind_extra` passes the extra arguments of ``map(fn, *args, **kwargs)`` (and ``async_map``) to `fn`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["bind_extra", "check_call", "did_you_mean", "named_for_caller"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to `word`, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_call(owner: object, function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Raise `TypeError` naming ``type(owner).<function>`` if ``function(owner, *args, **kwargs)`` does not bind
    to its signature, with the closest keyword for one it does not take."""
    signature = inspect.signature(function)
    try:
        signature.bind(owner, *args, **kwargs)
    except TypeError as error:
        name = f"{type(owner).__name__}.{function.__name__}()"
        unknown = [key for key in kwargs if key not in signature.parameters]
        if unknown:
            raise TypeError(
                f"{name} got an unexpected keyword argument {unknown[0]!r}"
                + did_you_mean(unknown[0], signature.parameters)
            ) from None
        raise TypeError(f"{name}: {error}") from None


def named_for_caller(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorate `method` so that arguments that do not fit raise `check_call`'s error (a bind per call:
    for methods called once per pass, like ``get_iter``, not per sample)."""

    @functools.wraps(method)
    def checked(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except TypeError:
            check_call(self, method, args, kwargs)  # raises its clearer error if the arguments did not fit
            raise

    return checked


def bind_extra(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
    """`fn` with `args` and `kwargs` after the item (what `map` and `async_map` pass through; itself when there
    are none); a coroutine function stays one, so the operators still await it (on the loop) rather than hand
    its coroutine on as the item."""
    if not args and not kwargs:
        return fn
    from squirrel.aio.executors import is_async_callable  # here: `squirrel.aio` imports this module

    call_with = _await_with if is_async_callable(fn) else _call_with
    return functools.partial(call_with, fn, args, kwargs)


def _call_with(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], item: Any) -> Any:
    return fn(item, *args, **kwargs)


async def _await_with(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], item: Any) -> Any:
    return await fn(item, *args, **kwargs)
