"""A loopback implementation of the AWS Lambda Runtime API (2018-06-01), for tests and scripts.

Real Lambda runs a runtime interface client (here the real ``awslambdaric``) that long-polls
``GET /2018-06-01/runtime/invocation/next`` and posts each answer to
``/runtime/invocation/{id}/response`` or ``/runtime/invocation/{id}/error``; a failing start-up
posts ``/runtime/init/error``. ``LambdaRuntimeAPI`` plays Lambda's side of that protocol on
127.0.0.1 with a free port: queue events, get the answers back with a timeout.

Every header Lambda sends on ``next`` is sent (``Content-Type``, ``Lambda-Runtime-Aws-Request-
Id``, ``-Deadline-Ms``, ``-Invoked-Function-Arn``, ``-Trace-Id``, ``-Client-Context``,
``-Cognito-Identity``): awslambdaric 4.2.2's C client crashes when ``Content-Type`` is missing.
The deadline is fixed when the runtime picks the event up, as Lambda does.

Standard library only, so host-side scripts (the image smoke test) can use it with any Python.

Example:
    >>> with LambdaRuntimeAPI() as api:                      # doctest: +SKIP
    ...     with start_ric("app.handler", api, cwd=src):    # python -m awslambdaric app.handler
    ...         outcome = api.invoke_and_wait({"x": 1}, timeout_ms=3000, wait_s=30)
    ...     outcome.ok, outcome.json()
    (True, {'x': 1})
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Self

API_VERSION: Final = "2018-06-01"
DEFAULT_FUNCTION_ARN: Final = "arn:aws:lambda:us-east-1:123456789012:function:voxproof-test"
#: Longest body accepted from the runtime (Lambda's own cap on a synchronous response is 6 MB).
MAX_POST_BYTES: Final = 8 * 1024 * 1024
ERROR_TYPE_HEADER: Final = "Lambda-Runtime-Function-Error-Type"
XRAY_CAUSE_HEADER: Final = "Lambda-Runtime-Function-XRay-Error-Cause"
_POLL_S: Final = 0.2


class RuntimeAPITimeout(TimeoutError):
    """Nothing arrived from the runtime within the time asked for."""


@dataclass(frozen=True)
class Invocation:
    """One queued event, as the runtime will receive it."""

    request_id: str
    body: bytes
    timeout_ms: int
    trace_id: str
    function_arn: str
    client_context: str
    cognito_identity: str
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Outcome:
    """What the runtime posted back for one invocation."""

    request_id: str
    ok: bool
    """True for ``/response``, False for ``/error``."""
    body: bytes
    headers: Mapping[str, str]
    """The runtime's request headers, names in lower case."""
    error_type: str | None
    """An error post's type: its ``Lambda-Runtime-Function-Error-Type`` header or, as
    awslambdaric's C client sends no such header, the body's ``errorType``. None on success."""
    deadline_ms: int
    """The epoch-millisecond deadline sent with the event."""
    dispatched_at: float
    """``time.monotonic()`` when the runtime picked the event up."""
    completed_at: float
    """``time.monotonic()`` when the answer arrived."""

    def json(self) -> Any:
        """The posted body parsed as JSON."""
        return json.loads(self.body)


def make_trace_id() -> str:
    """An X-Ray trace header value shaped like Lambda's (Root, Parent, Sampled)."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"


def api_gateway_event(
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    raw_body: bytes | None = None,
    api_key_id: str | None = "smoke-key-id",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST (v1 proxy) event, shaped as API Gateway sends it.

    ``body`` is JSON-encoded; ``raw_body`` is sent base64-encoded with ``isBase64Encoded``, as
    API Gateway passes a binary media type. ``Content-Type`` and ``Accept`` default to JSON.
    """
    all_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    all_headers.update(headers or {})
    if raw_body is not None:
        payload: str | None = base64.b64encode(raw_body).decode()
    else:
        payload = None if body is None else json.dumps(body)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "smoke00000",
            "identity": {"sourceIp": source_ip, "apiKeyId": api_key_id, "userAgent": "test"},
        },
        "body": payload,
        "isBase64Encoded": raw_body is not None,
    }


