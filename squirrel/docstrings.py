"""Constructor arguments documented once, shown everywhere: ``help()`` on any store or loader, of either
face, lists every argument its constructor takes.

Each argument is described once, in the ``Args:`` section of the class that introduces it (a shard store's
``format``, a csv store's ``dtypes``); a subclass's docstring, and a blocking twin's (whose arguments are
its async class's), get the entries of the arguments they take but do not describe, from their bases, in
the constructor's order. `complete_arguments` does this when a class is created (`Releasable` and
`SyncTwin` call it for their subclasses). The docstrings are Google style, as everywhere in squirrel.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["argument_entries", "complete_arguments"]

_ENTRY = re.compile(r"^    (\*{0,2}[A-Za-z_][\w, *]*):(?:\s|$)")
"""The first line of an ``Args:`` entry: one or more names (``seed, epoch:``), indented by 4."""


def _names(label: str) -> list[str]:
    return [name.strip().lstrip("*") for name in label.split(",")]


def _section(lines: list[str]) -> tuple[int, int] | None:
    """Where the ``Args:`` section of a cleaned docstring's `lines` starts (its header) and ends."""
    try:
        start = lines.index("Args:")
    except ValueError:
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("    ")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def argument_entries(doc: str | None) -> list[tuple[list[str], str]]:
    """The entries of the ``Args:`` section of docstring `doc`, each as (the names it describes, its text
    with its continuation lines); none without such a section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    where = _section(lines)
    if where is None:
        return []
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines[where[0] + 1 : where[1]]:
        match = _ENTRY.match(line)
        if match:
            entries.append((_names(match.group(1)), [line]))
        elif entries:
            entries[-1][1].append(line)
    return [(names, "\n".join(text).rstrip()) for names, text in entries]


def complete_arguments(cls: type, sources: Iterable[type]) -> None:
    """Give `cls` a docstring whose ``Args:`` section describes every argument of ``cls.__init__``: its own
    entries, then, for each argument they leave out, the first entry naming it in the docstrings of
    `sources` (the class's bases, or a blocking twin's async class and its bases), in signature order.
    Arguments no source describes stay undescribed (a test lists them)."""
    try:
        parameters = [name for name in inspect.signature(cls).parameters if name != "self"]
    except (TypeError, ValueError):  # a subclass whose constructor has no signature to read: left as it is
        return
    doc = inspect.cleandoc(cls.__doc__ or "")
    own = argument_entries(doc)
    described = {name for names, _ in own for name in names}
    added: list[str] = []
    for name in parameters:
        if name in described:
            continue
        for source in sources:
            entry = next((e for e in argument_entries(source.__doc__) if name in e[0]), None)
            if entry is not None:
                added.append(entry[1])
                described.update(entry[0])
                break
    if not added:
        return
    lines = doc.splitlines()
    where = _section(lines)
    if where is None:
        lines += ["", "Args:", *added]
    else:
        lines[where[1] : where[1]] = added
    cls.__doc__ = "\n".join(lines)
