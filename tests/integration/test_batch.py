"""The batch function end to end: SQS job messages and S3 job files through the real handler,
with S3, SQS, DynamoDB and Secrets Manager on moto's server over loopback HTTP (real boto3),
the real voice and the real watermark; once through the real awslambdaric client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_events import (
    queue_arn,
    receive_all,
    s3_notifications,
    sqs_event,
    visible_count,
)
from fakes import LambdaContext
from lambda_runtime import LambdaRuntimeAPI, start_ric
from voxproof.batch.exceptions import JobFileRefused, UnsupportedEvent
from voxproof.watermark import WatermarkKey

REPO = Path(__file__).resolve().parents[2]
GOOD_TEXTS = [f"Batch job number {n} is ready." for n in range(1, 9)]
POISON_TEXT = "Never speak this \u202e reversed part."
MARGIN_S = 1.0


@dataclass
class BatchWorld:
    """The AWS side of one test module, and the handler pointed at it."""

    endpoint: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    log: list[logging.LogRecord] = field(default_factory=list)
    runtime: Any = None
    """The handler's ``BatchRuntime``, built from ``env`` (see ``start``)."""
    handler: Any = None

    def __post_init__(self) -> None:
        def client(name: str) -> Any:
            return boto3.client(name, endpoint_url=self.endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")

        self.s3, self.sqs, self.ddb, self.secrets = (
            client(n) for n in ("s3", "sqs", "dynamodb", "secretsmanager"))
        self.input_bucket = f"vx-input-{self.suffix}"
        self.output_bucket = f"vx-output-{self.suffix}"
        self.records_table = f"vx-records-{self.suffix}"
        self.idempotency_table = f"vx-idempotency-{self.suffix}"

    def create(self) -> None:
        """Buckets (versioned, as in template.yaml), queues, tables and the key secret."""
        for bucket in (self.input_bucket, self.output_bucket):
            self.s3.create_bucket(Bucket=bucket)
            self.s3.put_bucket_versioning(Bucket=bucket,
                                          VersioningConfiguration={"Status": "Enabled"})
        self.jobs_url = self.sqs.create_queue(QueueName=f"vx-jobs-{self.suffix}")["QueueUrl"]
        self.jobs_arn = queue_arn(self.sqs, self.jobs_url)
        # S3 notifications go to a queue here (moto cannot invoke our handler); the handler then
        # gets exactly the JSON S3 sent, as Lambda would.
        self.notes_url = self.sqs.create_queue(QueueName=f"vx-s3-events-{self.suffix}")["QueueUrl"]
        rules = [{"Name": "prefix", "Value": "jobs/"}, {"Name": "suffix", "Value": ".jsonl"}]
        self.s3.put_bucket_notification_configuration(
            Bucket=self.input_bucket, NotificationConfiguration={"QueueConfigurations": [{
                "QueueArn": queue_arn(self.sqs, self.notes_url), "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": rules}}}]})
        self.ddb.create_table(TableName=self.records_table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "record_id",
                                                     "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}])
        self.ddb.create_table(TableName=self.idempotency_table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        self.ddb.update_time_to_live(TableName=self.idempotency_table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expiration"})
        self.secret_arn = self.secrets.create_secret(
            Name=f"vx-key-{self.suffix}", SecretString=WatermarkKey.generate().to_hex())["ARN"]

    @property
    def env(self) -> dict[str, str]:
        """What template.yaml gives the function, plus the loopback endpoint and fake keys."""
        return {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
            "VOXPROOF_RECORDS_TABLE": self.records_table,
            "VOXPROOF_IDEMPOTENCY_TABLE": self.idempotency_table,
            "VOXPROOF_INPUT_BUCKET": self.input_bucket,
            "VOXPROOF_OUTPUT_BUCKET": self.output_bucket,
            "VOXPROOF_JOBS_QUEUE_URL": self.jobs_url,
            "VOXPROOF_KEY_SECRET_ID": self.secret_arn,
            "VOXPROOF_DEADLINE_MARGIN_S": str(MARGIN_S),
        }

    # --- acting -------------------------------------------------------------------------------

    def start(self) -> None:
        """Build the batch runtime and its handler from the settings of ``env``, as the
        container's init does."""
        from voxproof.handlers.batch import BatchRuntime, make_handler
        from voxproof.settings import Settings

        self.runtime = BatchRuntime.build(Settings())
        self.handler = make_handler(self.runtime)

    def invoke(self, event: dict[str, Any], *, remaining_ms: int = 300_000) -> Any:
        return self.handler(event, LambdaContext(remaining_ms=remaining_ms))

    def send_jobs(self, bodies: list[str]) -> list[str]:
        """Send bodies to the jobs queue; returns their message ids in order."""
        return [self.sqs.send_message(QueueUrl=self.jobs_url, MessageBody=b)["MessageId"]
                for b in bodies]

    def job_events(self, expected: int, batch_size: int = 5) -> list[dict[str, Any]]:
        """Receive ``expected`` messages and group them as the template's event source does."""
        messages = receive_all(self.sqs, self.jobs_url, expected)
        assert len(messages) == expected
        return [sqs_event(messages[i:i + batch_size], self.jobs_arn)
                for i in range(0, len(messages), batch_size)]

    def run_jobs(self, bodies: list[str], **invoke: Any) -> tuple[list[str], set[str]]:
        """Send, receive and invoke; returns (message ids, ids reported as failed)."""
        ids = self.send_jobs(bodies)
        failed: set[str] = set()
        for event in self.job_events(len(bodies)):
            failed |= failures(self.invoke(event, **invoke))
        return ids, failed

    # --- looking ------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The records table's records, in their public form (record id in hex)."""
        from voxproof.provenance import ProvenanceRecord

        items = self.ddb.scan(TableName=self.records_table, ConsistentRead=True)["Items"]
        return sorted((ProvenanceRecord.model_validate_json(item["body"]["S"]).public_dict()
                       for item in items), key=lambda r: r["record_id"])

    def idempotency_items(self) -> list[dict[str, Any]]:
        return self.ddb.scan(TableName=self.idempotency_table, ConsistentRead=True)["Items"]

    def versions(self, prefix: str = "batch/") -> set[tuple[str, str, str, str]]:
        out = self.s3.list_object_versions(Bucket=self.output_bucket, Prefix=prefix)
        return {(v["Key"], v["VersionId"], v.get("ETag", "delete marker"),
                 v["LastModified"].isoformat())
                for v in [*out.get("Versions", []), *out.get("DeleteMarkers", [])]}

    def output_keys(self, prefix: str = "batch/") -> set[str]:
        out = self.s3.list_objects_v2(Bucket=self.output_bucket, Prefix=prefix)
        return {o["Key"] for o in out.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.output_bucket, Key=key)["Body"].read()

    def read_json(self, key: str) -> dict[str, Any]:
        return json.loads(self.read(key))


def failures(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


class _Collect(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


@pytest.fixture(scope="module")
def world(moto_endpoint: str, default_voice: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[BatchWorld]:
    world = BatchWorld(moto_endpoint)
    world.create()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in world.env.items():
            mp.setenv(name, value)
        mp.setenv("VOXPROOF_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        # The session's voice (same layer, same loading code) instead of a second 16 s load;
        # the awslambdaric test below loads it through the settings like a cold container.
        mp.setattr("voxproof.voice.load_voice", lambda settings: default_voice)
        world.start()
        handler_log = logging.getLogger("voxproof")
        collector = _Collect(world.log)
        handler_log.addHandler(collector)
        try:
            yield world
        finally:
            handler_log.removeHandler(collector)


@pytest.fixture(scope="module")
def first_run(world: BatchWorld) -> dict[str, Any]:
    """10 messages, 2 of them poison (not JSON; text with a bidi override), in two batches of
    5 as the template's event source mapping (BatchSize 5) would deliver them."""
    good = [json.dumps({"job_id": f"sqs-{n}", "text": t}) for n, t in enumerate(GOOD_TEXTS)]
    poison = ["{this is not json", json.dumps({"job_id": "poison-text", "text": POISON_TEXT})]
    bodies = [*good[:4], poison[0], *good[4:], poison[1]]
    ids, failed = world.run_jobs(bodies)
    return {"bodies": bodies, "ids": ids, "failed": failed,
            "poison_ids": {ids[4], ids[9]}, "keys": world.output_keys(), "versions": world.versions()}


# --- SQS ------------------------------------------------------------------------------------------


def test_ten_messages_two_poison_exactly_those_fail_and_eight_results(world, first_run):
    assert first_run["failed"] == first_run["poison_ids"]
    results = {f"batch/sqs-{n}.{ext}" for n in range(8) for ext in ("wav", "json")}
    assert results <= first_run["keys"]
    assert len(world.records()) == 8
    # The bad text has an error object (no text in it); the unparseable body has none (no id).
    assert first_run["keys"] - results == {"batch/poison-text.error.json"}
    error = world.read_json("batch/poison-text.error.json")
    assert error["error"]["code"] == "format_character" and error["status"] == "failed"
    assert error["error"]["details"]["code_point"] == "U+202E"
    assert "speak" not in json.dumps(error)


def test_each_wav_verifies_to_the_record_its_json_names(world, first_run):
    from voxproof.service import Caller

    service = world.runtime.runtime.service
    records = {r["record_id"]: r for r in world.records()}
    for n, text in enumerate(GOOD_TEXTS):
        result = world.read_json(f"batch/sqs-{n}.json")
        wav = world.read(result["audio_key"])
        assert hashlib.sha256(wav).hexdigest() == result["audio_sha256"]
        assert len(wav) == result["audio_bytes"]
        report = service.verify(wav, Caller("test", "cli"))
        assert report.verdict == "recorded"
        assert f"{report.detection.record_id:010x}" == result["record_id"]
        record = records[result["record_id"]]
        assert record == result["record"]
        assert record["job_id"] == f"sqs-{n}" and record["entry_point"] == "batch-sqs"
        assert world.jobs_arn in record["caller"]
        assert text not in json.dumps(result)


def test_logs_never_hold_the_text(world, first_run):
    assert world.log, "the handler logged nothing"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in world.log)
    for text in [*GOOD_TEXTS, POISON_TEXT, "reversed part"]:
        assert text not in logged
    assert "sqs-3" in logged and "format_character" in logged


def test_replay_of_all_ten_makes_no_new_record_or_object(world, first_run):
    before_versions, before_records = world.versions(), world.records()
    # SQS redelivers the very same messages (same ids)...
    world.sqs.purge_queue(QueueUrl=world.jobs_url)
    messages = [{"MessageId": mid, "ReceiptHandle": "r", "Body": body, "MD5OfBody": "",
                 "Attributes": {"SenderId": "AIDATEST", "ApproximateReceiveCount": "2"}}
                for mid, body in zip(first_run["ids"], first_run["bodies"], strict=True)]
    again: set[str] = set()
    for i in (0, 5):
        again |= failures(world.invoke(sqs_event(messages[i:i + 5], world.jobs_arn)))
    assert again == first_run["poison_ids"]
    # ... and a client sends the same ten bodies again (new message ids).
    ids, failed = world.run_jobs(first_run["bodies"])
    assert failed == {ids[4], ids[9]}
    assert world.versions() == before_versions
    assert world.records() == before_records


def test_same_job_id_with_other_text_is_a_conflict_not_a_reuse(world, first_run):
    original = world.read("batch/sqs-0.json")
    ids, failed = world.run_jobs([json.dumps({"job_id": "sqs-0", "text": "Something else."})])
    assert failed == set(ids)
    assert world.read("batch/sqs-0.json") == original
    assert world.read_json("batch/sqs-0.error.json")["error"]["code"] == "job_conflict"
    assert len(world.records()) == 8


def test_jobs_out_of_time_are_reported_and_leave_nothing_behind(world, first_run):
    before_versions, before_records = world.versions(), len(world.records())
    body = json.dumps({"job_id": "late-1", "text": GOOD_TEXTS[0]})
    # Half a second beyond the margin: too little to start a job (retried, nothing written).
    ids, failed = world.run_jobs([body], remaining_ms=int((MARGIN_S + 0.5) * 1000))
    assert failed == set(ids)
    assert world.versions() == before_versions and len(world.records()) == before_records
    # 1.05 s: the job starts, but the voice's estimate for 16 sentences exceeds what this
    # function's invocations get: no retry could succeed, so it gets an error object.
    body = json.dumps({"job_id": "late-2", "text": " ".join(GOOD_TEXTS * 2)})
    ids, failed = world.run_jobs([body], remaining_ms=int((MARGIN_S + 1.05) * 1000))
    assert failed == set(ids)
    assert world.output_keys() - first_run["keys"] >= {"batch/late-2.error.json"}
    assert not {"batch/late-2.wav", "batch/late-2.json"} & world.output_keys()
    assert len(world.records()) == before_records
    assert world.read_json("batch/late-2.error.json")["error"]["code"] == "job_too_long"
    assert not [i for i in world.idempotency_items() if i["status"]["S"] != "COMPLETED"]
    # Nothing holds the job id: with a whole invocation it runs, and the stale error goes.
    ids, failed = world.run_jobs([body])
    assert not failed
    assert world.read_json("batch/late-2.json")["job_id"] == "late-2"
    assert "batch/late-2.error.json" not in world.output_keys()


# --- S3 job files ---------------------------------------------------------------------------------


JOB_FILE_LINES = [
    json.dumps({"job_id": "file-1", "text": "The first line."}),
    json.dumps({"job_id": "file-2", "text": "The second line.", "output_key": "podcasts/2024"}),
    "",
    "{broken json",
    json.dumps({"job_id": "file-bad", "voice": "en_US-joe-medium"}),
    json.dumps({"job_id": "file-ctl", "text": "bell \u0007 here"}),
    json.dumps({"job_id": "file-1", "text": "A duplicate id."}),
    json.dumps({"job_id": "file-esc", "text": "Up.", "output_key": "../outside"}),
    json.dumps({"job_id": "file-3", "text": "The third line."}),
]


@pytest.fixture(scope="module")
def job_file(world: BatchWorld) -> dict[str, Any]:
    key = "jobs/daily run+1.jsonl"  # a space and a plus: URL-encoded in the S3 event
    data = ("\n".join(JOB_FILE_LINES) + "\n").encode()
    world.s3.put_object(Bucket=world.input_bucket, Key=key, Body=data)
    events = s3_notifications(world.sqs, world.notes_url)
    assert len(events) == 1
    summary = world.invoke(events[0])["job_files"][0]
    return {"key": key, "event": events[0], "summary": summary}


def test_job_file_enqueues_good_lines_and_reports_bad_ones_by_line(world, job_file):
    assert job_file["summary"]["status"] == "accepted" and not job_file["summary"]["replayed"]
    report = world.read_json(job_file["summary"]["report_key"])
    assert job_file["summary"]["report_key"] == "batch/reports/daily run+1.jsonl.json"
    assert report["source"]["key"] == job_file["key"]
    assert [(a["line"], a["job_id"]) for a in report["accepted"]] == [
        (1, "file-1"), (2, "file-2"), (9, "file-3")]
    assert report["accepted"][1]["result_key"] == "batch/podcasts/2024/file-2.json"
    rejected = {r["line"]: (r["job_id"], r["error"]["code"]) for r in report["rejected"]}
    assert rejected == {4: (None, "invalid_job"), 5: ("file-bad", "invalid_job"),
                        6: ("file-ctl", "control_character"), 7: ("file-1", "duplicate_job_id"),
                        8: ("file-esc", "invalid_job")}
    assert report["counts"] == {"lines": 9, "accepted": 3, "rejected": 5}
    assert "text: required" in json.dumps(report) and "bell" not in json.dumps(report)
    assert visible_count(world.sqs, world.jobs_url) == 3


def test_redelivered_job_file_event_enqueues_nothing_new(world, job_file):
    before = world.versions("batch/reports/")
    again = world.invoke(job_file["event"])["job_files"][0]
    assert again["replayed"] and again["report_key"] == job_file["summary"]["report_key"]
    assert visible_count(world.sqs, world.jobs_url) == 3
    assert world.versions("batch/reports/") == before


def test_fanned_out_jobs_run_as_batch_s3_and_land_where_the_report_says(world, job_file):
    [event] = world.job_events(3)
    assert not failures(world.invoke(event))
    report = world.read_json(job_file["summary"]["report_key"])
    for accepted in report["accepted"]:
        result = world.read_json(accepted["result_key"])
        assert result["record"]["entry_point"] == "batch-s3"
        assert f"s3://{world.input_bucket}/{job_file['key']}#L{accepted['line']}" in (
            result["record"]["caller"])
    assert "batch/podcasts/2024/file-2.wav" in world.output_keys()


def test_job_file_with_too_many_lines_is_refused_whole(world):
    world.s3.put_object(Bucket=world.input_bucket, Key="jobs/huge.jsonl",
                        Body=b"\n" * (world.runtime.settings.max_job_file_lines + 1))
    [event] = s3_notifications(world.sqs, world.notes_url)
    summary = world.invoke(event)["job_files"][0]
    assert summary["status"] == "refused"
    report = world.read_json(summary["report_key"])
    assert report["error"]["code"] == "job_file_too_large" and report["accepted"] == []
    assert visible_count(world.sqs, world.jobs_url) == 0


def test_job_file_event_from_another_bucket_is_refused(world, job_file):
    event = json.loads(json.dumps(job_file["event"]))
    event["Records"][0]["s3"]["bucket"]["name"] = "somebody-elses-bucket"
    with pytest.raises(JobFileRefused):
        world.invoke(event)
    with pytest.raises(UnsupportedEvent):
        world.invoke({"Records": [{"eventSource": "aws:dynamodb"}]})


# --- the real runtime interface client ------------------------------------------------------------


def test_sqs_batch_through_awslambdaric_answers_a_partial_batch_response(world, tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # X-Ray daemon stand-in: listen only
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    bodies = [json.dumps({"job_id": "ric-1", "text": "Through the runtime client."}),
              json.dumps({"job_id": "ric-bad", "text": "x", "colour": "blue"})]
    ids = world.send_jobs(bodies)
    [event] = world.job_events(2)
    env = {**world.env, "PYTHONPATH": str(REPO / "functions"), "VOXPROOF_TORCH_THREADS": "2",
           "LAMBDA_TASK_ROOT": str(REPO / "functions"),  # Lambda sets it; Powertools reads it
           "VOXPROOF_STATE_DIR": str(tmp_path / "state"),
           "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{udp.getsockname()[1]}"}
    with LambdaRuntimeAPI() as api, start_ric("voxproof.handlers.batch.handler", api,
                                              env=env, python=sys.executable) as runtime:
        outcome = api.invoke_and_wait(event, timeout_ms=300_000, wait_s=240)
        assert runtime.alive(), runtime.output()
    assert outcome.ok, outcome.body
    assert outcome.json() == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert world.read_json("batch/ric-1.json")["record"]["request_id"] == outcome.request_id
    assert world.read_json("batch/ric-bad.error.json")["error"]["code"] == "invalid_job"
    segments = _drain(udp)
    assert any('"name": "## job"' in s or '"name":"## job"' in s for s in segments), segments[:3]


def _drain(udp: socket.socket) -> list[str]:
    found: list[str] = []
    while True:
        try:
            found.append(udp.recv(65536).decode("utf-8", "replace"))
        except OSError:  # the timeout: nothing more arrived
            return found