class LambdaRuntimeAPI:
    """Lambda's side of the Runtime API on 127.0.0.1; use as a context manager.

    Parameters
    ----------
    function_arn:
        Sent as ``Lambda-Runtime-Invoked-Function-Arn`` unless an invocation names its own.
    host, port:
        Where to listen; port 0 picks a free one. ``address`` is what ``AWS_LAMBDA_RUNTIME_API``
        must be set to.
    """

    def __init__(
        self,
        *,
        function_arn: str = DEFAULT_FUNCTION_ARN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.function_arn = function_arn
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._in_flight: dict[str, tuple[Invocation, int, float]] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._init_errors: list[Outcome] = []
        self._first_poll_at: float | None = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``host:port``, the value for ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lambda-runtime-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; a runtime still polling sees its connection drop."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the test's side ------------------------------------------------------------------------
    def invoke(
        self,
        event: Any,
        *,
        timeout_ms: int = 30_000,
        request_id: str | None = None,
        trace_id: str | None = None,
        function_arn: str | None = None,
        client_context: Mapping[str, Any] | None = None,
        cognito_identity: Mapping[str, Any] | None = None,
        raw_body: bytes | None = None,
    ) -> str:
        """Queue one event (JSON-encoded unless ``raw_body`` is given); returns its request id.

        ``timeout_ms`` is the function's remaining time when the runtime picks the event up
        (sent as ``Lambda-Runtime-Deadline-Ms`` = that moment + ``timeout_ms``).
        """
        inv = Invocation(
            request_id=request_id or str(uuid.uuid4()),
            body=raw_body if raw_body is not None else json.dumps(event).encode(),
            timeout_ms=timeout_ms,
            trace_id=trace_id or make_trace_id(),
            function_arn=function_arn or self.function_arn,
            client_context=json.dumps(client_context) if client_context is not None else "",
            cognito_identity=json.dumps(cognito_identity) if cognito_identity is not None else "",
        )
        self._pending.put(inv)
        return inv.request_id

    def wait(self, request_id: str, timeout_s: float) -> Outcome:
        """The runtime's answer for ``request_id``; raises ``RuntimeAPITimeout`` after timeout_s."""
        with self._cond:
            if not self._cond.wait_for(lambda: request_id in self._outcomes, timeout=timeout_s):
                raise RuntimeAPITimeout(f"no answer for {request_id} within {timeout_s} s")
            return self._outcomes[request_id]

    def invoke_and_wait(self, event: Any, *, wait_s: float = 60.0, **invoke_args: Any) -> Outcome:
        """``invoke`` then ``wait``: one synchronous call, as ``lambda invoke`` would make."""
        return self.wait(self.invoke(event, **invoke_args), wait_s)

    def wait_ready(self, timeout_s: float) -> float:
        """Block until the runtime first polls ``next`` (its init is done); returns that moment.

        The moment is a ``time.monotonic()`` value. Raises ``RuntimeAPITimeout``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._first_poll_at is not None, timeout_s):
                raise RuntimeAPITimeout(f"the runtime did not poll within {timeout_s} s")
            assert self._first_poll_at is not None
            return self._first_poll_at

    def wait_init_error(self, timeout_s: float) -> Outcome:
        """The first ``/runtime/init/error`` post; raises ``RuntimeAPITimeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._init_errors), timeout=timeout_s):
                raise RuntimeAPITimeout(f"no init error within {timeout_s} s")
            return self._init_errors[0]

    # --- the runtime's side (called from the HTTP handler threads) -------------------------------
    def _next(self, client_gone: Callable[[], bool]) -> tuple[Invocation, int] | None:
        with self._cond:
            if self._first_poll_at is None:
                self._first_poll_at = time.monotonic()
                self._cond.notify_all()
        while True:  # long poll, as Lambda does: wait until there is an event
            try:
                inv = self._pending.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._stopping.is_set() or client_gone():
                    return None  # a dead runtime must not swallow the next event
        deadline_ms = int(time.time() * 1000) + inv.timeout_ms
        with self._cond:
            self._in_flight[inv.request_id] = (inv, deadline_ms, time.monotonic())
        return inv, deadline_ms

    def _record(self, request_id: str, ok: bool, body: bytes, headers: Mapping[str, str]) -> bool:
        with self._cond:
            entry = self._in_flight.pop(request_id, None)
            if entry is None:
                return False
            _, deadline_ms, dispatched_at = entry
            self._outcomes[request_id] = Outcome(
                request_id=request_id,
                ok=ok,
                body=body,
                headers=dict(headers),
                error_type=None if ok else _error_type(body, headers),
                deadline_ms=deadline_ms,
                dispatched_at=dispatched_at,
                completed_at=time.monotonic(),
            )
            self._cond.notify_all()
            return True

    def _record_init_error(self, body: bytes, headers: Mapping[str, str]) -> None:
        now = time.monotonic()
        with self._cond:
            self._init_errors.append(
                Outcome("", False, body, dict(headers), _error_type(body, headers), 0, now, now)
            )
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a long poll must not hold up stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a runtime that was stopped drops its keep-alive connection: expected
        super().handle_error(request, client_address)


