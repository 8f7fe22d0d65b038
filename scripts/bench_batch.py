#!/usr/bin/env python3
"""Benchmark the batch function: per-job latency through the real handler, and its overhead.

Usage: PYTHONPATH=functions python scripts/bench_batch.py [--jobs 20] [--batch 5]

Runs moto's server on loopback (S3, SQS, DynamoDB, Secrets Manager over real boto3 HTTP, as in
the tests), points the batch handler at it through ``VOXPROOF_*`` settings, and measures in one
run:

1. *cold*: the first invocation (one job; the container loads and calibrates the voice);
2. *jobs*: ``--jobs`` SQS messages in invocations of ``--batch`` (the template's BatchSize):
   wall time per job, and per second of audio produced;
3. *speak only*: ``Service.speak`` on the same texts with the same service (synthesize, mark,
   record; no S3 upload, no idempotency), interleaved with 2 batch by batch: the part of a
   job that is the voice and the mark;
4. *replay*: the same messages again (idempotency returns the stored results).

The ratios printed last are handler / speak-only (the batch plumbing's overhead) and replay /
first run. Numbers from a shared machine are noisy; the lead re-runs this on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "The train leaves at 7:30 and arrives at 9:15.",
]


@dataclass
class Context:
    """Lambda's context, as far as the handler reads it."""

    function_name: str = "voxproof-batch-bench"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_up(endpoint: str) -> dict[str, str]:
    """Resources like template.yaml's; returns the function's environment."""
    import boto3

    def client(name: str):
        return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench")

    s3, sqs, ddb, sm = (client(n) for n in ("s3", "sqs", "dynamodb", "secretsmanager"))
    for bucket in ("bench-input", "bench-output"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
    for table, key in (("bench-records", "record_id"), ("bench-idempotency", "id")):
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    from voxproof.watermark import WatermarkKey

    secret = sm.create_secret(Name="bench-key", SecretString=WatermarkKey.generate().to_hex())
    return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
            "VOXPROOF_RECORDS_TABLE": "bench-records",
            "VOXPROOF_IDEMPOTENCY_TABLE": "bench-idempotency",
            "VOXPROOF_INPUT_BUCKET": "bench-input", "VOXPROOF_OUTPUT_BUCKET": "bench-output",
            "VOXPROOF_JOBS_QUEUE_URL": url, "VOXPROOF_KEY_SECRET_ID": secret["ARN"],
            "VOXPROOF_STATE_DIR": tempfile.mkdtemp(prefix="vx-bench-"),
            "POWERTOOLS_METRICS_DISABLED": "true"}  # keep the output to the numbers


def event(bodies: list[tuple[str, str]]) -> dict:
    """An SQS event as Lambda's event source mapping delivers it."""
    return {"Records": [{"messageId": mid, "receiptHandle": "r", "body": body,
                         "attributes": {"SenderId": "AIDABENCH", "ApproximateReceiveCount": "1"},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-jobs",
                         "awsRegion": "us-east-1"} for mid, body in bodies]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        os.environ.update(set_up(f"http://127.0.0.1:{port}"))
        run(args.jobs, args.batch)
    finally:
        server.stop()


def run(n_jobs: int, batch: int) -> None:
    import logging

    from voxproof.deadline import Deadline
    from voxproof.service import Caller

    logging.getLogger("voxproof").setLevel(logging.WARNING)  # keep the output to the numbers

    started = time.perf_counter()  # the cold start: the container's init, then its first job
    from voxproof.handlers.batch import RUNTIME, handler

    cold = handler(event([("cold", json.dumps({"job_id": "cold", "text": TEXTS[0]}))]),
                   Context())
    cold_s = time.perf_counter() - started
    assert not cold["batchItemFailures"], cold

    bodies = [(str(uuid.uuid4()), json.dumps({"job_id": f"job-{i}",
                                              "text": TEXTS[i % len(TEXTS)]}))
              for i in range(n_jobs)]
    groups = [bodies[i:i + batch] for i in range(0, n_jobs, batch)]

    service = RUNTIME.runtime.service
    first_s = speak_s = audio_s = 0.0
    for group in groups:  # interleaved, so drift on a shared machine hits both alike
        t0 = time.perf_counter()
        answer = handler(event(group), Context())
        first_s += time.perf_counter() - t0
        assert not answer["batchItemFailures"], answer
        t0 = time.perf_counter()
        for _, body in group:
            speech = service.speak(json.loads(body)["text"], Caller("bench", "cli"),
                                   Deadline.after(60))
            audio_s += speech.duration_s
        speak_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    for group in groups:
        assert not handler(event(group), Context())["batchItemFailures"]
    replay_s = time.perf_counter() - t0

    rows = {
        "cold first invocation (1 job, voice load) s": cold_s,
        "per job, through the handler s": first_s / n_jobs,
        "per job, speak only s": speak_s / n_jobs,
        "per job, replay s": replay_s / n_jobs,
        "handler s per audio s": first_s / audio_s,
    }
    width = max(map(len, rows))
    print(f"{n_jobs} jobs in invocations of {batch}; {audio_s:.1f} s of audio; "
          f"median text {statistics.median(len(t) for t in TEXTS)} chars")
    for name, value in rows.items():
        print(f"{name:<{width}}  {value:8.3f}")
    print(f"{'ratio handler / speak only':<{width}}  {first_s / speak_s:8.2f}")
    print(f"{'ratio replay / first run':<{width}}  {replay_s / first_s:8.3f}")


if __name__ == "__main__":
    main()
