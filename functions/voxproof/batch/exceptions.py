"""The batch package's errors: each a ``VoxproofError`` with a stable code and status.

The codes are the ones the README's "Batch" section promises in error objects and reports.
"""

from __future__ import annotations

from voxproof.errors import (
    DeadlineTooShort,
    RequestError,
    TextTooLong,
    Unavailable,
    VoxproofError,
)


class JobInvalid(RequestError):
    """A job (an SQS message body or a line of a job file) that is not valid JSON or breaks the
    job schema. Details: ``errors`` (field and problem, never the value)."""

    code = "invalid_job"


class DuplicateJobId(JobInvalid):
    """A job file names the same job id on two lines (the later line is refused)."""

    code = "duplicate_job_id"


class JobTooLong(TextTooLong):
    """A job whose text takes longer to speak than a whole batch invocation may run: no retry
    can succeed, so it is split by the caller. Details: ``estimate_s``, ``budget_s``."""

    code = "job_too_long"


class JobConflict(VoxproofError):
    """A job id already used for a different job (other text, voice or output_key)."""

    code = "job_conflict"
    status = 409


class JobInProgress(Unavailable):
    """Another invocation is running this job id right now; the message is retried later."""

    code = "job_in_progress"


class JobNotStarted(DeadlineTooShort):
    """The invocation's time was nearly up before the job could start; it is retried."""

    code = "job_not_started"


class JobFileError(RequestError):
    """A job file (``jobs/*.jsonl`` in the input bucket) that cannot be taken as a whole."""

    code = "invalid_job_file"


class JobFileTooLarge(JobFileError):
    """More bytes or lines than one job file may hold."""

    code = "job_file_too_large"
    status = 413


class JobFileRefused(JobFileError):
    """An S3 event for another bucket, or for a key that is not ``jobs/*.jsonl``."""

    code = "job_file_refused"
    status = 403


class JobNotEnqueued(VoxproofError):
    """The job queue refused one job of a job file (the rest were enqueued)."""

    code = "job_not_enqueued"
    status = 502


class UnsupportedEvent(RequestError):
    """A Lambda event the batch function does not take (neither SQS nor S3 records)."""

    code = "unsupported_event"
