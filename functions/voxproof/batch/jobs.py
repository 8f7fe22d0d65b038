"""What a batch job is, where its results go, and what a job file holds. Pure: no I/O, no AWS.

A job is ``{"job_id", "text", "voice"?, "output_key"?, "format"?}``: an SQS message body, or one
line of a ``jobs/*.jsonl`` file. Its results are ``batch/[<output_key>/]<job_id>.<format>`` (wav
by default; mp3, m4a, flac), ``.json`` (the done marker) and ``.error.json`` (a permanent
failure). Parsing never echoes a value: errors name the
field and the problem, and every line of a job file is either accepted or rejected with its
number.

Example:
    >>> job = parse_job('{"job_id": "ep-1", "text": "Hello.", "output_key": "podcasts/2024"}')
    >>> ResultKeys.for_job(job.job_id, job.output_key).audio
    'batch/podcasts/2024/ep-1.wav'
    >>> parse_job('{"job_id": "../x", "text": "Hi."}')
    Traceback (most recent call last):
    ...
    voxproof.batch.exceptions.JobInvalid: job_id: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit
    >>> parsed = parse_job_file(b'{"job_id": "a", "text": "Hi."}\\n{"job_id": "a"}\\n',
    ...                         max_chars=100, max_lines=10)
    >>> [line.line for line in parsed.accepted], [r.error["code"] for r in parsed.rejected]
    ([1], ['invalid_job'])
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from voxproof.batch.exceptions import DuplicateJobId, JobFileTooLarge, JobInvalid
from voxproof.errors import TextError, from_validation_errors
from voxproof.text import prepare

if TYPE_CHECKING:  # a type only: the watermark stack is not imported for it
    from voxproof.watermark import WatermarkKey

#: Every batch output lives under this prefix of the output bucket.
RESULT_PREFIX: Final = "batch/"
#: Job-file reports live here; ``output_key`` may not start with ``reports``.
REPORTS_FOLDER: Final = "reports"
REPORT_PREFIX: Final = f"{RESULT_PREFIX}{REPORTS_FOLDER}/"
#: Job files are ``jobs/*.jsonl`` in the input bucket.
JOBS_PREFIX: Final = "jobs/"
JOBS_SUFFIX: Final = ".jsonl"

_JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VOICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_OUTPUT_KEY_MAX: Final = 256
_FINGERPRINT_LABEL: Final = b"voxproof/v1/job-fingerprint"
_MAX_S3_KEY_BYTES: Final = 1024
_BOM: Final = b"\xef\xbb\xbf"


# --- the job ----------------------------------------------------------------------------------


def _job_id(value: str) -> str:
    if not _JOB_ID.fullmatch(value):
        raise ValueError("1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _voice(value: str) -> str:
    if not _VOICE.fullmatch(value):
        raise ValueError("a voice name: 1-64 letters, digits, '.', '_' or '-'")
    return value


def _output_key(value: str) -> str:
    segments = value.split("/")
    if len(value) > _OUTPUT_KEY_MAX or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(
            "a folder under batch/ such as 'podcasts/2024': segments of letters, digits, '.', "
            "'_' or '-' starting with a letter or digit, joined by '/' (no leading or trailing "
            f"'/', no '..'), at most {_OUTPUT_KEY_MAX} characters")
    if segments[0] == REPORTS_FOLDER:
        raise ValueError(f"'{REPORTS_FOLDER}/' is reserved for job-file reports")
    return value


JobId = Annotated[str, Field(strict=True), AfterValidator(_job_id)]
VoiceName = Annotated[str, Field(strict=True), AfterValidator(_voice)]
OutputKey = Annotated[str, Field(strict=True), AfterValidator(_output_key)]


class Job(BaseModel):
    """One batch job: speak ``text`` and store the result under ``job_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: JobId
    """The caller's name for the job; the idempotency key and the result's file name."""

    text: str = Field(strict=True)
    """What to say (validated and bounded by the service: ``max_text_chars_batch``)."""

    voice: VoiceName | None = None
    """The voice; this deployment's voice when absent."""

    output_key: OutputKey | None = None
    """A folder under ``batch/`` for the results (``batch/<output_key>/<job_id>.*``)."""

    format: Literal["wav", "mp3", "m4a", "flac"] | None = None
    """The audio format (WAV when absent); every one carries a signed C2PA manifest."""

    @property
    def audio_format(self) -> str:
        return self.format or "wav"


class _Address(BaseModel):
    """Just where a job's results go: read from a job that is otherwise invalid."""

    model_config = ConfigDict(extra="ignore")

    job_id: JobId
    output_key: OutputKey | None = None


