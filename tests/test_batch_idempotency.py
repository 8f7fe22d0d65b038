"""voxproof.batch.idempotency: Powertools' idempotency on DynamoDB (moto's loopback server)."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from fakes import LambdaContext, free_port
from voxproof.batch.exceptions import JobInProgress
from voxproof.batch.idempotency import ClaimMismatch, Idempotency
from voxproof.errors import Unavailable


def make(table: tuple, expires_after_s: int = 3600, remaining_ms: int = 120_000) -> Idempotency:
    client, name = table
    once = Idempotency(name, client, expires_after_s=expires_after_s)
    once.register(LambdaContext(remaining_ms=remaining_ms))
    return once


class Counter:
    """A function that counts its runs (and can fail, or call back into itself)."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail = False
        self.inner = None

    def run(self, *, claim, **_):
        self.runs += 1
        if self.fail:
            raise RuntimeError("boom")
        if self.inner is not None:
            self.inner(claim=claim)
        return {"n": self.runs}


def test_once_runs_once_and_marks_replays(idempotency_table):
    fn = Counter()
    run = make(idempotency_table).once(fn.run, prefix="t", key="id", validate="check")
    assert run(claim={"id": "a", "check": "1"}) == {"n": 1}
    assert run(claim={"id": "a", "check": "1"}) == {"n": 1, "replayed": True}
    assert run(claim={"id": "b", "check": "1"}) == {"n": 2}
    with pytest.raises(ClaimMismatch):
        run(claim={"id": "a", "check": "2"})
    assert fn.runs == 2


def test_the_table_holds_hashes_and_expiries_not_the_claim(idempotency_table):
    once = make(idempotency_table, expires_after_s=7200, remaining_ms=60_000)
    once.once(Counter().run, prefix="voxproof-job", key="id", validate="check")(
        claim={"id": "customer-42", "check": "fingerprint-value"})
    client, name = idempotency_table
    [item] = client.scan(TableName=name)["Items"]
    assert item["id"]["S"].startswith("voxproof-job#")
    assert "customer-42" not in json.dumps(item) and "fingerprint-value" not in json.dumps(item)
    assert item["status"]["S"] == "COMPLETED"
    assert abs(int(item["expiration"]["N"]) - (time.time() + 7200)) < 60
    # While it ran, the item could be taken over from the Lambda deadline on.
    assert abs(int(item["in_progress_expiration"]["N"]) / 1000 - (time.time() + 60)) < 60


def test_a_failed_call_releases_the_id(idempotency_table):
    fn = Counter()
    run = make(idempotency_table).once(fn.run, prefix="t", key="id")
    fn.fail = True
    with pytest.raises(RuntimeError):
        run(claim={"id": "x"})
    fn.fail = False
    assert run(claim={"id": "x"}) == {"n": 2}


def test_an_id_in_progress_elsewhere_is_job_in_progress(idempotency_table):
    fn = Counter()
    run = make(idempotency_table).once(fn.run, prefix="t", key="id")
    fn.inner = run  # the same id asked for again while the first call holds it
    with pytest.raises(JobInProgress):
        run(claim={"id": "held"})
    fn.inner = None
    assert run(claim={"id": "held"}) == {"n": 2}  # the failed holder released it


def test_an_unreachable_table_is_unavailable():
    client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x",
                          config=boto3.session.Config(retries={"max_attempts": 1},
                                                      connect_timeout=1))
    with pytest.raises(Unavailable, match="idempotency table"):
        make((client, "nowhere")).once(Counter().run, prefix="t", key="id")(claim={"id": "a"})
