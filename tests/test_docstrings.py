"""Docstrings where users look (issue 14): ``help()`` on every public class, method and function of either
face names every parameter it takes, in the docstring it shows, written once (`squirrel.docstrings`)."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import TYPE_CHECKING, Any

import pytest

from squirrel.docstrings import argument_entries

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PUBLIC_MODULES = (
    "squirrel.driver",
    "squirrel.aio",
    "squirrel.iterstream",
    "squirrel.bulk",
    "squirrel.aio.bulk",
    "squirrel.aio.retry",
    "squirrel.sample",
    "squirrel.index",
    "squirrel.metrics",
    "squirrel.errors",
    "squirrel.iterstream.torch",
    "squirrel.iterstream.mixing",
    "squirrel.aio.mixing",
)
"""The modules users import from (the README's, the user's document's and the docs site's)."""


def _parameters(fn: Callable[..., Any]) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


def _named(doc: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", doc) is not None


def _ours(fn: object) -> bool:
    return getattr(fn, "__module__", "").startswith("squirrel")


def _documented() -> Iterator[tuple[str, Callable[..., Any], str]]:
    """(where, callable, the docstring ``help()`` shows for it) for every public callable."""
    seen: set[int] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not _ours(obj):
                continue
            seen.add(id(obj))
            if not inspect.isclass(obj):
                if callable(obj):
                    yield f"{module_name}.{name}", obj, inspect.getdoc(obj) or ""
                continue
            if any("__init__" in vars(c) for c in obj.__mro__ if c.__module__.startswith("squirrel")):
                doc = f"{inspect.getdoc(obj) or ''}\n{inspect.getdoc(obj.__init__) or ''}"
                yield f"{module_name}.{name}()", obj, doc
            for attribute in dir(obj):
                static = inspect.getattr_static(obj, attribute)
                function = static.__func__ if isinstance(static, classmethod | staticmethod) else static
                if attribute.startswith("_") or inspect.isclass(function) or not callable(function):
                    continue
                if _ours(function) and id(function) not in seen:
                    seen.add(id(function))
                    method = getattr(obj, attribute)
                    yield f"{module_name}.{name}.{attribute}", method, inspect.getdoc(method) or ""


def test_every_public_callable_names_each_of_its_parameters_in_its_docstring() -> None:
    missing = [
        f"{where}: {parameter}"
        for where, fn, doc in _documented()
        for parameter in _parameters(fn)
        if not _named(doc, parameter)
    ]
    assert not missing, "undocumented parameters:\n" + "\n".join(missing)


def test_every_public_callable_has_a_docstring() -> None:
    assert not [where for where, _, doc in _documented() if not doc.strip()]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("One line.", []),
        (
            "Title.\n\n    Args:\n        a: first,\n            continued.\n        b, c: two at once.\n"
            "        **kw: the rest.\n\n    Raises `ValueError`.\n",
            [
                (["a"], "    a: first,\n        continued."),
                (["b", "c"], "    b, c: two at once."),
                (["kw"], "    **kw: the rest."),
            ],
        ),
    ],
)
def test_argument_entries_are_read_from_a_google_style_section(doc: str, expected: list[Any]) -> None:
    assert argument_entries(doc) == expected


def test_a_blocking_twin_describes_the_arguments_of_its_async_class() -> None:
    """Written once on the async class (and the base that introduces an argument), shown on both faces."""
    from squirrel.aio import AsyncMessagepackStore
    from squirrel.driver import MessagepackStore

    for cls in (MessagepackStore, AsyncMessagepackStore):
        names = {name for names, _ in argument_entries(cls.__doc__) for name in names}
        assert {"url", "compression", "format", "retry", "storage_options"} <= names, cls
