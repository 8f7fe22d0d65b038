"""A stand-in for the X-Ray daemon: a UDP listener on loopback that keeps what the SDK sends.

The X-Ray SDK's emitter sends each (sub)segment as one UDP datagram: a header line
``{"format": "json", "version": 1}``, a newline, then the segment document as JSON. In Lambda
(``LAMBDA_TASK_ROOT`` set) the function's segment is a facade made from ``_X_AMZN_TRACE_ID``,
and its subsegments are streamed as separate documents with ``"type": "subsegment"``.

Example:
    >>> with XRayDaemon() as daemon:                               # doctest: +SKIP
    ...     ...  # run code with AWS_XRAY_DAEMON_ADDRESS=daemon.address
    ...     daemon.names(trace_root)
    {'## handler', 'validate', ...}
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, Self

DEFAULT_PORT: Final = 2000
HEADER: Final = {"format": "json", "version": 1}


class XRayDaemon:
    """Listens on 127.0.0.1:2000 (the daemon's port), or a free port if that one is taken."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError:  # another test run on this machine holds 2000
            self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.documents: list[dict[str, Any]] = []
        self.bad_datagrams = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xray-daemon", daemon=True)

    @property
    def address(self) -> str:
        """``host:port``: the value for ``AWS_XRAY_DAEMON_ADDRESS``."""
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            document = parse_datagram(data)
            with self._lock:
                if document is None:
                    self.bad_datagrams += 1
                else:
                    self.documents.append(document)

    def traced(self, trace_root: str) -> list[dict[str, Any]]:
        """Every document received for the trace whose root is ``trace_root``."""
        with self._lock:
            return [d for d in self.documents if d.get("trace_id") == trace_root]

    def names(self, trace_root: str) -> set[str]:
        """The names of every (nested) subsegment of that trace."""
        return {entity["name"] for doc in self.traced(trace_root) for entity in walk(doc)}

    def wait_for(self, trace_root: str, names: set[str], timeout_s: float = 10.0) -> set[str]:
        """Wait until all ``names`` arrived for the trace (UDP is asynchronous); returns what
        arrived by then."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            seen = self.names(trace_root)
            if names <= seen:
                return seen
            time.sleep(0.05)
        return self.names(trace_root)


def parse_datagram(data: bytes) -> dict[str, Any] | None:
    """The segment document of one datagram, or None if it is not the daemon protocol."""
    head, sep, body = data.partition(b"\n")
    if not sep:
        return None
    try:
        if json.loads(head) != HEADER:
            return None
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def walk(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The document and every nested subsegment."""
    yield document
    for child in document.get("subsegments") or ():
        yield from walk(child)


def trace_root(trace_header: str) -> str:
    """``Root=1-...;Parent=...;Sampled=1`` -> ``1-...``."""
    fields = dict(part.split("=", 1) for part in trace_header.split(";") if "=" in part)
    return fields["Root"]
