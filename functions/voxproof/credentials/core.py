"""Content Credentials as the service uses them: sign an output, and say what a file's
manifest and its mark together prove.

``Credentials`` holds the signer (built on first use: a local key, or KMS on AWS) and the trust
anchors. ``CredentialsReport`` tells the four cases of issue 13 apart, plainly:

- ``manifest_and_mark``: an embedded manifest validates and names the record the mark names;
- ``recovered``: no manifest in the file, the mark names a record and the manifest stored with
  it is returned (this proves where the audio came from, not that these bytes are the ones
  signed: it was re-encoded or stripped);
- ``manifest_invalid``: a manifest is embedded but fails validation (the bytes changed after
  signing) while the mark still names a record;
- ``none``: neither a manifest nor a mark;

and the rarer ``manifest_only`` (a manifest, no mark found), ``mark_only`` (a mark whose record
has no stored manifest) and ``mismatch`` (manifest and mark name different records).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from voxproof.credentials.manifest import MIME_TYPES, manifest_definition
from voxproof.credentials.reader import CredentialsCheck, read_embedded, read_stored

if TYPE_CHECKING:  # the signer (c2pa, cryptography) is imported by whoever builds one
    from voxproof.credentials.signer import CredentialSigner, SignedAudio

Status = Literal["manifest_and_mark", "recovered", "manifest_invalid", "none",
                 "manifest_only", "mark_only", "mismatch"]

_SUMMARIES: Final[dict[str, str]] = {
    "manifest_and_mark": "the file's Content Credentials are valid and name the same record as "
                         "its watermark",
    "recovered": "the file carries no Content Credentials; its watermark names a record, and the "
                 "manifest signed for that record is returned from the registry: this proves "
                 "where the audio came from, not that these bytes are the ones that were signed "
                 "(it was stripped or re-encoded)",
    "manifest_invalid": "the file's Content Credentials do not validate (it was changed after "
                        "signing), but its watermark still names a record",
    "none": "no Content Credentials and no watermark record were found (a mark's presence is "
            "reported apart)",
    "manifest_only": "the file's Content Credentials were read, but no watermark record was "
                     "found",
    "mark_only": "the file carries no Content Credentials; its watermark names a record that has "
                 "no stored manifest",
    "mismatch": "the file's Content Credentials and its watermark name different records",
}
#: What the public verify answer shows of a manifest check (the detailed one shows all).
_PUBLIC_CHECK_FIELDS: Final = ("state", "failures", "manifest_label", "record_id",
                               "digital_source_type", "software_agent", "signer")


class Credentials:
    """Signs outputs and checks manifests.

    Parameters
    ----------
    signer:
        Builds the signer on the first signature (a verify-only process never calls it).
    anchors:
        The trust anchors as one PEM bundle, or None for none (asked once, then cached).
    version:
        voxproof's version, for the software agent.
    """

    def __init__(self, signer: Callable[[], CredentialSigner] | None,
                 anchors: Callable[[], str | None], *, version: str) -> None:
        self._make_signer = signer
        self._signer: CredentialSigner | None = None
        self._anchors = anchors
        self._anchors_pem: str | None = None
        self._anchors_read = False
        self.version = version
        self._lock = threading.Lock()

    @property
    def signer(self) -> CredentialSigner:
        with self._lock:
            if self._signer is None:
                if self._make_signer is None:
                    raise RuntimeError("this process has no signer")
                self._signer = self._make_signer()
            return self._signer

    @property
    def anchors_pem(self) -> str | None:
        with self._lock:
            if not self._anchors_read:  # none yet (no local CA before the first signature): ask again
                self._anchors_pem = self._anchors()
                self._anchors_read = self._anchors_pem is not None
            return self._anchors_pem

    def sign(self, audio: bytes, fmt: str, *, record_id: int, key_id: str, voice: str,
             model_manifest_sha256: str) -> SignedAudio:
        """``audio`` with an embedded, signed manifest for this record."""
        definition = manifest_definition(record_id=record_id, key_id=key_id, voice=voice,
                                         model_manifest_sha256=model_manifest_sha256, fmt=fmt,
                                         version=self.version)
        return self.signer.sign(audio, fmt, definition)

    def check_embedded(self, data: bytes, mime: str | None) -> CredentialsCheck:
        return read_embedded(data, mime, anchors_pem=self.anchors_pem)

    def check_stored(self, store: bytes) -> CredentialsCheck:
        return read_stored(store, anchors_pem=self.anchors_pem)


@dataclass(frozen=True)
class CredentialsReport:
    """The embedded manifest, the stored one, and what they prove beside the mark."""

    status: Status
    embedded: CredentialsCheck | None
    """The file's own manifest (``absent`` when it has none)."""
    stored: CredentialsCheck | None = None
    """The manifest stored with the record the mark names, when it was looked up."""
    manifest_store: bytes | None = None
    """The stored manifest store itself (``recovered``)."""

    @classmethod
    def assess(cls, embedded: CredentialsCheck, mark_record: int | None,
               stored: Callable[[], bytes | None], check_stored: Callable[[bytes], CredentialsCheck]
               ) -> CredentialsReport:
        """Which case this is; the stored manifest is looked up only when the embedded one
        does not settle it."""
        has_manifest = embedded.state != "absent"
        if has_manifest and embedded.state != "invalid":
            if mark_record is None:
                return cls("manifest_only", embedded)
            if embedded.record_id is not None and embedded.record_id != mark_record:
                return cls("mismatch", embedded)
            return cls("manifest_and_mark", embedded)
        if mark_record is None:
            return cls("manifest_only" if has_manifest else "none", embedded)
        store = stored()
        kept = None if store is None else check_stored(store)
        if has_manifest:
            return cls("manifest_invalid", embedded, kept, store)
        if store is None:
            return cls("mark_only", embedded)
        return cls("recovered", embedded, kept, store)

    @property
    def summary(self) -> str:
        return _SUMMARIES[self.status]

    @property
    def source(self) -> str | None:
        """Where the manifest reported under ``validation`` comes from."""
        if self.embedded is not None and self.embedded.state != "absent":
            return "embedded"
        return "registry" if self.stored is not None else None

    @property
    def validation(self) -> str | None:
        """trusted, valid_untrusted or invalid: of the embedded manifest, else the stored one."""
        source = {"embedded": self.embedded, "registry": self.stored}.get(self.source or "")
        return None if source is None else source.state

    def to_dict(self, *, public: bool = False) -> dict[str, Any]:
        def view(check: CredentialsCheck | None) -> dict[str, Any] | None:
            if check is None:
                return None
            body = check.to_dict()
            return {k: body[k] for k in _PUBLIC_CHECK_FIELDS} if public else body

        return {"status": self.status, "validation": self.validation, "source": self.source,
                "summary": self.summary, "embedded": view(self.embedded),
                "stored": view(self.stored)}


def mime_for(fmt: str) -> str:
    return MIME_TYPES[fmt]
