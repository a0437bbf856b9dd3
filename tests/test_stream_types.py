"""Streams are generic in their item type, as a user's type checker sees them: mypy (strict), run on small user
scripts from outside the repository, infers the precise item type through every operator of both faces, and
rejects a wrong map signature, a wrong predicate and ``set_epoch("1")``.

Each line of `ACCEPTED` that reveals a type says what mypy must reveal (``# reveals: ...``, module paths left
out); each line of `REJECTED` says the error code mypy must report on it (``# error: ...``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

ACCEPTED = """
from squirrel.aio import AsyncIterableSource, AsyncMessagepackLoader, AsyncZarrLoader
from squirrel.aio.mixing import mix as async_mix
from squirrel.driver import MessagePackDataLoader, ZarrLoader
from squirrel.iterstream import Composable, IterableSource
from squirrel.iterstream.mixing import mix


async def doubled(x: int) -> float:
    return x * 2.0


def plus(x: int, y: int) -> int:
    return x + y


def total(batch: list[int]) -> int:
    return sum(batch)


def sync_face() -> None:
    s = IterableSource([1, 2, 3])
    reveal_type(s)  # reveals: IterableSource[int]
    reveal_type(s.map(str))  # reveals: Composable[str]
    reveal_type(s.map(plus, 3))  # reveals: Composable[int]
    reveal_type(s.map(plus, y=3))  # reveals: Composable[int]
    reveal_type(s.async_map(doubled, max_concurrency=4))  # reveals: Composable[float]
    reveal_type(s.async_map(str, 4, False))  # reveals: Composable[str]
    reveal_type(s.batched(2))  # reveals: Composable[list[int]]
    reveal_type(s.batched(2, collation_fn=total))  # reveals: Composable[int]
    reveal_type(s.batched(2, True, total))  # reveals: Composable[int]
    reveal_type(s.sliding(2))  # reveals: Composable[list[int]]
    reveal_type(s.sliding(2, fill_nan_on_partial=True))  # reveals: Composable[list[int | None]]
    reveal_type(s.zip_index())  # reveals: Composable[tuple[int, int]]
    reveal_type(s.zip_index(pad_length=3))  # reveals: Composable[tuple[str, int]]
    reveal_type(s.batched(2).flatten())  # reveals: Composable[int]
    reveal_type(s.filter(lambda x: x > 1).shuffle(10, seed=0).take(2).loop(2))  # reveals: Composable[int]
    reveal_type(s.prefetch(2).tqdm().monitor(print).split_by_rank_pytorch())  # reveals: Composable[int]
    reveal_type(s.map(str).collect())  # reveals: list[str]
    for item in s.zip_index():
        reveal_type(item)  # reveals: tuple[int, int]
    dataset = s.map(str).to_torch_iterable()
    reveal_type(dataset)  # reveals: TorchIterable[str]
    reveal_type(next(iter(dataset)))  # reveals: str
    at = dataset.state_dict()
    reveal_type(at)  # reveals: TypedDict(ReaderState, {'epoch': int, 'worker': int, 'workers': int, 'items': int})
    state = dataset.state_dict(batches_consumed=3, batch_size=2, num_workers=2)
    reveal_type(state)  # reveals: TypedDict(LoopState, {'epoch': int, 'consumed': dict[int, int]})
    dataset.load_state_dict(state)
    dataset.set_epoch(1)
    loader = MessagePackDataLoader("/tmp/store")
    reveal_type(next(iter(loader.get_iter())))  # reveals: Sample
    reveal_type(loader.get_iter().map(lambda sample: sample.key))  # reveals: Composable[str]
    reveal_type(next(iter(ZarrLoader("/tmp/zarr").get_iter())))  # reveals: Any
    mixed = mix([IterableSource([1]), IterableSource([2])], seed=0)
    reveal_type(mixed)  # reveals: MixedStream[int]
    mixed.load_state_dict(mixed.state_dict())
    bare: Composable = s  # a bare Composable: items of any type
    reveal_type(bare.collect())  # reveals: list[Any]


