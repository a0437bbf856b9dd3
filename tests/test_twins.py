"""Every public name of the sync face has an async twin with the same public members and signatures.

The pairs are derived from the modules' ``__all__``: a sync name ``N`` is twinned with ``Async`` + ``N`` in
the async namespace of its module, unless `ALIASES` names its twin; names both faces use as they are go in
`SHARED`; a sync name that has neither a twin nor a `SHARED` entry fails its own test. For each pair,
the constructors and every public member (a name not starting with ``_``: methods, properties, class
attributes, and attributes the methods set on ``self``) are compared: a member must exist on both classes
(unless `SYNC_ONLY`/`ASYNC_ONLY` says why it cannot; `RENAMED` maps ``close`` to ``aclose``), be of the
same kind (method, classmethod, staticmethod or attribute), and have the same parameters: names, kinds
and defaults (the name of ``*args``/``**kwargs`` aside, which no caller can pass). Annotations are not
compared (the faces differ there by design: ``Iterable`` and ``AsyncIterable``, ``Iterator`` and
``AsyncIterator``), and neither is ``async def`` against ``def``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from typing import Any

import pytest

# Sync modules whose `__all__` is the sync face, and the async modules their twins live in.
TWIN_SOURCES: dict[str, tuple[str, ...]] = {
    "squirrel.driver": ("squirrel.aio",),
    "squirrel.iterstream": ("squirrel.aio",),
    "squirrel.driver.file_driver": ("squirrel.aio", "squirrel.aio.file_driver"),
}

# Twins that do not follow the ``Async`` + name rule.
ALIASES: dict[str, str] = {
    "MessagePackDataLoader": "AsyncMessagepackLoader",  # the historical name keeps its capital P
}

# Sync names that are another sync name under a second spelling: the same object, not a pair of their own.
SAME_AS: dict[str, str] = {
    "MessagepackLoader": "MessagePackDataLoader",
}

# Pairs outside the modules above (modules without `__all__`): (sync "module:name", async "module:name").
EXTRA_PAIRS: dict[str, tuple[str, str]] = {
    "bulk.write_shards": ("squirrel.bulk:write_shards", "squirrel.aio.bulk:write_shards"),
}

# Names both faces use as they are, so they have no twin.
SHARED: dict[str, str] = {
    "Sample": "plain data, no I/O",
    "Shard": "plain data, no I/O",
    "MODES": "a constant: the file modes, re-exported from squirrel.aio.file_driver",
}

# Members whose async twin is named by Python's convention for async protocols rather than the same name
# (like ``__exit__`` and ``__aexit__``, which start with ``_`` and so are not compared).
RENAMED: dict[str, str] = {
    "close": "aclose",
}

# Members only one face has, and why. Each applies only where the other class really lacks the member
# (a member both have is compared as usual), and each must still be needed by some pair.
SYNC_ONLY: dict[str, str] = {
    "async_class": "the class of that async twin (`aio`), which the async class itself has no need of",
    "wrapping": "makes a sync store around an existing async store; an async store needs no wrapper",
    "to_torch_iterable": "torch's DataLoader iterates synchronously; the async face has no torch adapter",
    "split_by_rank_pytorch": "item split for torch ranks, part of the torch adapter (loaders split keys on both)",
    "split_by_worker_pytorch": "item split for DataLoader workers, which only the sync face runs in",
    "resumed": "resume hook of to_torch_iterable's state_dict; only squirrel.iterstream.torch calls it",
    "replay_problems": "resume check of to_torch_iterable's state_dict; only squirrel.iterstream.torch calls it",
}
_PIPELINE_HOOK = "a hook of the pipeline's ObjectSource (squirrel.aio.pipeline), run on the IO loop for both faces"
ASYNC_ONLY: dict[str, str] = {
    "fetch_objects": _PIPELINE_HOOK,
    "group_reader": _PIPELINE_HOOK,
    "reads_use_cpu": _PIPELINE_HOOK,
    "read_rest": _PIPELINE_HOOK,
    "decode_object": _PIPELINE_HOOK,
    "groups_small_objects": _PIPELINE_HOOK,
    "object_pass": _PIPELINE_HOOK,
    "whole_objects": _PIPELINE_HOOK,
    "read_head": "csv's first-chunk read behind its fetch_objects hook",
    "nothing_to_read": "the error of a pass that finds no object (open_pass, run on the IO loop for both faces)",
}


_MISSING = object()


def _public(module_name: str) -> list[str]:
    return list(importlib.import_module(module_name).__all__)


def _resolve(spec: str) -> Any:
    module_name, name = spec.split(":")
    return getattr(importlib.import_module(module_name), name)


def _find_twin(twin_name: str, twin_modules: tuple[str, ...]) -> Any:
    """The object `twin_name` in the `__all__` of the first of `twin_modules` that exports it."""
    for module_name in twin_modules:
        if twin_name in _public(module_name):
            return getattr(importlib.import_module(module_name), twin_name)
    return _MISSING


def _pairs() -> list[Any]:
    """One `pytest.param` per public sync name (shared names and `SAME_AS` spellings aside)."""
    params = []
    for module_name, twin_modules in TWIN_SOURCES.items():
        module = importlib.import_module(module_name)
        for name in _public(module_name):
            if name in SHARED or name in SAME_AS:
                continue
            twin_name = ALIASES.get(name, f"Async{name}")
            where = f"Async twin {twin_name!r} in the __all__ of {' or '.join(twin_modules)}"
            twin = _find_twin(twin_name, twin_modules)
            params.append(pytest.param(getattr(module, name), twin, where, id=name))
    for pair_id, (sync_spec, async_spec) in EXTRA_PAIRS.items():
        params.append(pytest.param(_resolve(sync_spec), _resolve(async_spec), async_spec, id=pair_id))
    return params


PAIRS = _pairs()


def _kind(owner: type, name: str) -> str:
    """The kind of member `name` of `owner`: method, classmethod, staticmethod, or attribute (a property, a
    class attribute and an attribute set on the instance all read the same way, ``obj.name``)."""
    raw = inspect.getattr_static(owner, name, _MISSING)
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if inspect.isfunction(raw):
        return "method"
    return "attribute"


def _signature(owner: type, name: str) -> inspect.Signature:
    raw = inspect.getattr_static(owner, name)
    if isinstance(raw, classmethod | staticmethod):
        raw = raw.__func__
    return inspect.signature(raw)


def _same_default(left: Any, right: Any) -> bool:
    """Equal defaults; a function default matches the other face's function of the same name (each face
    passes its own sync or async version, e.g. the zarr loaders' ``fetcher_func=fetch``)."""
    if inspect.isfunction(left) and inspect.isfunction(right):
        return left.__qualname__ == right.__qualname__
    try:
        return bool(left is right or left == right)
    except Exception:  # an ambiguous comparison (numpy arrays) is a difference
        return False


