"""What every Lambda adapter shares: the observability tools and the service wired for AWS.

One container builds one ``Service`` (on first use, then reused by every invocation): provenance
in DynamoDB, the key from Secrets Manager, the voice loaded at start-up when ``preload_voice`` is
set (the speech function) and never otherwise (the verify function only detects). Where the AWS
settings are absent (a laptop, ``voxproof serve``) the local parts stand in: SQLite in the state
folder and the local key file.

Tracing goes through Powertools' Tracer (aws-xray-sdk underneath, in maintenance mode until
2027-02-25): only this module names it, so moving to OpenTelemetry is a change in one place.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from voxproof.keyring import FileKeySource, KeySource, SecretsManagerKeySource
from voxproof.provenance import DynamoRegistry, Registry, SQLiteRegistry
from voxproof.service import Service
from voxproof.settings import Settings, get_settings

SERVICE_NAME = "voxproof"
logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace="Voxproof", service=SERVICE_NAME)


def trace_step(name: str) -> AbstractContextManager[Any]:
    """An X-Ray subsegment named ``name`` around one step (the service's ``step`` hook).

    Where tracing is off (outside Lambda, ``POWERTOOLS_TRACE_DISABLED``) the X-Ray SDK is
    disabled and this opens a dummy subsegment that is never sent.
    """
    return tracer.provider.in_subsegment(name)


@lru_cache(maxsize=1)
def boto3_session() -> Any:
    """One boto3 session per container (clients are made from it)."""
    import boto3

    return boto3.session.Session()


def build_service(settings: Settings, *, max_chars: int) -> Service:
    """The service for this container's settings (AWS parts where configured)."""
    from voxproof.voice import load_voice

    registry: Registry
    keys: KeySource
    if settings.records_table:
        registry = DynamoRegistry(settings.records_table, boto3_session().client("dynamodb"))
    else:
        settings.ensure_state_dir()
        registry = SQLiteRegistry(settings.state_dir / "records.sqlite3")
    if settings.key_secret_id:
        keys = SecretsManagerKeySource(settings.key_secret_id,
                                       boto3_session().client("secretsmanager"),
                                       max_age_s=settings.key_cache_s)
    else:
        settings.ensure_state_dir()
        keys = FileKeySource([str(settings.key_file)], create=True)
    service = Service(lambda: load_voice(settings), keys, registry, max_chars=max_chars,
                      step=trace_step)
    if settings.preload_voice:
        service.load()
    return service


@lru_cache(maxsize=1)
def api_service() -> Service:
    """The synchronous entry points' service (text limit: ``max_text_chars_sync``)."""
    settings = get_settings()
    return build_service(settings, max_chars=settings.max_text_chars_sync)


@lru_cache(maxsize=1)
def batch_service() -> Service:
    """The batch entry points' service (text limit: ``max_text_chars_batch``)."""
    settings = get_settings()
    return build_service(settings, max_chars=settings.max_text_chars_batch)