async def async_face() -> None:
    a = AsyncIterableSource([1, 2, 3])
    reveal_type(a)  # reveals: AsyncIterableSource[int]
    reveal_type(a.map(doubled))  # reveals: AsyncComposable[float]
    reveal_type(a.map(str))  # reveals: AsyncComposable[str]
    reveal_type(a.async_map(doubled).batched(2))  # reveals: AsyncComposable[list[float]]
    reveal_type(a.zip_index(pad_length=2).take(1))  # reveals: AsyncComposable[tuple[str, int]]
    reveal_type(a.batched(2).flatten())  # reveals: AsyncComposable[int]
    reveal_type(await a.map(str).collect())  # reveals: list[str]
    async for sample in AsyncMessagepackLoader("/tmp/store").get_iter():
        reveal_type(sample)  # reveals: Sample
    async with AsyncZarrLoader("/tmp/zarr") as zarr_loader:
        reveal_type(await zarr_loader.get_iter().collect())  # reveals: list[Any]
    reveal_type(async_mix([a, AsyncIterableSource([4])], seed=0))  # reveals: AsyncMixedStream[int]
"""

REJECTED = """
from squirrel.aio import AsyncIterableSource
from squirrel.iterstream import IterableSource


def by_key(batch: list[str]) -> str:
    return batch[0]


words = IterableSource(["a", "b"])
words.map(lambda word: word + 1)  # error: operator
words.filter(lambda word: word > 1)  # error: operator
words.set_epoch("1")  # error: arg-type
words.to_torch_iterable().set_epoch("1")  # error: arg-type
words.to_torch_iterable().load_state_dict({"epoch": 1})  # error: arg-type
IterableSource([1]).flatten()  # error: misc
IterableSource([1]).batched(2, collation_fn=by_key)  # error: arg-type
AsyncIterableSource(["a"]).map(lambda word: word + 1)  # error: call-overload
AsyncIterableSource(["a"]).async_map(lambda word: word + 1)  # error: call-overload
"""


def _short(type_text: str) -> str:
    """A revealed type without module paths: ``squirrel.iterstream.base.Composable[str]`` -> ``Composable[str]``."""
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", type_text)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """mypy's report on both scripts, checked at once (one mypy start) from a folder outside the repository."""
    folder: Path = tmp_path_factory.mktemp("user")
    (folder / "accepted.py").write_text(ACCEPTED)
    (folder / "rejected.py").write_text(REJECTED)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", "."],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "Cannot find implementation or library stub" not in result.stdout, result.stdout
    return result.stdout + result.stderr


def _expected(script: str, marker: str) -> dict[int, str]:
    """What each line of `script` marked ``# marker: ...`` expects, by line number."""
    found = {}
    for number, line in enumerate(script.splitlines(), start=1):
        if f"# {marker}: " in line:
            found[number] = line.split(f"# {marker}: ", 1)[1].strip()
    return found


def test_correct_chains_type_check_with_precise_item_types(mypy_output: str) -> None:
    errors = [line for line in mypy_output.splitlines() if line.startswith("accepted.py") and ": error:" in line]
    assert not errors, mypy_output
    revealed = {
        int(match[1]): _short(match[2])
        for match in re.finditer(r'^accepted\.py:(\d+): note: Revealed type is "(.*)"$', mypy_output, re.MULTILINE)
    }
    expected = _expected(ACCEPTED, "reveals")
    assert len(expected) == 37
    assert revealed == expected


def test_wrong_item_types_and_set_epoch_are_type_errors(mypy_output: str) -> None:
    reported: dict[int, set[str]] = {}
    for match in re.finditer(r"^rejected\.py:(\d+): error: .*\[([\w-]+)\]$", mypy_output, re.MULTILINE):
        reported.setdefault(int(match[1]), set()).add(match[2])
    expected = _expected(REJECTED, "error")
    assert len(expected) == 9
    for line, code in expected.items():
        assert code in reported.get(line, set()), f"line {line}: no [{code}] error in\n{mypy_output}"
    assert set(reported) == set(expected), mypy_output


def _plus(x: int, y: int, scale: int = 1) -> int:
    return (x + y) * scale


async def _async_plus(x: int, y: int, scale: int = 1) -> int:
    return (x + y) * scale


async def test_extra_arguments_the_types_allow_reach_fn_on_both_faces() -> None:
    from squirrel.aio import AsyncIterableSource
    from squirrel.iterstream import IterableSource

    sync = IterableSource([1, 2])
    assert sync.map(_plus, 10, scale=2).collect() == [22, 24]
    assert sync.async_map(_plus, 2, True, None, 10, scale=2).collect() == [22, 24]
    assert sync.async_map(_async_plus, y=10).collect() == [11, 12]
    source = AsyncIterableSource([1, 2])
    assert await source.map(_async_plus, 10).collect() == [11, 12]
    assert await source.async_map(_plus, 2, False, None, 10, scale=2).collect() in ([22, 24], [24, 22])
