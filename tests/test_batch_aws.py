"""voxproof.batch.aws: the job queue written in batches, per-entry failures retried or reported
(SQS on moto's loopback server)."""

from __future__ import annotations

import json
import uuid

import pytest
from voxproof.batch import aws
from voxproof.batch.aws import (
    SOURCE_ATTRIBUTE,
    JobFileSource,
    JobQueue,
    message_batches,
)
from voxproof.batch.jobs import Job, JobLine
from voxproof.deadline import Deadline
from voxproof.errors import DeadlineExceeded, Unavailable
from watch import ManualClock

# --- the queue -------------------------------------------------------------------------------------

SOURCE = JobFileSource("in-bucket", "jobs/j.jsonl", "v1", "etag1")


def job_lines(n: int, text: str = "Hi.") -> list[JobLine]:
    return [JobLine(i + 1, Job(job_id=f"j{i}", text=text)) for i in range(n)]


def test_batches_respect_count_and_size():
    entries = [JobQueue._entry(item, SOURCE) for item in job_lines(25)]
    assert [len(g) for g in message_batches(entries)] == [10, 10, 5]
    big = [JobQueue._entry(item, SOURCE) for item in job_lines(5, "x" * 100_000)]
    assert [len(g) for g in message_batches(big)] == [2, 2, 1]
    assert all(sum(e.size for e in g) <= aws.BATCH_BYTES for g in message_batches(big))


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
