"""voxproof.provenance: the same behaviour from SQLite and from DynamoDB (moto on loopback)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from voxproof.errors import Unavailable
from voxproof.provenance import (
    DynamoRegistry,
    ProvenanceRecord,
    RecordExists,
    SQLiteRegistry,
    text_hash,
)
from voxproof.watermark import WatermarkKey

KEY_K = WatermarkKey(b"k" * 32)
KEY_J = WatermarkKey(b"j" * 32)


def make_record(record_id: int, **over) -> ProvenanceRecord:
    fields = {"record_id": record_id, "key_id": "ab12cd34", "text_hash": text_hash(KEY_K, "hi"),
                  "model_manifest_sha256": "11" * 32, "voice": "joe", "sample_rate": 22050,
                  "duration_s": 1.25, "caller": "cli:test", "entry_point": "cli"}
    fields.update(over)
    return ProvenanceRecord.new(**fields)


@pytest.fixture(params=["sqlite", "dynamodb"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        reg = SQLiteRegistry(tmp_path / "state" / "records.sqlite3")
        yield reg
        reg.close()
        return
    client = request.getfixturevalue("aws_client")("dynamodb")
    table = f"records-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}])
    yield DynamoRegistry(table, client)


def test_put_then_get_round_trips_every_field(registry):
    rec = make_record(0xABCDEF0123, job_id="job-1", request_id="req-9")
    registry.put_new(rec)
    got = registry.get(0xABCDEF0123)
    assert got == rec
    assert got.public_dict()["record_id"] == "abcdef0123"


def test_missing_record_is_none(registry):
    assert registry.get(42) is None


def test_an_id_is_never_overwritten(registry):
    registry.put_new(make_record(7, caller="first"))
    with pytest.raises(RecordExists):
        registry.put_new(make_record(7, caller="second"))
    assert registry.get(7).caller == "first"


def test_concurrent_writers_of_one_id_give_exactly_one_winner(registry):
    def attempt(i: int) -> bool:
        try:
            registry.put_new(make_record(99, caller=f"writer-{i}"))
            return True
        except RecordExists:
            return False

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(16)))
    assert wins.count(True) == 1


def test_record_never_holds_the_text():
    said = "meet me at the old mill"
    rec = make_record(1, text_hash=text_hash(KEY_K, said))
    body = rec.model_dump_json()
    assert all(word not in body for word in ("meet", "mill"))
    # The hash is keyed: the same key and text match; another key or text does not.
    assert text_hash(KEY_K, said) == rec.text_hash
    assert text_hash(KEY_J, said) != rec.text_hash
    assert text_hash(KEY_K, said + ".") != rec.text_hash


def test_record_id_must_fit_40_bits():
    with pytest.raises(ValueError):
        make_record(2**40)


def test_sqlite_file_is_private(tmp_path):
    path = tmp_path / "s" / "records.sqlite3"
    reg = SQLiteRegistry(path)
    reg.put_new(make_record(5))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert reg.count() == 1


def test_unreachable_dynamodb_is_unavailable_not_a_crash(monkeypatch):
    import boto3
    from botocore.config import Config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # Port 9 on loopback (discard) has no listener: a real connection refusal.
    client = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    reg = DynamoRegistry("records", client)
    with pytest.raises(Unavailable):
        reg.get(1)
    with pytest.raises(Unavailable):
        reg.put_new(make_record(1))
