"""What every route shares: the runtime and deadline from the resolver's context, the caller,
JSON answers and the documented error responses.

The handler puts ``runtime`` (``voxproof.runtime.Runtime``) and ``deadline`` into the resolver's
context before each request (``voxproof.handlers.rest.make_handler``); a route reads them
through its ``Router``, whose context is the resolver's once included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any, Final, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ValidationError

from voxproof.deadline import Deadline
from voxproof.errors import Forbidden, MalformedRequest, from_validation_errors
from voxproof.handlers import http
from voxproof.handlers.api_models import ErrorResponse
from voxproof.runtime import Runtime
from voxproof.service import Caller

#: ``requestContext.apiId`` of the events ``voxproof serve`` makes (real API ids are 10 characters).
LOCAL_API_ID: Final = "local"
#: ``requestContext.authorizer`` flag of ``voxproof serve``'s events when it listens on loopback
#: only (the server sets it from its own address; no request can).
LOCAL_AUDITOR: Final = "voxproofLocalAuditor"
WAV_TYPE: Final = "audio/wav"
JSON_TYPE: Final = "application/json"

_ERROR_CONTENT: Final = {JSON_TYPE: {"model": ErrorResponse}}
#: The error answers every route documents (``responses=`` of the OpenAPI document).
ERRORS: Final[dict[int, Any]] = {
    status: {"description": description, "content": _ERROR_CONTENT}
    for status, description in {
        400: "Malformed request", 403: "Forbidden input or caller", 404: "Not found",
        405: "Method not allowed", 406: "Not acceptable (format and Accept disagree)",
        411: "Length required (voxproof serve: a chunked body)",
        413: "Too large", 415: "Unsupported media type",
        422: "Invalid request, text or audio", 500: "Internal error",
        503: "Not available now (deadline too short, dependency down)",
        504: "Deadline exceeded",
    }.items()
}


def runtime(router: Router) -> Runtime:
    """The container's runtime, as the handler put it into the context."""
    return router.context["runtime"]


def deadline(router: Router) -> Deadline:
    """This request's deadline (Lambda's remaining time minus ``deadline_margin_s``)."""
    return router.context["deadline"]


def caller(router: Router) -> Caller:
    """Who asks (never a secret), and through which door (``serve`` for local events)."""
    context = router.current_event.raw_event.get("requestContext") or {}
    entry_point = "serve" if context.get("apiId") == LOCAL_API_ID else "api"
    return Caller(http.caller_identity(context), entry_point, request_id=context.get("requestId"))


class AuditorOnly(Forbidden):
    """The detailed verify answer is for auditors: IAM principals the deployment names."""

    code = "auditor_only"
    status = 403


def auditor(router: Router, allowed: Sequence[str]) -> str:
    """The auditor asking: the IAM principal API Gateway authenticated for this request
    (``requestContext.identity.userArn``, set only after a valid SigV4 signature on an
    ``AWS_IAM`` method; no header can set it) when it matches one of ``allowed`` (shell
    patterns). Anyone else: ``AuditorOnly``."""
    context = router.current_event.raw_event.get("requestContext") or {}
    if context.get("apiId") == LOCAL_API_ID:  # real API ids are 10 characters
        if (context.get("authorizer") or {}).get(LOCAL_AUDITOR) is True:
            return "local"  # voxproof serve on loopback: the local user, as for the CLI
        raise AuditorOnly("the detailed verify answer is served locally only on a loopback "
                          "address; POST /v1/verify gives the public answer")
    principal = (context.get("identity") or {}).get("userArn")
    if not isinstance(principal, str) or not principal:
        raise AuditorOnly("the detailed verify answer needs an IAM-signed request from an "
                          "auditor; POST /v1/verify gives the public answer")
    if not any(fnmatchcase(principal, pattern) for pattern in allowed):
        raise AuditorOnly("this principal is not an auditor of this deployment; POST "
                          "/v1/verify gives the public answer")
    return principal


def json_response(status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(status, JSON_TYPE, json.dumps(body), headers)


Model = TypeVar("Model", bound=BaseModel)


def parse_json_body(body: str | None, model: type[Model]) -> Model:
    """A JSON request body as ``model``: not JSON is 400 ``malformed_request``, a body the
    model refuses is the 4xx ``from_validation_errors`` names."""
    try:
        data = json.loads(body or "")
    except ValueError:
        raise MalformedRequest("the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise from_validation_errors(err, what="the body") from None
