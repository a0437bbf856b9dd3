"""A separate venv with litdata 0.2.x, the fastest peer the local read benchmark is measured against.

litdata brings torch, torchvision, boto3 and friends, and must not change this project's venv. Like
`benchmarks.core_venv`, `ensure_litdata_venv` creates it on first use under ``benchmarks/.work/`` and reuses it
afterwards; a stamp file, written last, marks a complete install (an interrupted install is redone from
scratch). torch is pinned to the project's own version (``pyproject.toml``'s ``torch`` extra), so pip takes the
same CPU-only build the project's venv has instead of a CUDA build gigabytes larger.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

LITDATA_SPEC = "litdata>=0.2,<0.3"
TORCH_SPEC = "torch==2.13.0"
"""The project's torch pin: litdata needs torch, and this keeps pip on the CPU-only build."""
LITDATA_VENV = Path(__file__).resolve().parent / ".work" / "litdata-venv"
LITDATA_PACKAGES = [LITDATA_SPEC, TORCH_SPEC]
_STAMP = ".installed-litdata-0.2-torch-2.13.0"


class LitdataUnavailable(RuntimeError):
    """The litdata venv could not be built (offline, or no matching wheel): the benchmark skips litdata."""


def litdata_python(venv: Path = LITDATA_VENV) -> Path:
    """The python executable of the litdata venv."""
    return venv / "bin" / "python"


def ensure_litdata_venv(venv: Path = LITDATA_VENV, base_python: str = "python3") -> Path:
    """Create the litdata venv unless it is complete already; returns its python.

    Raises `LitdataUnavailable` (with pip's output) if the venv cannot be created or litdata not installed.
    """
    python = litdata_python(venv)
    if (venv / _STAMP).exists() and python.exists():
        return python
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"creating {venv} with {', '.join(LITDATA_PACKAGES)} (a few minutes) ...", file=sys.stderr, flush=True)
    _run([base_python, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *LITDATA_PACKAGES])
    (venv / _STAMP).touch()
    return python


def _run(command: list[str]) -> None:
    """Run `command` quietly; `LitdataUnavailable` with the tail of its output if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise LitdataUnavailable(f"{' '.join(command)} failed ({done.returncode}):\n{output}")


if __name__ == "__main__":
    print(ensure_litdata_venv())
