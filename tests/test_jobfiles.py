"""voxproof.jobfiles: job files parsed line by line, fanned out to the queue in batches, reported
(S3 and SQS on moto's loopback server)."""

from __future__ import annotations

import doctest
import json
import uuid
from dataclasses import replace

import pytest
from voxproof import jobfiles
from voxproof.deadline import Deadline
from voxproof.errors import DeadlineExceeded, JobFileRefused, JobFileTooLarge, Unavailable
from voxproof.jobfiles import (
    SOURCE_ATTRIBUTE,
    JobFileIntake,
    JobFileLimits,
    JobFileSource,
    JobLine,
    JobQueue,
    message_batches,
    parse_job_file,
    report_key,
)
from voxproof.jobs import Job, ResultStore
from watch import ManualClock

SECRET = "Quarterly numbers are down nine percent"


def line(job_id: str, text: str = "Hello there.", **extra) -> bytes:
    return json.dumps({"job_id": job_id, "text": text, **extra}).encode()


# --- parsing -------------------------------------------------------------------------------------


def test_every_line_is_accepted_or_rejected_with_its_number():
    data = b"\n".join([
        b"\xef\xbb\xbf" + line("a"),                      # 1: a byte order mark is allowed
        line("b", output_key="f/g") + b"\r",              # 2: CRLF
        b"   ",                                           # 3: blank: skipped
        b"{oops",                                         # 4: not JSON
        b'{"job_id": "c", "text": "caf\xe9"}',            # 5: not UTF-8
        line("a", "Again."),                              # 6: duplicate id
        line("d", f"{SECRET}\u202e"),                     # 7: bad text, with its position
        line("e", "x" * 101),                             # 8: too long for max_chars
        json.dumps({"job_id": "f", "txt": "typo"}).encode(),  # 9: schema
    ]) + b"\n"
    parsed = parse_job_file(data, max_chars=100, max_lines=9)
    assert parsed.lines == 9
    assert [(a.line, a.job.job_id) for a in parsed.accepted] == [(1, "a"), (2, "b")]
    assert parsed.accepted[1].job.output_key == "f/g"
    rejected = {r.line: (r.job_id, r.error["code"]) for r in parsed.rejected}
    assert rejected == {4: (None, "invalid_job"), 5: (None, "invalid_job"),
                        6: ("a", "duplicate_job_id"), 7: ("d", "format_character"),
                        8: ("e", "text_too_long"), 9: ("f", "invalid_job")}
    by_line = {r.line: r.error for r in parsed.rejected}
    assert by_line[5]["message"] == "the line is not valid UTF-8"
    assert by_line[6]["details"] == {"first_line": 1}
    assert by_line[7]["details"]["position"] == len(SECRET)
    assert SECRET not in json.dumps([r.to_dict() for r in parsed.rejected])


def test_too_many_lines_refuses_the_whole_file():
    assert parse_job_file(b"\n" * 10, max_chars=10, max_lines=10).lines == 10
    with pytest.raises(JobFileTooLarge) as caught:
        parse_job_file(b"\n" * 11, max_chars=10, max_lines=10)
    assert caught.value.details == {"lines": 11, "limit": 10}


def test_report_keys_mirror_the_job_file():
    assert report_key("jobs/a.jsonl") == "batch/reports/a.jsonl.json"
    assert report_key("jobs/x/y z.jsonl") == "batch/reports/x/y z.jsonl.json"
    long = report_key("jobs/" + "d/" * 500 + "a.jsonl")
    assert long.startswith("batch/reports/_long/") and len(long) < 120


def test_docstring_examples_run():
    assert doctest.testmod(jobfiles).failed == 0


# --- the queue -------------------------------------------------------------------------------------

SOURCE = JobFileSource("in-bucket", "jobs/j.jsonl", "v1", "etag1")


def job_lines(n: int, text: str = "Hi.") -> list[JobLine]:
    return [JobLine(i + 1, Job(job_id=f"j{i}", text=text)) for i in range(n)]


def test_batches_respect_count_and_size():
    entries = [JobQueue._entry(item, SOURCE) for item in job_lines(25)]
    assert [len(g) for g in message_batches(entries)] == [10, 10, 5]
    big = [JobQueue._entry(item, SOURCE) for item in job_lines(5, "x" * 100_000)]
    assert [len(g) for g in message_batches(big)] == [2, 2, 1]
    assert all(sum(e.size for e in g) <= jobfiles.BATCH_BYTES for g in message_batches(big))


def test_jobs_reach_the_queue_with_their_source(aws_client):
    sqs = aws_client("sqs")
    url = sqs.create_queue(QueueName=f"vx-jobs-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    refused = JobQueue(sqs, url).send(job_lines(12), SOURCE, Deadline.after(30))
    assert refused == []
    got = []
    for _ in range(5):
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   MessageAttributeNames=["All"]).get("Messages", [])
    assert sorted(json.loads(m["Body"])["job_id"] for m in got) == sorted(
        f"j{i}" for i in range(12))
    origins = {m["MessageAttributes"][SOURCE_ATTRIBUTE]["StringValue"] for m in got}
    assert "s3://in-bucket/jobs/j.jsonl#L12" in origins and len(origins) == 12


