"""The key rotation function's Lambda entry point (``voxproof.handlers.rotate.handler``,
template.yaml's ``KeyRotationFunction``, run by the secret's rotation schedule).

Secrets Manager calls it once per step (``createSecret``, ``setSecret``, ``testSecret``,
``finishSecret``) with ``{"SecretId", "ClientRequestToken", "Step"}``; ``voxproof.keyring.rotate``
does the step: the new key marks, every retired key stays in the secret's history. It never
logs a key.
"""

from __future__ import annotations

from typing import Any

from voxproof.handlers.common import logger
from voxproof.keyring import rotate
from voxproof.runtime import AwsClients

_AWS = AwsClients()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> None:
    """One rotation step for the secret the event names."""
    logger.info("key rotation step", extra={"step": event.get("Step")})
    rotate(_AWS("secretsmanager"), event["SecretId"], event["ClientRequestToken"],
           event["Step"])
