"""The HTTP API: API Gateway REST (v1 proxy) events in, proxy responses out.

Routes (Powertools' ``APIGatewayRestResolver`` with request validation; the OpenAPI document is
generated from ``api_models``):

- ``POST /v1/speech``: JSON ``{"text", "voice"?, "format"?: "wav"}``. With ``Accept: audio/wav``
  the answer is the WAV itself (base64 body, ``isBase64Encoded``; ``X-Voxproof-*`` headers name
  the record); otherwise JSON ``{record_id, key_id, voice, model_manifest_sha256, duration_s,
  sample_rate, format, audio_base64}``. A WAV larger than ``inline_audio_max_bytes`` (4 MB: its
  base64 stays under Lambda's 6 MB response cap) is stored under ``speech/`` in the output bucket
  and answered with ``audio_url`` (presigned GET) instead of ``audio_base64``; a caller that
  asked for ``audio/wav`` then gets ``303 See Other`` with ``Location`` = that URL and the same
  JSON body, so ``curl -L`` still ends with the audio.
- ``POST /v1/verify``: the audio as the body (``Content-Type: audio/*`` or
  ``application/octet-stream``; API Gateway base64-encodes binary media types), or JSON
  ``{"audio_base64"}`` or ``{"s3_key"}`` (under ``verify/`` in the input bucket only). The
  answer is the verify report (``VerifyReport.to_dict``).
- ``GET /v1/health``: version, voice, pinned model manifest digest, whether the voice is
  loaded, the public ids of the keys in force; 503 when the keys or the layer are unusable.
- ``GET /v1/openapi.json``: the OpenAPI 3.1 document.

Errors are ``{"error": {"code", "message", "details"?}}`` with the status of the
``VoxproofError`` raised; request validation failures are 422 ``request_invalid`` (400
``malformed_request`` for JSON that does not parse), an unknown route 404, a known route with
the wrong method 405, a body over the route's limit 413 before it is parsed, anything unexpected
500 with a generic message (logged with the request id; never a stack trace, path or library
message in the answer).

Time: every request's deadline is the Lambda context's remaining time minus
``deadline_margin_s``. Speech refuses text it cannot speak in time (503) or stops between
sentences (504); verify bounds the audio it accepts by the time left (detection runs at up to
``DETECT_S_PER_AUDIO_S`` per second of audio).

Observability: JSON logs with the request and correlation ids (never the text, never a key);
X-Ray subsegments validate, keys, synthesize, mark, store, upload / decode, detect, lookup;
EMF metrics (ApiRequests, SpeechRequests, AudioSeconds, VerifyRequests, VerifyFound, ApiErrors)
flushed per invocation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from functools import cache
from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from voxproof import __version__
from voxproof.audio import DEFAULT_LIMITS, AudioLimits
from voxproof.deadline import Deadline
from voxproof.errors import (
    DeadlineTooShort,
    LayerError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    RequestError,
    RequestInvalid,
    RequestTooLarge,
    Unavailable,
    UnsupportedMediaType,
    VoxproofError,
)
from voxproof.handlers import http
from voxproof.handlers.api_models import (
    ErrorResponse,
    HealthResponse,
    SpeechResponse,
    VerifyJsonRequest,
    VerifyResponse,
    speech_request_model,
)
from voxproof.handlers.common import (
    api_service,
    boto3_session,
    logger,
    metrics,
    trace_step,
    tracer,
)
from voxproof.handlers.storage import InputBucket, OutputBucket
from voxproof.service import Caller, SpeechResult
from voxproof.settings import get_settings

#: The methods of every route (a known path with another method is 405, not 404).
ROUTES: Final = {
    "/v1/speech": ("POST",),
    "/v1/verify": ("POST",),
    "/v1/health": ("GET",),
    "/v1/openapi.json": ("GET",),
}
#: Largest body per route, refused before parsing. Speech: 1,000 characters at 12 bytes each
#: (a JSON escape per UTF-16 unit) is 12 KB. Verify: the largest audio accepted, base64-encoded,
#: plus room for a JSON wrapper (the binary body is counted decoded).
SPEECH_BODY_MAX_BYTES: Final = 64 * 1024
VERIFY_BODY_MAX_BYTES: Final = (DEFAULT_LIMITS.max_bytes + 2) // 3 * 4 + 64 * 1024
#: Seconds of detection per second of audio, upper bound: measured 0.13 on two shared cores for
#: unmarked audio (every sync attempt runs); used to bound the audio verify accepts in the time left.
DETECT_S_PER_AUDIO_S: Final = 0.2
#: ``requestContext.apiId`` of the events ``voxproof serve`` makes (real API ids are 10 characters).
LOCAL_API_ID: Final = "local"
WAV_TYPE: Final = "audio/wav"
JSON_TYPE: Final = "application/json"

settings = get_settings()
SpeechRequest = speech_request_model(settings.max_text_chars_sync)
app = APIGatewayRestResolver(enable_validation=True)

_ERROR_CONTENT: Final = {JSON_TYPE: {"model": ErrorResponse}}
_ERRORS: Final[dict[int, Any]] = {
    status: {"description": description, "content": _ERROR_CONTENT}
    for status, description in {
        400: "Malformed request", 403: "Forbidden input", 404: "Not found",
        405: "Method not allowed", 413: "Too large", 415: "Unsupported media type",
        422: "Invalid request, text or audio", 500: "Internal error",
        503: "Not available now (deadline too short, dependency down)",
        504: "Deadline exceeded",
    }.items()
}


# --- the Lambda entry point -------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST proxy) event in, proxy response out."""
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    try:
        _check_request(event)
    except RequestError as err:
        return _early_error(err)
    app.append_context(deadline=Deadline.from_lambda_context(context, settings.deadline_margin_s))
    return app.resolve(event, context)


