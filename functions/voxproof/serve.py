"""``voxproof serve``: the Lambda API handler behind a local HTTP server, so curl works on a laptop.

A small WSGI app turns each HTTP request into the API Gateway REST (v1 proxy) event that ``sam
local start-api`` would make (``headers`` and ``multiValueHeaders``, query parameters, a
``requestContext`` with a request id, the stage, the caller's address; bodies of template.yaml's
``BinaryMediaTypes`` base64-encoded), calls the handler with a context whose deadline is API
Gateway's 29 s, and turns its proxy response back into HTTP. werkzeug's server runs it (the
``[serve]`` extra).

Guarantees: like one Lambda container, the handler takes one request at a time, and a request's
29 s start when the handler takes it; bodies are read before that, so a slow client holds only
its own thread (and is dropped after ``SOCKET_TIMEOUT_S`` of silence). A body over API Gateway's
10 MB, or chunked, is refused before it is read (``Expect: 100-continue`` is answered only when
the body is wanted). Refusals and failures carry the handler's JSON error shape. The voice is
loaded before the server listens; without AWS settings the local parts answer (SQLite and the key
file in ``VOXPROOF_STATE_DIR``), and records say ``entry_point: serve``.

Exposure: a request whose ``Host`` is not the address the server listens on (by IP, or
``localhost`` on a loopback or wildcard bind) is refused with a JSON 403 ``host_not_allowed``
before its body is read, so a web page cannot reach the server through a DNS name it rebinds to
127.0.0.1. Listening on anything but loopback logs a warning (the server has no authentication).
On loopback only, the local user is the auditor: ``POST /v1/verify/detailed`` answers, as
``voxproof verify --json`` does; elsewhere it is refused.

Example:
    voxproof serve --port 8080 &
    curl -s localhost:8080/v1/health
    curl -s -H 'Content-Type: application/json' -H 'Accept: audio/wav' -d '{"text": "Hello."}' \
         localhost:8080/v1/speech -o hello.wav
    curl -s -H 'Content-Type: audio/wav' --data-binary @hello.wav localhost:8080/v1/verify
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.serving import make_server as _werkzeug_server
from werkzeug.wrappers import Request, Response

from voxproof.errors import (
    Forbidden,
    LengthRequired,
    RequestError,
    RequestTooLarge,
    VoxproofError,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

MAX_BODY_BYTES: Final = 10 * 1024 * 1024
"""API Gateway's payload limit."""
DEADLINE_S: Final = 29.0
"""API Gateway's REST integration timeout: every request's time budget."""
BINARY_MEDIA_TYPES: Final = ("audio/", "application/octet-stream")
"""template.yaml's BinaryMediaTypes (``audio/*``, ``application/octet-stream``) as prefixes."""
STAGE: Final = "local"
API_ID: Final = "local"
"""The ``requestContext.apiId`` of every event (the handler's ``LOCAL_API_ID``)."""
LOCAL_AUDITOR: Final = "voxproofLocalAuditor"
"""The ``requestContext.authorizer`` flag set when the server listens on loopback only (the
handler's ``routes.base.LOCAL_AUDITOR``): the local user may have the detailed verify answer."""
SOCKET_TIMEOUT_S: Final = 30.0
"""A client that sends nothing for this long is dropped (no slow-loris hold on a thread)."""

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
"""A Lambda handler for API Gateway REST proxy events."""


@dataclass
class LocalContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    aws_request_id: str
    deadline_s: float = DEADLINE_S
    function_name: str = "voxproof-serve"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:voxproof-serve"
    memory_limit_in_mb: int = 0
    log_group_name: str = "local"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic, repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._started + self.deadline_s - time.monotonic()) * 1000))


# --- events and proxy responses (pure) -----------------------------------------------------


class HostNotAllowed(Forbidden):
    """The request names another host than the one this server listens on (DNS rebinding)."""

    code = "host_not_allowed"


