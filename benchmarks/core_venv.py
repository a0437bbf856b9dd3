"""A separate venv with squirrel-core 0.20.2, the library this project is measured against.

squirrel-core pins an old urllib3 and ships its own top-level ``squirrel`` package, so it must never share
this project's venv. `ensure_core_venv` creates it on first use and reuses it afterwards; a stamp file,
written last, marks a complete install (an interrupted install is redone from scratch).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CORE_VERSION = "0.20.2"
CORE_VENV = Path(__file__).resolve().parent / ".core-venv"
CORE_PACKAGES = [f"squirrel-core=={CORE_VERSION}", "gcsfs"]
"""squirrel-core, and gcsfs for its gs:// reads (the remote benchmark); pip picks a gcsfs matching its fsspec."""
_STAMP = f".installed-squirrel-core-{CORE_VERSION}-gcsfs"


def core_python(venv: Path = CORE_VENV) -> Path:
    """The python executable of the squirrel-core venv."""
    return venv / "bin" / "python"


def ensure_core_venv(venv: Path = CORE_VENV, base_python: str = "python3") -> Path:
    """Create the squirrel-core venv unless it is complete already; returns its python."""
    python = core_python(venv)
    if (venv / _STAMP).exists() and python.exists():
        return python
    if venv.exists():
        shutil.rmtree(venv)
    print(f"creating {venv} with squirrel-core=={CORE_VERSION} ...", file=sys.stderr, flush=True)
    _run([base_python, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *CORE_PACKAGES])
    (venv / _STAMP).touch()
    return python


def _run(command: list[str]) -> None:
    """Run `command` quietly; show its output only if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise subprocess.CalledProcessError(done.returncode, command)


if __name__ == "__main__":
    print(ensure_core_venv())
