#!/usr/bin/env python3
"""Build ``layers/model/`` from the pinned voice wheel: ``voxproof layer build`` from a checkout.

Usage: python scripts/build_model_layer.py [--out DIR] [--wheel PATH] [--check]

Same code as the CLI (``voxproof.layer_build``, the ``[build]`` extra); this wrapper only makes
it runnable without installing the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions"))

from voxproof.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["layer", "build", *sys.argv[1:]]))
