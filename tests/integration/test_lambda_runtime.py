"""The loopback Runtime API against the REAL awslambdaric client, in a subprocess.

The handlers here are tiny on purpose: these tests prove the harness speaks the protocol the way
Lambda does (headers, deadline, trace id, error and init-error paths), so the handler tests of
the serve issue and the image smoke test can trust it.
"""

from __future__ import annotations

import http.client
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lambda_runtime import (
    ERROR_TYPE_HEADER,
    LambdaRuntimeAPI,
    RuntimeAPITimeout,
    RuntimeProcess,
    start_ric,
)

WAIT_S = 60.0  # generous: the machine is shared; nothing here measures speed

HANDLERS = textwrap.dedent(
    """
    import os


    def echo(event, context):
        return {
            "event": event,
            "request_id": context.aws_request_id,
            "function_arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
            "cognito_identity_id": context.identity.cognito_identity_id,
            "client_custom": context.client_context.custom if context.client_context else None,
        }


    class Boom(ValueError):
        pass


    def fail(event, context):
        raise Boom("the handler refused " + str(event["n"]))
    """
)


@pytest.fixture(scope="module")
def handler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ric_handlers")
    (folder / "tiny.py").write_text(HANDLERS)
    return folder


@pytest.fixture()
def api() -> Iterator[LambdaRuntimeAPI]:
    with LambdaRuntimeAPI() as server:
        yield server


def _start(api: LambdaRuntimeAPI, handler: str, folder: Path) -> RuntimeProcess:
    runtime = start_ric(handler, api, cwd=folder)
    try:
        api.wait_ready(WAIT_S)
    except RuntimeAPITimeout:
        pytest.fail("awslambdaric never polled: " + runtime.stop())
    return runtime


def _raw_post(api: LambdaRuntimeAPI, path: str, body: bytes) -> int:
    host, port = api.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_response_carries_event_deadline_trace_and_context(
    api: LambdaRuntimeAPI, handler_dir: Path
) -> None:
    trace = "Root=1-65f00000-0123456789abcdef01234567;Parent=89abcdef01234567;Sampled=1"
    with _start(api, "tiny.echo", handler_dir) as runtime:
        short = api.invoke_and_wait(
            {"text": "hello", "n": [1, 2]},
            timeout_ms=4_000,
            trace_id=trace,
            cognito_identity={"cognitoIdentityId": "id-42", "cognitoIdentityPoolId": "pool-1"},
            client_context={"custom": {"tenant": "t1"}, "client": {}, "env": {}},
            wait_s=WAIT_S,
        )
        long = api.invoke_and_wait({"n": 2}, timeout_ms=600_000, wait_s=WAIT_S)
        assert runtime.alive(), runtime.output()

    assert short.ok, short.body
    answer = short.json()
    assert answer["event"] == {"text": "hello", "n": [1, 2]}
    assert answer["request_id"] == short.request_id
    assert answer["function_arn"] == api.function_arn
    assert answer["trace_id"] == trace
    assert answer["cognito_identity_id"] == "id-42"
    assert answer["client_custom"] == {"tenant": "t1"}
    # The deadline header reaches the context: bounded by what was sent, and it differs per call.
    assert 0 < answer["remaining_ms"] <= 4_000
    assert 400_000 < long.json()["remaining_ms"] <= 600_000
    assert long.json()["trace_id"] not in (None, trace)  # each invocation gets its own trace id


def test_handler_exception_becomes_error_post_and_runtime_goes_on(
    api: LambdaRuntimeAPI, handler_dir: Path
) -> None:
    with _start(api, "tiny.fail", handler_dir) as runtime:
        first = api.invoke_and_wait({"n": 1}, wait_s=WAIT_S)
        second = api.invoke_and_wait({"n": 2}, wait_s=WAIT_S)
        assert runtime.alive(), runtime.output()

    for outcome, n in ((first, 1), (second, 2)):
        assert not outcome.ok
        assert outcome.error_type == "Boom"
        assert "Boom" in outcome.headers["lambda-runtime-function-xray-error-cause"]
        body = outcome.json()
        assert body["errorType"] == "Boom"
        assert body["errorMessage"] == f"the handler refused {n}"


def test_missing_handler_module_posts_init_error_and_exits(
    api: LambdaRuntimeAPI, handler_dir: Path
) -> None:
    runtime = start_ric("no_such_module.handler", api, cwd=handler_dir)
    try:
        error = api.wait_init_error(WAIT_S)
        runtime.proc.wait(timeout=WAIT_S)
    finally:
        output = runtime.stop()
    assert error.json()["errorType"] == "Runtime.ImportModuleError", output
    assert error.error_type == "Runtime.ImportModuleError"
    assert error.headers[ERROR_TYPE_HEADER.lower()] == "Runtime.ImportModuleError"
    assert runtime.proc.returncode != 0


def test_dead_poller_does_not_swallow_the_next_event(
    api: LambdaRuntimeAPI, handler_dir: Path
) -> None:
    # A runtime that dies while long-polling (a killed container) must not take the next event.
    host, port = api.address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        api.wait_ready(WAIT_S)
    time.sleep(0.5)  # let the server notice the closed socket before the event is queued
    with _start(api, "tiny.echo", handler_dir):
        outcome = api.invoke_and_wait({"after": "dead poller"}, wait_s=WAIT_S)
    assert outcome.ok and outcome.json()["event"] == {"after": "dead poller"}


def test_unknown_request_id_and_path_are_refused(api: LambdaRuntimeAPI) -> None:
    base = "/2018-06-01/runtime/invocation"
    assert _raw_post(api, f"{base}/not-a-request/response", b"{}") == 400
    assert _raw_post(api, f"{base}/x/y/response", b"{}") == 404
    assert _raw_post(api, "/2018-06-01/runtime/elsewhere", b"{}") == 404


def test_wait_times_out_when_nobody_answers(api: LambdaRuntimeAPI) -> None:
    request_id = api.invoke({"nobody": "listens"})
    with pytest.raises(RuntimeAPITimeout):
        api.wait(request_id, timeout_s=0.3)
    with pytest.raises(RuntimeAPITimeout):
        api.wait_ready(0.1)
