"""Job files in: ``jobs/*.jsonl`` in the input bucket, fanned out to the job queue, reported.

take = check the source -> read (bounded) -> parse every line -> enqueue the good ones -> write
the report ``batch/reports/<path under jobs/>.json``. Nothing is dropped silently: every line is
accepted (its job id and where its result will appear) or rejected (its number, its job id when
readable, the error); a file that cannot be taken whole enqueues nothing and its report says
why. The queue's consumer runs each job like any other (``runner``), as ``batch-s3``.

Once per uploaded object (bucket, key, version id, ETag): a re-delivered S3 event enqueues
nothing new. A fan-out that fails part-way is retried whole; the jobs it had already sent are
absorbed by the jobs' own idempotency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from voxproof.batch.aws import JobFileReader, JobFileSource, JobQueue, ResultStore
from voxproof.batch.exceptions import JobFileError, JobFileRefused
from voxproof.batch.idempotency import Idempotency
from voxproof.batch.jobs import (
    JOBS_PREFIX,
    JOBS_SUFFIX,
    ParsedJobFile,
    RejectedLine,
    ResultKeys,
    parse_job_file,
    report_key,
)
from voxproof.deadline import Deadline

#: The idempotency key prefix of job files.
FILE_IDEMPOTENCY_PREFIX: Final = "voxproof-jobfile"


@dataclass(frozen=True)
class JobFileLimits:
    max_bytes: int
    """Largest file read."""
    max_lines: int
    """Most lines."""
    max_chars: int
    """Longest text of one job (the batch limit)."""


@dataclass
class JobFileIntake:
    """Takes job files: read, parse, enqueue, report; once per uploaded object.

    Parameters
    ----------
    files:
        Reads job files from the input bucket (the only bucket whose job files are taken).
    queue:
        Where accepted jobs go.
    store:
        The output bucket (reports).
    limits:
        Size, line and text bounds.
    idempotency:
        Remembers uploads (DynamoDB on AWS); without it every event fans out.
    """

    files: JobFileReader
    queue: JobQueue
    store: ResultStore
    limits: JobFileLimits
    idempotency: Idempotency | None = None
    _once: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.idempotency is not None:
            self._once = self.idempotency.once(self._fan_out, prefix=FILE_IDEMPOTENCY_PREFIX,
                                               key="upload")

    def take(self, source: JobFileSource, deadline: Deadline) -> dict[str, Any]:
        """Fan ``source`` out to the queue unless it already was; returns the report's summary
        (``report_key``, ``status``, counts) and ``replayed``."""
        self._check_source(source)
        if self._once is None:
            return self._fan_out(claim=source.claim(), source=source, deadline=deadline)
        return self._once(claim=source.claim(), source=source, deadline=deadline)

    # --- steps ------------------------------------------------------------------------------

    def _check_source(self, source: JobFileSource) -> None:
        if source.bucket != self.files.bucket:
            raise JobFileRefused("job files are taken from the input bucket only")
        if not (source.key.startswith(JOBS_PREFIX) and source.key.endswith(JOBS_SUFFIX)):
            raise JobFileRefused(f"job files are {JOBS_PREFIX}*{JOBS_SUFFIX} in the input bucket")

    def _fan_out(self, *, claim: dict[str, str], source: JobFileSource,
                 deadline: Deadline) -> dict[str, Any]:
        report: dict[str, Any] = {"source": source.to_dict(), "report_key": report_key(source.key)}
        try:
            data = self.files.read(source, max_bytes=self.limits.max_bytes)
            if data is None:
                # Deleted, or replaced in an unversioned bucket: the newer upload has its own
                # event (and report); writing one here could overwrite it.
                return {"report_key": None, "status": "gone", "counts": None, "replayed": False}
            parsed = parse_job_file(data, max_chars=self.limits.max_chars,
                                    max_lines=self.limits.max_lines)
        except JobFileError as err:
            report.update(status="refused", error=err.to_dict(),
                          counts={"lines": None, "accepted": 0, "rejected": 0},
                          accepted=[], rejected=[])
        else:
            refused = self.queue.send(parsed.accepted, source, deadline)
            report.update(self._outcome(parsed, refused))
        self.store.put_json(report["report_key"], report)
        return {"report_key": report["report_key"], "status": report["status"],
                "counts": report["counts"], "replayed": False}

    @staticmethod
    def _outcome(parsed: ParsedJobFile, refused: list[RejectedLine]) -> dict[str, Any]:
        refused_lines = {r.line for r in refused}
        accepted = [{"line": a.line, "job_id": a.job.job_id,
                     "result_key": ResultKeys.for_job(a.job.job_id, a.job.output_key).result}
                    for a in parsed.accepted if a.line not in refused_lines]
        rejected = sorted([*parsed.rejected, *refused], key=lambda r: r.line)
        return {"status": "accepted",
                "counts": {"lines": parsed.lines, "accepted": len(accepted),
                           "rejected": len(rejected)},
                "accepted": accepted, "rejected": [r.to_dict() for r in rejected]}