class _JobIdOnly(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: JobId


def parse_job(body: str | bytes) -> Job:
    """The job in an SQS message body or a job-file line; ``JobInvalid`` says what is wrong
    (field and problem, never the value)."""
    try:
        return Job.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def job_address(body: str | bytes) -> tuple[str, str | None] | None:
    """``(job_id, output_key)`` of a body whose job id is valid (``output_key`` None when it is
    absent or invalid), else None."""
    try:
        found = _Address.model_validate_json(body)
    except ValidationError:
        try:
            return _JobIdOnly.model_validate_json(body).job_id, None
        except ValidationError:
            return None
    return found.job_id, found.output_key


def _invalid(exc: ValidationError) -> JobInvalid:
    return from_validation_errors(  # type: ignore[return-value]
        exc, JobInvalid, what="the job",
        shape="a job is a JSON object: {job_id, text, voice?, output_key?}",
        unknown="not a job field (job_id, text, voice, output_key)")


def job_fingerprint(key: WatermarkKey, job: Job) -> str:
    """HMAC-SHA256 of the job's content (text, voice, output_key) under a key derived from
    ``key``: equal for the same job, different for any change, unreadable without the key."""
    fields = [job.text, job.voice, job.output_key]
    if job.audio_format != "wav":  # WAV jobs (as before formats existed) keep their fingerprint
        fields.append(job.audio_format)
    content = json.dumps(fields, ensure_ascii=False)
    return hmac.new(key.mac(_FINGERPRINT_LABEL), content.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


# --- where results go ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultKeys:
    """The output-bucket keys of one job's results."""

    audio: str
    """``batch/[<output_key>/]<job_id>.<format>`` (``.wav`` by default)"""
    result: str
    """``batch/[<output_key>/]<job_id>.json``: the done marker, written last."""
    error: str
    """``batch/[<output_key>/]<job_id>.error.json``: a permanent failure."""

    @classmethod
    def for_job(cls, job_id: str, output_key: str | None = None,
                fmt: str = "wav") -> ResultKeys:
        stem = f"{RESULT_PREFIX}{output_key + '/' if output_key else ''}{job_id}"
        return cls(f"{stem}.{fmt}", f"{stem}.json", f"{stem}.error.json")


class JobResult(BaseModel):
    """The done marker (``<job_id>.json``): what was made, and the record that vouches for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    status: Literal["done"] = "done"
    record_id: str
    """The provenance record id (hex) the audio's mark carries."""
    audio_key: str
    audio_version_id: str | None
    """The WAV's S3 version (versioned buckets), so the marker names one exact object."""
    audio_sha256: str
    audio_bytes: int
    duration_s: float
    sample_rate: int
    record: dict[str, Any]
    """The public provenance record (keyed text hash, never the text)."""
    format: str = "wav"
    """The audio's format."""
    manifest_bytes: int | None = None
    """Size of the C2PA manifest store embedded in the audio (also kept with the record)."""


# --- job files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobLine:
    """An accepted line."""

    line: int
    job: Job


@dataclass(frozen=True)
class RejectedLine:
    """A refused line: its number, its job id when readable, the error's public form."""

    line: int
    job_id: str | None
    error: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "job_id": self.job_id, "error": self.error}


@dataclass(frozen=True)
class ParsedJobFile:
    lines: int
    """Lines in the file (blank ones included)."""
    accepted: tuple[JobLine, ...]
    rejected: tuple[RejectedLine, ...]


def parse_job_file(data: bytes, *, max_chars: int, max_lines: int) -> ParsedJobFile:
    """Every line of a job file, accepted or rejected with its line number (from 1).

    A line is rejected when it is not UTF-8, not a valid job (``invalid_job``), repeats an
    earlier line's job id (``duplicate_job_id``) or carries text the voice would refuse (the
    text checks of ``voxproof.text.prepare``, with the character's position in that text).
    Blank lines are skipped; a UTF-8 byte order mark is allowed.

    Raises ``JobFileTooLarge`` (nothing accepted) for more than ``max_lines`` lines.
    """
    raw = data.removeprefix(_BOM).split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the newline that ends the last line
    if len(raw) > max_lines:
        raise JobFileTooLarge(f"the job file has {len(raw)} lines; the limit is {max_lines}",
                              lines=len(raw), limit=max_lines)
    accepted: list[JobLine] = []
    rejected: list[RejectedLine] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(raw, start=1):
        line = line.removesuffix(b"\r")
        if not line.strip():
            continue
        outcome = _parse_line(line, number, seen, max_chars)
        (accepted if isinstance(outcome, JobLine) else rejected).append(outcome)
    return ParsedJobFile(len(raw), tuple(accepted), tuple(rejected))


def _parse_line(line: bytes, number: int, seen: dict[str, int],
                max_chars: int) -> JobLine | RejectedLine:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return RejectedLine(number, None, JobInvalid("the line is not valid UTF-8").to_dict())
    try:
        job = parse_job(text)
    except JobInvalid as err:
        address = job_address(text)
        return RejectedLine(number, address[0] if address else None, err.to_dict())
    if job.job_id in seen:
        err = DuplicateJobId(f"job id '{job.job_id}' is already on line {seen[job.job_id]}",
                             first_line=seen[job.job_id])
        return RejectedLine(number, job.job_id, err.to_dict())
    seen[job.job_id] = number
    try:
        prepare(job.text, max_chars=max_chars)
    except TextError as err:
        return RejectedLine(number, job.job_id, err.to_dict())
    return JobLine(number, job)


def report_key(key: str) -> str:
    """``jobs/a/b.jsonl`` -> ``batch/reports/a/b.jsonl.json`` (a hash where that is too long)."""
    name = f"{REPORT_PREFIX}{key.removeprefix(JOBS_PREFIX)}.json"
    if len(name.encode()) <= _MAX_S3_KEY_BYTES:
        return name
    return f"{REPORT_PREFIX}_long/{hashlib.sha256(key.encode()).hexdigest()}.json"
