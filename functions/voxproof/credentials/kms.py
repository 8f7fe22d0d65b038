"""Signing with an AWS KMS key (ECC_NIST_P256, SIGN_VERIFY) through c2pa's callback signer.

The private key never leaves KMS: c2pa hands the bytes to be signed to ``KmsSign``, which sends
them (``MessageType=RAW``; about 1.7 KB for voxproof's claims) or, beyond KMS's 4 KB message
limit, their SHA-256 (``MessageType=DIGEST``), and returns KMS's DER ECDSA signature. The certificate chain (PEM, signing certificate first, its
public key the KMS key's) comes from Secrets Manager or SSM Parameter Store. A signer with a
callback reserves room for a timestamp, so each manifest is ~10 KB larger than a local one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from voxproof.credentials.identity import CredentialsMissing
from voxproof.errors import Unavailable

#: KMS signs messages of at most this many bytes as they are (RAW); longer ones by digest.
KMS_RAW_MAX_BYTES: Final = 4096


@dataclass(frozen=True)
class KmsSign:
    """``sign(data)`` with a KMS key: ECDSA_SHA_256 over the data's digest, DER."""

    key_id: str
    client: Any
    """A boto3 KMS client."""

    def __call__(self, data: bytes) -> bytes:
        if len(data) <= KMS_RAW_MAX_BYTES:
            message, kind = data, "RAW"
        else:
            message, kind = hashlib.sha256(data).digest(), "DIGEST"
        out = self.client.sign(KeyId=self.key_id, Message=message, MessageType=kind,
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


def issue_chain(public_key_der: bytes, *, org: str = "voxproof") -> tuple[bytes, bytes]:
    """A new CA and a C2PA signing certificate for a KMS key's public key (DER, as
    ``GetPublicKey`` returns it): ``(chain_pem, ca_pem)``. The CA's key is dropped on return;
    store the chain in the secret (or parameter) and give readers the CA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from voxproof.credentials.identity import leaf_certificate, new_ca, validity

    public_key = serialization.load_der_public_key(public_key_der)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) \
            or public_key.curve.name != "secp256r1":
        raise ValueError("the KMS key must be ECC_NIST_P256")
    start, end = validity()
    ca, ca_key = new_ca("voxproof KMS CA", org, start, end)
    leaf = leaf_certificate(public_key, ca.subject, ca_key, org=org, start=start, end=end)
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem) + ca.public_bytes(pem), ca.public_bytes(pem)
