"""What every Lambda adapter shares: the observability tools and how a container's runtime is built.

Each handler module builds one ``Runtime`` at init with ``lambda_runtime`` (the service wired by
``voxproof.runtime.build_service``: DynamoDB and Secrets Manager where configured, else SQLite
and the key file in the state folder); the voice is loaded then when ``preload_voice`` is set
(the speech function) and never otherwise (the verify function only detects).

Tracing goes through Powertools' Tracer (aws-xray-sdk underneath, in maintenance mode until
2027-02-25): only this module names it, so moving to OpenTelemetry is a change in one place.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from voxproof.runtime import AwsClients, Runtime
from voxproof.settings import Settings

SERVICE_NAME = "voxproof"
logger = Logger(service=SERVICE_NAME)
# AWS calls are traced by patching botocore, but only once something imports it: patching at
# init (Powertools' default, every module the X-Ray SDK knows) imported botocore and requests
# into every container, ~0.1 s of each cold start, also where no request calls AWS.
tracer = Tracer(service=SERVICE_NAME, auto_patch=False)
metrics = Metrics(namespace="Voxproof", service=SERVICE_NAME)


def _trace_aws_calls(_botocore: Any) -> None:
    tracer.patch(["botocore"])


if not tracer.disabled:
    from wrapt import register_post_import_hook

    register_post_import_hook(_trace_aws_calls, "botocore.session")  # clients come from one


def trace_step(name: str) -> AbstractContextManager[Any]:
    """An X-Ray subsegment named ``name`` around one step (the service's ``step`` hook).

    Where tracing is off (outside Lambda, ``POWERTOOLS_TRACE_DISABLED``) the X-Ray SDK is
    disabled and this opens a dummy subsegment that is never sent.
    """
    return tracer.provider.in_subsegment(name)


def lambda_runtime(settings: Settings, *, max_chars: int,
                   aws: AwsClients | None = None) -> Runtime:
    """A Lambda container's runtime: the service's steps traced, AWS parts where the settings
    name them, the voice loaded now (during init) when ``preload_voice`` is set."""
    return Runtime.build(settings, max_chars=max_chars, step=trace_step, aws=aws)
