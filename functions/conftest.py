"""pytest's view of the package: its docstring examples run as tests (``--doctest-modules``).

Only modules that hold an example (``>>>``) are imported for them, so collection never imports
an entry point whose import is a Lambda init (a handler building its runtime, reading settings);
a module whose optional extra is not installed is skipped (``--doctest-ignore-import-errors``).
Not part of the package: the wheel and the image take ``functions/voxproof`` only.
"""

from __future__ import annotations

from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """Skip package modules without a docstring example; leave everything else to pytest."""
    if collection_path.suffix == ".py" and collection_path.is_file():
        return ">>>" not in collection_path.read_text(encoding="utf-8", errors="replace") or None
    return None