def _describe(parameter: inspect.Parameter) -> str:
    default = "" if parameter.default is inspect.Parameter.empty else f"={parameter.default!r}"
    return f"{parameter.name}{default} ({parameter.kind.description})"


# The name of ``*args`` or ``**kwargs`` is not part of how a function is called, so it is not compared.
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _signature_mismatches(what: str, left: inspect.Signature, right: inspect.Signature) -> list[str]:
    """A line showing both signatures if sync `left` and async `right` differ in parameter names, kinds or
    defaults; nothing if they agree."""
    sync_params, async_params = list(left.parameters.values()), list(right.parameters.values())
    same = len(sync_params) == len(async_params) and all(
        (a.name == b.name or a.kind in _VARIADIC) and a.kind == b.kind and _same_default(a.default, b.default)
        for a, b in zip(sync_params, async_params, strict=True)
    )
    if same:
        return []
    sync_text = ", ".join(map(_describe, sync_params))
    async_text = ", ".join(map(_describe, async_params))
    return [f"{what}: sync ({sync_text}) != async ({async_text})"]


def _instance_attributes(cls: type) -> set[str]:
    """Names the methods of `cls` and its bases assign on ``self`` (``self.url = url`` in ``__init__``, say),
    found in their source: public attributes too, though only instances have them."""
    names: set[str] = set()
    for klass in cls.__mro__[:-1]:  # not `object`
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (a builtin or extension class)
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            targets = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]  # a, b = ...
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    names.add(target.attr)
    return names


def _public_members(cls: type) -> set[str]:
    return {name for name in set(dir(cls)) | _instance_attributes(cls) if not name.startswith("_")}


