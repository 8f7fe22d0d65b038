"""Batch jobs: the job a caller sends, where its results go, and running it exactly once.

A job is ``{"job_id", "text", "voice"?, "output_key"?}`` (an SQS message body, or one line of a
``jobs/*.jsonl`` file, see ``voxproof.jobfiles``). Running it speaks the text through the
service (which writes the provenance record), then writes two objects to the output bucket:

- ``batch/[<output_key>/]<job_id>.wav``: the marked audio, written first;
- ``batch/[<output_key>/]<job_id>.json``: the result (record id, the audio's key, version,
  sha256 and size, and the public provenance record; never the text), written last.

The result JSON is the "done" marker. An S3 PUT is atomic (an object is there whole or not at
all), so a reader that waits for the ``.json`` never sees a half-written result, and the
sha256 in it names the exact audio it vouches for (a WAV without its ``.json`` is a job that
has not finished, e.g. stopped between the two PUTs; it is overwritten by the retry).

A job that can never succeed as sent (bad JSON, schema, text, voice; a text that takes longer
to speak than a whole invocation may run; a job id reused for a different job) gets ``batch/[<output_key>/]<job_id>.error.json`` (``{job_id, status, error:
{code, message, details?}}``, no text) whenever its job id can be read, and the message is still
reported as failed (so it reaches the dead-letter queue after its retries, where an alarm
fires). Everything else (time, throttling, a dependency down) is retried without an error
object. A later success under the same name removes a stale ``.error.json``.

Idempotency (``JobRunner`` with a ``voxproof.idempotency.Idempotency``): the job id is the key,
and a keyed fingerprint of (text, voice, output_key) is checked, so a replay of the same job
returns the stored result (no second record, no second object) and the same id with another
job is a ``JobConflict``, never a silent reuse. The fingerprint is an HMAC under a key derived
from the watermark key, so the idempotency table holds nothing that reveals the text.

Example:
    >>> job = parse_job('{"job_id": "ep-1", "text": "Hello.", "output_key": "podcasts/2024"}')
    >>> ResultKeys.for_job(job.job_id, job.output_key).audio
    'batch/podcasts/2024/ep-1.wav'
    >>> parse_job('{"job_id": "../x", "text": "Hi."}')
    Traceback (most recent call last):
    ...
    voxproof.errors.JobInvalid: job_id: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from voxproof.deadline import Deadline
from voxproof.errors import (
    DeadlineTooShort,
    JobConflict,
    JobInvalid,
    JobNotStarted,
    JobTooLong,
    RequestError,
    TextError,
    Unavailable,
    VoxproofError,
)
from voxproof.service import Caller, Service, UnknownVoice

if TYPE_CHECKING:
    from voxproof.idempotency import Idempotency
    from voxproof.watermark import WatermarkKey

#: Every batch output lives under this prefix of the output bucket.
RESULT_PREFIX: Final = "batch/"
#: Job-file reports live here; ``output_key`` may not start with ``reports``.
REPORTS_FOLDER: Final = "reports"
#: A job is not started with less time than this left (it is reported and retried instead).
JOB_START_MIN_S: Final = 1.0
#: The idempotency key prefix of jobs (stable across code changes).
JOB_IDEMPOTENCY_PREFIX: Final = "voxproof-job"

_JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VOICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_OUTPUT_KEY_MAX: Final = 256
_FINGERPRINT_LABEL: Final = b"voxproof/v1/job-fingerprint"
_MAX_REPORTED_ERRORS: Final = 5
_FIELD_SHOWN: Final = 32  # a mistyped field name is shown this far at most (it may be text)


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
    errors = exc.errors(include_url=False, include_input=False)
    problems = [{"field": _field(e["loc"]), "problem": e["type"]} for e in errors]
    return JobInvalid(_describe(errors[0]), errors=problems[:_MAX_REPORTED_ERRORS])


def _field(loc: tuple[Any, ...]) -> str:
    name = ".".join(str(part) for part in loc)
    return name if len(name) <= _FIELD_SHOWN else name[:_FIELD_SHOWN] + "..."


def _describe(error: Any) -> str:
    kind, field = error["type"], _field(error["loc"])
    if kind == "json_invalid":
        return "the job is not valid JSON"
    if kind in ("model_type", "model_attributes_type", "dict_type") or not field:
        return "a job is a JSON object: {job_id, text, voice?, output_key?}"
    if kind == "missing":
        return f"{field}: required"
    if kind == "extra_forbidden":
        return f"{field}: not a job field (job_id, text, voice, output_key)"
    if kind == "string_type":
        return f"{field}: must be a string"
    if kind == "value_error":
        return f"{field}: {error['ctx']['error']}"
    return f"{field}: {error['msg']}"


def job_fingerprint(key: WatermarkKey, job: Job) -> str:
    """HMAC-SHA256 of the job's content (text, voice, output_key) under a key derived from
    ``key``: equal for the same job, different for any change, unreadable without the key."""
    content = json.dumps([job.text, job.voice, job.output_key], ensure_ascii=False)
    return hmac.new(key.mac(_FINGERPRINT_LABEL), content.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


def is_permanent(err: BaseException) -> bool:
    """True when the job itself is wrong (retrying cannot help); False for time, throttling,
    unavailable dependencies and anything unexpected (retried, then dead-lettered)."""
    return isinstance(err, TextError | RequestError | UnknownVoice | JobConflict)


# --- where results go ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultKeys:
    """The output-bucket keys of one job's results."""

    audio: str
    """``batch/[<output_key>/]<job_id>.wav``"""
    result: str
    """``batch/[<output_key>/]<job_id>.json``: the done marker, written last."""
    error: str
    """``batch/[<output_key>/]<job_id>.error.json``: a permanent failure."""

    @classmethod
    def for_job(cls, job_id: str, output_key: str | None = None) -> ResultKeys:
        stem = f"{RESULT_PREFIX}{output_key + '/' if output_key else ''}{job_id}"
        return cls(f"{stem}.wav", f"{stem}.json", f"{stem}.error.json")


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


