"""The HTTP API's bodies as pydantic v2 models: requests are validated at the edge with them,
and the OpenAPI document is generated from them (``GET /v1/openapi.json``).

Requests forbid unknown fields, and their validation runs as the ``validate`` step. The speech
text gets the same checks as the core (``voxproof.text.prepare``: length first, then every
character), raising the same ``TextError`` subclasses, so the API answers with their codes and
positions; the text stack is imported by the first speech request, never by the verify function.

Example:
    >>> SpeechRequest = speech_request_model(1000)
    >>> SpeechRequest.model_validate({"text": "Hello."}).format
    'wav'
"""

from __future__ import annotations

import base64
import binascii
from functools import cache
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    model_validator,
)

from voxproof.errors import MalformedRequest
from voxproof.handlers.common import trace_step
from voxproof.provenance import ProvenanceRecord

#: What one S3 key may look like: printable, no control characters, at most S3's 1024 bytes.
S3_KEY_PATTERN: Final = r"^[^\x00-\x1f\x7f]{1,1024}$"
VOICE_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
#: What the document can say of speech text: no control character (tab, line feed and carriage
#: return are whitespace). The rest of the policy (docs/text.md) is the server's 422 answers.
TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


class _Request(BaseModel):
    """A request body; its validation is the ``validate`` step (an X-Ray subsegment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _traced(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        with trace_step("validate"):
            return handler(data)


class _Response(BaseModel):
    """A response body: what the OpenAPI document promises (field descriptions given
    explicitly: attribute docstrings would cost ~0.08 s of source parsing at every cold start)."""


def speech_text(max_chars: int) -> Any:
    """``voxproof.text.speech_text``, with the text stack (``voxproof.text``, num2words)
    imported when the first text is checked rather than with the API."""

    def check(value: str) -> str:
        from voxproof.text import prepare

        prepare(value, max_chars=max_chars)
        return value

    return Annotated[str, Field(strict=True, json_schema_extra={
        "minLength": 1, "maxLength": max_chars, "pattern": TEXT_PATTERN}), AfterValidator(check)]


@cache
def speech_request_model(max_chars: int) -> type[BaseModel]:
    """``POST /v1/speech``'s body, for an entry point that accepts ``max_chars`` characters."""

    class SpeechRequest(_Request):
        """Text to speak, watermarked and recorded."""

        text: speech_text(max_chars) = Field(description=(  # type: ignore[valid-type]
            "What to say (English; NFKC; no control, format or private-use characters)."
        ))

        voice: str | None = Field(default=None, pattern=VOICE_PATTERN, description=(
            "The voice to speak with; the deployment's only voice if omitted."
        ))

        format: Literal["wav", "mp3", "m4a", "flac"] = Field(default="wav", description=(
            "The audio format: 16-bit PCM WAV (the default), MP3, M4A (AAC) or FLAC; every one "
            "carries a signed C2PA manifest. Without it, an ``Accept`` that prefers one of "
            "their audio types picks it."
        ))

    return SpeechRequest


