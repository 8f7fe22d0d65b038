"""The batch package's AWS side: the output bucket's ``batch/`` folder, the job queue, and job
files read from the input bucket.

Clients come from the caller (boto3 is never imported here). Every AWS failure becomes a
``VoxproofError`` (``Unavailable`` when a retry may cure it) through one S3 reading,
``voxproof.aws_errors.s3_fault``; no bucket name, endpoint or botocore message passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from voxproof.aws_errors import S3Fault, aws_errors, s3_fault
from voxproof.batch.exceptions import JobFileTooLarge, JobNotEnqueued
from voxproof.batch.jobs import JobLine, JobResult, RejectedLine, ResultKeys
from voxproof.deadline import Deadline
from voxproof.errors import DeadlineExceeded, Unavailable

#: The message attribute naming where a fanned-out job came from.
SOURCE_ATTRIBUTE: Final = "voxproof-source"
#: SendMessageBatch limits: 10 entries, 256 KiB in all (bodies and attributes).
BATCH_ENTRIES: Final = 10
BATCH_BYTES: Final = 256 * 1024
_SEND_ATTEMPTS: Final = 3


# --- the output bucket ---------------------------------------------------------------------------


class ResultStore:
    """The output bucket's ``batch/`` folder.

    Parameters
    ----------
    client:
        A boto3 S3 client (built by the caller).
    bucket:
        The output bucket.
    owner:
        The account that must own it: every call names it (``ExpectedBucketOwner``).
    """

    def __init__(self, client: Any, bucket: str, *, owner: str | None = None) -> None:
        self._s3 = client
        self.bucket = bucket
        self._owner: dict[str, str] = {"ExpectedBucketOwner": owner} if owner else {}

    def put_audio(self, keys: ResultKeys, wav: bytes, *, job_id: str, record_id: str,
                  content_type: str = "audio/wav") -> str | None:
        """Write the audio; returns its version id (None in an unversioned bucket)."""
        out = self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.audio, Body=wav,
                         ContentType=content_type,
                         Metadata={"job-id": job_id, "record-id": record_id}, **self._owner)
        return out.get("VersionId")

    def put_result(self, keys: ResultKeys, result: JobResult) -> None:
        """Write the done marker (after the audio)."""
        self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.result,
                   Body=result.model_dump_json(indent=2).encode(),
                   ContentType="application/json", Metadata={"job-id": result.job_id},
                   **self._owner)

    def put_error(self, keys: ResultKeys, body: dict[str, Any]) -> bool:
        """Write the error object unless an identical one is there; True when written (a
        replayed bad message makes no new object version)."""
        data = json.dumps(body, indent=2, sort_keys=True).encode()
        if self._read(keys.error) == data:
            return False
        self._call(self._s3.put_object, Bucket=self.bucket, Key=keys.error, Body=data,
                   ContentType="application/json", **self._owner)
        return True

    def clear_error(self, keys: ResultKeys) -> None:
        """Remove a stale error object (only if there is one: no delete markers for nothing)."""
        if self._exists(keys.error):
            self._call(self._s3.delete_object, Bucket=self.bucket, Key=keys.error, **self._owner)

    def put_json(self, key: str, body: dict[str, Any]) -> None:
        """Write a JSON object (job-file reports)."""
        self._call(self._s3.put_object, Bucket=self.bucket, Key=key,
                   Body=json.dumps(body, indent=2).encode(), ContentType="application/json",
                   **self._owner)

    # --- steps ------------------------------------------------------------------------------

    def _read(self, key: str) -> bytes | None:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key, **self._owner)["Body"].read()
        except aws_errors() as exc:
            if s3_fault(exc) is S3Fault.MISSING:
                return None
            raise Unavailable("the output bucket cannot be reached") from exc

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key, **self._owner)
        except aws_errors() as exc:
            if s3_fault(exc) is S3Fault.MISSING:
                return False
            raise Unavailable("the output bucket cannot be reached") from exc
        return True

    @staticmethod
    def _call(method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except aws_errors() as exc:
            raise Unavailable("the output bucket cannot be written") from exc


# --- job files in the input bucket --------------------------------------------------------------


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


class JobFileReader:
    """Job files in the input bucket, read at the version their event announced.

    Parameters
    ----------
    client:
        A boto3 S3 client.
    bucket:
        The input bucket: the only one job files are read from.
    owner:
        The account that must own it (``ExpectedBucketOwner`` on every read).
    """

    def __init__(self, client: Any, bucket: str, *, owner: str | None = None) -> None:
        self._s3 = client
        self.bucket = bucket
        self._owner: dict[str, str] = {"ExpectedBucketOwner": owner} if owner else {}

    def read(self, source: JobFileSource, *, max_bytes: int) -> bytes | None:
        """The file's bytes, or None when that version is gone (deleted, or replaced in an
        unversioned bucket: the newer upload has its own event).

        ``JobFileTooLarge`` past ``max_bytes`` (before reading when the event gives the size),
        ``Unavailable`` when the bucket cannot be read.
        """
        if source.size is not None and source.size > max_bytes:
            raise JobFileTooLarge(f"the job file is {source.size} bytes; the limit is "
                                  f"{max_bytes}", bytes=source.size, limit=max_bytes)
        where: dict[str, str] = ({"VersionId": source.version_id} if source.version_id
                                 else {"IfMatch": f'"{source.etag}"'} if source.etag else {})
        try:
            body = self._s3.get_object(Bucket=source.bucket, Key=source.key, **where,
                                       **self._owner)["Body"]
            data = body.read(max_bytes + 1)
            body.close()
        except aws_errors() as exc:
            if s3_fault(exc) in (S3Fault.MISSING, S3Fault.CHANGED):
                return None
            raise Unavailable("the job file cannot be read from the input bucket") from exc
        if len(data) > max_bytes:
            raise JobFileTooLarge(f"the job file is over {max_bytes} bytes", limit=max_bytes)
        return data


# --- the job queue -------------------------------------------------------------------------------


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
    """The job queue, written in batches: each job one message (its JSON, plus a
    ``voxproof-source`` attribute ``s3://bucket/key#L<line>``).

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
        except aws_errors() as exc:
            raise Unavailable("the job queue cannot be reached") from exc
        return list(out.get("Failed", []))
