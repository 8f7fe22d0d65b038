"""Signing with an AWS KMS key (ECC_NIST_P256, SIGN_VERIFY) through c2pa's callback signer.

The private key never leaves KMS: c2pa hands the bytes to be signed to ``KmsSign``, which sends
their SHA-256 (``MessageType=DIGEST``, so any claim size fits KMS's 4 KB message limit) and
returns KMS's DER ECDSA signature. The certificate chain (PEM, signing certificate first, its
public key the KMS key's) comes from Secrets Manager or SSM Parameter Store. A signer with a
callback reserves room for a timestamp, so each manifest is ~10 KB larger than a local one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from voxproof.credentials.identity import CredentialsMissing
from voxproof.errors import Unavailable


@dataclass(frozen=True)
class KmsSign:
    """``sign(data)`` with a KMS key: ECDSA_SHA_256 over the data's digest, DER."""

    key_id: str
    client: Any
    """A boto3 KMS client."""

    def __call__(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        out = self.client.sign(KeyId=self.key_id, Message=digest, MessageType="DIGEST",
                               SigningAlgorithm="ECDSA_SHA_256")
        return bytes(out["Signature"])


def read_chain(*, secret_id: str | None, parameter: str | None, secretsmanager: Any = None,
               ssm: Any = None) -> bytes:
    """The certificate chain (PEM) from the secret, else the parameter."""
    try:
        if secret_id:
            return secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"].encode()
        if parameter:
            return ssm.get_parameter(Name=parameter)["Parameter"]["Value"].encode()
    except Exception as exc:  # botocore's network, permission and not-found errors
        raise Unavailable("the signing certificate chain cannot be read") from exc
    raise CredentialsMissing("a KMS signing key is configured but no certificate chain "
                             "(VOXPROOF_C2PA_CHAIN_SECRET_ID or VOXPROOF_C2PA_CHAIN_PARAMETER)")