def _class_mismatches(sync_cls: type, async_cls: type) -> tuple[list[str], set[str]]:
    """The differences between twin classes, and the `SYNC_ONLY`/`ASYNC_ONLY` entries that excused one."""
    problems = _signature_mismatches(
        "__init__", inspect.signature(sync_cls.__init__), inspect.signature(async_cls.__init__)
    )
    used: set[str] = set()
    sync_name_of = {async_name: sync_name for sync_name, async_name in RENAMED.items()}
    sync_members = _public_members(sync_cls)
    async_members = {sync_name_of.get(name, name) for name in _public_members(async_cls)}  # as sync names

    def on_async(name: str) -> str:
        return RENAMED.get(name, name)

    for name in sorted(sync_members - async_members):
        if name in SYNC_ONLY:
            used.add(name)
        else:
            problems.append(f"{name}: only on the sync class ({_kind(sync_cls, name)})")
    for name in sorted(async_members - sync_members):
        if on_async(name) in ASYNC_ONLY:
            used.add(on_async(name))
        else:
            renamed = f"; the sync twin would be {name}" if name != on_async(name) else ""
            problems.append(f"{on_async(name)}: only on the async class ({_kind(async_cls, on_async(name))}{renamed})")
    for name in sorted(sync_members & async_members):
        sync_kind, async_kind = _kind(sync_cls, name), _kind(async_cls, on_async(name))
        label = name if name == on_async(name) else f"{name}/{on_async(name)}"
        if sync_kind != async_kind:
            problems.append(f"{label}: a {sync_kind} on the sync class, a {async_kind} on the async class")
        elif sync_kind in ("method", "classmethod", "staticmethod"):
            problems += _signature_mismatches(label, _signature(sync_cls, name), _signature(async_cls, on_async(name)))
    return problems, used


def _mismatches(sync_obj: Any, async_obj: Any) -> tuple[list[str], set[str]]:
    if inspect.isclass(sync_obj) and inspect.isclass(async_obj):
        return _class_mismatches(sync_obj, async_obj)
    if inspect.isfunction(sync_obj) and inspect.isfunction(async_obj):
        return _signature_mismatches("signature", inspect.signature(sync_obj), inspect.signature(async_obj)), set()
    return [f"not the same kind of object: sync {sync_obj!r}, async {async_obj!r}"], set()


@pytest.mark.parametrize(("sync_obj", "async_obj", "where"), PAIRS)
def test_twins_match(sync_obj: Any, async_obj: Any, where: str) -> None:
    assert async_obj is not _MISSING, f"no {where}: add the twin, or list the name in SHARED with a reason"
    problems, _ = _mismatches(sync_obj, async_obj)
    assert not problems, "\n".join(problems)


def test_every_async_name_is_the_twin_of_a_sync_name() -> None:
    twins = [params.values[1] for params in PAIRS]
    aio = importlib.import_module("squirrel.aio")  # the async face's namespace (its submodules export helpers too)
    orphans = [name for name in aio.__all__ if not any(getattr(aio, name) is twin for twin in twins)]
    assert not orphans, f"names in squirrel.aio.__all__ with no sync twin: {orphans}"


def test_shared_names_and_aliases_are_what_they_claim() -> None:
    exported = {name: module for module in TWIN_SOURCES for name in _public(module)}
    for name in SHARED:
        assert name in exported, f"SHARED lists {name!r}, which no sync module exports"
        twin = _find_twin(f"Async{name}", TWIN_SOURCES[exported[name]])
        assert twin is _MISSING, f"{name!r} is listed as SHARED but has an async twin: compare them instead"
        shared_in_async = _find_twin(name, TWIN_SOURCES[exported[name]])
        if shared_in_async is not _MISSING:  # re-exported by the async face too: must be the very same object
            assert shared_in_async is getattr(importlib.import_module(exported[name]), name)
    for alias, name in SAME_AS.items():
        module = importlib.import_module(exported[alias])
        assert getattr(module, alias) is getattr(module, name), f"{alias} is not {name}"
    for name in ALIASES:
        assert name in exported, f"ALIASES lists {name!r}, which no sync module exports"


def test_every_face_specific_member_is_still_needed() -> None:
    used: set[str] = set()
    for params in PAIRS:
        sync_obj, async_obj, _ = params.values
        if async_obj is not _MISSING:
            used |= _mismatches(sync_obj, async_obj)[1]
    stale = sorted((set(SYNC_ONLY) | set(ASYNC_ONLY)) - used)
    assert not stale, f"no pair needs these SYNC_ONLY/ASYNC_ONLY entries any more; remove them: {stale}"
