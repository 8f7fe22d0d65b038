"""Validate a C2PA manifest store: embedded in a file, or kept with its record.

``read_embedded`` reads the store a file carries and validates it against the file's bytes and
the trust anchors: ``trusted`` (valid and its certificate chains to an anchor), ``valid_untrusted`` (valid,
untrusted signer), ``invalid`` (a failure such as ``assertion.dataHash.mismatch``: the file was
changed after signing, or the signature does not verify) or ``absent``. ``read_stored`` checks a
stored store on its own: its signature and trust, never its binding to bytes it is not given
(hard-binding codes are left out and said to be so).

Uploads are untrusted: c2pa-rs (Rust) parses only the manifest store, within the upload size
bound the API already enforces.

Example:
    >>> import numpy as np
    >>> from voxproof import audio
    >>> read_embedded(audio.encode(np.zeros(800, np.float32), 8000), "audio/wav",
    ...               anchors_pem=None).state
    'absent'
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from voxproof.credentials.manifest import ALGORITHM, PROVENANCE_LABEL, record_id_from_binding

if TYPE_CHECKING:
    import c2pa  # imported when a store is read: a verify without one never loads it

State = Literal["trusted", "valid_untrusted", "invalid", "absent"]
#: Codes of a manifest's hard binding to the bytes it was embedded in (absent from a stored
#: store read on its own).
_HARD_BINDING: Final = ("assertion.dataHash.", "assertion.bmffHash.", "assertion.boxesHash.",
                        "assertion.collectionHash.")
_UNTRUSTED: Final = "signingCredential.untrusted"
_contexts: dict[str | None, c2pa.Context] = {}
_contexts_lock = threading.Lock()


@dataclass(frozen=True)
class CredentialsCheck:
    """What one manifest store says and whether it holds."""

    state: State
    failures: tuple[str, ...] = ()
    """C2PA status codes of what failed (``signingCredential.untrusted`` for an untrusted
    signer; ``assertion.dataHash.mismatch`` for edited bytes)."""
    manifest_label: str | None = None
    """The active manifest's label (``urn:c2pa:...``)."""
    record_id: int | None = None
    """The record id the manifest's soft binding names (voxproof's own manifests)."""
    assertions: dict[str, Any] = field(default_factory=dict)
    """voxproof's assertions: ``digital_source_type``, ``software_agent``, ``provenance``."""
    signer: dict[str, Any] | None = None
    """c2pa's signature info: issuer, common name, algorithm."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": list(self.failures),
            "manifest_label": self.manifest_label,
            "record_id": None if self.record_id is None else f"{self.record_id:010x}",
            "digital_source_type": self.assertions.get("digital_source_type"),
            "software_agent": self.assertions.get("software_agent"),
            "provenance": self.assertions.get("provenance"),
            "signer": self.signer,
        }


def read_embedded(data: bytes, mime: str | None, *,
                  anchors_pem: str | None) -> CredentialsCheck:
    """The manifest store ``data`` carries, validated against its bytes and ``anchors_pem``
    (``mime`` None: a format that carries none)."""
    if mime is None:
        return CredentialsCheck("absent")
    import c2pa

    try:
        reader = c2pa.Reader(mime or "", io.BytesIO(data), context=_context(anchors_pem))
    except c2pa.C2paError as err:
        if "ManifestNotFound" in type(err).__name__:
            return CredentialsCheck("absent")
        # A container c2pa cannot parse (the decoder already accepted the audio): no manifest
        # can be read from it; the code says why.
        return CredentialsCheck("absent", failures=(_error_code(err),))
    return _check(reader, ignore_hard_binding=False)


def read_stored(store: bytes, *, anchors_pem: str | None) -> CredentialsCheck:
    """A stored manifest store on its own: signature and trust only."""
    import c2pa

    try:
        reader = c2pa.Reader("application/c2pa", io.BytesIO(store), context=_context(anchors_pem))
    except c2pa.C2paError as err:
        return CredentialsCheck("invalid", failures=(_error_code(err),))
    return _check(reader, ignore_hard_binding=True)


def _check(reader: c2pa.Reader, *, ignore_hard_binding: bool) -> CredentialsCheck:
    with reader:
        results = reader.get_validation_results() or {}
        manifest = reader.get_active_manifest() or {}
    active = results.get("activeManifest") or {}
    failures = [f["code"] for f in active.get("failure", []) if "code" in f]
    failures += [f["code"] for f in results.get("ingredientDeltas", []) or [] if "code" in f]
    if ignore_hard_binding:
        failures = [code for code in failures if not code.startswith(_HARD_BINDING)]
    if not manifest:
        state: State = "invalid"
    elif any(code != _UNTRUSTED for code in failures):
        state = "invalid"
    elif _UNTRUSTED in failures:
        state = "valid_untrusted"
    else:
        state = "trusted"
    return CredentialsCheck(state, tuple(dict.fromkeys(failures)), manifest.get("label"),
                            *_ours(manifest), _signer(manifest))


def _ours(manifest: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    record_id, found = None, {}
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            for action in data.get("actions", []):
                if action.get("action") == "c2pa.created":
                    found["digital_source_type"] = action.get("digitalSourceType")
                    found["software_agent"] = action.get("softwareAgent")
        elif label == "c2pa.soft-binding" and data.get("alg") == ALGORITHM:
            for block in data.get("blocks", []):
                record_id = record_id_from_binding(str(block.get("value", "")))
        elif label == PROVENANCE_LABEL:
            found["provenance"] = data
    return record_id, found


def _signer(manifest: dict[str, Any]) -> dict[str, Any] | None:
    info = manifest.get("signature_info")
    if not info:
        return None
    return {k: info.get(k) for k in ("issuer", "common_name", "alg")}


def _error_code(err: Exception) -> str:
    """``c2pa.error.<Kind>`` from c2pa's ``"Kind: detail"`` message (never the detail, which
    may hold a URL or a path from the upload)."""
    kind = str(err).split(":", 1)[0].strip()
    if not kind.isidentifier():
        kind = type(err).__name__.lstrip("_").removeprefix("C2pa") or "Other"
    return f"c2pa.error.{kind}"


def _context(anchors_pem: str | None) -> c2pa.Context:
    """One c2pa context per set of anchors (trust checked always; never a network fetch: no
    remote manifest a hostile upload points at, no OCSP)."""
    import c2pa

    with _contexts_lock:
        if anchors_pem not in _contexts:
            trust: dict[str, Any] = {"verify": {"verify_trust": True,
                                                "remote_manifest_fetch": False,
                                                "ocsp_fetch": False}}
            if anchors_pem:
                trust["trust"] = {"trust_anchors": anchors_pem}
            _contexts[anchors_pem] = c2pa.Context(c2pa.Settings.from_dict(trust))
        return _contexts[anchors_pem]
