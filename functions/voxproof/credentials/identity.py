"""The signing identity: a certificate chain and the key (or a key service) that signs with it.

Locally (``LocalIdentity.load_or_create``) the state folder's ``c2pa/`` holds a private CA
certificate (``ca.pem``), an ES256 signing certificate it issued (``signer.pem``: a non-CA
leaf, key usage digitalSignature, extended key usage emailProtection, with subject and
authority key identifiers, as c2pa requires) and its P-256 key (``signer.key``, mode 0600). The
CA's own key signs the leaf once and is never written, so the CA vouches for exactly one key.
The folder is created whole (written aside, then renamed) so two processes starting at once
agree on one identity.

Example:
    >>> import tempfile, pathlib
    >>> ident = LocalIdentity.load_or_create(pathlib.Path(tempfile.mkdtemp()) / "c2pa")
    >>> ident.describe()["signer"]["key_mode"]
    '0600'
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from voxproof.credentials import CA_FILE, CERT_FILE, KEY_FILE
from voxproof.errors import VoxproofError

#: Local certificates last ten years (the CA key is gone, so no renewal: a new folder is a new CA).
_VALID_DAYS: Final = 3650


class CredentialsMissing(VoxproofError):
    """There are no signing credentials where they were expected (and none may be created)."""

    code = "credentials_missing"
    status = 500


@dataclass(frozen=True, eq=False)
class LocalIdentity:
    """A chain (leaf first) and the leaf's private key in PEM, read from one folder."""

    folder: Path
    chain_pem: bytes
    """The signing certificate, then the CA certificate."""
    key_pem: bytes
    ca_pem: bytes

    @classmethod
    def load_or_create(cls, folder: Path, *, create: bool = True) -> LocalIdentity:
        """The identity in ``folder``; a new CA and signer when it is missing and ``create``."""
        if not (folder / KEY_FILE).is_file():
            if not create:
                raise CredentialsMissing(f"no signing credentials in {folder}")
            _create(folder)
        return cls.load(folder)

    @classmethod
    def load(cls, folder: Path) -> LocalIdentity:
        ca = (folder / CA_FILE).read_bytes()
        leaf = (folder / CERT_FILE).read_bytes()
        return cls(folder, leaf + ca, (folder / KEY_FILE).read_bytes(), ca)

    def describe(self) -> dict[str, Any]:
        """What ``voxproof credentials`` shows: both certificates, the key file and its mode."""
        key_path = self.folder / KEY_FILE
        return {
            "folder": str(self.folder),
            "ca": describe_certificate(self.ca_pem) | {"file": str(self.folder / CA_FILE)},
            "signer": describe_certificate(self.chain_pem) | {
                "file": str(self.folder / CERT_FILE), "key_file": str(key_path),
                "key_mode": f"{key_path.stat().st_mode & 0o777:04o}"},
        }


def describe_certificate(pem: bytes) -> dict[str, Any]:
    """The first certificate in ``pem``: subject, issuer, validity, SHA-256 fingerprint."""
    cert = x509.load_pem_x509_certificates(pem)[0]
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }


def root_of(chain_pem: bytes) -> bytes:
    """The last certificate of a chain, in PEM (the anchor a reader trusts)."""
    return x509.load_pem_x509_certificates(chain_pem)[-1].public_bytes(serialization.Encoding.PEM)


def issue_local(org: str = "voxproof (local)") -> tuple[bytes, bytes, bytes]:
    """A new CA and ES256 signing certificate: (ca_pem, leaf_pem, leaf_key_pem). The CA's key
    is dropped on return."""
    start, end = validity()
    ca, ca_key = new_ca(f"voxproof local CA {secrets.token_hex(4)}", org, start, end)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_certificate(key.public_key(), ca.subject, ca_key, org=org, start=start, end=end)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _pem(ca), _pem(leaf), key_pem


def validity(days: int = _VALID_DAYS) -> tuple[datetime.datetime, datetime.datetime]:
    """From five minutes ago (clock skew) to ``days`` from now."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def new_ca(common_name: str, org: str, start: datetime.datetime, end: datetime.datetime
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed P-256 CA that may issue end-entity certificates only (path length 0)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, org)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(cert_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    return ca, ca_key


def leaf_certificate(public_key: ec.EllipticCurvePublicKey, issuer: x509.Name,
                     issuer_key: ec.EllipticCurvePrivateKey, *, org: str,
                     start: datetime.datetime, end: datetime.datetime) -> x509.Certificate:
    """A C2PA signing certificate for ``public_key``: not a CA, digitalSignature,
    emailProtection, subject and authority key identifiers."""
    return (x509.CertificateBuilder().subject_name(_name("voxproof signer", org))
            .issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def _create(folder: Path) -> None:
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.part")
    tmp.mkdir(mode=0o700)
    try:
        ca, leaf, key = issue_local()
        (tmp / CA_FILE).write_bytes(ca)
        (tmp / CERT_FILE).write_bytes(leaf)
        fd = os.open(tmp / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        os.chmod(tmp / KEY_FILE, 0o600)  # whatever the umask
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / KEY_FILE).is_file():  # not lost to a concurrent creator: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _key_usage(*, sign: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
