"""The ``voxproof`` command: a thin adapter over the core, like the Lambda handlers.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_cmd_<name>``
function that runs it. Errors a user can cause are ``VoxproofError``s: printed as one line on
stderr with their code, exit status 2. Nothing else is caught here: a bug shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _key_file(args: argparse.Namespace) -> Path:
    """The --key-file given, else the one in the local state folder (created 0700)."""
    from voxproof.settings import Settings

    if args.key_file:
        return Path(args.key_file)
    settings = Settings()
    settings.ensure_state_dir()
    assert settings.key_file is not None
    return settings.key_file


def _add_keygen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create a new watermark key file (mode 0600)")
    p.add_argument("--key-file", help="where to write it (default: the local state folder)")
    p.set_defaults(func=_cmd_keygen)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from voxproof.watermark import WatermarkKey

    key = WatermarkKey.generate()
    path = key.write_key_file(_key_file(args))
    print(f"wrote key {key.key_id} to {path}")
    return 0


def _add_mark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mark", help="embed the watermark of a record id into an audio file")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--key-file", help="the key (default: the local state folder's)")
    p.add_argument("--record-id", required=True, help="the record id: 10 hex characters")
    p.set_defaults(func=_cmd_mark)


#: Bit rates for marked lossy outputs: high enough that the mark survives its own encoding.
_MARKED_BITRATE = {"mp3": 128_000, "m4a": 128_000, "ogg": 96_000, "opus": 96_000}


def _cmd_mark(args: argparse.Namespace) -> int:
    from voxproof import audio
    from voxproof.watermark import WatermarkKey, embed
    from voxproof.watermark.payload import parse_record_id

    record_id = parse_record_id(args.record_id)
    key = WatermarkKey.read_key_file(_key_file(args))
    decoded = audio.read_file(args.input)
    marked = embed(decoded.samples, decoded.sample_rate, key, record_id)
    family = {"mp4": "m4a", "aac": "m4a"}.get(decoded.family, decoded.family)
    fmt = audio.output_format_for(family, decoded.sample_rate)
    out = Path(args.output)
    if fmt == "wav" and family != "wav" and out.suffix.lower() != ".wav":
        out = out.with_suffix(".wav")  # the input's format cannot hold this rate: say so
        print(f"note: {family} cannot hold {decoded.sample_rate} Hz; writing WAV to {out}")
    audio.write_file(out, marked, decoded.sample_rate, fmt, bitrate=_MARKED_BITRATE.get(fmt))
    print(f"marked {out} ({fmt}, {decoded.sample_rate} Hz, {decoded.duration_s:.2f} s) "
          f"with record {args.record_id.lower()} under key {key.key_id}")
    return 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="look for a watermark and report what it vouches for")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--key-file", action="append",
                   help="a key to try (repeat for rotated keys; default: the local state folder's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="PNG", help="draw the per-window timeline to this PNG")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from voxproof import audio
    from voxproof.watermark import WatermarkKey, detect
    from voxproof.watermark.timeline import plot_timeline, report_text

    paths = args.key_file or [None]
    keys = [WatermarkKey.read_key_file(_key_file(argparse.Namespace(key_file=p))) for p in paths]
    decoded = audio.read_file(args.file)
    found = detect(decoded.samples, decoded.sample_rate, keys)
    if args.plot:
        plot_timeline(found, decoded.duration_s, args.plot)
    if args.json:
        body = found.to_dict() | {"duration_s": round(decoded.duration_s, 3)}
        print(json.dumps(body))
    else:
        print(report_text(found, Path(args.file).name, decoded.duration_s, decoded.sample_rate))
    return 0


_SUBCOMMANDS: list = [_add_keygen, _add_mark, _add_verify]


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
