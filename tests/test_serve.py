"""voxproof.serve: HTTP requests become the API Gateway REST events ``sam local start-api``
makes, and proxy responses become HTTP; the server's own contract (limits, ``Expect``, slow
clients, one request at a time) on loopback with a handler that echoes its event. The API's
own handler behind it runs in tests/integration/test_serve_http.py."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from voxproof import serve

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"


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


# --- the server on loopback, with a handler that answers with the event it got -------------------


def echo_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A proxy response carrying the event and the time left (what the handler would see)."""
    answer = {"event": event, "remaining_ms": context.get_remaining_time_in_millis()}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"X-Seen": ["1", "2"]}, "body": json.dumps(answer)}


@contextmanager
def running(handler: serve.Handler) -> Iterator[tuple[str, int]]:
    server = serve.make_server("127.0.0.1", 0, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    with running(echo_handler) as address:
        yield address


def call(address: tuple[str, int], method: str, target: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def host(address: tuple[str, int]) -> str:
    """The ``Host`` header that names the server at ``address``."""
    return f"{address[0]}:{address[1]}"


def exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes."""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_handler_gets_the_request_as_an_api_gateway_event(echo):
    body = bytes(range(256)) * 4
    status, response, payload = call(echo, "POST", "/v1/verify?x=1&x=2", body,
                                     {"Content-Type": "audio/wav", "X-Tag": "a"})
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    assert response.getheader("X-Seen") == "1, 2" and response.getheader("X-Amzn-RequestId")
    answer = json.loads(payload)
    event = answer["event"]
    assert event["httpMethod"] == "POST" and event["path"] == "/v1/verify"
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["Host"] == f"{echo[0]}:{echo[1]}" and event["headers"]["X-Tag"] == "a"
    context = event["requestContext"]
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["apiId"] == serve.API_ID
    assert context["requestId"] == response.getheader("X-Amzn-RequestId")
    assert 28_000 < answer["remaining_ms"] <= 29_000


def test_head_answers_the_length_without_the_body(echo):
    status, response, payload = call(echo, "HEAD", "/v1/health")
    assert status == 200 and payload == b"" and int(response.getheader("Content-Length")) > 0


def test_expect_100_continue_is_answered_only_when_the_body_is_wanted(echo):
    big = (f"POST /v1/verify HTTP/1.1\r\nHost: {host(echo)}\r\nContent-Type: audio/wav\r\n"
           f"Content-Length: {serve.MAX_BODY_BYTES + 1}\r\nExpect: 100-continue\r\n\r\n")
    answer = exchange(echo, big.encode())
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"

    with socket.create_connection(echo, timeout=30) as sock:
        sock.sendall(f"POST /v1/speech HTTP/1.1\r\nHost: {host(echo)}\r\n".encode()
                     + b"Content-Type: application/json\r\n"
                     b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        final = http.client.HTTPResponse(sock)
        final.begin()
        assert final.status == 200 and json.loads(final.read())["event"]["body"] == "{}"


def test_chunked_and_malformed_lengths_are_refused_before_the_handler(echo):
    for head, status, code in [
        ("Transfer-Encoding: chunked", 411, "length_required"),
        ("Content-Length: ten", 400, "invalid_request"),
        ("Content-Length: -5", 400, "invalid_request"),
    ]:
        answer = exchange(echo, f"POST /v1/verify HTTP/1.1\r\nHost: {host(echo)}\r\n{head}\r\n\r\n"
                          .encode())
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), head
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == code


def test_a_refused_body_is_drained_so_the_client_sees_the_413(echo):
    status, _, payload = call(echo, "POST", "/v1/verify", b"\0" * (serve.MAX_BODY_BYTES + 1),
                              {"Content-Type": "audio/wav"})
    assert status == 413 and json.loads(payload)["error"]["code"] == "request_too_large"


def test_a_slow_client_holds_only_its_own_connection(echo):
    with socket.create_connection(echo, timeout=30) as slow:
        slow.sendall(f"POST /v1/speech HTTP/1.1\r\nHost: {host(echo)}\r\n".encode()
                     + b"Content-Length: 100\r\n\r\n{")
        started = time.monotonic()
        status, _, _ = call(echo, "GET", "/v1/health")
        assert status == 200 and time.monotonic() - started < 5


def test_the_handler_takes_one_request_at_a_time():
    active, most = 0, 0
    guard = threading.Lock()

    def slow_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        time.sleep(0.1)
        with guard:
            active -= 1
        return {"statusCode": 204, "body": ""}

    with running(slow_handler) as address, ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: call(address, "GET", "/")[0], range(4)))
    assert statuses == [204] * 4 and most == 1


def test_a_failing_handler_is_a_json_500_with_the_request_id():
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("/secret/path")

    with running(broken) as address:
        status, response, payload = call(address, "GET", "/v1/health")
    error = json.loads(payload)["error"]
    assert status == 500 and error["code"] == "internal" and "/secret" not in payload.decode()
    assert response.getheader("X-Amzn-RequestId") in error["message"]


def test_serve_without_werkzeug_names_the_extra():
    blocked = ("import sys; sys.modules['werkzeug'] = None; from voxproof.cli import main; "
               "raise SystemExit(main(['serve', '--port', '0']))")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          check=False, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(FUNCTIONS)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "voxproof serve needs the [serve] extra: pip install 'voxproof[serve]'" in done.stderr
    assert "listening" not in done.stderr and "Traceback" not in done.stderr


# --- exposure: Host checks (DNS rebinding), the bind warning, the local auditor -------------------


@pytest.mark.parametrize("value", ["evil.example:{port}", "evil.example", "127.0.0.1:1",
                                   "localhost.evil.example:{port}", "", "[::1]:{port}"])
def test_a_host_that_does_not_name_the_server_is_refused_before_the_handler(echo, value):
    request = (f"POST /v1/verify HTTP/1.1\r\nHost: {value.format(port=echo[1])}\r\n"
               f"Content-Type: audio/wav\r\nContent-Length: 4\r\nConnection: close\r\n\r\nRIFF")
    if not value:
        request = request.replace("Host: \r\n", "")
    answer = exchange(echo, request.encode())
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "host_not_allowed" and "127.0.0.1" in error["message"]


def test_the_bound_address_and_localhost_pass_and_loopback_lets_the_local_user_audit(echo):
    for value in (host(echo), f"localhost:{echo[1]}", f"LOCALHOST:{echo[1]}"):
        status, _, payload = call(echo, "GET", "/v1/health", headers={"Host": value})
        assert status == 200, value
        context = json.loads(payload)["event"]["requestContext"]
        assert context["authorizer"] == {serve.LOCAL_AUDITOR: True}


@pytest.mark.parametrize(("bound", "header", "allowed"), [
    ("0.0.0.0", "192.0.2.7:8080", True),      # wildcard: any IP literal, never a name
    ("0.0.0.0", "localhost:8080", True),
    ("0.0.0.0", "rebind.example:8080", False),
    ("::", "[2001:db8::1]:8080", True),
    ("192.0.2.7", "192.0.2.7:8080", True),
    ("192.0.2.7", "192.0.2.8:8080", False),
    ("192.0.2.7", "localhost:8080", False),
    ("localhost", "127.0.0.1:8080", True),
    ("localhost", "[::1]:8080", True),
    ("127.0.0.1", "127.0.0.1", False),        # port 80 implied: not this server's
    ("127.0.0.1", "127.0.0.1:8080:1", False),
    ("127.0.0.1", "[127.0.0.1:8080", False),
])
def test_which_hosts_name_a_binding(bound, header, allowed):
    assert serve.Binding(bound, 8080).allows(header) is allowed


def test_a_non_loopback_bind_warns_and_gives_no_local_auditor(caplog):
    with caplog.at_level("WARNING", logger="voxproof.serve"):
        server = serve.make_server("0.0.0.0", 0, echo_handler)
    try:
        assert "not loopback" in caplog.text and "no authentication" in caplog.text
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        status, _, payload = call(("127.0.0.1", server.server_address[1]), "GET", "/v1/health")
        assert status == 200  # http.client sends Host: 127.0.0.1:<port>, an IP literal
        assert "authorizer" not in json.loads(payload)["event"]["requestContext"]
    finally:
        server.shutdown()
        server.server_close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="voxproof.serve"):
        serve.make_server("127.0.0.1", 0, echo_handler).server_close()
    assert "not loopback" not in caplog.text


def test_the_local_auditor_flag_is_the_one_the_handler_reads():
    from voxproof.handlers.routes.base import LOCAL_API_ID, LOCAL_AUDITOR

    assert serve.LOCAL_AUDITOR == LOCAL_AUDITOR and serve.API_ID == LOCAL_API_ID
