"""The API handler in-process (API Gateway events, no HTTP): how errors are answered.

The end-to-end paths (real voice, awslambdaric, moto, HTTP) are in tests/integration/. Here each
test builds its own runtime (``voxproof.handlers.rest.make_handler``), some with a service stub
that raises (a stub: these failures cannot be provoked on demand through the real service), to
prove that every ``VoxproofError`` subclass is answered with its own status and a JSON error,
and that anything else is a generic 500 that leaks nothing.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import StaticKeys
from lambda_runtime import api_gateway_event
from voxproof import errors, provenance, service
from voxproof.batch import exceptions as batch_exceptions
from voxproof.handlers.rest import Handler, api_runtime, make_handler
from voxproof.keyring import KeyRing
from voxproof.runtime import AwsClients, Runtime
from voxproof.settings import Settings
from voxproof.watermark import WatermarkKey


class Context:
    function_name = "voxproof-test"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:voxproof-test"
    aws_request_id = "lambda-request-1"

    def __init__(self, seconds: float = 29.0) -> None:
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


class Raising:
    """A service stand-in whose every use case raises ``exc`` (its keys are real: verify bounds
    the audio by how many keys it will search)."""

    keys = StaticKeys(KeyRing(WatermarkKey.from_hex("5e" * 32)))

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def speak(self, *args: Any, **kwargs: Any) -> Any:
        raise self.exc

    verify = speak


def _error_classes() -> list[type[errors.VoxproofError]]:
    found = {cls for module in (errors, service, provenance, batch_exceptions)
             for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, errors.VoxproofError)}
    return sorted(found, key=lambda cls: cls.__name__)


def _handler(tmp_path: Path, service: Any = None) -> Handler:
    """The API handler over its own runtime: the real service, or ``service`` in its place."""
    settings = Settings(state_dir=tmp_path / "state")
    if service is None:
        return make_handler(api_runtime(settings))
    return make_handler(Runtime(settings, service, AwsClients()))


def _call(handler: Handler, event: dict[str, Any],
          ) -> tuple[int, dict[str, Any], dict[str, list[str]]]:
    response = handler(event, Context())
    return response["statusCode"], json.loads(response["body"]), response["multiValueHeaders"]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("route", ["speech", "verify"])
def test_every_voxproof_error_is_answered_with_its_status_and_code(tmp_path, cls, route):
    handler = _handler(tmp_path, Raising(cls("a safe sentence", limit=3)))
    if route == "speech":
        event = api_gateway_event("POST", "/v1/speech", {"text": "Hello."})
    else:
        event = api_gateway_event("POST", "/v1/verify", headers={"Content-Type": "audio/wav"},
                                  raw_body=b"RIFF....")
    status, body, headers = _call(handler, event)
    assert status == cls.status
    assert body == {"error": {"code": cls.code, "message": "a safe sentence",
                              "details": {"limit": 3}}}
    assert headers["Content-Type"] == ["application/json"]


def test_an_unexpected_exception_is_a_generic_500_logged_with_the_request_id(tmp_path,
                                                                              caplog):
    leak = "/srv/secret/path.py: libfoo said 0xdeadbeef"
    handler = _handler(tmp_path, Raising(RuntimeError(leak)))
    event = api_gateway_event("POST", "/v1/speech", {"text": "Hello."})
    status, body, _ = _call(handler, event)
    request_id = event["requestContext"]["requestId"]
    assert status == 500
    assert body["error"]["code"] == "internal" and request_id in body["error"]["message"]
    assert leak not in json.dumps(body) and "Traceback" not in json.dumps(body)
    failure = next(r for r in caplog.records if r.getMessage() == "unexpected error")
    assert failure.levelname == "ERROR" and failure.api_request_id == request_id
    assert failure.exc_info[0] is RuntimeError  # the operator gets the trace, not the caller


def test_verify_refuses_when_almost_no_time_is_left(tmp_path):
    handler = _handler(tmp_path, Raising(AssertionError("not reached")))
    event = api_gateway_event("POST", "/v1/verify", headers={"Content-Type": "audio/wav"},
                              raw_body=b"RIFF....")
    response = handler(event, Context(seconds=1.5))  # 0.5 s once the 1 s margin is kept
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "deadline_too_short"


def test_validation_messages_name_the_field_but_never_echo_the_input(tmp_path):
    handler = _handler(tmp_path)
    secret = "my confidential sentence"
    for payload, field in (({"text": "Hello.", "extra": secret}, "extra"),
                           ({"text": ["a", secret]}, "text"),
                           ({"text": "Hi.", "voice": secret}, "voice")):
        status, body, _ = _call(handler, api_gateway_event("POST", "/v1/speech", payload))
        assert status == 422 and body["error"]["code"] == "request_invalid"
        assert body["error"]["message"].startswith(f"{field}: ")
        assert body["error"]["details"]["field"] == field
        assert secret not in json.dumps(body)


def test_verify_accepts_less_audio_the_more_keys_it_must_search():
    from voxproof.deadline import Deadline
    from voxproof.handlers.routes.verify import EXTRA_KEY_COST, _verify_limits

    one = _verify_limits(Deadline.after(20), 1).max_duration_s
    four = _verify_limits(Deadline.after(20), 4).max_duration_s
    assert four == pytest.approx(one / (1 + 3 * EXTRA_KEY_COST), rel=0.01) and four < one