class FlakyQueue:
    """SendMessageBatch answering per-entry failures. A stand-in: moto accepts every valid
    entry, so the service-side and sender-side entry failures cannot be produced there."""

    def __init__(self, sender_faults: set[str], service_faults: dict[str, int]) -> None:
        self.sender_faults = sender_faults
        self.service_faults = dict(service_faults)  # entry id -> failures left
        self.sent: list[str] = []

    def send_message_batch(self, QueueUrl, Entries):
        failed = []
        for entry in Entries:
            if entry["Id"] in self.sender_faults:
                failed.append({"Id": entry["Id"], "SenderFault": True, "Code": "InvalidBody"})
            elif self.service_faults.get(entry["Id"], 0) > 0:
                self.service_faults[entry["Id"]] -= 1
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "Throttled"})
            else:
                self.sent.append(entry["Id"])
        return {"Successful": [], "Failed": failed}


def test_entry_failures_are_retried_or_reported_per_line():
    queue = FlakyQueue({"line-2"}, {"line-3": 2})
    refused = JobQueue(queue, "url").send(job_lines(4), SOURCE, Deadline.after(30))
    assert sorted(queue.sent) == ["line-1", "line-3", "line-4"]
    assert [(r.line, r.job_id, r.error["code"]) for r in refused] == [
        (2, "j1", "job_not_enqueued")]
    assert refused[0].error["details"] == {"queue_code": "InvalidBody"}


def test_a_queue_that_keeps_failing_fails_the_file_for_a_retry():
    with pytest.raises(Unavailable, match="did not take 1 jobs"):
        JobQueue(FlakyQueue(set(), {"line-1": 9}), "url").send(job_lines(2), SOURCE,
                                                              Deadline.after(30))


def test_time_running_out_between_batches_stops_the_fan_out():
    clock = ManualClock()

    class Slow(FlakyQueue):
        def send_message_batch(self, **kwargs):
            clock.advance(1.0)  # each batch "takes" a second
            return super().send_message_batch(**kwargs)

    slow = Slow(set(), {})
    with pytest.raises(DeadlineExceeded):
        JobQueue(slow, "url").send(job_lines(25), SOURCE, Deadline.after(1.5, clock=clock))
    assert len(slow.sent) == 20


# --- the intake ------------------------------------------------------------------------------------


@pytest.fixture
def intake(aws_client):
    s3, sqs = aws_client("s3"), aws_client("sqs")
    suffix = uuid.uuid4().hex[:10]
    inp, out = f"vx-in-{suffix}", f"vx-out-{suffix}"
    for bucket in (inp, out):
        s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=f"vx-q-{suffix}")["QueueUrl"]
    return JobFileIntake(s3, JobQueue(sqs, url), ResultStore(s3, out), inp,
                         JobFileLimits(max_bytes=200, max_lines=10, max_chars=100))


def upload(intake: JobFileIntake, key: str, data: bytes) -> JobFileSource:
    put = intake.s3.put_object(Bucket=intake.input_bucket, Key=key, Body=data)
    return JobFileSource(intake.input_bucket, key, None, put["ETag"].strip('"'), len(data))


def reports(intake: JobFileIntake) -> list[str]:
    out = intake.s3.list_objects_v2(Bucket=intake.store.bucket, Prefix="batch/reports/")
    return [o["Key"] for o in out.get("Contents", [])]


def test_a_file_too_large_is_refused_and_reported(intake):
    # The event's size says so: refused before reading.
    source = upload(intake, "jobs/big.jsonl", line("a") + b"\n" + b" " * 300)
    summary = intake.take(source, Deadline.after(30))
    assert summary["status"] == "refused"
    report = json.loads(intake.s3.get_object(Bucket=intake.store.bucket,
                                             Key=summary["report_key"])["Body"].read())
    assert report["error"]["code"] == "job_file_too_large" and report["accepted"] == []
    # An event without a size: the read itself stops at the bound.
    source = replace(upload(intake, "jobs/big2.jsonl", b" " * 300), size=None)
    assert intake.take(source, Deadline.after(30))["status"] == "refused"


def test_a_file_replaced_before_it_was_read_writes_no_report(intake):
    source = upload(intake, "jobs/old.jsonl", line("a") + b"\n")
    upload(intake, "jobs/old.jsonl", line("b") + b"\n")  # same key, new ETag (unversioned)
    assert intake.take(source, Deadline.after(30))["status"] == "gone"
    assert reports(intake) == []


@pytest.mark.parametrize(("bucket", "key"), [
    ("other-bucket", "jobs/a.jsonl"), (None, "uploads/a.jsonl"), (None, "jobs/a.json"),
])
def test_only_job_files_of_the_input_bucket_are_taken(intake, bucket, key):
    source = JobFileSource(bucket or intake.input_bucket, key, None, "e", 10)
    with pytest.raises(JobFileRefused):
        intake.take(source, Deadline.after(30))
    assert reports(intake) == []