def _check_request(event: dict[str, Any]) -> None:
    """What is refused before anything parses the body: its size, and speech that is not JSON
    (Powertools would read a form body; curl sends one unless told otherwise)."""
    path = event.get("path")
    limit = VERIFY_BODY_MAX_BYTES if path == "/v1/verify" else SPEECH_BODY_MAX_BYTES
    size = http.body_size(event)
    if size > limit:
        raise RequestTooLarge(f"the body is {size} bytes; this route accepts at most {limit}",
                              limit_bytes=limit)
    if path == "/v1/speech" and event.get("httpMethod") == "POST" and \
            http.media_type(http.header(event, "content-type")) not in ("", JSON_TYPE):
        raise UnsupportedMediaType("send the speech request as JSON "
                                   "(Content-Type: application/json)")


def _early_error(err: VoxproofError) -> dict[str, Any]:
    """An error answered before the resolver runs (same shape and accounting as the rest)."""
    _count_error(err)
    return http.proxy_response(err.status, http.error_body(err), {"Content-Type": JSON_TYPE})


# --- routes ------------------------------------------------------------------------------------
# (Routes carry no return annotation: Powertools would read it as a response model; they return
# ``Response`` objects, documented through ``responses=``.)


@app.post(
    "/v1/speech",
    summary="Speak text; the audio carries a watermark naming its provenance record",
    responses={
        200: {"description": "The marked audio (WAV, or JSON with audio_base64 or audio_url)",
              "content": {JSON_TYPE: {"model": SpeechResponse},
                          WAV_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        303: {"description": "Accept: audio/wav, audio too large to inline: Location is a "
                             "presigned URL", "content": {JSON_TYPE: {"model": SpeechResponse}}},
        **_ERRORS,
    },
)
def speech(request: Annotated[SpeechRequest, Body()]):  # type: ignore[valid-type]
    caller = _caller()
    result = api_service().speak(request.text, caller, _deadline(), voice=request.voice)
    wav = result.wav()
    metrics.add_metric(name="SpeechRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="AudioSeconds", unit=MetricUnit.Seconds,
                       value=round(result.duration_s, 3))
    logger.info("speech recorded", extra={
        "record_id": result.record.record_id_hex, "key_id": result.record.key_id,
        "duration_s": round(result.duration_s, 3), "text_chars": len(request.text),
        "wav_bytes": len(wav), "caller": caller.identity,
    })
    return _deliver(result, wav, http.wants_wav(app.current_event.headers.get("accept")))


def _deliver(result: SpeechResult, wav: bytes, as_wav: bool) -> Response:
    record = result.record
    headers = {
        "X-Voxproof-Record-Id": record.record_id_hex,
        "X-Voxproof-Key-Id": record.key_id,
        "X-Voxproof-Duration-S": f"{result.duration_s:.3f}",
        "X-Voxproof-Sample-Rate": str(result.sample_rate),
    }
    body: dict[str, Any] = {
        "record_id": record.record_id_hex, "key_id": record.key_id, "voice": record.voice,
        "model_manifest_sha256": record.model_manifest_sha256,
        "duration_s": round(result.duration_s, 3), "sample_rate": result.sample_rate,
        "format": "wav",
    }
    if len(wav) <= settings.inline_audio_max_bytes:
        if as_wav:
            return Response(200, WAV_TYPE, wav, headers)
        return _json(200, {**body, "audio_base64": base64.b64encode(wav).decode()}, headers)
    output = _output_bucket()
    with trace_step("upload"):
        url = output.put_speech(record.record_id_hex, wav)
    body.update(audio_url=url, audio_url_expires_s=output.url_ttl_s)
    if as_wav:
        return _json(303, body, {**headers, "Location": url})
    return _json(200, body, headers)


@app.post(
    "/v1/verify",
    summary="Look for the watermark and report the provenance record it names",
    responses={200: {"description": "The verify report",
                     "content": {JSON_TYPE: {"model": VerifyResponse}}}, **_ERRORS},
)
def verify():
    deadline = _deadline()
    upload, declared = _verify_upload()
    report = api_service().verify(upload, _caller(), declared=declared,
                                  limits=_verify_limits(deadline))
    metrics.add_metric(name="VerifyRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="VerifyFound", unit=MetricUnit.Count, value=int(report.found))
    logger.info("verify answered", extra={
        "verdict": report.verdict, "record_id": report.to_dict()["record_id"],
        "upload_bytes": len(upload), "duration_s": round(report.duration_s, 3),
    })
    return _json(200, report.to_dict())


def _verify_upload() -> tuple[bytes, str | None]:
    """The audio to verify and its declared type (from the body, base64 JSON or S3)."""
    event = app.current_event
    media = http.media_type(event.headers.get("content-type"))
    if media.startswith("audio/") or media in ("application/octet-stream",
                                               "binary/octet-stream"):
        return http.body_bytes(event.raw_event), media
    if media != JSON_TYPE:
        raise UnsupportedMediaType(
            "send the audio as the body (Content-Type: audio/...) or JSON (application/json) "
            "with audio_base64 or s3_key")
    request = _parse_json(VerifyJsonRequest, event.body)
    if request.s3_key is None:
        return request.audio_bytes(), None
    with trace_step("fetch"):
        return _input_bucket().fetch(request.s3_key, max_bytes=DEFAULT_LIMITS.max_bytes), None


def _verify_limits(deadline: Deadline) -> AudioLimits:
    """Audio bounds that fit the time left: duration by the detection cost, decode time by a
    quarter of it."""
    remaining = deadline.remaining()
    if remaining < 1.0:
        raise DeadlineTooShort(f"{remaining:.2f} s are left: too little to verify anything",
                               remaining_s=round(remaining, 2))
    return replace(DEFAULT_LIMITS,
                   max_duration_s=min(DEFAULT_LIMITS.max_duration_s,
                                      remaining / DETECT_S_PER_AUDIO_S),
                   max_decode_s=min(DEFAULT_LIMITS.max_decode_s, remaining / 4))


@app.get(
    "/v1/health",
    summary="Version, voice, model layer digest and key ids in force (no secrets)",
    responses={200: {"description": "Healthy", "content": {JSON_TYPE: {"model": HealthResponse}}},
               503: {"description": "Degraded", "content": {JSON_TYPE: {"model": HealthResponse}}}},
)
def health():
    service = api_service()
    checks: dict[str, str] = {}
    loaded = service.loaded_voice
    voice = loaded.name if loaded is not None else _layer_voice(checks)
    checks.setdefault("layer", "ok" if voice is not None else "invalid")
    try:
        key_ids: list[str] | None = [key.key_id for key in service.keys.keyring().accepted]
        checks["keys"] = "ok"
    except VoxproofError as err:
        key_ids, checks["keys"] = None, err.code
    healthy = all(value == "ok" for value in checks.values())
    return _json(200 if healthy else 503, {
        "status": "ok" if healthy else "degraded", "version": __version__, "voice": voice,
        "model_manifest_sha256": settings.model_manifest_sha256,
        "voice_loaded": loaded is not None, "key_ids": key_ids, "checks": checks,
    })


def _layer_voice(checks: dict[str, str]) -> str | None:
    """The voice's name from the layer's manifest, if it is the pinned one (the voice is not
    loaded in this container: the verify function never loads it)."""
    from voxproof.voice.manifest import read_manifest

    try:
        manifest = read_manifest(settings.model_dir / "manifest.json")
    except (LayerError, OSError):
        checks["layer"] = "layer_not_found"
        return None
    if manifest.sha256() != settings.model_manifest_sha256:
        checks["layer"] = "manifest_digest_mismatch"
        return None
    return manifest.model.name


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi():
    return Response(200, JSON_TYPE, json.dumps(openapi_document()))


@cache
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document (verify's two body forms added by hand: its route reads
    the body itself, since a binary upload is not a model)."""
    doc = json.loads(app.get_openapi_json_schema(
        title="voxproof", version=__version__,
        description="Text-to-speech that watermarks everything it says, and verifies marks.",
    ))
    schema = VerifyJsonRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"]["VerifyJsonRequest"] = schema
    doc["paths"]["/v1/verify"]["post"]["requestBody"] = {
        "required": True,
        "content": {
            JSON_TYPE: {"schema": {"$ref": "#/components/schemas/VerifyJsonRequest"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return doc


# --- errors ------------------------------------------------------------------------------------


@app.exception_handler(VoxproofError)
def _voxproof_error(err: VoxproofError) -> Response:
    return _error(err)


@app.exception_handler(RequestValidationError)
def _invalid_request(err: RequestValidationError) -> Response:
    return _error(_from_validation_errors(err.errors()))


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(_err: RequestUnsupportedContentType) -> Response:
    return _error(UnsupportedMediaType("send JSON (Content-Type: application/json)"))


@app.not_found
def _no_route(_err: NotFoundError) -> Response:
    event = app.current_event
    allowed = ROUTES.get(event.path)
    if allowed:
        return _error(MethodNotAllowed(f"{event.path} answers {', '.join(allowed)} only",
                                       allow=list(allowed)), {"Allow": ", ".join(allowed)})
    return _error(NotFound("no such route; see GET /v1/openapi.json"))


@app.exception_handler(Exception)
def _unexpected(_err: Exception) -> Response:
    request_id = app.current_event.request_context.request_id
    logger.exception("unexpected error", extra={"api_request_id": request_id})
    return _error(VoxproofError(f"internal error; quote request id {request_id} when reporting it"))


def _error(err: VoxproofError, headers: dict[str, str] | None = None) -> Response:
    _count_error(err)
    return Response(err.status, JSON_TYPE, http.error_body(err), headers)


def _count_error(err: VoxproofError) -> None:
    logger.info("request refused", extra={"code": err.code, "status": err.status})
    metrics.add_metric(name="ApiErrors", unit=MetricUnit.Count, value=1)


def _from_validation_errors(errors: list[dict[str, Any]] | Any) -> RequestError:
    """One short, safe sentence for pydantic's errors (never the input, never a URL)."""
    errors = list(errors)
    if not errors:
        return RequestInvalid("the request is invalid")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return MalformedRequest("the body is not valid JSON")
    field = ".".join(str(part)[:40] for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg") or first.get("type") or "invalid").removeprefix("Value error, ")
    where = f"{field}: " if field else ""
    return RequestInvalid(f"{where}{message[:200]}", field=field or None, errors=len(errors))


def _parse_json(model: type[VerifyJsonRequest], body: str | None) -> VerifyJsonRequest:
    try:
        data = json.loads(body or "")
    except ValueError:
        raise MalformedRequest("the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _from_validation_errors(err.errors()) from None


# --- helpers -----------------------------------------------------------------------------------


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, JSON_TYPE, json.dumps(body), headers)


def _caller() -> Caller:
    context = app.current_event.raw_event.get("requestContext") or {}
    entry_point = "serve" if context.get("apiId") == LOCAL_API_ID else "api"
    return Caller(http.caller_identity(context), entry_point, request_id=context.get("requestId"))


def _deadline() -> Deadline:
    found = app.context.get("deadline")
    if isinstance(found, Deadline):
        return found
    return Deadline.from_lambda_context(app.lambda_context, settings.deadline_margin_s)


@cache
def _output_bucket() -> OutputBucket:
    if not settings.output_bucket:
        raise Unavailable("this audio is too large to return inline and no output bucket is "
                          "configured")
    return OutputBucket(settings.output_bucket, _s3(), url_ttl_s=settings.presigned_url_ttl_s)


@cache
def _input_bucket() -> InputBucket:
    if not settings.input_bucket:
        raise RequestError("this deployment has no input bucket: send the audio in the body")
    return InputBucket(settings.input_bucket, _s3())


@cache
def _s3() -> Any:
    from botocore.config import Config

    return boto3_session().client("s3", config=Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10))


if settings.preload_voice:  # the speech function: load the model during init, not on a request
    api_service()
