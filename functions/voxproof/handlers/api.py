"""PLACEHOLDER for the speech handler (issue 4 replaces this whole file).

It exists so the image's ``CMD`` (``voxproof.handlers.api.handler``) resolves while the image
pipeline is built (issue 5). It answers ``GET /v1/health`` with ``"placeholder": true`` (the image
smoke test reads that flag to skip the speech/verify round trip) and everything else with 501.
"""

from __future__ import annotations

import json
from typing import Any

from voxproof import __version__


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST) proxy event in, proxy response out."""
    if event.get("httpMethod") == "GET" and event.get("path") == "/v1/health":
        return _json(200, {"status": "ok", "version": __version__, "placeholder": True})
    return _json(
        501, {"error": {"code": "not_implemented", "message": "placeholder handler (issue 4)"}}
    )


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
