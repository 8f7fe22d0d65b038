"""The batch function: SQS job messages and S3 job files, one handler for both.

- SQS records (``eventSource`` ``aws:sqs``): one job per message, run by
  ``voxproof.batch.runner.JobRunner`` inside Powertools' ``BatchProcessor``. The answer is a partial
  batch response: ``{"batchItemFailures": [{"itemIdentifier": <message id>}, ...]}`` lists every
  message that did not succeed (bad, conflicting, out of time, a dependency down), so SQS
  deletes the others and redelivers only those (then the DLQ, after five receives).
- S3 records (``aws:s3``, ObjectCreated of ``jobs/*.jsonl`` in the input bucket): each file is
  fanned out to the job queue by ``voxproof.batch.intake.JobFileIntake`` and a report is written.
  A failure that a retry may cure raises, so Lambda's asynchronous retries (then the function's
  on-failure destination) take over; a refused event (another bucket or key) raises too.

The invocation's deadline (Lambda's remaining time minus ``deadline_margin_s``) bounds every job;
a job that cannot start in time is reported, never dropped. Logs carry job ids, message ids,
record ids and error codes, never the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event, S3EventRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from voxproof.batch.aws import (
    SOURCE_ATTRIBUTE,
    JobFileReader,
    JobFileSource,
    JobQueue,
    ResultStore,
)
from voxproof.batch.exceptions import JobFileRefused, UnsupportedEvent
from voxproof.batch.idempotency import Idempotency
from voxproof.batch.intake import JobFileIntake, JobFileLimits
from voxproof.batch.jobs import job_address
from voxproof.batch.runner import JobRunner, is_permanent
from voxproof.deadline import Deadline
from voxproof.errors import Unavailable, VoxproofError
from voxproof.handlers.common import lambda_runtime, logger, metrics, tracer
from voxproof.runtime import Runtime
from voxproof.service import Caller
from voxproof.settings import Settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(runtime: BatchRuntime) -> Handler:
    """The Lambda handler for ``runtime``: ``handler`` below is the container's, tests make
    their own."""

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        """SQS job messages or S3 job-file events, told apart by their records' ``eventSource``."""
        source = _event_source(event)
        runtime.idempotency.register(context)
        deadline = Deadline.from_lambda_context(context, runtime.settings.deadline_margin_s)
        if source == "aws:sqs":
            return _run_jobs(event, context, runtime, deadline)
        return _take_job_files(event, runtime, deadline)

    return handler


@dataclass(frozen=True)
class BatchRuntime:
    """What one container builds once (at init) and every invocation reuses."""

    runtime: Runtime
    """The settings, the service (text up to ``max_text_chars_batch``) and the AWS clients."""
    idempotency: Idempotency
    jobs: JobRunner
    job_files: JobFileIntake | None
    """None when the input bucket or the queue is not configured."""

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @classmethod
    def build(cls, settings: Settings) -> BatchRuntime:
        """The batch parts for ``settings`` (AWS clients from one boto3 session)."""
        runtime = lambda_runtime(settings, max_chars=settings.max_text_chars_batch)
        s3 = runtime.aws("s3")
        store = ResultStore(s3, _required(settings.output_bucket, "OUTPUT_BUCKET"),
                            owner=settings.bucket_owner)
        idempotency = Idempotency(_required(settings.idempotency_table, "IDEMPOTENCY_TABLE"),
                                  runtime.aws("dynamodb"),
                                  expires_after_s=settings.job_idempotency_expiry_s)
        jobs = JobRunner(runtime.service, store, idempotency)
        job_files = None
        if settings.input_bucket and settings.jobs_queue_url:
            limits = JobFileLimits(settings.max_job_file_bytes, settings.max_job_file_lines,
                                   settings.max_text_chars_batch)
            job_files = JobFileIntake(JobFileReader(s3, settings.input_bucket,
                                                    owner=settings.bucket_owner),
                                      JobQueue(runtime.aws("sqs"), settings.jobs_queue_url),
                                      store, limits, idempotency)
        return cls(runtime, idempotency, jobs, job_files)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise Unavailable(f"the batch function is not configured: VOXPROOF_{name} is not set")
    return value


def _event_source(event: Any) -> str:
    records = event.get("Records") if isinstance(event, dict) else None
    sources = {r.get("eventSource") for r in records or () if isinstance(r, dict)}
    if len(sources) != 1 or not sources <= {"aws:sqs", "aws:s3"}:
        raise UnsupportedEvent("the batch function takes SQS job messages or S3 job-file events")
    return sources.pop()


