"""The API handler as Lambda runs it: the REAL awslambdaric client in a subprocess, driven by the
loopback Runtime API, with DynamoDB (records), Secrets Manager (the key) and S3 (large speech,
verify uploads) on moto's server over loopback HTTP (real boto3, pointed there by
AWS_ENDPOINT_URL, which botocore reads itself), and X-Ray subsegments caught on a UDP listener
standing in for the daemon on 127.0.0.1:2000.

One runtime process serves the whole module (the voice loads once, at init, as on Lambda with
VOXPROOF_PRELOAD_VOICE=true).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from lambda_runtime import (
    LambdaRuntimeAPI,
    Outcome,
    RuntimeAPITimeout,
    RuntimeProcess,
    api_gateway_event,
    make_trace_id,
    start_ric,
)
from voxproof.watermark import WatermarkKey
from xray_daemon import XRayDaemon, trace_root

REPO = Path(__file__).resolve().parents[2]
HANDLER = "voxproof.handlers.api.handler"
WAIT_S = 180.0  # the machine is shared; nothing here measures speed
SHORT = "The provenance of this sentence is on record."
#: About 9 s of speech: its WAV (about 400 KB) passes the lowered inline limit below.
LONG = ("This longer passage is spoken for the output bucket. Its audio is too large to travel "
        "inside the response, so the function stores it and answers with a presigned address. "
        "The watermark still names the record.")
INLINE_MAX = 200_000
KEY = WatermarkKey.generate()
AUDITOR = "arn:aws:iam::123456789012:user/auditor"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


class Stack:
    """The AWS resources one deployment of the template would make, on moto."""

    def __init__(self, endpoint: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.endpoint = endpoint
        self.table = f"vx-records-{suffix}"
        self.input_bucket = f"vx-input-{suffix}"
        self.output_bucket = f"vx-output-{suffix}"
        self.dynamodb = self.client("dynamodb")
        self.s3 = self.client("s3")
        self.dynamodb.create_table(
            TableName=self.table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}])
        self.s3.create_bucket(Bucket=self.input_bucket)
        self.s3.create_bucket(Bucket=self.output_bucket)
        self.secret_arn = self.client("secretsmanager").create_secret(
            Name=f"vx-key-{suffix}", SecretString=KEY.to_hex())["ARN"]

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def env(self) -> dict[str, str]:
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "VOXPROOF_RECORDS_TABLE": self.table,
            "VOXPROOF_KEY_SECRET_ID": self.secret_arn,
            "VOXPROOF_INPUT_BUCKET": self.input_bucket,
            "VOXPROOF_OUTPUT_BUCKET": self.output_bucket,
        }


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> Stack:
    return Stack(moto_endpoint)


@pytest.fixture(scope="module")
def xray() -> Iterator[XRayDaemon]:
    with XRayDaemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def runtime(stack: Stack, xray: XRayDaemon, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[LambdaRuntimeAPI, RuntimeProcess]]:
    state = tmp_path_factory.mktemp("lambda-state")
    env = {
        **stack.env(),
        "PYTHONPATH": str(REPO / "functions"),
        "LAMBDA_TASK_ROOT": str(REPO / "functions"),  # Lambda sets it; X-Ray's Lambda mode reads it
        "VOXPROOF_STATE_DIR": str(state),
        "VOXPROOF_PRELOAD_VOICE": "true",
        "VOXPROOF_INLINE_AUDIO_MAX_BYTES": str(INLINE_MAX),
        "VOXPROOF_AUDITOR_PRINCIPALS": AUDITOR,
        "VOXPROOF_TORCH_THREADS": "2",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_SERVICE_NAME": "voxproof",
        "AWS_XRAY_DAEMON_ADDRESS": xray.address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    with LambdaRuntimeAPI() as api:
        process = start_ric(HANDLER, api, cwd=state, env=env)
        try:
            api.wait_ready(WAIT_S)
        except RuntimeAPITimeout:
            pytest.fail("the runtime never polled: " + process.stop()[-4000:])
        yield api, process
        process.stop()


def call(runtime: tuple[LambdaRuntimeAPI, RuntimeProcess], event: dict[str, Any], *,
         timeout_ms: int = 60_000, trace_id: str | None = None) -> tuple[Outcome, dict[str, Any]]:
    api, process = runtime
    outcome = api.invoke_and_wait(event, timeout_ms=timeout_ms, trace_id=trace_id, wait_s=WAIT_S)
    assert outcome.ok, f"an error post, not a response: {outcome.body[:500]!r}"
    assert process.alive(), process.output()[-4000:]
    return outcome, outcome.json()


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    assert not response["isBase64Encoded"]
    return json.loads(response["body"])


def header(response: dict[str, Any], name: str) -> str:
    return response["multiValueHeaders"][name][0]


# --- tests -------------------------------------------------------------------------------------


def test_health_names_voice_layer_and_the_secrets_key_id_never_the_key(runtime):
    _, response = call(runtime, api_gateway_event("GET", "/v1/health"))
    assert response["statusCode"] == 200
    health = body_of(response)
    assert health["status"] == "ok" and health["voice_loaded"] is True  # preloaded at init
    assert health["voice"] == "en_US-joe-medium"
    assert re.fullmatch(r"[0-9a-f]{64}", health["model_manifest_sha256"])
    assert health["checks"]["keys"] == "ok"  # read from Secrets Manager on moto
    assert "key_ids" not in health and KEY.key_id not in response["body"]  # open route: no ids
    assert "placeholder" not in health
    assert KEY.to_hex() not in response["body"]


def test_speech_is_recorded_in_dynamodb_and_verify_finds_that_record(runtime, stack):
    _, response = call(runtime, api_gateway_event("POST", "/v1/speech", {"text": SHORT}))
    assert response["statusCode"] == 200, response["body"]
    speech = body_of(response)
    wav = base64.b64decode(speech["audio_base64"])
    assert wav[:4] == b"RIFF" and speech["key_id"] == KEY.key_id
    assert header(response, "X-Voxproof-Record-Id") == speech["record_id"]

    item = stack.dynamodb.get_item(TableName=stack.table,
                                   Key={"record_id": {"S": speech["record_id"]}})["Item"]
    stored = json.loads(item["body"]["S"])
    assert stored["caller"] == "apikey:smoke-key-id" and stored["entry_point"] == "api"
    assert SHORT not in item["body"]["S"]

    # The binary body, as API Gateway passes audio/wav (BinaryMediaTypes): base64 + flag.
    _, response = call(runtime, api_gateway_event(
        "POST", "/v1/verify", headers={"Content-Type": "audio/wav"}, raw_body=wav))
    report = body_of(response)
    assert response["statusCode"] == 200
    assert report["found"] and report["verdict"] == "recorded"
    assert report["record_id"] == speech["record_id"]
    assert "request_id" not in report["record"] and "score" not in report  # the public answer

    # The auditor's answer: an IAM principal API Gateway authenticated, named by the settings.
    event = api_gateway_event("POST", "/v1/verify/detailed", headers={"Content-Type": "audio/wav"},
                              raw_body=wav, api_key_id=None)
    event["requestContext"]["identity"]["userArn"] = AUDITOR
    _, response = call(runtime, event)
    report = body_of(response)
    assert response["statusCode"] == 200, report
    assert report["record"]["request_id"] == stored["request_id"]
    assert report["record"]["caller"] == "apikey:smoke-key-id" and report["segments"]


def test_logs_are_json_with_request_ids_and_never_the_text_or_the_key(runtime):
    _, process = runtime
    text = "Nobody may read this sentence in the logs, number 7319."
    event = api_gateway_event("POST", "/v1/speech", {"text": text})
    outcome, response = call(runtime, event)
    assert response["statusCode"] == 200
    output = process.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("function_request_id") == outcome.request_id]
    recorded = [line for line in ours if line.get("message") == "speech recorded"]
    assert recorded and recorded[0]["correlation_id"] == event["requestContext"]["requestId"]
    assert recorded[0]["text_chars"] == len(text)
    assert "7319" not in output and "Nobody may read" not in output
    assert KEY.to_hex() not in output and KEY.to_hex().upper() not in output
    # EMF metrics, flushed per invocation.
    emf = [line for line in lines if "_aws" in line and "SpeechRequests" in line]
    assert emf and emf[-1]["AudioSeconds"][0] > 0


def test_xray_subsegments_name_every_step(runtime, xray):
    speech_trace = make_trace_id()
    _, response = call(runtime, api_gateway_event("POST", "/v1/speech", {"text": SHORT}),
                       trace_id=speech_trace)
    wav = base64.b64encode(base64.b64decode(body_of(response)["audio_base64"])).decode()
    verify_trace = make_trace_id()
    call(runtime, api_gateway_event("POST", "/v1/verify", {"audio_base64": wav}),
         trace_id=verify_trace)

    speech_steps = {"validate", "keys", "synthesize", "mark", "encode", "sign", "store"}
    seen = xray.wait_for(trace_root(speech_trace), speech_steps)
    assert speech_steps <= seen, seen
    assert {"## handler", "dynamodb"} <= seen  # Powertools' handler; boto3, patched
    verify_steps = {"validate", "decode", "detect", "lookup"}
    seen = xray.wait_for(trace_root(verify_trace), verify_steps)
    assert verify_steps <= seen, seen
    assert "synthesize" not in seen
    documents = xray.traced(trace_root(verify_trace))
    assert all(d["type"] == "subsegment" and d["parent_id"] for d in documents)


def test_deadline_too_short_is_a_clean_json_503_and_the_runtime_goes_on(runtime):
    # 1.5 s left, 1 s of it the margin: far too little for this text.
    _, response = call(runtime, api_gateway_event("POST", "/v1/speech", {"text": LONG}),
                       timeout_ms=1_500)
    assert response["statusCode"] == 503
    error = body_of(response)["error"]
    assert error["code"] == "deadline_too_short"
    assert error["details"]["estimate_s"] > error["details"]["remaining_s"]
    _, response = call(runtime, api_gateway_event("GET", "/v1/health"))
    assert response["statusCode"] == 200


def test_large_speech_comes_back_as_a_presigned_url_in_the_output_bucket(runtime, stack, xray):
    trace = make_trace_id()
    _, response = call(runtime, api_gateway_event("POST", "/v1/speech", {"text": LONG}),
                       trace_id=trace)
    assert response["statusCode"] == 200, response["body"]
    speech = body_of(response)
    assert "audio_base64" not in speech and speech["audio_url_expires_s"] > 0
    key = f"speech/{speech['record_id']}.wav"
    stored = stack.s3.get_object(Bucket=stack.output_bucket, Key=key)["Body"].read()
    assert len(stored) > INLINE_MAX
    with urllib.request.urlopen(speech["audio_url"], timeout=30) as fetched:  # moto, loopback
        assert fetched.read() == stored
    assert "upload" in xray.wait_for(trace_root(trace), {"upload"})

    # The same audio, verified from the input bucket by key.
    stack.s3.put_object(Bucket=stack.input_bucket, Key="verify/long.wav", Body=stored)
    _, response = call(runtime, api_gateway_event("POST", "/v1/verify",
                                                  {"s3_key": "verify/long.wav"}))
    report = body_of(response)
    assert report["verdict"] == "recorded" and report["record_id"] == speech["record_id"]


def test_large_speech_asked_as_wav_is_a_303_to_the_url(runtime, stack):
    _, response = call(runtime, api_gateway_event("POST", "/v1/speech", {"text": LONG},
                                                  headers={"Accept": "audio/wav"}))
    assert response["statusCode"] == 303
    body = body_of(response)
    assert header(response, "Location") == body["audio_url"]
    with urllib.request.urlopen(body["audio_url"], timeout=30) as fetched:
        assert fetched.read()[:4] == b"RIFF"


@pytest.mark.parametrize(("key", "status", "code"), [
    ("jobs/batch.jsonl", 403, "forbidden"),
    ("verify/../jobs/batch.jsonl", 403, "forbidden"),
    ("verify/absent.wav", 404, "not_found"),
])
def test_s3_keys_outside_verify_or_absent_are_refused_without_naming_the_bucket(
        runtime, stack, key, status, code):
    stack.s3.put_object(Bucket=stack.input_bucket, Key="jobs/batch.jsonl", Body=b"{}\n")
    _, response = call(runtime, api_gateway_event("POST", "/v1/verify", {"s3_key": key}))
    assert response["statusCode"] == status
    assert body_of(response)["error"]["code"] == code
    assert stack.input_bucket not in response["body"] and "moto" not in response["body"]
