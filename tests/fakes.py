"""Small stand-ins the tests share: a free loopback port, Lambda's context object, a fixed key
source. Plain module (not conftest) so tests import it by name."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read (the real
    one, from awslambdaric, is driven in tests/integration)."""

    remaining_ms: int = 300_000
    function_name: str = "voxproof-test"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:voxproof-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class StaticKeys:
    """A key source that is just a ring (the sources themselves are tested in test_keyring)."""

    def __init__(self, ring) -> None:
        self.ring = ring

    def keyring(self):
        return self.ring
