"""The two verify answers, in-process (API Gateway events, no HTTP, the real service over a key
file and SQLite): ``POST /v1/verify`` gives anyone a verdict and never the scores, segments or
the record's caller; ``POST /v1/verify/detailed`` gives the full report only to an auditor, an
IAM principal that API Gateway authenticated (``requestContext.identity.userArn``) and the
settings name; a header cannot make anyone an auditor."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lambda_runtime import api_gateway_event
from voxproof import audio
from voxproof.handlers.api_models import VerifyPublicResponse, VerifyResponse
from voxproof.handlers.rest import Handler, api_runtime, make_handler
from voxproof.provenance import ProvenanceRecord
from voxproof.settings import Settings
from voxproof.watermark import embed
from voxproof.watermark.detect import MAX_ATTEMPTS
from watermark_hosts import speechlike

AUDITOR = "arn:aws:sts::123456789012:assumed-role/VoxproofAuditor/alice"
OTHER = "arn:aws:sts::123456789012:assumed-role/SpeechClient/bob"
RECORD_ID = 0x00C0FFEE42
#: What only an auditor may see.
DETAILED_ONLY = {"score", "p_false", "segments", "speed", "mode", "key_id", "tag_verified",
                 "confidence", "presence"}
RECORD_PRIVATE = {"caller", "request_id", "job_id", "text_hash", "key_id", "entry_point"}


class Context:
    function_name = "voxproof-test"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:voxproof-test"
    aws_request_id = "lambda-request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 28_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[Handler, bytes]:
    """The API handler and a WAV marked with a record the registry holds."""
    state = tmp_path_factory.mktemp("views")
    auditors = ("arn:aws:sts::123456789012:assumed-role/VoxproofAuditor/*",)
    runtime = api_runtime(Settings(state_dir=Path(state), auditor_principals=auditors))
    key = runtime.service.keys.keyring().current
    rate = 22_050
    marked = embed(speechlike(4.0, rate, seed=11), rate, key, RECORD_ID)
    runtime.service.registry.put_new(ProvenanceRecord.new(
        record_id=RECORD_ID, key_id=key.key_id, text_hash="ab" * 32,
        model_manifest_sha256="cd" * 32, voice="en_US-joe-medium", sample_rate=rate,
        duration_s=4.0, caller="apikey:secret-client-id", entry_point="api",
        request_id="req-of-the-speaker"))
    return make_handler(runtime), audio.encode(marked, rate, "wav")


def _verify(handler: Handler, wav: bytes, path: str = "/v1/verify", *,
            user_arn: str | None = None, headers: dict[str, str] | None = None,
            api_id: str | None = None) -> tuple[int, dict[str, Any]]:
    event = api_gateway_event("POST", path, headers={"Content-Type": "audio/wav", **(headers or {})},
                              raw_body=wav)
    event["requestContext"]["identity"]["userArn"] = user_arn
    if api_id is not None:
        event["requestContext"]["apiId"] = api_id
    response = handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def test_the_public_answer_is_a_verdict_without_scores_segments_or_caller(api):
    handler, wav = api
    status, body = _verify(handler, wav)
    assert status == 200, body
    VerifyPublicResponse.model_validate(body)  # what the OpenAPI document says
    assert body["found"] is True and body["verdict"] == "recorded"
    assert body["record_id"] == f"{RECORD_ID:010x}" and body["ai_generated"] is True
    assert body["confidence_level"] == "high" and body["presence_found"] is True
    assert not DETAILED_ONLY & set(body)
    record = body["record"]
    assert record["voice"] == "en_US-joe-medium" and record["created_at"]
    assert record["model_manifest_sha256"] == "cd" * 32
    assert not RECORD_PRIVATE & set(record)
    text = json.dumps(body)
    assert "secret-client-id" not in text and "req-of-the-speaker" not in text


def test_unmarked_audio_is_not_found_with_no_confidence(api):
    handler, _ = api
    rate = 16_000
    status, body = _verify(handler, audio.encode(speechlike(3.0, rate, seed=5), rate, "wav"))
    assert status == 200
    assert body["found"] is False and body["verdict"] == "not_found"
    assert body["confidence_level"] == "none" and body["ai_generated"] is None
    assert body["presence_found"] is False
    assert body["record"] is None and not DETAILED_ONLY & set(body)


def test_an_auditor_gets_the_detailed_report(api):
    handler, wav = api
    status, body = _verify(handler, wav, "/v1/verify/detailed", user_arn=AUDITOR)
    assert status == 200, body
    VerifyResponse.model_validate(body)
    assert DETAILED_ONLY <= set(body) and body["segments"]
    assert 0 < body["p_false"] <= MAX_ATTEMPTS * 2.0**-24  # one key in force
    presence = body["presence"]  # the statistic, for auditors only
    assert presence["found"] is True and presence["key_id"] == body["key_id"]
    assert presence["z"] >= presence["threshold"] and presence["p_false"] == 1e-6
    assert body["record"]["caller"] == "apikey:secret-client-id"
    assert body["record"]["request_id"] == "req-of-the-speaker"
    # every public field is there, with the same meaning
    _, public = _verify(handler, wav)
    for name in set(public) - {"record", "credentials"}:
        assert body[name] == public[name], name
    assert {k: body["record"][k] for k in public["record"]} == public["record"]
    # the detailed credentials add voxproof's own assertion (the key id) to each manifest check
    for name, value in public["credentials"].items():
        if isinstance(value, dict):
            assert {k: body["credentials"][name][k] for k in value} == value, name
        else:
            assert body["credentials"][name] == value, name


@pytest.mark.parametrize(("user_arn", "headers", "api_id"), [
    (None, {}, None),                                          # an API key alone
    (OTHER, {}, None),                                         # IAM, but not an auditor
    (None, {"X-Amz-User-Arn": AUDITOR, "userArn": AUDITOR}, None),  # headers are not identity
    (AUDITOR, {}, "local"),                                    # a local event without the flag
])
def test_anyone_else_is_refused_the_detailed_report_before_any_work(api, user_arn, headers,
                                                                    api_id):
    handler, wav = api
    started = time.monotonic()
    status, body = _verify(handler, wav, "/v1/verify/detailed", user_arn=user_arn,
                           headers=headers, api_id=api_id)
    assert status == 403 and body["error"]["code"] == "auditor_only"
    assert "score" not in json.dumps(body) and time.monotonic() - started < 5


def test_no_auditor_is_named_by_default(tmp_path):
    handler = make_handler(api_runtime(Settings(state_dir=tmp_path)))
    status, body = _verify(handler, b"RIFF", "/v1/verify/detailed", user_arn=AUDITOR)
    assert status == 403 and body["error"]["code"] == "auditor_only"


def test_health_names_no_key_id(api, tmp_path):
    handler, _ = api
    response = handler(api_gateway_event("GET", "/v1/health", api_key_id=None), Context())
    body = json.loads(response["body"])
    assert body["checks"]["keys"] == "ok" and "key_ids" not in body


def test_the_openapi_document_describes_both_answers(api):
    handler, _ = api
    doc = json.loads(handler(api_gateway_event("GET", "/v1/openapi.json"), Context())["body"])
    public = doc["paths"]["/v1/verify"]["post"]
    detailed = doc["paths"]["/v1/verify/detailed"]["post"]
    ref = public["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/VerifyPublicResponse")
    ref = detailed["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/VerifyResponse") and "403" in detailed["responses"]
    schemas = doc["components"]["schemas"]
    assert "presence_found" in schemas["VerifyPublicResponse"]["required"]
    assert "presence" not in schemas["VerifyPublicResponse"]["properties"]
    assert schemas["VerifyResponse"]["properties"]["presence"]["$ref"].endswith("/PresenceBody")
    assert schemas["PresenceBody"]["properties"]["threshold"]["description"]
    assert {"application/json", "audio/*"} <= set(detailed["requestBody"]["content"])
