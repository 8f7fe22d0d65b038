"""Job files: ``jobs/*.jsonl`` in the input bucket, one job per line, fanned out to the job queue.

take = check the source -> read (bounded) -> parse every line (numbered from 1) -> enqueue the
good ones (SendMessageBatch, per-entry failures checked) -> write the report. Each accepted line
becomes one SQS message (the job's JSON, plus a ``voxproof-source`` attribute
``s3://bucket/key#L<line>``); the job queue's consumer runs it like any other job
(``voxproof.jobs``), as the ``batch-s3`` entry point.

Nothing is dropped silently: every line is either accepted (its job id and where its result
will appear) or rejected (its line number, its job id when readable, and the error code and
message) in ``batch/reports/<path under jobs/>.json`` in the output bucket. A file that cannot
be taken as a whole (larger than ``max_bytes``, more than ``max_lines`` lines) enqueues nothing
and its report says why. Blank lines are skipped; a UTF-8 byte order mark is allowed.

Idempotent per uploaded object (bucket, key, version id, ETag): a re-delivered S3 event
enqueues nothing new. A fan-out that fails part-way (the queue down, the time up) is retried as
a whole; the jobs it had already sent are absorbed by the jobs' own idempotency.

Example:
    >>> parsed = parse_job_file(b'{"job_id": "a", "text": "Hi."}\\n{"job_id": "a"}\\n',
    ...                         max_chars=100, max_lines=10)
    >>> [line.line for line in parsed.accepted], [r.error["code"] for r in parsed.rejected]
    ([1], ['invalid_job'])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from voxproof.deadline import Deadline
from voxproof.errors import (
    DeadlineExceeded,
    DuplicateJobId,
    JobFileError,
    JobFileRefused,
    JobFileTooLarge,
    JobInvalid,
    JobNotEnqueued,
    TextError,
    Unavailable,
)
from voxproof.jobs import (
    REPORTS_FOLDER,
    RESULT_PREFIX,
    Job,
    ResultKeys,
    ResultStore,
    job_address,
    parse_job,
)
from voxproof.text import prepare

if TYPE_CHECKING:
    from voxproof.idempotency import Idempotency

JOBS_PREFIX: Final = "jobs/"
JOBS_SUFFIX: Final = ".jsonl"
REPORT_PREFIX: Final = f"{RESULT_PREFIX}{REPORTS_FOLDER}/"
#: The message attribute naming where a fanned-out job came from.
SOURCE_ATTRIBUTE: Final = "voxproof-source"
#: The idempotency key prefix of job files.
FILE_IDEMPOTENCY_PREFIX: Final = "voxproof-jobfile"
#: SendMessageBatch limits: 10 entries, 256 KiB in all (bodies and attributes).
BATCH_ENTRIES: Final = 10
BATCH_BYTES: Final = 256 * 1024
_SEND_ATTEMPTS: Final = 3
_MAX_S3_KEY_BYTES: Final = 1024
_BOM: Final = b"\xef\xbb\xbf"
#: S3 answers for an object version that is no longer there (or no longer the one announced).
_GONE: Final = frozenset({"NoSuchKey", "NoSuchVersion", "PreconditionFailed", "404", "412"})


class _Gone(Exception):
    """The announced object version cannot be read any more."""


@dataclass(frozen=True)
class JobFileSource:
    """The uploaded object an S3 event names (key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def claim(self) -> dict[str, str]:
        """The idempotency claim: one upload = one (bucket, key, version, ETag)."""
        return {"upload": f"{self.bucket}/{self.key}#{self.version_id or ''}#{self.etag}"}

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id,
                "etag": self.etag}


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
    """Every line of a job file, accepted or rejected with its line number.

    A line is rejected when it is not UTF-8, not a valid job (``invalid_job``), repeats an
    earlier line's job id (``duplicate_job_id``) or carries text the voice would refuse (the
    text checks of ``voxproof.text.prepare``, with the character's position in that text).

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


# --- the queue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    line: int
    entry: dict[str, Any]
    size: int


def message_batches(entries: Sequence[_Entry], *, max_entries: int = BATCH_ENTRIES,
                    max_bytes: int = BATCH_BYTES) -> Iterator[list[_Entry]]:
    """Consecutive groups within SendMessageBatch's count and size limits."""
    group: list[_Entry] = []
    size = 0
    for item in entries:
        if group and (len(group) == max_entries or size + item.size > max_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += item.size
    if group:
        yield group


class JobQueue:
    """The job queue, written in batches.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The jobs queue (template.yaml: ``JobsQueue``).
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self.queue_url = queue_url

    def send(self, lines: Sequence[JobLine], source: JobFileSource,
             deadline: Deadline) -> list[RejectedLine]:
        """Enqueue every line's job; returns the lines the queue refused (sender faults).

        Entries that fail on the service's side are sent again (up to 3 attempts); if some
        still fail, ``Unavailable`` (the whole file is retried). ``DeadlineExceeded`` if the
        time runs out between batches.
        """
        refused: list[RejectedLine] = []
        for group in message_batches([self._entry(line, source) for line in lines]):
            if deadline.expired():
                raise DeadlineExceeded("the job file was not fully enqueued in time; it will "
                                       "be retried")
            refused.extend(self._send_group(group, {line.line: line.job.job_id
                                                    for line in lines}))
        return refused

    # --- steps ------------------------------------------------------------------------------

    @staticmethod
    def _entry(line: JobLine, source: JobFileSource) -> _Entry:
        body = line.job.model_dump_json(exclude_none=True)
        origin = f"{source.uri}#L{line.line}"
        entry = {"Id": f"line-{line.line}", "MessageBody": body,
                 "MessageAttributes": {SOURCE_ATTRIBUTE: {"DataType": "String",
                                                          "StringValue": origin}}}
        size = len(body.encode()) + len(SOURCE_ATTRIBUTE) + len("String") + len(origin.encode())
        return _Entry(line.line, entry, size)

    def _send_group(self, group: list[_Entry], job_ids: dict[int, str]) -> list[RejectedLine]:
        pending = {item.entry["Id"]: item for item in group}
        refused: list[RejectedLine] = []
        for _ in range(_SEND_ATTEMPTS):
            failed = self._send_batch([item.entry for item in pending.values()])
            retry: dict[str, _Entry] = {}
            for failure in failed:
                item = pending[failure["Id"]]
                if failure.get("SenderFault"):
                    err = JobNotEnqueued("the job queue refused this job",
                                         queue_code=str(failure.get("Code", ""))[:64])
                    refused.append(RejectedLine(item.line, job_ids[item.line], err.to_dict()))
                else:
                    retry[failure["Id"]] = item
            pending = retry
            if not pending:
                return refused
        raise Unavailable(f"the job queue did not take {len(pending)} jobs; the job file will "
                          "be retried")

    def _send_batch(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            out = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:  # botocore's network and service errors
            raise Unavailable("the job queue cannot be reached") from exc
        return list(out.get("Failed", []))


# --- the intake ----------------------------------------------------------------------------------


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
    s3:
        A boto3 S3 client (reads the input bucket).
    queue:
        Where accepted jobs go.
    store:
        The output bucket (reports).
    input_bucket:
        The only bucket whose job files are taken.
    limits:
        Size, line and text bounds.
    idempotency:
        Remembers uploads (DynamoDB on AWS); without it every event fans out.
    """

    s3: Any
    queue: JobQueue
    store: ResultStore
    input_bucket: str
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
        if source.bucket != self.input_bucket:
            raise JobFileRefused("job files are taken from the input bucket only")
        if not (source.key.startswith(JOBS_PREFIX) and source.key.endswith(JOBS_SUFFIX)):
            raise JobFileRefused(f"job files are {JOBS_PREFIX}*{JOBS_SUFFIX} in the input bucket")

    def _fan_out(self, *, claim: dict[str, str], source: JobFileSource,
                 deadline: Deadline) -> dict[str, Any]:
        report: dict[str, Any] = {"source": source.to_dict(), "report_key": report_key(source.key)}
        try:
            parsed = parse_job_file(self._read(source), max_chars=self.limits.max_chars,
                                    max_lines=self.limits.max_lines)
        except _Gone:
            # Deleted, or replaced in an unversioned bucket: the newer upload has its own event
            # (and report); writing one here could overwrite it.
            return {"report_key": None, "status": "gone", "counts": None, "replayed": False}
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

    def _read(self, source: JobFileSource) -> bytes:
        limit = self.limits.max_bytes
        if source.size is not None and source.size > limit:
            raise JobFileTooLarge(f"the job file is {source.size} bytes; the limit is {limit}",
                                  bytes=source.size, limit=limit)
        where: dict[str, str] = ({"VersionId": source.version_id} if source.version_id
                                 else {"IfMatch": f'"{source.etag}"'} if source.etag else {})
        try:
            body = self.s3.get_object(Bucket=source.bucket, Key=source.key, **where)["Body"]
            data = body.read(limit + 1)
            body.close()
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _GONE:
                raise _Gone() from None
            raise Unavailable("the job file cannot be read from the input bucket") from exc
        except Exception as exc:  # botocore's network errors
            raise Unavailable("the job file cannot be read from the input bucket") from exc
        if len(data) > limit:
            raise JobFileTooLarge(f"the job file is over {limit} bytes", limit=limit)
        return data

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