def _error_type(body: bytes, headers: Mapping[str, str]) -> str | None:
    if ERROR_TYPE_HEADER.lower() in headers:
        return headers[ERROR_TYPE_HEADER.lower()]
    try:
        found = json.loads(body).get("errorType")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _make_handler(api: LambdaRuntimeAPI) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{API_VERSION}/runtime"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output quiet

        def do_GET(self) -> None:
            if self.path != f"{prefix}/invocation/next":
                self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound"})
                return
            picked = api._next(self._client_gone)
            if picked is None:
                self.close_connection = True
                return
            inv, deadline_ms = picked
            self._reply(
                HTTPStatus.OK,
                inv.body,
                {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                    "Lambda-Runtime-Trace-Id": inv.trace_id,
                    "Lambda-Runtime-Client-Context": inv.client_context,
                    "Lambda-Runtime-Cognito-Identity": inv.cognito_identity,
                },
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_POST_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"errorType": "TooLarge"})
                self.close_connection = True
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == f"{prefix}/init/error":
                api._record_init_error(body, headers)
                self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
                return
            parts = self.path.removeprefix(f"{prefix}/invocation/").split("/")
            if (
                not self.path.startswith(f"{prefix}/invocation/")
                or len(parts) != 2
                or parts[1] not in ("response", "error")
            ):
                self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound"})
                return
            request_id, kind = parts
            if not api._record(request_id, kind == "response", body, headers):
                self._reply(HTTPStatus.BAD_REQUEST, {"errorType": "InvalidRequestID"})
                return
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})

        def _client_gone(self) -> bool:
            """True once the runtime closed its end (it died while long-polling)."""
            sock = self.connection
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _reply(
            self, status: HTTPStatus, body: Any, headers: Mapping[str, str] | None = None
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def ric_command(handler: str, python: str = sys.executable) -> list[str]:
    """The runtime's command line: ``python -m awslambdaric <module.function>``."""
    return [python, "-m", "awslambdaric", handler]


def lambda_env(api: LambdaRuntimeAPI) -> dict[str, str]:
    """The variables Lambda sets for a runtime (``AWS_LAMBDA_RUNTIME_API`` pointing at ``api``)."""
    return {
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": api.function_arn.rsplit(":", 1)[-1],
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }


class RuntimeProcess:
    """A runtime interface client in a subprocess; its output goes to a temporary file.

    (A file, not a pipe: a chatty handler must never block on a full pipe nobody reads.)
    """

    def __init__(
        self, command: Sequence[str], *, cwd: str | os.PathLike[str] | None, env: Mapping[str, str]
    ) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.started_at = time.monotonic()
        # Its own process group, so stop() also reaches what it starts (e.g. buildah's child).
        self.proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything it printed so far (for failure messages)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self, timeout_s: float = 10.0) -> str:
        """Terminate (then kill) its process group; returns its output and closes the log."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                continue
        out = self.output()
        self._log.close()
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ric(
    handler: str,
    api: LambdaRuntimeAPI,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    command: Sequence[str] | None = None,
) -> RuntimeProcess:
    """Start the real awslambdaric against ``api``: ``python -m awslambdaric handler``.

    The child gets this process's environment plus ``lambda_env(api)`` plus ``env``.
    ``command`` replaces the default command line (e.g. to run the runtime inside an image).
    """
    full_env = {**os.environ, **lambda_env(api), **(env or {})}
    return RuntimeProcess(command or ric_command(handler, python), cwd=cwd, env=full_env)
