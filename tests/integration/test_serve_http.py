"""``voxproof serve`` over real HTTP on loopback: the CLI in a subprocess, requests with
http.client, speech -> verify (also after an mp3 64k round trip through ffmpeg), the OpenAPI
document, and every error a caller can cause answered with its JSON error and status.

The server runs without AWS for records and keys (SQLite and a key file in a temporary state
folder, as on a laptop) but with an input bucket on moto's server, so ``s3_key`` is exercised.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
from lambda_runtime import RuntimeProcess
from voxproof import audio

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 240.0  # loading and calibrating the voice on a shared machine
SHORT = "Hello from the local server."
#: More than 4 s of speech: clips near 2 s do not yet survive mp3 64k reliably.
MP3_TEXT = "Hello from voxproof. Every word I say carries a watermark, even after compression."


class Server:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.state: Path | None = None

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def raw(self, head: bytes) -> tuple[int, bytes]:
        """Send only a request head; read the answer (status, body) that comes without a body."""
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(head)
            conn = http.client.HTTPResponse(sock)
            conn.begin()
            return conn.status, conn.read()

    def json(self, method: str, path: str, body: bytes | dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        status, found_headers, payload = self.request(method, path, body, headers)
        assert found_headers["Content-Type"] == "application/json", payload[:200]
        return status, json.loads(payload)


@pytest.fixture(scope="module")
def input_bucket(moto_endpoint: str) -> str:
    name = f"vx-serve-input-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def server(moto_endpoint: str, input_bucket: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    state = tmp_path_factory.mktemp("serve-state")
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(state), "PYTHONPATH": str(REPO / "functions"),
        "VOXPROOF_STATE_DIR": str(state), "VOXPROOF_TORCH_THREADS": "2",
        "VOXPROOF_INPUT_BUCKET": input_bucket, "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    process = RuntimeProcess([sys.executable, "-m", "voxproof", "serve", "--port", "0"],
                             cwd=state, env=env)
    try:
        url = _wait_for_url(process)
        served = Server(url)
        served.state = state  # the local CA is made here on the first speech
        yield served
    finally:
        process.stop()


def _wait_for_url(process: RuntimeProcess) -> str:
    end = time.monotonic() + STARTUP_S
    while time.monotonic() < end:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", process.output())
        if found:
            return found.group(1)
        if not process.alive():
            break
        time.sleep(0.2)
    pytest.fail("voxproof serve did not start: " + process.output()[-4000:])


def wav_of(seconds: float, rate: int = 8000) -> bytes:
    rng = np.random.default_rng(1)
    return audio.encode((0.05 * rng.standard_normal(int(seconds * rate))).astype(np.float32),
                        rate, "wav")


# --- speech -> verify ----------------------------------------------------------------------------


def test_speech_then_verify_over_http_finds_the_same_record(server):
    status, speech = server.json("POST", "/v1/speech", {"text": SHORT})
    assert status == 200, speech
    wav = base64.b64decode(speech["audio_base64"])
    assert wav[:4] == b"RIFF" and speech["sample_rate"] == 22050 and speech["duration_s"] > 0.5

    status, report = server.json("POST", "/v1/verify", wav, {"Content-Type": "audio/wav"})
    assert status == 200
    assert report["verdict"] == "recorded" and report["record_id"] == speech["record_id"]
    assert "caller" not in report["record"] and "score" not in report  # the public answer
    # The answer is what the OpenAPI document says it is.
    from voxproof.handlers.api_models import VerifyPublicResponse, VerifyResponse

    VerifyPublicResponse.model_validate(report)
    # On loopback the local user is the auditor (as for `voxproof verify --json`).
    status, report = server.json("POST", "/v1/verify/detailed", wav, {"Content-Type": "audio/wav"})
    assert status == 200
    assert report["verdict"] == "recorded" and report["record_id"] == speech["record_id"]
    record = report["record"]
    assert record["entry_point"] == "serve" and record["caller"] == "ip:127.0.0.0/24"
    assert record["key_id"] == speech["key_id"]
    assert SHORT not in json.dumps(report)
    VerifyResponse.model_validate(report)


def test_accept_wav_returns_the_audio_with_record_headers(server):
    status, headers, body = server.request("POST", "/v1/speech", {"text": SHORT},
                                           {"Accept": "audio/wav"})
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert body[:4] == b"RIFF"
    record_id = headers["X-Voxproof-Record-Id"]
    assert re.fullmatch(r"[0-9a-f]{10}", record_id) and headers["X-Amzn-RequestId"]
    status, report = server.json("POST", "/v1/verify",
                                 {"audio_base64": base64.b64encode(body).decode()})
    assert status == 200 and report["record_id"] == record_id


def test_the_record_survives_an_mp3_64k_round_trip(server, tmp_path):
    status, headers, wav = server.request("POST", "/v1/speech", {"text": MP3_TEXT},
                                          {"Accept": "audio/wav"})
    assert status == 200
    assert float(headers["X-Voxproof-Duration-S"]) >= 4.0
    (tmp_path / "speech.wav").write_bytes(wav)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "speech.wav"),
                    "-c:a", "libmp3lame", "-b:a", "64k", str(tmp_path / "speech.mp3")],
                   check=True)
    mp3 = (tmp_path / "speech.mp3").read_bytes()
    status, report = server.json("POST", "/v1/verify", mp3, {"Content-Type": "audio/mpeg"})
    assert status == 200
    assert report["verdict"] == "recorded"
    assert report["record_id"] == headers["X-Voxproof-Record-Id"]
    # ffmpeg dropped the manifest; the mark leads to the one kept with the record.
    creds = report["credentials"]
    assert creds["status"] == "recovered" and creds["source"] == "registry"
    assert creds["stored"]["state"] == "trusted"
    assert creds["stored"]["record_id"] == headers["X-Voxproof-Record-Id"]


# --- formats and Content Credentials -------------------------------------------------------------


def _c2pa_state(data: bytes, mime: str, anchors: str | None = None) -> str:
    import io

    import c2pa

    if anchors is None:
        return c2pa.Reader(mime, io.BytesIO(data)).get_validation_state()
    context = c2pa.Context(c2pa.Settings.from_dict(
        {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors}}))
    return c2pa.Reader(mime, io.BytesIO(data), context=context).get_validation_state()


@pytest.mark.parametrize(("fmt", "mime", "family"), [
    ("mp3", "audio/mpeg", "mp3"), ("m4a", "audio/mp4", "mp4"), ("flac", "audio/flac", "flac"),
    ("wav", "audio/wav", "wav")])
def test_speech_in_each_format_is_signed_and_verifies(server, fmt, mime, family):
    status, speech = server.json("POST", "/v1/speech", {"text": MP3_TEXT, "format": fmt})
    assert status == 200 and speech["format"] == fmt and speech["manifest_bytes"] > 1000
    data = base64.b64decode(speech["audio_base64"])
    assert audio.decode(data).family == family
    assert _c2pa_state(data, mime) == "Valid"  # c2pa's default trust list lacks our local CA
    ca = (server.state / "c2pa" / "ca.pem").read_text()
    assert _c2pa_state(data, mime, ca) == "Trusted"
    status, report = server.json("POST", "/v1/verify", data, {"Content-Type": mime})
    assert status == 200 and report["record_id"] == speech["record_id"]
    from voxproof.handlers.api_models import VerifyPublicResponse

    VerifyPublicResponse.model_validate(report)
    creds = report["credentials"]
    assert creds["status"] == "manifest_and_mark" and creds["validation"] == "trusted"
    assert creds["embedded"]["record_id"] == speech["record_id"]
    assert "provenance" not in creds["embedded"]  # the key id is for auditors


def test_accept_picks_the_audio_format_and_format_must_agree(server):
    status, headers, body = server.request("POST", "/v1/speech", {"text": SHORT},
                                           {"Accept": "audio/flac"})
    assert status == 200 and headers["Content-Type"] == "audio/flac"
    assert audio.decode(body).family == "flac"  # c2pa puts the manifest in an ID3 tag first
    assert _c2pa_state(body, "audio/flac") == "Valid"
    status, headers, body = server.request("POST", "/v1/speech", {"text": SHORT, "format": "mp3"},
                                           {"Accept": "audio/mpeg"})
    assert status == 200 and headers["Content-Type"] == "audio/mpeg"
    status, error = server.json("POST", "/v1/speech", {"text": SHORT, "format": "mp3"},
                                {"Accept": "audio/wav"})
    assert status == 406 and error["error"]["code"] == "not_acceptable"
    status, error = server.json("POST", "/v1/speech", {"text": SHORT, "format": "ogg"})
    assert status == 422


def test_openapi_document_is_valid_and_describes_the_routes(server):
    from openapi_spec_validator import validate

    status, doc = server.json("GET", "/v1/openapi.json")
    assert status == 200
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    assert {"/v1/speech", "/v1/verify", "/v1/health"} <= set(doc["paths"])
    speech = doc["components"]["schemas"]["SpeechRequest"]
    assert speech["additionalProperties"] is False
    assert speech["properties"]["text"]["maxLength"] == 1000
    verify_body = doc["paths"]["/v1/verify"]["post"]["requestBody"]["content"]
    assert {"application/json", "audio/*"} <= set(verify_body)


def test_health_over_http(server):
    status, health = server.json("GET", "/v1/health")
    assert status == 200 and health["voice_loaded"] is True  # serve loads it before listening
    assert health["checks"]["keys"] == "ok" and "key_ids" not in health  # no key ids


# --- every error a caller can cause ----------------------------------------------------------------

SPEECH = "/v1/speech"
VERIFY = "/v1/verify"
JSON = {"Content-Type": "application/json"}
WAV = {"Content-Type": "audio/wav"}
_good_wav = wav_of(1.0)

ERRORS = [
    # (id, method, path, headers, body, status, code)
    ("json-broken", "POST", SPEECH, JSON, b'{"text": ', 400, "malformed_request"),
    ("speech-extra-field", "POST", SPEECH, JSON, {"text": "Hi.", "speed": 2}, 422,
     "request_invalid"),
    ("speech-no-text", "POST", SPEECH, JSON, {}, 422, "request_invalid"),
    ("speech-text-not-string", "POST", SPEECH, JSON, {"text": 5}, 422, "request_invalid"),
    ("speech-format-ogg", "POST", SPEECH, JSON, {"text": "Hi.", "format": "ogg"}, 422,
     "request_invalid"),
    ("speech-voice-pattern", "POST", SPEECH, JSON, {"text": "Hi.", "voice": "../x"}, 422,
     "request_invalid"),
    ("speech-unknown-voice", "POST", SPEECH, JSON, {"text": "Hi.", "voice": "someone"}, 422,
     "unknown_voice"),
    ("text-too-long", "POST", SPEECH, JSON, {"text": "a" * 1001}, 413, "text_too_long"),
    ("text-empty", "POST", SPEECH, JSON, {"text": ""}, 422, "text_empty"),
    ("text-bidi", "POST", SPEECH, JSON, {"text": "pay \u202emoc.live"}, 422, "format_character"),
    ("text-private-use", "POST", SPEECH, JSON, {"text": "a\ue000"}, 422, "private_use_character"),
    ("speech-form-body", "POST", SPEECH, {"Content-Type": "application/x-www-form-urlencoded"},
     b"text=hello", 415, "unsupported_media_type"),
    ("speech-body-too-large", "POST", SPEECH, JSON, b'{"text": "' + b"a" * 100_000 + b'"}', 413,
     "request_too_large"),
    ("verify-empty", "POST", VERIFY, WAV, b"", 400, "audio_empty"),
    ("verify-not-audio", "POST", VERIFY, WAV, b"\x00\x01 definitely not audio" * 40, 415,
     "unsupported_audio"),
    ("verify-mislabelled", "POST", VERIFY, {"Content-Type": "audio/mpeg"}, _good_wav, 415,
     "mislabelled_audio"),
    ("verify-unknown-audio-type", "POST", VERIFY, {"Content-Type": "audio/x-tracker"}, _good_wav,
     415, "unsupported_audio"),
    ("verify-truncated", "POST", VERIFY, WAV, _good_wav[: len(_good_wav) // 2], 422,
     "corrupt_audio"),
    ("verify-too-long-for-the-deadline", "POST", VERIFY, WAV, wav_of(200.0), 413,
     "audio_too_large"),
    ("verify-text-plain", "POST", VERIFY, {"Content-Type": "text/plain"}, b"hello", 415,
     "unsupported_media_type"),
    ("verify-bad-base64", "POST", VERIFY, JSON, {"audio_base64": "not base64!"}, 400,
     "malformed_request"),
    ("verify-neither", "POST", VERIFY, JSON, {}, 422, "request_invalid"),
    ("verify-both", "POST", VERIFY, JSON, {"audio_base64": "", "s3_key": "verify/a"}, 422,
     "request_invalid"),
    ("verify-s3-outside", "POST", VERIFY, JSON, {"s3_key": "jobs/a.jsonl"}, 403, "forbidden"),
    ("verify-s3-absent", "POST", VERIFY, JSON, {"s3_key": "verify/absent.wav"}, 404,
     "not_found"),
    ("wrong-method", "GET", SPEECH, {}, None, 405, "method_not_allowed"),
    ("wrong-method-delete", "DELETE", VERIFY, {}, None, 405, "method_not_allowed"),
    ("unknown-route", "GET", "/v1/nothing", {}, None, 404, "not_found"),
    ("over-10-mb", "POST", VERIFY, WAV, b"\x00" * (10 * 1024 * 1024 + 1), 413,
     "request_too_large"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "code"),
                         [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_every_error_is_json_with_its_code_and_status(server, input_bucket, method, path,
                                                      headers, body, status, code):
    found_status, found_headers, payload = server.request(method, path, body, headers)
    assert found_status == status, payload[:300]
    assert found_headers["Content-Type"] == "application/json"
    answer = json.loads(payload)
    assert set(answer) == {"error"} and answer["error"]["code"] == code
    message = answer["error"]["message"]
    assert 0 < len(message) < 300
    for leak in ("Traceback", "/work", "/tmp", str(REPO), input_bucket, "botocore", "pydantic",
                 "errors.pydantic.dev", "aws_lambda_powertools"):
        assert leak not in payload.decode(), leak
    if status == 405:
        assert found_headers["Allow"] == "POST"


def test_chunked_bodies_are_refused_with_411(server):
    head = (f"POST {VERIFY} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            "Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, body = server.raw(head.encode())
    assert status == 411 and json.loads(body)["error"]["code"] == "length_required"


def test_an_oversized_body_is_refused_before_it_is_sent_with_expect_100(server):
    # curl sends Expect: 100-continue for large bodies: the 413 comes before any body byte.
    head = (f"POST {VERIFY} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {20 * 1024 * 1024}\r\n"
            "Expect: 100-continue\r\n\r\n")
    status, body = server.raw(head.encode())
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"


def test_a_request_for_another_host_is_refused_dns_rebinding(server):
    status, body = server.raw(f"GET /v1/health HTTP/1.1\r\nHost: rebind.example:{server.port}"
                              "\r\n\r\n".encode())
    assert status == 403 and json.loads(body)["error"]["code"] == "host_not_allowed"


def test_the_server_still_answers_after_the_errors(server):
    status, health = server.json("GET", "/v1/health")
    assert status == 200 and health["status"] == "ok"


# --- the C2PA Soft Binding Resolution API -------------------------------------------------------


def test_soft_binding_resolution_finds_the_manifest_by_binding_and_by_content(server, tmp_path):
    import io
    from urllib.parse import quote

    import c2pa
    from voxproof.credentials.manifest import ALGORITHM, binding_value

    status, speech = server.json("POST", "/v1/speech", {"text": MP3_TEXT})
    assert status == 200
    wav = base64.b64decode(speech["audio_base64"])
    label = c2pa.Reader("audio/wav", io.BytesIO(wav)).get_active_manifest()["label"]
    status, algs = server.json("GET", "/v1/c2pa/services/supportedAlgorithms")
    assert status == 200 and algs == {"watermarks": [{"alg": ALGORITHM}], "fingerprints": []}

    binding = binding_value(int(speech["record_id"], 16))
    value = quote(binding, safe="")
    status, found = server.json("GET", f"/v1/c2pa/matches/byBinding?alg={ALGORITHM}&value={value}")
    assert status == 200 and found == {"matches": [{"manifestId": label, "similarityScore": 100}]}
    status, posted = server.json("POST", "/v1/c2pa/matches/byBinding",
                                 {"alg": ALGORITHM, "value": binding})
    assert status == 200 and posted == found
    status, other = server.json("GET", f"/v1/c2pa/matches/byBinding?alg=com.example.x&value={value}")
    assert status == 200 and other == {"matches": []}
    status, error = server.json("GET", f"/v1/c2pa/matches/byBinding?alg={ALGORITHM}&value=AAAA")
    assert status == 400 and error["error"]["code"] == "invalid_binding"

    # By content: a stripped, re-encoded copy still finds its manifest through the mark.
    (tmp_path / "s.wav").write_bytes(wav)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "s.wav"),
                    "-map_metadata", "-1", "-b:a", "64k", str(tmp_path / "s.mp3")], check=True)
    status, by_content = server.json("POST", "/v1/c2pa/matches/byContent",
                                     (tmp_path / "s.mp3").read_bytes(),
                                     {"Content-Type": "audio/mpeg"})
    assert status == 200 and by_content == found
    status, none = server.json("POST", "/v1/c2pa/matches/byContent", wav_of(3.0),
                               {"Content-Type": "audio/wav"})
    assert status == 200 and none == {"matches": []}

    status, headers, store = server.request("GET", f"/v1/c2pa/manifests/{quote(label)}")
    assert status == 200 and headers["Content-Type"] == "application/c2pa"
    reader = c2pa.Reader("application/c2pa", io.BytesIO(store))
    assert reader.get_active_manifest()["label"] == label
    forged = label[:-12] + "0" * 12  # the same form, another record id
    status, error = server.json("GET", f"/v1/c2pa/manifests/{quote(forged)}")
    assert status == 404 and error["error"]["code"] == "not_found"
    status, error = server.json("GET", "/v1/c2pa/manifests/not-a-manifest")
    assert status == 400 and error["error"]["code"] == "invalid_binding"