class VerifyJsonRequest(_Request):
    """``POST /v1/verify`` with a JSON body: exactly one of ``audio_base64`` or ``s3_key``.

    (Audio may also come as the raw body with ``Content-Type: audio/*``.)
    """

    audio_base64: str | None = Field(default=None, description=(
        "The audio file, base64-encoded (WAV, FLAC, Ogg, MP3, M4A/AAC)."
    ))

    s3_key: str | None = Field(default=None, pattern=S3_KEY_PATTERN, description=(
        "A key under ``verify/`` in the deployment's input bucket."
    ))

    @model_validator(mode="after")
    def _exactly_one(self) -> VerifyJsonRequest:
        if (self.audio_base64 is None) == (self.s3_key is None):
            raise ValueError("give exactly one of audio_base64 or s3_key")
        return self

    def audio_bytes(self) -> bytes:
        """``audio_base64`` decoded (``MalformedRequest`` if it is not base64)."""
        assert self.audio_base64 is not None
        try:
            return base64.b64decode(self.audio_base64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest("audio_base64 is not valid base64") from None


# --- responses (the OpenAPI document; verify's is checked against real answers in the tests) ----


class SpeechResponse(_Response):
    """The marked audio (inline or as a presigned URL) and the record that vouches for it."""

    record_id: str = Field(pattern=r"^[0-9a-f]{10}$", description=(
        "The provenance record's id, which the watermark carries (10 hex digits)."
    ))
    key_id: str = Field(description="Public id of the watermark key that marked the audio.")
    voice: str
    model_manifest_sha256: str
    duration_s: float
    sample_rate: int
    format: Literal["wav", "mp3", "m4a", "flac"]
    audio_base64: str | None = Field(default=None, description=(
        "The audio file (with its C2PA manifest), base64-encoded: when it fits the response "
        "(see ``audio_url``)."
    ))
    manifest_bytes: int | None = Field(default=None, description=(
        "Size of the C2PA manifest store embedded in the file (also kept with the record)."
    ))
    audio_url: str | None = Field(default=None, description=(
        "A presigned GET URL in the output bucket, for audio too large to return inline."
    ))
    audio_url_expires_s: int | None = None


class Segment(_Response):
    start_s: float
    end_s: float
    marked: bool
    score: float


class PresenceBody(_Response):
    """The presence tier: a keyed zero-bit statistic that says a mark of a key in force is in
    the audio without reading a record id (docs/watermark.md, "Presence")."""

    model_config = ConfigDict(extra="forbid")

    found: bool = Field(description="A mark is present: the statistic reached its threshold, "
                        "or a record verified (a record implies presence).")
    key_id: str | None = Field(description="The key whose mark is present (null if not found).")
    z: float = Field(description="The statistic's best value over the hypotheses tried.")
    threshold: float = Field(description="sqrt(2 ln(hypotheses / 1e-6)): the value z must reach.")
    hypotheses: int = Field(description="Views x alignments the statistic was taken over.")
    p_false: float = Field(description="Bound on a false presence for this file: 1e-6 per key "
                           "searched, for any audio.")


class RecordBody(ProvenanceRecord):
    """A provenance record as verify reports it (``public_dict``: the id in hex; never the text,
    only its keyed hash)."""

    record_id: str = Field(pattern=r"^[0-9a-f]{10}$")  # type: ignore[assignment]


class PublicRecord(_Response):
    """The record as the public verify answer shows it: when, which voice and model (never its
    key, caller, request, job or text hash)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    record_id: str = Field(pattern=r"^[0-9a-f]{10}$")
    created_at: str = Field(description="When the audio was made (ISO 8601, UTC).")
    voice: str
    model_manifest_sha256: str = Field(description=(
        "The model layer's pinned manifest digest: which model spoke."
    ))
    sample_rate: int
    duration_s: float


class ManifestCheck(_Response):
    """One C2PA manifest store's validation."""

    state: Literal["trusted", "valid_untrusted", "invalid", "absent"] = Field(description=(
        "``trusted``: valid, signed by a certificate that chains to a configured trust anchor; "
        "``valid_untrusted``: valid, signer not trusted here; ``invalid``: fails validation; "
        "``absent``: the file carries none."
    ))
    failures: list[str] = Field(description=(
        "C2PA's own status codes of what failed (e.g. ``assertion.dataHash.mismatch``, "
        "``signingCredential.untrusted``)."
    ))
    manifest_label: str | None
    record_id: str | None = Field(description=(
        "The record its ``c2pa.soft-binding`` assertion names (10 hex digits)."
    ))
    digital_source_type: str | None
    software_agent: dict[str, Any] | None
    signer: dict[str, Any] | None
    provenance: dict[str, Any] | None = Field(default=None, description=(
        "voxproof's assertion (record, key id, voice, model): detailed answer only."
    ))


class CredentialsBody(_Response):
    """The file's Content Credentials (C2PA) beside the mark: which of the cases this is."""

    status: Literal["manifest_and_mark", "recovered", "manifest_invalid", "none",
                    "manifest_only", "mark_only", "mismatch"] = Field(description=(
        "``manifest_and_mark``: a valid embedded manifest names the record the mark names; "
        "``recovered``: no manifest in the file, the one stored with the mark's record is "
        "returned (proves origin, not that these bytes are the signed ones); "
        "``manifest_invalid``: the embedded manifest fails (edited after signing) while the "
        "mark names a record; ``none``: neither; ``manifest_only``, ``mark_only``, "
        "``mismatch``: the rarer combinations."
    ))
    validation: Literal["trusted", "valid_untrusted", "invalid"] | None = Field(description=(
        "Of the embedded manifest, else of the stored one."
    ))
    source: Literal["embedded", "registry"] | None
    summary: str
    embedded: ManifestCheck | None
    stored: ManifestCheck | None


class VerifyPublicResponse(_Response):
    """``POST /v1/verify``: a verdict, not a measurement (no scores, segments or caller: the
    detailed answer is for auditors, ``POST /v1/verify/detailed``)."""

    model_config = ConfigDict(extra="forbid")

    found: bool = Field(description=(
        "A mark whose keyed tag verified under one of the deployment's keys."
    ))
    verdict: Literal["recorded", "marked", "not_found"]
    record_id: str | None
    presence_found: bool = Field(description=(
        "A mark of one of the deployment's keys is present: a record verified, or the presence "
        "tier found the mark where no record id could be read (P(false) <= 1e-6 per key)."
    ))
    ai_generated: bool | None = Field(description=(
        "True when a mark is present (``presence_found``): everything this service marks is "
        "synthesized speech. None otherwise (no mark is no evidence either way)."
    ))
    confidence_level: Literal["high", "none"] = Field(description=(
        "``high``: a mark's tag verified (P(false positive) <= 23 x k x 2^-24 for k keys); "
        "``none``: nothing found."
    ))
    duration_s: float
    sample_rate: int
    record: PublicRecord | None
    unchecked: list[str] = Field(description=(
        "What could not be checked, in words (e.g. the registry was unreachable)."
    ))
    credentials: CredentialsBody | None = Field(default=None, description=(
        "The file's C2PA manifest and what it proves beside the mark."
    ))


class VerifyResponse(_Response):
    """What the mark says, and the record it names when this deployment holds it: the detailed
    answer (``POST /v1/verify/detailed``, auditors; ``voxproof verify --json`` locally)."""

    model_config = ConfigDict(extra="forbid")

    found: bool
    verdict: Literal["recorded", "marked", "not_found"]
    record_id: str | None
    key_id: str | None
    tag_verified: bool
    score: float
    p_false: float = Field(description=(
        "Probability that unmarked audio scores this high (0 when nothing was found)."
    ))
    confidence: float
    speed: float | None
    mode: str | None
    segments: list[Segment] = Field(description="Time ranges and whether each carries the mark.")
    presence: PresenceBody = Field(description="The presence tier's statistic and verdict.")
    duration_s: float
    sample_rate: int
    record: RecordBody | None
    unchecked: list[str] = Field(description=(
        "What could not be checked, in words (e.g. the registry was unreachable)."
    ))
    presence_found: bool | None = Field(default=None, description=(
        "As in the public answer (absent from ``voxproof verify --json``)."
    ))
    ai_generated: bool | None = Field(default=None, description=(
        "As in the public answer (absent from ``voxproof verify --json``)."
    ))
    confidence_level: Literal["high", "none"] | None = Field(default=None, description=(
        "As in the public answer (absent from ``voxproof verify --json``)."
    ))
    credentials: CredentialsBody | None = Field(default=None, description=(
        "As in the public answer, with voxproof's own assertion."
    ))


class HealthResponse(_Response):
    """Whether this container can answer: version, voice, layer digest, checks (``keys``:
    readable or an error code). No key ids: the route is open to anyone."""

    status: Literal["ok", "degraded"]
    version: str
    voice: str | None = Field(description=(
        "The voice's name (from the loaded voice, else the layer's manifest)."
    ))
    model_manifest_sha256: str = Field(description=(
        "The pinned manifest digest: the only model layer this deployment loads."
    ))
    voice_loaded: bool
    checks: dict[str, str]


class ErrorDetail(_Response):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(_Response):
    """Every error: a stable code, one safe sentence, sometimes small details."""

    error: ErrorDetail
