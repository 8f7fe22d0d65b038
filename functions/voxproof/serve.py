"""``voxproof serve``: the Lambda API handler behind a local HTTP server, so curl works on a laptop.

Each HTTP request becomes the API Gateway REST (v1 proxy) event that ``sam local start-api``
would make (``headers`` and ``multiValueHeaders``, query parameters, a ``requestContext`` with a
request id, the stage, the caller's address), bodies of template.yaml's ``BinaryMediaTypes``
(``audio/*``, ``application/octet-stream``) base64-encoded with ``isBase64Encoded``. The same
``voxproof.handlers.api.handler`` answers, with a context whose deadline is API Gateway's 29 s,
and its proxy response goes back as HTTP.

Like one Lambda container, the handler takes one request at a time (the Powertools resolver
keeps the current event in a class attribute); concurrent requests wait their turn, and each
request's 29 s start when the handler takes it, as a Lambda invocation's do. Bodies over API
Gateway's 10 MB are answered 413 before they are read. The voice is loaded before the server
listens, so the first request does not pay for it.

Without AWS settings the local parts answer: the SQLite registry and key file in the state folder
(``VOXPROOF_STATE_DIR``). Records made here say ``entry_point: serve``.

Example:
    voxproof serve --port 8080 &
    curl -s localhost:8080/v1/health
    curl -s -H 'Accept: audio/wav' -d '{"text": "Hello."}' localhost:8080/v1/speech -o hello.wav
    curl -s -H 'Content-Type: audio/wav' --data-binary @hello.wav localhost:8080/v1/verify
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from voxproof.errors import LengthRequired, RequestError, RequestTooLarge, VoxproofError

MAX_BODY_BYTES: Final = 10 * 1024 * 1024
"""API Gateway's payload limit."""
DEADLINE_S: Final = 29.0
"""API Gateway's REST integration timeout: every request's time budget."""
BINARY_MEDIA_TYPES: Final = ("audio/", "application/octet-stream")
"""template.yaml's BinaryMediaTypes (``audio/*``, ``application/octet-stream``) as prefixes."""
STAGE: Final = "local"
API_ID: Final = "local"
"""The ``requestContext.apiId`` of every event (the handler's ``LOCAL_API_ID``)."""
SOCKET_TIMEOUT_S: Final = 30.0
"""A client that sends nothing for this long is dropped (no slow-loris hold on a thread)."""
DRAIN_MAX_BYTES: Final = 4 * MAX_BODY_BYTES
"""A refused body up to this size is read and dropped, so the client sees the 413 rather than a
broken pipe; a larger one is not read at all (the connection closes). Clients that send
``Expect: 100-continue`` (curl does for large bodies) get the 413 before they send anything."""

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


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


def to_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes, *,
             client_ip: str, request_id: str) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request."""
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


class ApiServer(ThreadingHTTPServer):
    """HTTP in, API Gateway events to ``handler``, one at a time; HTTP out."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        super().__init__(address, _RequestHandler)
        self.handler = handler
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        with self.lock:  # one event at a time, as in one Lambda container
            return self.handler(event, LocalContext(aws_request_id=request_id))


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def handle_expect_100(self) -> bool:
        try:
            self._declared_length()
        except VoxproofError as err:
            self._refuse(err, str(uuid.uuid4()))
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except VoxproofError as err:
            self._drain()
            self._refuse(err, request_id)
            return
        event = to_event(self.command, self.path, list(self.headers.items()), body,
                         client_ip=self.client_address[0], request_id=request_id)
        status, headers, payload = from_response(self.server.invoke(event, request_id))
        self._send(status, headers, payload, request_id)
        log.info("%s %s %s %d %.3f s", self.client_address[0], self.command,
                 urlsplit(self.path).path, status, time.monotonic() - started)

    def _declared_length(self) -> int:
        """The body's size from ``Content-Length``; refuses chunked and oversized bodies."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise LengthRequired("send a Content-Length (chunked bodies are not read)")
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if size < 0:
            raise RequestError("Content-Length is negative")
        if size > MAX_BODY_BYTES:
            raise RequestTooLarge(f"the body is {size} bytes; the limit is {MAX_BODY_BYTES}",
                                  limit_bytes=MAX_BODY_BYTES)
        return size

    def _read_body(self) -> bytes:
        size = self._declared_length()
        return self.rfile.read(size) if size > 0 else b""

    def _drain(self) -> None:
        """Read and drop a refused body of a sane declared size (see ``DRAIN_MAX_BYTES``)."""
        try:
            left = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if self.headers.get("Transfer-Encoding") or not 0 < left <= DRAIN_MAX_BYTES:
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)

    def _refuse(self, err: VoxproofError, request_id: str) -> None:
        self.close_connection = True  # whatever was not read must not be taken for a request
        self._send(err.status, [("Content-Type", "application/json"), ("Connection", "close")],
                   json.dumps({"error": err.to_dict()}).encode(), request_id)
        log.info("%s %s %s %d (refused before the handler)", self.client_address[0],
                 self.command, urlsplit(self.path).path, err.status)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
              request_id: str) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Amzn-RequestId", request_id)  # as API Gateway names it
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request is logged by _serve


def make_server(host: str, port: int, handler: Handler | None = None) -> ApiServer:
    """The server on ``host:port`` (0 picks a free port) for ``handler`` (default: the API's)."""
    if handler is None:
        from voxproof.handlers.api import handler as api_handler

        handler = api_handler
    return ApiServer((host, port), handler)


def run(host: str, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the voice, then serve until interrupted."""
    from voxproof.handlers.api import RUNTIME

    started = time.monotonic()
    RUNTIME.service.load()
    server = make_server(host, port)
    if on_ready is not None:
        on_ready(f"{server.url} (voice loaded in {time.monotonic() - started:.1f} s)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
