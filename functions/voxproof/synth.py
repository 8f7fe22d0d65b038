"""The local speak use case behind ``voxproof synth``: text -> ``service.speak`` (synthesize,
mark, encode, sign, record) -> an audio file (16-bit WAV by default; MP3, M4A/AAC or FLAC).

All or nothing: the output path and the text are checked before the model is loaded, the voice
speaks within the time budget or raises, the audio is marked with the local key (created in the
state folder on first use), signed with C2PA Content Credentials by the local signing key
(likewise), recorded with its manifest in the local registry, and the file (at the voice's own
rate) appears under its name only once it is complete (``voxproof.audio.write_bytes`` writes a
temporary file and renames it). The CLI is a thin adapter over :func:`synth_to_wav`.

The time budget (``deadline_s``) starts once the voice is loaded and calibrated, as on a warm
Lambda: it bounds the synthesis, not the one-off start-up (seconds; minutes on first use, when
the model layer is built).

Example:
    >>> result = synth_to_wav("Hello.", Path("hello.wav"), settings=Settings(),
    ...                       deadline_s=60)  # doctest: +SKIP
    >>> result.sample_rate, len(result.record.record_id_hex)  # doctest: +SKIP
    (22050, 10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from voxproof.audio import write_bytes
from voxproof.credentials.manifest import FORMATS
from voxproof.deadline import Deadline
from voxproof.errors import InputUnreadable, OutputError, TextNotUtf8, TextTooLong
from voxproof.runtime import build_service
from voxproof.service import SpeechResult, local_caller
from voxproof.settings import Settings
from voxproof.text import prepare
from voxproof.voice import Voice

OUTPUT_SUFFIX: Final = ".wav"
"""The default output format of ``voxproof synth``: 16-bit PCM WAV."""
_UTF8_MAX_BYTES: Final = 4


def synth_to_wav(text: str, out: Path, *, settings: Settings, deadline_s: float,
                 voice: Voice | None = None, fmt: str | None = None,
                 seed: int | None = None) -> SpeechResult:
    """Speak ``text`` into the file ``out``, marked, signed and recorded; returns what was
    written.

    Parameters
    ----------
    text:
        What to say (at most ``settings.max_text_chars_sync`` characters).
    out:
        A path in an existing folder; replaced atomically. Its suffix (.wav, .mp3, .m4a,
        .flac) names the format unless ``fmt`` does.
    settings:
        Where the model layer is and its pin.
    deadline_s:
        Seconds the synthesis may take once the voice is ready.
    voice:
        An already loaded voice (a server's); by default one is loaded from ``settings``.
    fmt:
        wav, mp3, m4a or flac (default: from the suffix).
    """
    fmt = check_output(out, fmt)
    max_chars = settings.max_text_chars_sync
    prepare(text, max_chars=max_chars)  # text errors before the model is loaded
    service = build_service(settings, voice=voice, max_chars=max_chars)
    service.load()  # the model (built on first use) is ready before the time budget starts
    result = service.speak(text, local_caller("cli"), Deadline.after(deadline_s), fmt=fmt,
                           seed=seed)
    try:
        write_bytes(out, result.audio)
    except OSError:
        raise OutputError("the output file cannot be written") from None
    return result


def read_text_file(path: Path, *, max_chars: int) -> str:
    """A UTF-8 text file, read with a bound (at most 4 bytes per allowed character)."""
    limit = max_chars * _UTF8_MAX_BYTES
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        raise InputUnreadable("the text file cannot be read") from None
    if len(data) > limit:
        raise TextTooLong(
            f"the text file holds more than {limit} bytes; the limit here is {max_chars} "
            "characters", limit=max_chars,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextNotUtf8(f"the text file is not UTF-8 (byte {err.start})",
                          position=err.start) from None


def check_output(out: Path, fmt: str | None = None) -> str:
    """The format to write ``out`` in: ``fmt``, else its suffix's; refuses an unknown format or
    suffix and a path that is not a file in an existing folder."""
    if fmt is None:
        fmt = out.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise OutputError("the output must be a .wav, .mp3, .m4a or .flac file (or name the "
                              "format with --format)")
    elif fmt not in FORMATS:
        raise OutputError(f"unknown format '{fmt}': one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise OutputError("the output file's folder does not exist")
    if out.is_dir():
        raise OutputError("the output path is a folder")
    return fmt
