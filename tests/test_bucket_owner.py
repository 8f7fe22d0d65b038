"""ExpectedBucketOwner on every S3 call the API and batch make (handlers.storage, batch.aws), on
moto's server over loopback. moto accepts the parameter without checking it, so the tests record
what each call sends (botocore's ``provide-client-params`` event, as the client sends it)."""

from __future__ import annotations

import uuid

import pytest
from voxproof.batch.aws import JobFileReader, JobFileSource, ResultStore
from voxproof.batch.jobs import JobResult, ResultKeys
from voxproof.handlers.storage import InputBucket, OutputBucket

OWNER = "123456789012"  # moto's account


@pytest.fixture
def s3(aws_client):
    client = aws_client("s3")
    client.sent = []  # (operation, params) of every call made through this client

    def record(params, model, **_):
        client.sent.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.s3.*", record)
    return client


def bucket(s3) -> str:
    name = f"vx-owner-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.sent.clear()
    return name


def assert_every_call_names_the_owner(s3) -> None:
    assert s3.sent
    for operation, params in s3.sent:
        assert params.get("ExpectedBucketOwner") == OWNER, operation


def test_the_api_buckets_name_the_owner_on_every_call(s3):
    name = bucket(s3)
    url = OutputBucket(name, s3, url_ttl_s=60, owner=OWNER).put_speech("00000000a1", b"RIFF")
    assert "ExpectedBucketOwner" not in url.lower() and url  # a URL anyone may GET
    s3.put_object(Bucket=name, Key="verify/x.wav", Body=b"RIFF....")
    s3.sent.clear()
    assert InputBucket(name, s3, owner=OWNER).fetch("verify/x.wav", max_bytes=100) == b"RIFF...."
    calls = [op for op, _ in s3.sent]
    assert calls == ["HeadObject", "GetObject"]
    assert_every_call_names_the_owner(s3)


def test_the_batch_store_and_reader_name_the_owner_on_every_call(s3):
    name = bucket(s3)
    store = ResultStore(s3, name, owner=OWNER)
    keys = ResultKeys.for_job("ep-1")
    version = store.put_audio(keys, b"RIFF", job_id="ep-1", record_id="00000000a1")
    store.put_error(keys, {"job_id": "ep-1", "status": "failed"})
    store.clear_error(keys)
    store.put_result(keys, JobResult(job_id="ep-1", record_id="00000000a1", audio_key=keys.audio,
                                     audio_version_id=version, audio_sha256="0" * 64,
                                     audio_bytes=4, duration_s=0.1, sample_rate=22050,
                                     record={}))
    store.put_json("batch/reports/x.jsonl.json", {"accepted": []})
    s3.put_object(Bucket=name, Key="jobs/a.jsonl", Body=b"{}\n")
    s3.sent.clear()
    head = s3.head_object(Bucket=name, Key="jobs/a.jsonl")
    s3.sent.clear()
    source = JobFileSource(name, "jobs/a.jsonl", None, head["ETag"].strip('"'))
    assert JobFileReader(s3, name, owner=OWNER).read(source, max_bytes=100) == b"{}\n"
    assert_every_call_names_the_owner(s3)


def test_without_an_owner_nothing_is_added(s3):
    name = bucket(s3)
    OutputBucket(name, s3, url_ttl_s=60).put_speech("00000000a1", b"RIFF")
    assert all("ExpectedBucketOwner" not in params for _, params in s3.sent)
