"""The HTTP API: API Gateway REST (v1 proxy) events in, proxy responses out, for a given runtime.

Routes (Powertools' ``APIGatewayRestResolver`` with request validation, one ``Router`` per
concern in ``voxproof.handlers.routes``; the OpenAPI document is generated from ``api_models``):
``POST /v1/speech``, ``POST /v1/verify`` (the public answer), ``POST /v1/verify/detailed`` (the
auditors' answer), the C2PA Soft Binding Resolution API under ``/v1/c2pa/``, ``GET /v1/health``
and ``GET /v1/openapi.json``.

``make_handler(runtime)`` is the Lambda handler for one runtime: ``voxproof.handlers.api`` makes
the container's, tests make their own. Before each request it puts the runtime and the
request's deadline (the Lambda context's remaining time minus ``deadline_margin_s``) into the
resolver's context, where the routes find them.

Errors are ``{"error": {"code", "message", "details"?}}`` with the status of the
``VoxproofError`` raised; request validation failures are 422 ``request_invalid`` (400
``malformed_request`` for JSON that does not parse), an unknown route 404, a known route with
the wrong method 405, a body over the route's limit 413 before it is parsed, anything unexpected
500 with a generic message (logged with the request id; never a stack trace, path or library
message in the answer).

Observability: JSON logs with the request and correlation ids (never the text, never a key);
X-Ray subsegments validate, keys, synthesize, mark, encode, sign, store, upload / decode, detect,
lookup, credentials;
EMF metrics (ApiRequests, SpeechRequests, AudioSeconds, VerifyRequests, VerifyFound, ApiErrors)
flushed per invocation.
"""

from __future__ import annotations

import base64
import io
import json
import re
import wave
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from voxproof import __version__
from voxproof.audio import DEFAULT_LIMITS
from voxproof.deadline import Deadline
from voxproof.errors import (
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    RequestError,
    RequestTooLarge,
    UnsupportedMediaType,
    VoxproofError,
    from_validation_errors,
)
from voxproof.handlers import http
from voxproof.handlers.api_models import VerifyJsonRequest
from voxproof.handlers.common import lambda_runtime, logger, metrics, tracer
from voxproof.handlers.routes import c2pa, health, speech, verify
from voxproof.handlers.routes.base import JSON_TYPE
from voxproof.runtime import AwsClients, Runtime
from voxproof.settings import Settings

#: The methods of every route (a known path with another method is 405, not 404).
ROUTES: Final = {
    "/v1/speech": ("POST",),
    "/v1/verify": ("POST",),
    "/v1/verify/detailed": ("POST",),
    "/v1/health": ("GET",),
    "/v1/openapi.json": ("GET",),
    "/v1/c2pa/matches/byBinding": ("GET", "POST"),
    "/v1/c2pa/matches/byContent": ("POST",),
    "/v1/c2pa/manifests/{manifestId}": ("GET",),
    "/v1/c2pa/services/supportedAlgorithms": ("GET",),
}
#: Largest body per route, refused before parsing. Speech: 1,000 characters at 12 bytes each
#: (a JSON escape per UTF-16 unit) is 12 KB. Verify: the largest audio accepted, base64-encoded,
#: plus room for a JSON wrapper (the binary body is counted decoded).
SPEECH_BODY_MAX_BYTES: Final = 64 * 1024
VERIFY_PATHS: Final = ("/v1/verify", "/v1/verify/detailed")
#: Routes that take audio as the body, verify's limit (the Soft Binding API's byContent too).
AUDIO_BODY_PATHS: Final = (*VERIFY_PATHS, "/v1/c2pa/matches/byContent")
VERIFY_BODY_MAX_BYTES: Final = (DEFAULT_LIMITS.max_bytes + 2) // 3 * 4 + 64 * 1024
#: Strict base64 with padding (``base64.b64decode(..., validate=True)`` accepts exactly this).
BASE64_PATTERN: Final = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: An object verify may read: under ``verify/``, no control characters, S3's 1,024 bytes at most
#: (``storage.InputBucket.check_key`` also refuses ``.`` and ``..`` parts).
VERIFY_KEY_PATTERN: Final = r"^verify/[^\x00-\x1f\x7f]{1,1017}$"
#: A binding value of voxproof's algorithm: base64 of a 40-bit record id (5 bytes).
BINDING_PATTERN: Final = r"^[A-Za-z0-9+/]{7}=$"
#: A voxproof manifest id: ``urn:c2pa:`` and a canonical version-4 UUID.
MANIFEST_ID_PATTERN: Final = (r"^urn:c2pa:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}"
                              r"-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$")
