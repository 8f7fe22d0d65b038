"""voxproof.batch.intake: job files read, fanned out to the queue and reported, once per upload
(S3 and SQS on moto's loopback server)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from voxproof.batch.aws import JobFileReader, JobFileSource, JobQueue, ResultStore
from voxproof.batch.exceptions import JobFileRefused
from voxproof.batch.intake import JobFileIntake, JobFileLimits
from voxproof.deadline import Deadline


def line(job_id: str, text: str = "Hello there.", **extra) -> bytes:
    return json.dumps({"job_id": job_id, "text": text, **extra}).encode()


# --- the intake ------------------------------------------------------------------------------------


@pytest.fixture
def s3(aws_client):
    return aws_client("s3")


@pytest.fixture
def intake(aws_client, s3):
    sqs = aws_client("sqs")
    suffix = uuid.uuid4().hex[:10]
    inp, out = f"vx-in-{suffix}", f"vx-out-{suffix}"
    for bucket in (inp, out):
        s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=f"vx-q-{suffix}")["QueueUrl"]
    return JobFileIntake(JobFileReader(s3, inp), JobQueue(sqs, url), ResultStore(s3, out),
                         JobFileLimits(max_bytes=200, max_lines=10, max_chars=100))


def upload(s3, intake: JobFileIntake, key: str, data: bytes) -> JobFileSource:
    put = s3.put_object(Bucket=intake.files.bucket, Key=key, Body=data)
    return JobFileSource(intake.files.bucket, key, None, put["ETag"].strip('"'), len(data))


def reports(s3, intake: JobFileIntake) -> list[str]:
    out = s3.list_objects_v2(Bucket=intake.store.bucket, Prefix="batch/reports/")
    return [o["Key"] for o in out.get("Contents", [])]


def test_a_file_too_large_is_refused_and_reported(s3, intake):
    # The event's size says so: refused before reading.
    source = upload(s3, intake, "jobs/big.jsonl", line("a") + b"\n" + b" " * 300)
    summary = intake.take(source, Deadline.after(30))
    assert summary["status"] == "refused"
    report = json.loads(s3.get_object(Bucket=intake.store.bucket,
                                      Key=summary["report_key"])["Body"].read())
    assert report["error"]["code"] == "job_file_too_large" and report["accepted"] == []
    # An event without a size: the read itself stops at the bound.
    source = replace(upload(s3, intake, "jobs/big2.jsonl", b" " * 300), size=None)
    assert intake.take(source, Deadline.after(30))["status"] == "refused"


def test_a_file_replaced_before_it_was_read_writes_no_report(s3, intake):
    source = upload(s3, intake, "jobs/old.jsonl", line("a") + b"\n")
    upload(s3, intake, "jobs/old.jsonl", line("b") + b"\n")  # same key, new ETag (unversioned)
    assert intake.take(source, Deadline.after(30))["status"] == "gone"
    assert reports(s3, intake) == []


@pytest.mark.parametrize(("bucket", "key"), [
    ("other-bucket", "jobs/a.jsonl"), (None, "uploads/a.jsonl"), (None, "jobs/a.json"),
])
def test_only_job_files_of_the_input_bucket_are_taken(s3, intake, bucket, key):
    source = JobFileSource(bucket or intake.files.bucket, key, None, "e", 10)
    with pytest.raises(JobFileRefused):
        intake.take(source, Deadline.after(30))
    assert reports(s3, intake) == []