class ResultStore:
    """The output bucket's ``batch/`` folder.

    Parameters
    ----------
    client:
        A boto3 S3 client (built by the caller).
    bucket:
        The output bucket.
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def put_audio(self, keys: ResultKeys, wav: bytes, *, job_id: str, record_id: str) -> str | None:
        """Write the WAV; returns its version id (None in an unversioned bucket)."""
        out = self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.audio, Body=wav,
                         ContentType="audio/wav",
                         Metadata={"job-id": job_id, "record-id": record_id})
        return out.get("VersionId")

    def put_result(self, keys: ResultKeys, result: JobResult) -> None:
        """Write the done marker (after the audio)."""
        self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.result,
                   Body=result.model_dump_json(indent=2).encode(),
                   ContentType="application/json", Metadata={"job-id": result.job_id})

    def put_error(self, keys: ResultKeys, body: dict[str, Any]) -> bool:
        """Write the error object unless an identical one is there; True when written (a
        replayed bad message makes no new object version)."""
        data = json.dumps(body, indent=2, sort_keys=True).encode()
        if self._read(keys.error) == data:
            return False
        self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.error, Body=data,
                   ContentType="application/json")
        return True

    def clear_error(self, keys: ResultKeys) -> None:
        """Remove a stale error object (only if there is one: no delete markers for nothing)."""
        if self._exists(keys.error):
            self._call(self._s3.delete_object, Bucket=self.bucket, Key=keys.error)

    def put_json(self, key: str, body: dict[str, Any]) -> None:
        """Write a JSON object (job-file reports)."""
        self._call(self._s3.put_object, Bucket=self.bucket, Key=key,
                   Body=json.dumps(body, indent=2).encode(), ContentType="application/json")

    # --- steps ------------------------------------------------------------------------------

    def _read(self, key: str) -> bytes | None:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # botocore's network and service errors
            raise Unavailable("the output bucket cannot be reached") from exc

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise Unavailable("the output bucket cannot be reached") from exc
        except Exception as exc:
            raise Unavailable("the output bucket cannot be reached") from exc
        return True

    @staticmethod
    def _call(method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            raise Unavailable("the output bucket cannot be written") from exc


# --- running jobs -------------------------------------------------------------------------------


def run_job(service: Service, job: Job, caller: Caller, deadline: Deadline,
            store: ResultStore) -> JobResult:
    """Speak, record (the service), then write the WAV and, last, the done marker.

    Not idempotent by itself: ``JobRunner`` makes it once per job id.
    """
    speech = service.speak(job.text, caller, deadline, voice=job.voice)
    keys = ResultKeys.for_job(job.job_id, job.output_key)
    wav = speech.wav()
    record_id = speech.record.record_id_hex
    version = store.put_audio(keys, wav, job_id=job.job_id, record_id=record_id)
    result = JobResult(
        job_id=job.job_id, record_id=record_id, audio_key=keys.audio, audio_version_id=version,
        audio_sha256=hashlib.sha256(wav).hexdigest(), audio_bytes=len(wav),
        duration_s=round(speech.duration_s, 3), sample_rate=speech.sample_rate,
        record=speech.record.public_dict(),
    )
    store.put_result(keys, result)
    store.clear_error(keys)
    return result


@dataclass(frozen=True)
class JobOutcome:
    """What ``JobRunner.handle`` did with one message."""

    result: JobResult
    replayed: bool
    """True when the job had already run: the stored result, nothing new written."""


class JobRunner:
    """Runs job messages once per job id and leaves an error object for jobs that cannot run.

    Parameters
    ----------
    service:
        Speaks and records (the batch text limit).
    store:
        The output bucket.
    idempotency:
        Remembers job ids (DynamoDB on AWS). Without it every message runs (local use only).

    Example:
        >>> runner = JobRunner(service, store, idempotency)       # doctest: +SKIP
        >>> runner.handle('{"job_id": "a", "text": "Hi."}', caller, deadline).replayed  # doctest: +SKIP
        False
    """

    def __init__(self, service: Service, store: ResultStore,
                 idempotency: Idempotency | None = None) -> None:
        self.service = service
        self.store = store
        self._once = None if idempotency is None else idempotency.once(
            self._execute, prefix=JOB_IDEMPOTENCY_PREFIX, key="job_id", validate="fingerprint")

    def handle(self, body: str | bytes, caller: Caller, deadline: Deadline, *,
               budget_s: float | None = None) -> JobOutcome:
        """Parse and run one message body; on a permanent failure write the error object,
        then raise (the caller reports the message as failed either way).

        ``budget_s`` is the whole time one invocation has (its deadline's remaining time when
        it started): a job whose estimate exceeds it can never run, and fails as
        ``JobTooLong`` instead of being retried.
        """
        try:
            return self.run(parse_job(body), caller, deadline, budget_s=budget_s)
        except VoxproofError as err:
            if is_permanent(err):
                self._leave_error(body, err)
            raise

    def run(self, job: Job, caller: Caller, deadline: Deadline, *,
            budget_s: float | None = None) -> JobOutcome:
        """Run ``job`` unless it already ran (then return the stored result); the record
        names the job (``caller.job_id``)."""
        caller = replace(caller, job_id=job.job_id)
        if deadline.remaining() < JOB_START_MIN_S:
            raise JobNotStarted("the invocation's time was nearly up before this job could "
                                "start; it will be retried")
        try:
            if self._once is None:
                out = self._execute(claim={}, job=job, caller=caller, deadline=deadline)
                return JobOutcome(JobResult.model_validate(out["result"]), replayed=False)
            return self._run_once(job, caller, deadline)
        except DeadlineTooShort as err:
            estimate = err.details.get("estimate_s")
            if budget_s is None or estimate is None or estimate <= budget_s:
                raise  # a later, emptier invocation can do it
            raise JobTooLong(
                f"this text takes about {estimate:.0f} s to speak; a batch job may take at "
                f"most {budget_s:.0f} s: split it into smaller jobs",
                estimate_s=estimate, budget_s=round(budget_s, 1)) from None

    # --- steps ------------------------------------------------------------------------------

    def _run_once(self, job: Job, caller: Caller, deadline: Deadline) -> JobOutcome:
        from voxproof.idempotency import ClaimMismatch

        # Current key first; a job stored before a key rotation matches a previous key.
        for key in self.service.keys.keyring().accepted:
            claim = {"job_id": job.job_id, "fingerprint": job_fingerprint(key, job)}
            try:
                out = self._once(claim=claim, job=job, caller=caller, deadline=deadline)
            except ClaimMismatch:
                continue
            return JobOutcome(JobResult.model_validate(out["result"]), out["replayed"])
        raise JobConflict(f"job id '{job.job_id}' was already used for a different job (other "
                          "text, voice or output_key); this job was not run. Use a new job id.")

    def _execute(self, *, claim: dict[str, str], job: Job, caller: Caller,
                 deadline: Deadline) -> dict[str, Any]:
        result = run_job(self.service, job, caller, deadline, self.store)
        return {"result": result.model_dump(mode="json"), "replayed": False}

    def _leave_error(self, body: str | bytes, err: VoxproofError) -> None:
        address = job_address(body)
        if address is None:
            return  # no readable job id: the message itself (in the DLQ) is the only trace
        job_id, output_key = address
        self.store.put_error(ResultKeys.for_job(job_id, output_key),
                             {"job_id": job_id, "status": "failed", "error": err.to_dict()})
