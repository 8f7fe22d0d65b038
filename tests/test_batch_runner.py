"""voxproof.batch.runner: running each job once, and what a failure leaves (the real voice and
mark; S3 and DynamoDB on moto's loopback server; provenance in SQLite)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from fakes import LambdaContext, StaticKeys
from voxproof.batch.aws import ResultStore
from voxproof.batch.exceptions import (
    JobConflict,
    JobInProgress,
    JobInvalid,
    JobNotStarted,
    JobTooLong,
)
from voxproof.batch.idempotency import Idempotency
from voxproof.batch.jobs import Job, ResultKeys, parse_job
from voxproof.batch.runner import JobRunner, is_permanent, run_job
from voxproof.deadline import Deadline
from voxproof.errors import (
    DeadlineTooShort,
    FormatCharacter,
    KeyError_,
    TextTooLong,
    Unavailable,
)
from voxproof.keyring import KeyRing
from voxproof.service import Caller, Service, UnknownVoice
from voxproof.voice import CostModel, Voice
from voxproof.watermark import WatermarkKey
from watch import ManualClock, WatchedEngine

#: The estimate these tests budget with, so the hand-moved clock alone decides (the voice's
#: calibrated cost follows the machine's load).
HAND_CLOCK_COST = CostModel(per_call_s=0.5, per_id_s=0.001, safety=1.0)

KEY_A = WatermarkKey.from_hex("a1" * 32)
KEY_B = WatermarkKey.from_hex("b2" * 32)
CALLER = Caller("arn:aws:sqs:us-east-1:123456789012:jobs (sent by AIDA)", "batch-sqs")
SECRET = "The board meets on Tuesday to discuss the merger"


# --- what is retried -----------------------------------------------------------------------------


@pytest.mark.parametrize(("err", "permanent"), [
    (JobInvalid("x"), True), (TextTooLong("x"), True), (FormatCharacter("x"), True),
    (JobTooLong("x"), True),
    (UnknownVoice("x"), True), (JobConflict("x"), True),
    (JobNotStarted("x"), False), (DeadlineTooShort("x"), False), (JobInProgress("x"), False),
    (Unavailable("x"), False), (KeyError_("x"), False), (RuntimeError("bug"), False),
])
def test_only_the_jobs_own_faults_are_permanent(err, permanent):
    assert is_permanent(err) is permanent


# --- running -------------------------------------------------------------------------------------


@pytest.fixture
def service(default_voice, registry):
    return Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=2000)


@pytest.fixture
def s3(aws_client):
    client = aws_client("s3")
    bucket = f"vx-out-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    calls: list[tuple[str, str]] = []

    def watch(model, params, **_):  # botocore's own event hook: the real calls, in order
        calls.append((model.name, params.get("Key", "")))

    client.meta.events.register("before-parameter-build.s3", watch)
    return client, bucket, calls


@pytest.fixture
def store(s3):
    client, bucket, _ = s3
    return ResultStore(client, bucket)


@pytest.fixture
def idempotency(idempotency_table):
    client, table = idempotency_table
    once = Idempotency(table, client, expires_after_s=3600)
    once.register(LambdaContext())
    return once


def versions(s3, prefix="batch/"):
    client, bucket, _ = s3
    out = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return [(v["Key"], v["VersionId"]) for v in out.get("Versions", [])]


def test_run_job_writes_the_wav_then_the_done_marker_and_clears_a_stale_error(
        service, store, s3, registry):
    client, bucket, calls = s3
    job = Job(job_id="ep-1", text="A clip for the batch.", output_key="shows")
    keys = ResultKeys.for_job(job.job_id, job.output_key)
    store.put_error(keys, {"job_id": "ep-1", "status": "failed", "error": {"code": "x"}})
    calls.clear()

    result = run_job(service, job, CALLER, Deadline.after(60), store)

    assert calls == [("PutObject", keys.audio), ("PutObject", keys.result),
                     ("HeadObject", keys.error), ("DeleteObject", keys.error)]
    wav = client.get_object(Bucket=bucket, Key=keys.audio)
    data = wav["Body"].read()
    assert wav["ContentType"] == "audio/wav" and wav["VersionId"] == result.audio_version_id
    assert wav["Metadata"] == {"job-id": "ep-1", "record-id": result.record_id}
    assert hashlib.sha256(data).hexdigest() == result.audio_sha256
    marker = json.loads(client.get_object(Bucket=bucket, Key=keys.result)["Body"].read())
    assert marker == result.model_dump(mode="json")
    assert marker["record"] == registry.get(int(result.record_id, 16)).public_dict()
    assert marker["record"]["job_id"] is None  # run_job takes the caller as given
    assert job.text not in json.dumps(marker)


def test_a_permanent_failure_leaves_one_error_object_even_when_replayed(service, store, s3,
                                                                        registry):
    client, bucket, _ = s3
    runner = JobRunner(service, store)
    body = json.dumps({"job_id": "bad-1", "text": f"{SECRET} \u200f now"})
    for _ in range(2):
        with pytest.raises(FormatCharacter):
            runner.handle(body, CALLER, Deadline.after(60))
    assert len(versions(s3)) == 1
    error = json.loads(client.get_object(Bucket=bucket, Key="batch/bad-1.error.json")["Body"]
                       .read())
    assert error["job_id"] == "bad-1" and error["error"]["code"] == "format_character"
    assert "Tuesday" not in json.dumps(error)
    assert registry.count() == 0


def test_too_little_time_left_is_retried_but_too_long_for_any_invocation_is_not(
        service, store, s3, registry):
    runner = JobRunner(service, store)
    body = json.dumps({"job_id": "slow", "text": f"{SECRET}. " * 20})
    # Late in an invocation that started with ten minutes: another invocation can do it.
    for budget_s in (None, 600.0):
        with pytest.raises(DeadlineTooShort) as caught:
            runner.handle(body, CALLER, Deadline.after(1.05), budget_s=budget_s)
        assert not is_permanent(caught.value)
    assert versions(s3) == [] and registry.count() == 0
    # More than a whole invocation has: no retry can succeed; the error object says so.
    with pytest.raises(JobTooLong) as caught:
        runner.handle(body, CALLER, Deadline.after(1.05), budget_s=2.0)
    assert caught.value.details["budget_s"] == 2.0 and caught.value.details["estimate_s"] > 2.0
    client, bucket, _ = s3
    error = json.loads(client.get_object(Bucket=bucket, Key="batch/slow.error.json")["Body"]
                       .read())
    assert error["error"]["code"] == "job_too_long" and registry.count() == 0


def test_jobs_after_the_deadline_are_not_started(default_voice, store, s3, registry):
    # The engine "takes" 2.2 s per call on a hand-moved clock: the first job fits in 3 s, and
    # leaves less than JOB_START_MIN_S for the second.
    clock = ManualClock()
    engine = WatchedEngine(default_voice.engine, clock=clock, cost=lambda n: 2.2)
    voice = Voice(engine, default_voice.phonemizer, HAND_CLOCK_COST)
    runner = JobRunner(Service(voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500),
                       store)
    deadline = Deadline.after(3.0, clock=clock)
    first = runner.handle('{"job_id": "in-time", "text": "Hi."}', CALLER, deadline)
    with pytest.raises(JobNotStarted):
        runner.handle('{"job_id": "too-late", "text": "Hi."}', CALLER, deadline)
    assert len(engine.calls) == 1 and registry.count() == 1
    assert {k for k, _ in versions(s3)} == {"batch/in-time.wav", "batch/in-time.json"}
    assert first.result.job_id == "in-time" and not first.replayed


# --- once per job id ---------------------------------------------------------------------------


def test_a_replayed_job_returns_the_stored_result_and_writes_nothing(service, store, s3,
                                                                    registry, idempotency):
    runner = JobRunner(service, store, idempotency)
    body = json.dumps({"job_id": "once", "text": "Only once."})
    first = runner.handle(body, CALLER, Deadline.after(60))
    before = versions(s3)
    again = runner.handle(body, CALLER, Deadline.after(60))
    assert not first.replayed and again.replayed
    assert again.result == first.result
    assert versions(s3) == before and registry.count() == 1
    assert first.result.record["job_id"] == "once"  # handle names the job in the record


def test_the_same_job_id_with_other_content_is_a_conflict(service, store, s3, registry,
                                                           idempotency):
    runner = JobRunner(service, store, idempotency)
    runner.handle('{"job_id": "dup", "text": "First."}', CALLER, Deadline.after(60))
    marker = versions(s3)
    for other in ('{"job_id": "dup", "text": "Second."}',
                  '{"job_id": "dup", "text": "First.", "output_key": "elsewhere"}'):
        with pytest.raises(JobConflict, match="already used for a different job"):
            runner.handle(other, CALLER, Deadline.after(60))
    assert registry.count() == 1
    assert [k for k, _ in versions(s3) if (k, _) not in marker] == [
        "batch/dup.error.json", "batch/elsewhere/dup.error.json"]


def test_a_job_stored_before_a_key_rotation_is_still_recognised(default_voice, store, registry,
                                                               idempotency):
    body = '{"job_id": "rotate", "text": "Before the rotation."}'
    before = JobRunner(Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry,
                               max_chars=500), store, idempotency)
    after = JobRunner(Service(default_voice, StaticKeys(KeyRing(KEY_B, (KEY_A,))), registry,
                              max_chars=500), store, idempotency)
    first = before.handle(body, CALLER, Deadline.after(60))
    again = after.handle(body, CALLER, Deadline.after(60))
    assert again.replayed and again.result == first.result and registry.count() == 1
    with pytest.raises(JobConflict):
        after.handle('{"job_id": "rotate", "text": "Something new."}', CALLER,
                     Deadline.after(60))


@pytest.mark.parametrize(("fmt", "mime"), [("mp3", "audio/mpeg"), (None, "audio/wav")])
def test_a_batch_result_is_signed_in_the_jobs_format(default_voice, store, s3, registry,
                                                     tmp_path, fmt, mime):
    import io

    import c2pa
    from voxproof import __version__
    from voxproof.credentials.core import Credentials
    from voxproof.credentials.identity import LocalIdentity
    from voxproof.credentials.signer import CredentialSigner

    client, bucket, _ = s3
    identity = LocalIdentity.load_or_create(tmp_path / "c2pa")
    service = Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=2000,
                      credentials=Credentials(lambda: CredentialSigner.local(identity),
                                              lambda: identity.ca_pem.decode(),
                                              version=__version__))
    job = parse_job(json.dumps({"job_id": "fmt-1", "text": "A clip for the batch.",
                                **({"format": fmt} if fmt else {})}))
    result = run_job(service, job, CALLER, Deadline.after(60), store)
    assert result.audio_key == f"batch/fmt-1.{fmt or 'wav'}" and result.format == (fmt or "wav")
    stored = client.get_object(Bucket=bucket, Key=result.audio_key)
    data = stored["Body"].read()
    assert stored["ContentType"] == mime and result.manifest_bytes > 1000
    settings = c2pa.Settings.from_dict({"verify": {"verify_trust": True},
                                        "trust": {"trust_anchors": identity.ca_pem.decode()}})
    reader = c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context(settings))
    assert reader.get_validation_state() == "Trusted"
    assert c2pa.Reader(mime, io.BytesIO(data)).get_validation_state() == "Valid"  # no local CA
    assert registry.get_manifest(int(result.record_id, 16)) is not None
    report = service.verify(data, CALLER)
    assert report.credentials.status == "manifest_and_mark"
    assert f"{report.detection.record_id:010x}" == result.record_id