#: The API's S3 client: a slow bucket must not use up a 29 s request.
S3_CONFIG: Final = {"retries": {"max_attempts": 3, "mode": "standard"},
                    "connect_timeout": 3, "read_timeout": 10}

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def api_runtime(settings: Settings) -> Runtime:
    """The synchronous API's runtime (speech and verify functions, ``voxproof serve``): text up
    to ``max_text_chars_sync``; the voice loaded now when ``preload_voice`` is set."""
    return lambda_runtime(settings, max_chars=settings.max_text_chars_sync,
                          aws=AwsClients({"s3": S3_CONFIG}))


def make_handler(runtime: Runtime) -> Handler:
    """The Lambda handler (API Gateway REST proxy event in, proxy response out) for
    ``runtime``: one resolver, made here, answers every request with it."""
    app = make_app(runtime.settings)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
        try:
            _check_request(event)
        except RequestError as err:
            return _early_error(err)
        app.append_context(runtime=runtime, deadline=Deadline.from_lambda_context(
            context, runtime.settings.deadline_margin_s))
        return app.resolve(event, context)

    return handler


def make_app(settings: Settings) -> APIGatewayRestResolver:
    """The resolver: the routes (speech's text limit from ``settings``), the OpenAPI document
    and the error answers."""
    app = APIGatewayRestResolver(enable_validation=True)
    app.include_router(speech.router(settings.max_text_chars_sync))
    app.include_router(verify.router())
    app.include_router(c2pa.router())
    app.include_router(health.router())
    document = cache(lambda: openapi_document(app, s3_keys=bool(settings.input_bucket)))

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi():
        return Response(200, JSON_TYPE, json.dumps(document()))

    _answer_errors(app)
    return app


def openapi_document(app: APIGatewayRestResolver, *, s3_keys: bool = True) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document (verify's two body forms added by hand: its route reads
    the body itself, since a binary upload is not a model). ``s3_keys``: the deployment has an
    input bucket, so verify's JSON may name an object (without one, the document offers
    ``audio_base64`` only, as the server accepts)."""
    doc = json.loads(app.get_openapi_json_schema(
        title="voxproof", version=__version__,
        description="Text-to-speech that watermarks everything it says, and verifies marks.",
    ))
    doc["components"]["schemas"]["VerifyJsonRequest"] = verify_json_schema(s3_keys=s3_keys)
    upload = {"type": "string", "format": "binary", "minLength": 1}
    for path in VERIFY_PATHS:
        doc["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {
                JSON_TYPE: {"schema": {"$ref": "#/components/schemas/VerifyJsonRequest"},
                            "examples": {"silence": {
                                "summary": "A quarter second of silence (not_found)",
                                "value": {"audio_base64": _silence_wav_base64()}}}},
                "audio/*": {"schema": upload},
                "application/octet-stream": {"schema": upload},
            },
        }
    binary = {"schema": upload}
    doc["paths"]["/v1/c2pa/matches/byContent"]["post"]["requestBody"] = {
        "required": True, "content": {"audio/*": binary, "application/octet-stream": binary}}
    _c2pa_parameters(doc)
    return doc


def _c2pa_parameters(doc: dict[str, Any]) -> None:
    """What the Soft Binding routes read beyond their signatures, as the server checks it: the
    query's ``alg``/``value`` (GET byBinding), ``maxResults`` (an integer >= 1), a binding value
    of voxproof's algorithm in the JSON body (base64 of 5 bytes; a query cannot tie ``value``
    to ``alg``), a manifest id (``urn:c2pa:`` and a v4 UUID)."""
    from voxproof.credentials.manifest import ALGORITHM

    query = {"type": "object", "additionalProperties": False, "required": ["alg", "value"],
             "properties": {"alg": {"type": "string", "maxLength": 256},
                            "value": {"type": "string", "maxLength": 4096}},
             "if": {"properties": {"alg": {"const": ALGORITHM}}},
             "then": {"properties": {"value": {"pattern": BINDING_PATTERN}}}}
    doc["paths"]["/v1/c2pa/matches/byBinding"]["post"]["requestBody"] = {
        "required": True, "content": {JSON_TYPE: {"schema": query}}}
    most = {"name": "maxResults", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1}}
    for path, method in (("matches/byBinding", "post"), ("matches/byContent", "post")):
        doc["paths"][f"/v1/c2pa/{path}"][method]["parameters"] = [most]
    doc["paths"]["/v1/c2pa/matches/byBinding"]["get"]["parameters"] = [
        {"name": "alg", "in": "query", "required": True, "schema": {"type": "string",
                                                                    "minLength": 1}},
        {"name": "value", "in": "query", "required": True, "schema": {"type": "string",
                                                                      "minLength": 1}}, most]
    for operation in doc["paths"]["/v1/c2pa/manifests/{manifest_id}"].values():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "manifest_id":
                parameter["schema"]["pattern"] = MANIFEST_ID_PATTERN


def verify_json_schema(*, s3_keys: bool) -> dict[str, Any]:
    """``VerifyJsonRequest`` as the server enforces it: exactly one of ``audio_base64``
    (strict, padded base64 of at least one byte) or ``s3_key`` (under ``verify/``), the other
    absent or null; ``s3_key`` only when the deployment has an input bucket."""
    schema = VerifyJsonRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    properties = schema["properties"]
    audio = {"type": "string", "minLength": 4, "pattern": BASE64_PATTERN}
    key = {"type": "string", "pattern": VERIFY_KEY_PATTERN}
    if not s3_keys:
        properties["audio_base64"] = {**audio, **_doc(properties["audio_base64"])}
        del properties["s3_key"]
        return {**schema, "required": ["audio_base64"]}
    null: dict[str, Any] = {"type": "null"}
    properties["audio_base64"] = {"anyOf": [audio, null], **_doc(properties["audio_base64"])}
    properties["s3_key"] = {"anyOf": [key, null], **_doc(properties["s3_key"])}
    schema["oneOf"] = [
        {"required": ["audio_base64"], "properties": {"audio_base64": audio, "s3_key": null}},
        {"required": ["s3_key"], "properties": {"s3_key": key, "audio_base64": null}},
    ]
    return schema


def _silence_wav_base64(seconds: float = 0.25, rate: int = 8000) -> str:
    """A short silent 16-bit mono WAV, base64-encoded: the document's verify example."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * int(seconds * rate)))
    return base64.b64encode(buffer.getvalue()).decode()


