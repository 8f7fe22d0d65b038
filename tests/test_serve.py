"""voxproof.serve: HTTP requests become the API Gateway REST events ``sam local start-api``
makes, and proxy responses become HTTP (the server itself runs in tests/integration)."""

from __future__ import annotations

import base64
import time

from voxproof import serve


def test_binary_media_types_are_base64_encoded_like_api_gateway():
    body = bytes(range(256))
    event = serve.to_event("POST", "/v1/verify?x=1&x=2&y=", [("Content-Type", "audio/wav")],
                           body, client_ip="127.0.0.1", request_id="r-1")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["path"] == "/v1/verify" and event["httpMethod"] == "POST"
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    context = event["requestContext"]
    assert context["requestId"] == "r-1" and context["stage"] == serve.STAGE
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["apiId"] == serve.API_ID


def test_text_bodies_and_repeated_headers():
    headers = [("Content-Type", "application/json"), ("X-Tag", "a"), ("X-Tag", "b")]
    event = serve.to_event("POST", "/v1/speech", headers, '{"text": "é"}'.encode(),
                           client_ip="::1", request_id="r-2")
    assert event["isBase64Encoded"] is False and event["body"] == '{"text": "é"}'
    assert event["headers"]["X-Tag"] == "b" and event["multiValueHeaders"]["X-Tag"] == ["a", "b"]
    assert event["queryStringParameters"] is None
    empty = serve.to_event("GET", "/v1/health", [], b"", client_ip="::1", request_id="r-3")
    assert empty["body"] is None and empty["isBase64Encoded"] is False


def test_proxy_responses_become_http():
    status, headers, body = serve.from_response({
        "statusCode": 303, "headers": {"A": "1"},
        "multiValueHeaders": {"Location": ["https://x"], "Set-Cookie": ["a=1", "b=2"]},
        "body": base64.b64encode(b"\x00RIFF").decode(), "isBase64Encoded": True})
    assert status == 303 and body == b"\x00RIFF"
    assert ("Location", "https://x") in headers and ("A", "1") in headers
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1", "b=2"]


def test_the_context_counts_down_from_api_gateways_29_s():
    context = serve.LocalContext(aws_request_id="r")
    assert 28_000 < context.get_remaining_time_in_millis() <= 29_000
    late = serve.LocalContext(aws_request_id="r", _started=time.monotonic() - 40)
    assert late.get_remaining_time_in_millis() == 0
