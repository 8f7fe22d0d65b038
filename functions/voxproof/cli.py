"""The ``voxproof`` command: a thin adapter over the core, like the Lambda handlers.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_cmd_<name>``
function that runs it. Errors a user can cause are ``VoxproofError``s: printed as one line on
stderr with their code, exit status 2. Nothing else is caught here: a bug shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voxproof import __version__
from voxproof.errors import VoxproofError

EXIT_USER_ERROR = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxproof", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"voxproof {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


# --- subcommands (each adds itself to _SUBCOMMANDS below) ------------------------------------


_SUBCOMMANDS: list = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VoxproofError as err:
        print(f"voxproof: error [{err.code}]: {err.message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
