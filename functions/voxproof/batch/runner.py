"""Running batch jobs: speak, record, store, once per job id.

Running a job speaks its text through the service (which signs the audio's C2PA manifest and
writes the provenance record with it), then writes the audio (``<job_id>.<format>``) and, last,
the done marker ``<job_id>.json``. An S3 PUT is atomic, so a reader
that waits for the marker never sees half a result, and the marker's sha256 names the exact
audio it vouches for (a WAV without its marker is a job that has not finished; the retry
overwrites it).

A job that can never succeed as sent (``is_permanent``: bad JSON, schema, text or voice; a text
longer to speak than a whole invocation; a job id reused for another job) leaves
``<job_id>.error.json`` (``{job_id, status, error}``, no text) whenever its job id can be read,
and still fails, so the message reaches the dead-letter queue. Anything else is retried without
an error object; a later success removes a stale one.

With ``Idempotency`` the job id is the key and a keyed fingerprint of (text, voice, output_key)
is checked: a replay returns the stored result (no second record, no second object), the same
id with another job is a ``JobConflict``. The fingerprint is an HMAC under a key derived from the
watermark key, so the idempotency table holds nothing that reveals the text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Final

from voxproof.batch.aws import ResultStore
from voxproof.batch.exceptions import JobConflict, JobNotStarted, JobTooLong
from voxproof.batch.idempotency import ClaimMismatch, Idempotency
from voxproof.batch.jobs import Job, JobResult, ResultKeys, job_address, job_fingerprint, parse_job
from voxproof.deadline import Deadline
from voxproof.errors import DeadlineTooShort, RequestError, TextError, VoxproofError
from voxproof.service import Caller, Service, UnknownVoice

#: A job is not started with less time than this left (it is reported and retried instead).
JOB_START_MIN_S: Final = 1.0
#: The idempotency key prefix of jobs (stable across code changes).
JOB_IDEMPOTENCY_PREFIX: Final = "voxproof-job"


def is_permanent(err: BaseException) -> bool:
    """True when the job itself is wrong (retrying cannot help); False for time, throttling,
    unavailable dependencies and anything unexpected (retried, then dead-lettered)."""
    return isinstance(err, TextError | RequestError | UnknownVoice | JobConflict)


def run_job(service: Service, job: Job, caller: Caller, deadline: Deadline,
            store: ResultStore) -> JobResult:
    """Speak, record (the service), then write the WAV and, last, the done marker.

    Not idempotent by itself: ``JobRunner`` makes it once per job id.
    """
    speech = service.speak(job.text, caller, deadline, voice=job.voice, fmt=job.audio_format)
    keys = ResultKeys.for_job(job.job_id, job.output_key, speech.format)
    wav = speech.audio
    record_id = speech.record.record_id_hex
    version = store.put_audio(keys, wav, job_id=job.job_id, record_id=record_id,
                              content_type=speech.media_type)
    result = JobResult(
        job_id=job.job_id, record_id=record_id, audio_key=keys.audio, audio_version_id=version,
        audio_sha256=hashlib.sha256(wav).hexdigest(), audio_bytes=len(wav),
        duration_s=round(speech.duration_s, 3), sample_rate=speech.sample_rate,
        record=speech.record.public_dict(), format=speech.format,
        manifest_bytes=None if speech.manifest_store is None else len(speech.manifest_store),
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