# --- SQS: one job per message ---------------------------------------------------------------------


def _run_jobs(event: dict[str, Any], context: Any, runtime: BatchRuntime,
              deadline: Deadline) -> dict[str, Any]:
    budget_s = deadline.remaining()  # what every invocation of this function starts with

    def run(record: SQSRecord) -> None:
        _run_job(record, context, runtime, deadline, budget_s)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=run, processor=processor,
                                         context=context))


def _run_job(record: SQSRecord, context: Any, runtime: BatchRuntime, deadline: Deadline,
             budget_s: float) -> None:
    try:
        with tracer.provider.in_subsegment("## job") as subsegment:
            subsegment.put_annotation("message_id", record.message_id)
            outcome = runtime.jobs.handle(record.body, _caller(record, context), deadline,
                                          budget_s=budget_s)
    except Exception as err:
        _job_failed(record, err)
        raise
    done = "JobsReplayed" if outcome.replayed else "JobsDone"
    logger.info("job replayed" if outcome.replayed else "job done",
                extra={"job_id": outcome.result.job_id, "message_id": record.message_id,
                       "record_id": outcome.result.record_id})
    metrics.add_metric(name=done, unit=MetricUnit.Count, value=1)


def _caller(record: SQSRecord, context: Any) -> Caller:
    sender = record.get("attributes", {}).get("SenderId", "unknown")
    origin = record.message_attributes[SOURCE_ATTRIBUTE]
    request_id = getattr(context, "aws_request_id", None)
    if origin is not None and origin.get("stringValue"):
        return Caller(f"{origin.string_value} (sent by {sender})", "batch-s3",
                      request_id=request_id)
    return Caller(f"{record.event_source_arn} (sent by {sender})", "batch-sqs",
                  request_id=request_id)


def _job_failed(record: SQSRecord, err: Exception) -> None:
    address = job_address(record.body)
    facts = {"job_id": address[0] if address else None, "message_id": record.message_id,
             "code": err.code if isinstance(err, VoxproofError) else "internal",
             "permanent": is_permanent(err)}
    if isinstance(err, VoxproofError):
        logger.warning(f"job failed: {err.message}", extra=facts)
    else:
        logger.exception("job failed unexpectedly", extra=facts)
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)


# --- S3: job files ------------------------------------------------------------------------------


def _take_job_files(event: dict[str, Any], runtime: BatchRuntime,
                    deadline: Deadline) -> dict[str, Any]:
    if runtime.job_files is None:
        raise Unavailable("job files are not configured: VOXPROOF_INPUT_BUCKET and "
                          "VOXPROOF_JOBS_QUEUE_URL must be set")
    taken = [_take_job_file(record, runtime.job_files, deadline)
             for record in S3Event(event).records]
    return {"job_files": taken}


def _take_job_file(record: S3EventRecord, intake: JobFileIntake,
                   deadline: Deadline) -> dict[str, Any]:
    source = _job_file_source(record)
    try:
        with tracer.provider.in_subsegment("## job file"):
            summary = intake.take(source, deadline)
    except VoxproofError as err:
        logger.error(f"job file not taken: {err.message}",
                     extra={"bucket": source.bucket, "key": source.key, "code": err.code})
        metrics.add_metric(name="JobFilesFailed", unit=MetricUnit.Count, value=1)
        raise
    logger.info("job file taken", extra={"bucket": source.bucket, "key": source.key, **summary})
    counts = summary.get("counts") or {}
    if summary["replayed"]:
        metrics.add_metric(name="JobFilesReplayed", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="JobLinesAccepted", unit=MetricUnit.Count,
                           value=counts.get("accepted", 0))
        metrics.add_metric(name="JobLinesRejected", unit=MetricUnit.Count,
                           value=counts.get("rejected", 0))
    return summary


def _job_file_source(record: S3EventRecord) -> JobFileSource:
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        raise JobFileRefused("only ObjectCreated events of job files are taken")
    try:
        obj = record.s3.get_object
        # S3 sends the key URL-encoded ("a b+c" as "a+b%2Bc"); Powertools decodes it only for
        # the first record (S3Event.object_key), so each record's key is decoded here.
        return JobFileSource(bucket=str(record.s3.bucket.name), key=unquote_plus(obj.key),
                             version_id=obj.version_id or None, etag=str(obj.etag),
                             size=obj.size if "size" in obj else None)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise UnsupportedEvent("an S3 record without bucket name or object key") from None


# --- the container's runtime, built at init (tests build their own with ``make_handler``) -------

RUNTIME = BatchRuntime.build(Settings())
handler = make_handler(RUNTIME)
