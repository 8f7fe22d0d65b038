"""voxproof.service: speak = validate -> synthesize -> mark -> record; verify = decode -> detect
-> look up -> report. Real voice, real mark, real registries."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager

import numpy as np
import pytest
from fakes import StaticKeys
from voxproof import audio
from voxproof.deadline import Deadline
from voxproof.errors import DeadlineExceeded, DeadlineTooShort, ForbiddenCharacter
from voxproof.keyring import FileKeySource, KeyRing
from voxproof.provenance import DynamoRegistry, ProvenanceRecord, SQLiteRegistry, text_hash
from voxproof.service import Caller, Service, UnknownVoice
from voxproof.voice import CostModel, Voice
from voxproof.watermark import WatermarkKey
from voxproof.watermark.detect import MAX_ATTEMPTS
from watch import ManualClock, WatchedEngine

#: The estimate these tests budget with, so the hand-moved clock alone decides (the voice's
#: calibrated cost follows the machine's load).
HAND_CLOCK_COST = CostModel(per_call_s=0.5, per_id_s=0.001, safety=1.0)

TEXT = "The provenance of this sentence is on record."
CALLER = Caller("test:alice", "cli", request_id="req-1")
KEY_A = WatermarkKey.from_hex("a1" * 32)
KEY_B = WatermarkKey.from_hex("b2" * 32)


@pytest.fixture
def service(default_voice, registry):
    return Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500)


def test_speak_marks_records_and_verify_finds_the_record(service, registry):
    result = service.speak(TEXT, CALLER, Deadline.after(60))
    stored = registry.get(result.record.record_id)
    assert stored == result.record
    assert stored.key_id == KEY_A.key_id and stored.caller == "test:alice"
    assert stored.request_id == "req-1" and stored.entry_point == "cli"
    assert stored.duration_s == pytest.approx(result.duration_s, abs=0.01)
    assert stored.text_hash == text_hash(KEY_A, TEXT)
    assert TEXT not in stored.model_dump_json()

    report = service.verify(result.wav(), Caller("test:bob", "cli"), declared="audio/wav")
    assert report.found and report.verdict == "recorded"
    assert report.detection.record_id == result.record.record_id
    assert report.record == stored
    body = report.to_dict()
    assert body["record"]["record_id"] == result.record.record_id_hex
    assert body["unchecked"] == []
    assert body["confidence"] >= 1.0 - MAX_ATTEMPTS * 2.0**-24 - 1e-12  # rounded to 12 places


def test_the_mark_survives_mp3_and_still_names_the_record(service, tmp_path):
    # About 4 s of speech, a wide margin (clips under ~0.7 s may not survive mp3 64k: see the
    # README's watermark section); this test is about the service's wiring through a real codec.
    result = service.speak("Hello from voxproof. Every word I say carries a watermark.", CALLER,
                           Deadline.after(60))
    wav = tmp_path / "x.wav"
    wav.write_bytes(result.wav())
    mp3 = tmp_path / "x.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame",
                    "-b:a", "64k", str(mp3)], check=True)
    report = service.verify(mp3.read_bytes(), CALLER, declared="audio/mpeg")
    assert report.verdict == "recorded"
    assert report.detection.record_id == result.record.record_id


def test_bad_text_is_refused_before_synthesis_and_records_nothing(service, registry):
    with pytest.raises(ForbiddenCharacter):
        service.speak("hello \u202e world", CALLER, Deadline.after(60))
    assert registry.count() == 0


def test_deadline_too_short_records_nothing(service, registry):
    with pytest.raises(DeadlineTooShort):
        service.speak(TEXT, CALLER, Deadline.after(0.01))
    assert registry.count() == 0


def test_time_running_out_before_the_mark_keeps_nothing(default_voice, registry):
    # The engine "takes" 5 s per call on a hand-moved clock; the deadline leaves room for the
    # synthesis estimate but the last call ends with less than the mark-and-record margin.
    clock = ManualClock()
    engine = WatchedEngine(default_voice.engine, clock=clock, cost=lambda n: 5.0)
    voice = Voice(engine, default_voice.phonemizer, HAND_CLOCK_COST)
    svc = Service(voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500)
    with pytest.raises(DeadlineExceeded, match="before the audio could be marked"):
        svc.speak(TEXT, CALLER, Deadline.after(5.2, clock=clock))
    assert len(engine.calls) == 1  # the speech was made, then dropped
    assert registry.count() == 0


def test_a_taken_record_id_is_never_reused(default_voice, registry):
    ids = iter([0x1111111111, 0x1111111111, 0x2222222222])
    svc = Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500,
                  new_record_id=lambda: next(ids))
    # Texts of over a second of speech: one mark unit is 1.024 s.
    first = svc.speak("The first sentence takes its time.", CALLER, Deadline.after(60))
    second = svc.speak("The second sentence takes its time.", CALLER, Deadline.after(60))
    assert first.record.record_id == 0x1111111111
    assert second.record.record_id == 0x2222222222
    # The second clip carries the id that was recorded, not the one that was taken.
    report = svc.verify(second.wav(), CALLER)
    assert report.detection.record_id == 0x2222222222
    assert report.record.text_hash == text_hash(KEY_A, "The second sentence takes its time.")


def test_every_step_runs_inside_the_callers_step_hook(default_voice, registry):
    opened: list[str] = []
    inside: list[str] = []

    @contextmanager
    def step(name: str):
        opened.append(name)
        inside.append(name)
        try:
            yield
        finally:
            inside.remove(name)

    svc = Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500, step=step)
    clip = svc.speak(TEXT, CALLER, Deadline.after(60))
    assert opened == ["keys", "synthesize", "mark", "encode", "store"]
    opened.clear()
    assert svc.verify(clip.wav(), CALLER).verdict == "recorded"
    assert opened == ["decode", "keys", "detect", "lookup"]
    assert inside == []  # every step was closed
    # A failing step is closed too, and the error is the service's own.
    opened.clear()
    with pytest.raises(DeadlineTooShort):
        svc.speak(TEXT, CALLER, Deadline.after(0.01))
    assert opened == ["keys", "synthesize"] and inside == []


def test_unknown_voice(service):
    with pytest.raises(UnknownVoice) as err:
        service.speak(TEXT, CALLER, Deadline.after(60), voice="someone-else")
    assert err.value.status == 422 and err.value.details["voices"] == [service.voice.name]


def test_rotation_previous_key_still_verifies_and_is_named(default_voice, registry):
    old = Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500)
    clip = old.speak(TEXT, CALLER, Deadline.after(60))
    rotated = Service(default_voice, StaticKeys(KeyRing(KEY_B, (KEY_A,))), registry,
                      max_chars=500)
    report = rotated.verify(clip.wav(), CALLER)
    assert report.verdict == "recorded" and report.detection.key_id == KEY_A.key_id
    fresh = rotated.speak(TEXT, CALLER, Deadline.after(60))
    assert fresh.record.key_id == KEY_B.key_id
    # A service that no longer accepts key A finds nothing in the old clip.
    only_b = Service(default_voice, StaticKeys(KeyRing(KEY_B)), registry, max_chars=500)
    assert only_b.verify(clip.wav(), CALLER).verdict == "not_found"


def test_verify_never_loads_the_voice(registry, default_voice):
    marker = Service(default_voice, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500)
    clip = marker.speak(TEXT, CALLER, Deadline.after(60))

    def refuse() -> Voice:
        raise AssertionError("verify must not load the model")

    verifier = Service(refuse, StaticKeys(KeyRing(KEY_A)), registry, max_chars=500)
    assert verifier.verify(clip.wav(), CALLER).verdict == "recorded"
    assert verifier.loaded_voice is None and marker.loaded_voice is default_voice


def test_mark_without_a_record_here_is_reported_as_marked(service, tmp_path):
    clip = service.speak(TEXT, CALLER, Deadline.after(60))
    elsewhere = SQLiteRegistry(tmp_path / "other.sqlite3")
    svc = Service(service.voice, StaticKeys(KeyRing(KEY_A)), elsewhere, max_chars=500)
    report = svc.verify(clip.wav(), CALLER)
    assert report.verdict == "marked" and report.record is None
    assert "no record with this id" in report.unchecked[0]


def test_unreachable_registry_still_reports_the_mark(service, monkeypatch):
    import boto3
    from botocore.config import Config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clip = service.speak(TEXT, CALLER, Deadline.after(60))
    # Port 9 on loopback has no listener: a real refused connection.
    client = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    svc = Service(service.voice, StaticKeys(KeyRing(KEY_A)), DynamoRegistry("t", client),
                  max_chars=500)
    report = svc.verify(clip.wav(), CALLER)
    assert report.found and report.verdict == "marked"
    assert "could not be reached" in report.unchecked[0]


def test_unmarked_audio_is_not_found(service):
    rng = np.random.default_rng(3)
    noise = audio.encode((0.1 * rng.standard_normal(32000)).astype(np.float32), 16000, "wav")
    report = service.verify(noise, CALLER)
    assert report.verdict == "not_found" and report.record is None
    assert report.to_dict()["record_id"] is None


def test_file_key_source_orders_current_then_previous(tmp_path):
    KEY_A.write_key_file(tmp_path / "a")
    KEY_B.write_key_file(tmp_path / "b")
    ring = FileKeySource([tmp_path / "b", tmp_path / "a"]).keyring()
    assert ring.current == KEY_B and ring.accepted == (KEY_B, KEY_A)


def test_record_model_rejects_unknown_fields():
    with pytest.raises(ValueError):
        ProvenanceRecord.new(record_id=1, key_id="k", text_hash="h", model_manifest_sha256="m",
                             voice="v", sample_rate=1, duration_s=1.0, caller="c",
                             entry_point="cli", text="the text itself")


def test_a_seed_gives_the_same_speech_and_fresh_noise_differs(service):
    """``speak(seed=)`` (``voxproof synth --seed``, the demo): the same text and seed are the
    same speech before marking; without a seed each call draws fresh noise."""
    first, again, fresh = (service.speak(TEXT, CALLER, Deadline.after(60), seed=seed)
                           for seed in (7, 7, None))
    assert np.array_equal(first.speech.samples, again.speech.samples)
    assert first.record.record_id != again.record.record_id  # still two records
    assert not np.array_equal(first.speech.samples[:len(fresh.speech.samples)],
                              fresh.speech.samples[:len(first.speech.samples)])