def to_event(method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes, *,
             client_ip: str, request_id: str, local_auditor: bool = False) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request (``target``: path and query);
    ``local_auditor`` (the server listens on loopback only) lets the local user audit."""
    url = urlsplit(target)
    path = url.path or "/"
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    query = parse_qsl(url.query, keep_blank_values=True)
    content_type = next((v for k, v in single.items() if k.lower() == "content-type"), "")
    binary = content_type.lower().startswith(BINARY_MEDIA_TYPES)
    user_agent = next((v for k, v in single.items() if k.lower() == "user-agent"), None)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": dict(query) or None,
        "multiValueQueryStringParameters": _multi(query) or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "000000000000",
            "apiId": API_ID,
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": client_ip, "userAgent": user_agent, "apiKeyId": None,
                         "userArn": None},
            **({"authorizer": {LOCAL_AUDITOR: True}} if local_auditor else {}),
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"))
        if body else None,
        "isBase64Encoded": bool(body) and binary,
    }


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def from_response(response: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a REST proxy response."""
    headers: dict[str, list[str]] = {k: [str(v)] for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = [str(v) for v in values]
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
    return int(response["statusCode"]), [(k, v) for k, vs in headers.items() for v in vs], body


# --- the WSGI app ------------------------------------------------------------------------------


class _ApiRequest(Request):
    max_content_length = MAX_BODY_BYTES  # werkzeug refuses a larger Content-Length unread


class _ProxyResponse(Response):
    default_mimetype = None  # the handler's headers say what the body is


@dataclass(frozen=True)
class Binding:
    """Where the server listens, and so which ``Host`` headers name it."""

    host: str
    """The address given to listen on (an IP, a wildcard such as 0.0.0.0, or a name)."""
    port: int
    """The port it listens on (the real one when 0 was asked)."""

    @property
    def loopback(self) -> bool:
        """Only this machine can connect."""
        ip = _ip(self.host)
        return self.host.lower() == "localhost" or (ip is not None and ip.is_loopback)

    @property
    def wildcard(self) -> bool:
        ip = _ip(self.host)
        return self.host == "" or (ip is not None and ip.is_unspecified)

    def allows(self, host_header: str | None) -> bool:
        """True when ``host_header`` names this server: its port, and its address (any IP
        literal on a wildcard bind; ``localhost`` on loopback and wildcard binds; loopback IPs
        when bound to ``localhost``). Names that DNS could point anywhere never pass."""
        name, port = _split_host(host_header or "")
        if name is None or port != self.port:
            return False
        bound, ip = self.host.lower().strip("[]"), _ip(name)
        if name == bound or (name == "localhost" and (self.loopback or self.wildcard)):
            return True
        if ip is not None and self.wildcard:
            return True
        return ip is not None and ip.is_loopback and bound == "localhost"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _split_host(value: str) -> tuple[str | None, int]:
    """``Host`` as (lower-case name without brackets, port; 80 when absent)."""
    value = value.strip().lower()
    if not value:
        return None, 0
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    elif ":" in value:
        return None, 0  # a bare IPv6 literal without brackets is not a valid Host
    else:
        name, port_text = value, ""
    if not port_text:
        return name, 80
    return (name, int(port_text)) if port_text.isascii() and port_text.isdigit() else (None, 0)


class ApiApp:
    """WSGI app: HTTP in, API Gateway events to ``handler``, one at a time; HTTP out.

    With a ``binding`` (``make_server`` sets it), requests whose ``Host`` does not name it are
    refused before their body is read, and on loopback the local user may audit."""

    def __init__(self, handler: Handler, binding: Binding | None = None) -> None:
        self.handler = handler
        self.binding = binding
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        request = _ApiRequest(environ)
        request_id = str(uuid.uuid4())
        try:
            self._check_host(request.headers.get("Host"))
            body = _read_body(request)
        except VoxproofError as err:
            response = _error(err)
        else:
            response = self._invoke(request, body, request_id)
        response.headers["X-Amzn-RequestId"] = request_id  # as API Gateway names it
        log.info("%s %s %s %d %.3f s", request.remote_addr, request.method, request.path,
                 response.status_code, time.monotonic() - started)
        return response(environ, start_response)

    def _check_host(self, host: str | None) -> None:
        if self.binding is not None and not self.binding.allows(host):
            raise HostNotAllowed(
                f"this server answers requests for its own address only "
                f"({self.binding.host}:{self.binding.port}, or localhost), not the Host sent")

    def _invoke(self, request: Request, body: bytes, request_id: str) -> Response:
        event = to_event(request.method, request.environ.get("RAW_URI") or request.full_path,
                         request.headers.items(), body, client_ip=request.remote_addr or "",
                         request_id=request_id,
                         local_auditor=self.binding is not None and self.binding.loopback)
        try:
            with self._lock:  # one event at a time, as in one Lambda container
                proxy = self.handler(event, LocalContext(aws_request_id=request_id))
            status, headers, payload = from_response(proxy)
        except Exception:
            log.exception("request %s: the handler failed", request_id)
            return _error(VoxproofError(
                f"internal error; quote request id {request_id} when reporting it"))
        kept = [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]
        return _ProxyResponse(payload, status, kept)


def _read_body(request: _ApiRequest) -> bytes:
    """The whole body; refuses chunked, malformed or oversized ones before reading a byte."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raise LengthRequired("send a Content-Length (chunked bodies are not read)")
    declared = request.headers.get("Content-Length", "0").strip(" \t")
    if not (declared.isascii() and declared.isdigit()):
        raise RequestError("Content-Length is negative" if declared.startswith("-")
                           else "Content-Length is not a number")
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise RequestTooLarge(f"the body is {declared} bytes; the limit is {MAX_BODY_BYTES}",
                              limit_bytes=MAX_BODY_BYTES) from None
    except ClientDisconnected:
        raise RequestError("the body ended before its Content-Length") from None


def _error(err: VoxproofError) -> Response:
    return _ProxyResponse(json.dumps({"error": err.to_dict()}), err.status,
                          [("Content-Type", "application/json")])


# --- the server --------------------------------------------------------------------------------


class _ContinueOnRead:
    """``wsgi.input`` that sends ``100 Continue`` when the app first reads it (PEP 3333)."""

    def __init__(self, rfile: IO[bytes], wfile: IO[bytes]) -> None:
        self._rfile, self._wfile, self._sent = rfile, wfile, False

    def _continue(self) -> None:
        if not self._sent:
            self._sent = True
            self._wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read(self, size: int = -1) -> bytes:
        self._continue()
        return self._rfile.read(size)

    def readinto(self, buffer: bytearray) -> int | None:
        self._continue()
        return self._rfile.readinto(buffer)  # type: ignore[attr-defined]

    def readline(self, size: int = -1) -> bytes:
        self._continue()
        return self._rfile.readline(size)


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler with a socket timeout, a lazy ``100 Continue`` (werkzeug sends it
    before the app runs, so a refused body would be sent anyway) and the app's log line only."""

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    _continue_on_read = False

    def handle_expect_100(self) -> bool:
        del self.headers["Expect"]  # werkzeug would answer it before the app runs
        self._continue_on_read = True
        return True

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        if self._continue_on_read:
            environ["wsgi.input"] = _ContinueOnRead(environ["wsgi.input"], self.wfile)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return  # ApiApp logs one line per request


def make_app(handler: Handler, binding: Binding | None = None) -> ApiApp:
    """The WSGI app that serves ``handler`` (any WSGI server can run it; give the ``binding``
    it listens on to have ``Host`` checked)."""
    return ApiApp(handler, binding)


def make_server(host: str, port: int, handler: Handler) -> BaseWSGIServer:
    """werkzeug's threaded server for ``handler`` on ``host:port`` (0 picks a free port),
    answering only requests whose ``Host`` names it; warns when it is not loopback only."""
    app = make_app(handler)
    server = _werkzeug_server(host, port, app, threaded=True, request_handler=_RequestHandler)
    app.binding = Binding(host, server.server_address[1])
    if not app.binding.loopback:
        log.warning("voxproof serve listens on %s, not loopback: anyone who can reach this "
                    "address can speak and verify with this machine's key and records (the "
                    "server has no authentication); use --host 127.0.0.1 unless that is meant",
                    host or "every address")
    return server


def server_url(server: BaseWSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def api_handler() -> Handler:
    """The API's Lambda handler, its voice loaded (a server loads it before it listens).

    The one place this module reaches into ``voxproof.handlers``."""
    from voxproof.handlers.api import RUNTIME, handler

    RUNTIME.service.load()
    return handler


def run(host: str, port: int, handler: Handler | None = None, *,
        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``handler`` (default: the API's, voice loaded first) until interrupted;
    ``on_ready`` hears where, once the server listens."""
    started = time.monotonic()
    note = ""
    if handler is None:
        handler = api_handler()
        note = f" (voice loaded in {time.monotonic() - started:.1f} s)"
    server = make_server(host, port, handler)
    if on_ready is not None:
        on_ready(server_url(server) + note)
    server.serve_forever()  # werkzeug's: returns on Ctrl-C and closes the socket
