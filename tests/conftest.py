"""Shared fixtures. Tests mirror the package: tests/test_<module>.py, tests/integration/."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback: real boto3 HTTP against S3, SQS, DynamoDB, Secrets Manager."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_client(moto_endpoint, monkeypatch):
    """A factory of boto3 clients pointed at the loopback moto server (fake credentials)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def make(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return make
