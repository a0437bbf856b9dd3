"""Benchmarks of squirrel: ``python -m benchmarks`` (``make bench``) runs every one of them in turn.

Each benchmark module runs its measured passes as fresh subprocesses (see `benchmarks._measure`), prints a
table and its goals, and writes its figures as JSON under ``benchmarks/results/``. Modules of this package
import only the standard library at top level, so a pass can run under another venv's python.
"""