def _doc(schema: dict[str, Any]) -> dict[str, Any]:
    """A property schema's title and description."""
    return {k: v for k, v in schema.items() if k in ("title", "description")}


def _check_request(event: dict[str, Any]) -> None:
    """What is refused before anything parses the body: its size, and speech that is not JSON
    (Powertools would read a form body; curl sends one unless told otherwise)."""
    path = event.get("path")
    limit = VERIFY_BODY_MAX_BYTES if path in AUDIO_BODY_PATHS else SPEECH_BODY_MAX_BYTES
    size = http.body_size(event)
    if size > limit:
        raise RequestTooLarge(f"the body is {size} bytes; this route accepts at most {limit}",
                              limit_bytes=limit)
    if path == "/v1/speech" and event.get("httpMethod") == "POST" and \
            http.media_type(http.header(event, "content-type")) not in ("", JSON_TYPE):
        raise UnsupportedMediaType("send the speech request as JSON "
                                   "(Content-Type: application/json)")


# --- errors ------------------------------------------------------------------------------------


def _answer_errors(app: APIGatewayRestResolver) -> None:
    """Every failure as ``{"error": ...}`` with its status; nothing else crosses the edge."""

    @app.exception_handler(VoxproofError)
    def _voxproof_error(err: VoxproofError) -> Response:
        return _error(err)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(err: RequestValidationError) -> Response:
        return _error(from_validation_errors(err.errors(), what="the body",
                                             not_json=MalformedRequest))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(_err: RequestUnsupportedContentType) -> Response:
        return _error(UnsupportedMediaType("send JSON (Content-Type: application/json)"))

    @app.not_found
    def _no_route(_err: NotFoundError) -> Response:
        event = app.current_event
        allowed = _methods_of(event.path)
        if allowed:
            return _error(MethodNotAllowed(f"{event.path} answers {', '.join(allowed)} only",
                                           allow=list(allowed)), {"Allow": ", ".join(allowed)})
        return _error(NotFound("no such route; see GET /v1/openapi.json"))

    @app.exception_handler(Exception)
    def _unexpected(_err: Exception) -> Response:
        request_id = app.current_event.request_context.request_id
        logger.exception("unexpected error", extra={"api_request_id": request_id})
        return _error(VoxproofError(
            f"internal error; quote request id {request_id} when reporting it"))


def _methods_of(path: str) -> tuple[str, ...] | None:
    """The methods ``ROUTES`` lists for ``path``, matching ``{name}`` as one path segment."""
    if path in ROUTES:
        return ROUTES[path]
    for template, methods in ROUTES.items():
        if "{" in template and re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+",
                                                   re.escape(template)), path):
            return methods
    return None


def _error(err: VoxproofError, headers: dict[str, str] | None = None) -> Response:
    _count_error(err)
    return Response(err.status, JSON_TYPE, http.error_body(err), headers)


def _early_error(err: VoxproofError) -> dict[str, Any]:
    """An error answered before the resolver runs (same shape and accounting as the rest)."""
    _count_error(err)
    return http.proxy_response(err.status, http.error_body(err), {"Content-Type": JSON_TYPE})


def _count_error(err: VoxproofError) -> None:
    logger.info("request refused", extra={"code": err.code, "status": err.status})
    metrics.add_metric(name="ApiErrors", unit=MetricUnit.Count, value=1)
