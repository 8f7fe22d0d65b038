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


# --- the manifest store is kept with its record --------------------------------------------------


def test_the_manifest_store_is_kept_with_its_record(registry):
    store = bytes(range(256)) * 20  # binary, 5 KB: like a real one
    registry.put_new(make_record(0x1111111111), store)
    registry.put_new(make_record(0x2222222222))
    assert registry.get_manifest(0x1111111111) == store
    assert registry.get_manifest(0x2222222222) is None  # a record made without one
    assert registry.get_manifest(0x3333333333) is None  # no such record
    with pytest.raises(RecordExists):  # a taken id keeps its first manifest
        registry.put_new(make_record(0x1111111111), b"other")
    assert registry.get_manifest(0x1111111111) == store


def test_a_large_manifest_goes_to_s3_beside_the_record(aws_client):
    from voxproof.provenance import S3Manifests

    dynamodb, s3 = aws_client("dynamodb"), aws_client("s3")
    table, bucket = f"records-{uuid.uuid4().hex[:8]}", f"vx-out-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "record_id",
                                                 "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}])
    s3.create_bucket(Bucket=bucket)
    reg = DynamoRegistry(table, dynamodb, S3Manifests(bucket, s3), max_item_manifest=1000)
    small, large = b"s" * 1000, b"L" * 5000
    reg.put_new(make_record(1), small)
    reg.put_new(make_record(2), large)
    assert reg.get_manifest(1) == small and reg.get_manifest(2) == large
    item = dynamodb.get_item(TableName=table, Key={"record_id": {"S": "0000000002"}})["Item"]
    assert "manifest" not in item and item["manifest_key"]["S"].startswith("manifests/0000000002-")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [item["manifest_key"]["S"]]
    assert "manifest" in dynamodb.get_item(TableName=table,
                                           Key={"record_id": {"S": "0000000001"}})["Item"]
    no_bucket = DynamoRegistry(table, dynamodb, max_item_manifest=1000)
    with pytest.raises(Unavailable):
        no_bucket.put_new(make_record(3), large)
    assert no_bucket.get(3) is None  # refused whole: no record without its manifest


def test_a_registry_written_before_manifests_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE records (record_id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    db.execute("INSERT INTO records VALUES (?, ?)", (5, make_record(5).model_dump_json()))
    db.commit()
    db.close()
    reg = SQLiteRegistry(path)
    assert reg.get(5).record_id == 5 and reg.get(5).caller == "cli:test"
    assert reg.get_manifest(5) is None
    reg.put_new(make_record(6), b"m")
    assert reg.get_manifest(6) == b"m"
