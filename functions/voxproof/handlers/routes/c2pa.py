"""The C2PA Soft Binding Resolution API under ``/v1/c2pa/`` (``voxproof.credentials.resolve``):
``GET|POST matches/byBinding``, ``POST matches/byContent`` (the audio itself: the mark is read
as ``POST /v1/verify`` reads it, with the same limits), ``GET manifests/{manifestId}`` and
``GET services/supportedAlgorithms``. Same authentication and throttles as verify (the
template's routes); shapes as the specification's OpenAPI document gives them.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from voxproof.credentials.resolve import DEFAULT_MAX_RESULTS, InvalidBinding, Resolver
from voxproof.errors import UnsupportedMediaType
from voxproof.handlers import http
from voxproof.handlers.common import metrics
from voxproof.handlers.routes.base import (
    ERRORS,
    JSON_TYPE,
    caller,
    deadline,
    json_response,
    parse_json_body,
    runtime,
)
from voxproof.handlers.routes.verify import _verify_limits

PREFIX: Final = "/v1/c2pa"
C2PA_TYPE: Final = "application/c2pa"
_BINARY_TYPES: Final = ("application/octet-stream", "binary/octet-stream")


class SoftBindingQuery(BaseModel):
    """``c2pa.softBindingQuery``: the POST form of ``matches/byBinding``."""

    model_config = ConfigDict(extra="forbid")

    alg: str = Field(max_length=256)
    value: str = Field(max_length=4096)


class SoftBindingMatch(BaseModel):
    manifestId: str
    endpoint: str | None = None
    similarityScore: int | None = Field(default=None, ge=0, le=100)


class SoftBindingQueryResult(BaseModel):
    """``c2pa.softBindingQueryResult``."""

    matches: list[SoftBindingMatch]


class AlgName(BaseModel):
    alg: str


class SoftBindingAlgList(BaseModel):
    """``c2pa.softBindingAlgList``."""

    watermarks: list[AlgName]
    fingerprints: list[AlgName]


_RESULT: Final = {200: {"description": "Matching manifest ids",
                        "content": {JSON_TYPE: {"model": SoftBindingQueryResult}}}, **ERRORS}


def router() -> Router:
    routes = Router()

    def resolver() -> Resolver:
        return Resolver(runtime(routes).service.registry)

    @routes.get(f"{PREFIX}/services/supportedAlgorithms",
                summary="C2PA soft binding algorithms this service resolves",
                responses={200: {"description": "The algorithms",
                                 "content": {JSON_TYPE: {"model": SoftBindingAlgList}}}})
    def supported_algorithms():
        return json_response(200, Resolver.supported_algorithms())

    @routes.get(f"{PREFIX}/matches/byBinding", summary="C2PA manifest ids for a soft binding value",
                responses=_RESULT)
    def by_binding():
        alg, value = _query(routes, "alg"), _query(routes, "value")
        if not alg or not value:
            raise InvalidBinding("give alg and value (query parameters)")
        return _matches(resolver().by_binding(alg, value, _max_results(routes)))

    @routes.post(f"{PREFIX}/matches/byBinding",
                 summary="C2PA manifest ids for a soft binding value (JSON body)",
                 responses=_RESULT)
    def by_large_binding():
        query = parse_json_body(routes.current_event.body, SoftBindingQuery)
        return _matches(resolver().by_binding(query.alg, query.value, _max_results(routes)))

    @routes.post(f"{PREFIX}/matches/byContent",
                 summary="C2PA manifest ids for an audio file (its watermark is read)",
                 responses=_RESULT)
    def by_content():
        event = routes.current_event
        media = http.media_type(event.headers.get("content-type"))
        if not (media.startswith("audio/") or media in _BINARY_TYPES):
            raise UnsupportedMediaType("send the audio as the body (Content-Type: audio/...)")
        alg = _query(routes, "alg")
        if alg and alg != Resolver.supported_algorithms()["watermarks"][0]["alg"]:
            return _matches({"matches": []})
        rt = runtime(routes)
        keys = len(rt.service.keys.keyring().accepted)
        report = rt.service.verify(http.body_bytes(event.raw_event), caller(routes),
                                   declared=media, limits=_verify_limits(deadline(routes), keys))
        record_id = report.record.record_id if report.record is not None else None
        return _matches(resolver().by_record(record_id, _max_results(routes)))

    @routes.get(f"{PREFIX}/manifests/<manifest_id>",
                summary="A C2PA manifest store by manifest id (application/c2pa)",
                responses={200: {"description": "The manifest store",
                                 "content": {C2PA_TYPE: {"schema": {"type": "string",
                                                                    "format": "binary"}}}},
                           **ERRORS})
    def manifest(manifest_id: str):
        store = resolver().manifest(unquote(manifest_id))  # ':' may come as %3A
        metrics.add_metric(name="C2paManifestsServed", unit=MetricUnit.Count, value=1)
        return Response(200, C2PA_TYPE, store)

    return routes


def _query(routes: Router, name: str) -> str | None:
    return routes.current_event.get_query_string_value(name)


def _max_results(routes: Router) -> int:
    raw = _query(routes, "maxResults")
    if raw is None:
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidBinding("maxResults must be an integer >= 1") from None
    if value < 1:
        raise InvalidBinding("maxResults must be an integer >= 1")
    return value


def _matches(result: dict[str, Any]) -> Response:
    return json_response(200, SoftBindingQueryResult.model_validate(result)
                         .model_dump(exclude_none=True))
