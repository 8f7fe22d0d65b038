"""``python -m voxproof`` is the ``voxproof`` command."""

from voxproof.cli import main

raise SystemExit(main())
