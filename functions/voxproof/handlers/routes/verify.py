"""``POST /v1/verify``: audio in, the public verify answer out; ``POST /v1/verify/detailed``:
the same audio in, the full report out, for auditors only.

The public answer is a verdict (found, record id, when, voice and model, AI-generated, a coarse
confidence) and never the fine scores, segments or the record's caller, so the endpoint is no
oracle for stripping the mark step by step. The detailed answer is for IAM principals API
Gateway authenticated (SigV4) and ``auditor_principals`` names (``routes.base.auditor``).

The audio comes as the body (``Content-Type: audio/*`` or ``application/octet-stream``; API
Gateway base64-encodes binary media types), or as JSON ``{"audio_base64"}`` or ``{"s3_key"}``
(under ``verify/`` in the input bucket only). The audio accepted is bounded by the time left:
detection runs at up to ``DETECT_S_PER_AUDIO_S`` per second of audio for the first key and
``EXTRA_KEY_COST`` of that for each further key in the history.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics import MetricUnit

from voxproof.audio import DEFAULT_LIMITS, AudioLimits
from voxproof.deadline import Deadline
from voxproof.errors import (
    DeadlineTooShort,
    RequestError,
    UnsupportedMediaType,
)
from voxproof.handlers import http
from voxproof.handlers.api_models import (
    VerifyJsonRequest,
    VerifyPublicResponse,
    VerifyResponse,
)
from voxproof.handlers.common import logger, metrics, trace_step
from voxproof.handlers.routes.base import (
    ERRORS,
    JSON_TYPE,
    auditor,
    caller,
    deadline,
    json_response,
    parse_json_body,
    runtime,
)
from voxproof.handlers.storage import InputBucket
from voxproof.runtime import Runtime
from voxproof.service import VerifyReport

#: Seconds of detection per second of audio, upper bound: measured 0.13 on two shared cores for
#: unmarked audio (every sync attempt runs); used to bound the audio verify accepts in the time left.
DETECT_S_PER_AUDIO_S: Final = 0.2
#: Each further key in force (the key history) adds this fraction of the first key's search:
#: measured 0.44 (20 s of unmarked speech-like audio, 1, 2 and 4 keys, 2026-12-03).
EXTRA_KEY_COST: Final = 0.5
_BINARY_TYPES: Final = ("application/octet-stream", "binary/octet-stream")
PUBLIC_PATH: Final = "/v1/verify"
DETAILED_PATH: Final = "/v1/verify/detailed"


def router() -> Router:
    """The verify routes: the public answer, and the detailed one for auditors."""
    routes = Router()

    @routes.post(
        PUBLIC_PATH,
        summary="Look for the watermark: a verdict (found, record, when, voice and model, "
                "AI-generated, coarse confidence); no scores",
        responses={200: {"description": "The public verify answer",
                         "content": {JSON_TYPE: {"model": VerifyPublicResponse}}}, **ERRORS},
    )
    def verify():
        return json_response(200, _verify(routes).public_dict())

    @routes.post(
        DETAILED_PATH,
        summary="Auditors only (IAM): the verify report with scores, segments and the record's "
                "caller",
        responses={200: {"description": "The detailed verify report",
                         "content": {JSON_TYPE: {"model": VerifyResponse}}}, **ERRORS},
    )
    def verify_detailed():
        who = auditor(routes, runtime(routes).settings.auditor_principals)
        report = _verify(routes)
        logger.info("detailed verify answered", extra={"auditor": who})
        return json_response(200, report.detailed_dict())

    return routes


def _verify(routes: Router) -> VerifyReport:
    rt = runtime(routes)
    upload, declared = _verify_upload(routes, rt)
    keys = len(rt.service.keys.keyring().accepted)  # cached by the key source
    report = rt.service.verify(upload, caller(routes), declared=declared,
                               limits=_verify_limits(deadline(routes), keys))
    metrics.add_metric(name="VerifyRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="VerifyFound", unit=MetricUnit.Count, value=int(report.found))
    logger.info("verify answered", extra={
        "verdict": report.verdict, "record_id": report.to_dict()["record_id"],
        "presence_found": report.presence_found,
        "upload_bytes": len(upload), "duration_s": round(report.duration_s, 3),
    })
    return report


def _verify_upload(routes: Router, rt: Runtime) -> tuple[bytes, str | None]:
    """The audio to verify and its declared type (from the body, base64 JSON or S3)."""
    event = routes.current_event
    media = http.media_type(event.headers.get("content-type"))
    if media.startswith("audio/") or media in _BINARY_TYPES:
        return http.body_bytes(event.raw_event), media
    if media != JSON_TYPE:
        raise UnsupportedMediaType(
            "send the audio as the body (Content-Type: audio/...) or JSON (application/json) "
            "with audio_base64 or s3_key")
    request = parse_json_body(event.body, VerifyJsonRequest)
    if request.s3_key is None:
        return request.audio_bytes(), None
    with trace_step("fetch"):
        return _input_bucket(rt).fetch(request.s3_key, max_bytes=DEFAULT_LIMITS.max_bytes), None


def _verify_limits(left: Deadline, keys: int = 1) -> AudioLimits:
    """Audio bounds that fit the time left: duration by the detection cost under ``keys``
    keys (every key in force is searched on unmarked audio), decode time by a quarter of it."""
    remaining = left.remaining()
    if remaining < 1.0:
        raise DeadlineTooShort(f"{remaining:.2f} s are left: too little to verify anything",
                               remaining_s=round(remaining, 2))
    per_audio_s = DETECT_S_PER_AUDIO_S * (1 + EXTRA_KEY_COST * max(0, keys - 1))
    return replace(DEFAULT_LIMITS,
                   max_duration_s=min(DEFAULT_LIMITS.max_duration_s, remaining / per_audio_s),
                   max_decode_s=min(DEFAULT_LIMITS.max_decode_s, remaining / 4))


def _input_bucket(rt: Runtime) -> InputBucket:
    if not rt.settings.input_bucket:
        raise RequestError("this deployment has no input bucket: send the audio in the body")
    return InputBucket(rt.settings.input_bucket, rt.aws("s3"), owner=rt.settings.bucket_owner)
