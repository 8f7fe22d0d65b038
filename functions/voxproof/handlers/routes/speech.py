"""``POST /v1/speech``: text in (JSON), marked and signed audio out, as audio or JSON.

The format is the body's ``format`` (wav, mp3, m4a, flac), else the audio type ``Accept``
prefers, else WAV; every file carries a signed C2PA manifest naming its record. With an
``Accept`` that prefers an audio type (``audio/wav``, ``audio/mpeg``, ``audio/mp4``,
``audio/flac``) the answer is the file itself (``X-Voxproof-*`` headers name the record);
otherwise JSON ``{record_id, key_id, voice, model_manifest_sha256, duration_s, sample_rate,
format, manifest_bytes, audio_base64}``. A file larger than ``inline_audio_max_bytes`` is stored
under ``speech/`` in the output bucket and answered with ``audio_url`` (presigned GET) instead;
a caller that asked for audio then gets ``303 See Other`` to that URL with the same JSON. A
``format`` that contradicts the audio type ``Accept`` asks for is a 406.
"""

# No ``from __future__ import annotations`` here: Powertools reads the speech route's request
# model from its signature, and that model is local to ``router``.
import base64
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit

from voxproof.credentials.manifest import MIME_TYPES
from voxproof.errors import NotAcceptable, Unavailable
from voxproof.handlers import http
from voxproof.handlers.api_models import SpeechResponse, speech_request_model
from voxproof.handlers.common import logger, metrics, trace_step
from voxproof.handlers.routes.base import (
    ERRORS,
    JSON_TYPE,
    WAV_TYPE,
    caller,
    deadline,
    json_response,
    runtime,
)
from voxproof.handlers.storage import OutputBucket
from voxproof.runtime import Runtime
from voxproof.service import SpeechResult

# (Routes carry no return annotation: Powertools would read it as a response model; they return
# ``Response`` objects, documented through ``responses=``.)


def router(max_chars: int) -> Router:
    """The speech route, for text of at most ``max_chars`` characters (its request model and
    the OpenAPI document say so)."""
    routes = Router()
    SpeechRequest = speech_request_model(max_chars)

    @routes.post(
        "/v1/speech",
        summary="Speak text; the audio carries a watermark naming its provenance record",
        responses={
            200: {"description": "The marked, signed audio (the file, or JSON with "
                                 "audio_base64 or audio_url)",
                  "content": {JSON_TYPE: {"model": SpeechResponse},
                              **{mime: {"schema": {"type": "string", "format": "binary"}}
                                 for mime in dict.fromkeys((WAV_TYPE, *MIME_TYPES.values()))}}},
            303: {"description": "Accept: audio, audio too large to inline: Location is a "
                                 "presigned URL",
                  "content": {JSON_TYPE: {"model": SpeechResponse}}},
            **ERRORS,
        },
    )
    def speech(request: Annotated[SpeechRequest, Body()]):  # type: ignore[valid-type]
        who = caller(routes)
        wanted = http.wanted_audio(routes.current_event.headers.get("accept"))
        fmt = _format(request, wanted)
        result = runtime(routes).service.speak(request.text, who, deadline(routes),
                                               voice=request.voice, fmt=fmt)
        wav = result.audio
        metrics.add_metric(name="SpeechRequests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="AudioSeconds", unit=MetricUnit.Seconds,
                           value=round(result.duration_s, 3))
        logger.info("speech recorded", extra={
            "record_id": result.record.record_id_hex, "key_id": result.record.key_id,
            "duration_s": round(result.duration_s, 3), "text_chars": len(request.text),
            "wav_bytes": len(wav), "format": fmt, "caller": who.identity,
            "manifest_bytes": len(result.manifest_store or b""),
        })
        return _deliver(runtime(routes), result, wav, wanted is not None)

    return routes


def _format(request: Any, wanted: str | None) -> str:
    """The body's ``format`` if given, else the audio type ``Accept`` prefers, else WAV."""
    if "format" not in request.model_fields_set:
        return wanted or "wav"
    if wanted is not None and wanted != request.format:
        raise NotAcceptable(f"format '{request.format}' contradicts the Accept header, which "
                            f"asks for {wanted}: drop one of them",
                            format=request.format, accept=wanted)
    return request.format


def _deliver(rt: Runtime, result: SpeechResult, wav: bytes, as_wav: bool) -> Response:
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
        "format": result.format,
    }
    if result.manifest_store is not None:
        body["manifest_bytes"] = len(result.manifest_store)
    if len(wav) <= rt.settings.inline_audio_max_bytes:
        if as_wav:
            return Response(200, result.media_type, wav, headers)
        return json_response(200, {**body, "audio_base64": base64.b64encode(wav).decode()},
                             headers)
    output = _output_bucket(rt)
    with trace_step("upload"):
        url = output.put_speech(record.record_id_hex, wav, result.format, result.media_type)
    body.update(audio_url=url, audio_url_expires_s=output.url_ttl_s)
    if as_wav:
        return json_response(303, body, {**headers, "Location": url})
    return json_response(200, body, headers)


def _output_bucket(rt: Runtime) -> OutputBucket:
    if not rt.settings.output_bucket:
        raise Unavailable("this audio is too large to return inline and no output bucket is "
                          "configured")
    return OutputBucket(rt.settings.output_bucket, rt.aws("s3"),
                        url_ttl_s=rt.settings.presigned_url_ttl_s, owner=rt.settings.bucket_owner)
