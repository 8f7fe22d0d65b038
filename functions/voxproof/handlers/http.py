"""HTTP details of API Gateway REST (v1 proxy) events, for the API adapter and ``voxproof serve``.

- who calls (``caller_identity``): the API key's *id*, else the IAM principal, else the source
  address's network (IPv4 /24, IPv6 /48: enough to tell callers apart, not a person's address);
  never the API key itself;
- what they accept (``wants_wav``, ``wanted_audio``: werkzeug's ``Accept`` negotiation) and
  send (``media_type``, ``body_bytes``);
- how big a body may be before anything parses it (``body_size``);
- proxy responses built outside the resolver (``proxy_response``), in the same shape as
  Powertools' own (``multiValueHeaders``).

Example:
    >>> wants_wav("audio/wav"), wants_wav("application/json, audio/*;q=0.5"), wants_wav(None)
    (True, False, False)
    >>> wanted_audio("audio/mpeg"), wanted_audio("audio/flac;q=0.9, application/json;q=0.5")
    ('mp3', 'flac')
    >>> wanted_audio("*/*"), wanted_audio(None)
    (None, None)
    >>> caller_identity({"identity": {"sourceIp": "203.0.113.77"}})
    'ip:203.0.113.0/24'
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Final

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from voxproof.errors import MalformedRequest, VoxproofError

WAV_TYPES: Final = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
#: The audio types speech answers with, and the format each names.
AUDIO_FORMATS: Final[dict[str, str]] = {
    **{t: "wav" for t in sorted(WAV_TYPES)},
    "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/mp4": "m4a", "audio/m4a": "m4a", "audio/x-m4a": "m4a", "audio/aac": "m4a",
    "audio/flac": "flac", "audio/x-flac": "flac",
}
#: What speech answers with, JSON first: it wins ties (``*/*``, equal q-values).
_SPEECH_TYPES: Final = ("application/json", *sorted(WAV_TYPES))
_SPEECH_ANY_TYPES: Final = ("application/json", *AUDIO_FORMATS)
_IDENTITY_MAX: Final = 200


def caller_identity(request_context: Mapping[str, Any]) -> str:
    """Who is calling, from the event's ``requestContext`` (never a secret)."""
    identity = request_context.get("identity") or {}
    if identity.get("apiKeyId"):
        who = f"apikey:{identity['apiKeyId']}"
    elif identity.get("userArn"):
        who = f"iam:{identity['userArn']}"
    elif identity.get("sourceIp"):
        who = f"ip:{_network(str(identity['sourceIp']))}"
    else:
        who = "anonymous"
    return who[:_IDENTITY_MAX]


def _network(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def header(event: Mapping[str, Any], name: str) -> str | None:
    """One request header of a raw event, by case-insensitive name."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            return value
    return None


def media_type(content_type: str | None) -> str:
    """``Content-Type`` without parameters, lower case (``""`` when absent)."""
    return parse_options_header(content_type)[0].lower()


def wants_wav(accept: str | None) -> bool:
    """True when ``Accept`` prefers WAV audio to JSON (by q-value; ties go to JSON)."""
    offered = parse_accept_header(accept, MIMEAccept)
    return offered.best_match(_SPEECH_TYPES) in WAV_TYPES


def wanted_audio(accept: str | None) -> str | None:
    """The audio format ``Accept`` prefers to JSON (wav, mp3, m4a, flac), or None for JSON."""
    offered = parse_accept_header(accept, MIMEAccept)
    return AUDIO_FORMATS.get(offered.best_match(_SPEECH_ANY_TYPES) or "")


def body_size(event: Mapping[str, Any]) -> int:
    """The body's size in bytes as sent (base64 bodies counted decoded), without decoding it."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body)


def body_bytes(event: Mapping[str, Any]) -> bytes:
    """The body as bytes: base64-decoded when API Gateway encoded it (binary media types)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest("the body is marked base64 but does not decode") from None
    return body.encode("utf-8", "replace")


def error_body(err: VoxproofError) -> str:
    """``{"error": {"code", "message", "details"?}}`` as JSON."""
    return json.dumps({"error": err.to_dict()})


def proxy_response(status: int, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """A REST proxy response (text body), shaped like the resolver's."""
    return {
        "statusCode": status,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "body": body,
        "isBase64Encoded": False,
    }
