"""Embed a signed C2PA manifest store in encoded audio (c2pa-python, offline: no timestamp).

``CredentialSigner`` wraps one c2pa ``Signer``: from a local key (``local``) or from a callback
that asks a key service for each signature (``from_callback``; AWS KMS in ``kms``). ``sign``
returns the signed file and the manifest store it now carries, which the caller keeps with the
provenance record.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from voxproof import audio
    >>> from voxproof.credentials.identity import LocalIdentity
    >>> ident = LocalIdentity.load_or_create(pathlib.Path(tempfile.mkdtemp()) / "c2pa")
    >>> signer = CredentialSigner.local(ident)
    >>> wav = audio.encode(np.zeros(8000, np.float32), 8000, "wav")
    >>> definition = manifest_definition(record_id=1, key_id="k", voice="v",
    ...     model_manifest_sha256="0" * 64, fmt="wav", version="0")
    >>> signed = signer.sign(wav, "wav", definition)
    >>> len(signed.audio) > len(wav), len(signed.manifest_store) > 1000
    (True, True)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import c2pa

from voxproof.credentials.identity import LocalIdentity
from voxproof.credentials.manifest import MIME_TYPES, manifest_definition  # noqa: F401 (doctest)
from voxproof.errors import Unavailable


class SigningFailed(Unavailable):
    """The manifest could not be signed (the key service refused or is unreachable)."""

    code = "signing_unavailable"


@dataclass(frozen=True, eq=False)
class SignedAudio:
    audio: bytes
    """The encoded audio with the manifest store embedded."""
    manifest_store: bytes
    """The manifest store (JUMBF, ``application/c2pa``), as embedded."""


class CredentialSigner:
    """Signs manifests with one certificate chain and one key (held here or in a service).

    Parameters
    ----------
    make_signer:
        Builds the c2pa ``Signer`` (called once, on the first signature).
    chain_pem:
        The certificate chain, signing certificate first.
    """

    def __init__(self, make_signer: Callable[[], c2pa.Signer], chain_pem: bytes) -> None:
        self._make_signer = make_signer
        self._signer: c2pa.Signer | None = None
        self.chain_pem = chain_pem
        self._lock = threading.Lock()

    @classmethod
    def local(cls, identity: LocalIdentity) -> CredentialSigner:
        """A signer over a local ES256 key."""
        def make() -> c2pa.Signer:
            info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem,
                                       identity.key_pem, None)
            return c2pa.Signer.from_info(info)
        return cls(make, identity.chain_pem)

    @classmethod
    def from_callback(cls, sign: Callable[[bytes], bytes], chain_pem: bytes) -> CredentialSigner:
        """A signer whose ES256 signatures (DER or raw r||s) come from ``sign(data)``."""
        def make() -> c2pa.Signer:
            return c2pa.Signer.from_callback(sign, c2pa.C2paSigningAlg.ES256,
                                             chain_pem.decode(), None)
        return cls(make, chain_pem)

    def sign(self, audio: bytes, fmt: str, definition: dict[str, Any]) -> SignedAudio:
        """``audio`` (encoded as ``fmt``) with a signed manifest store for ``definition``."""
        dest = io.BytesIO()
        with self._lock:  # one signature at a time per signer
            if self._signer is None:
                self._signer = self._make_signer()
            try:
                with c2pa.Builder(definition) as builder:
                    store = builder.sign(self._signer, MIME_TYPES[fmt], io.BytesIO(audio), dest)
            except c2pa.C2paError as err:
                raise SigningFailed("the audio's Content Credentials could not be signed; "
                                    "nothing was kept") from err
        return SignedAudio(dest.getvalue(), bytes(store))
