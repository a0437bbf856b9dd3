"""The README's snippets type-check as a user's script would: with mypy, run from outside the repository, so
the installed package (an editable install, as `make install` makes it) is what mypy finds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def snippets() -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_snippets_type_check_as_a_user_script(tmp_path: Path) -> None:
    blocks = snippets()
    assert len(blocks) >= 5
    for number, block in enumerate(blocks):  # one module each: snippets reuse names for other things
        (tmp_path / f"snippet_{number}.py").write_text(block)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--check-untyped-defs", "--no-incremental", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Cannot find implementation or library stub" not in result.stdout
