"""What a voxproof manifest says: pure, no c2pa import, no I/O.

A manifest names what made the audio and how to find its record, never what was said or for
whom: ``c2pa.actions`` (``c2pa.created``, digitalSourceType trainedAlgorithmicMedia, the
software agent voxproof and its version), a ``c2pa.soft-binding`` assertion naming the mark's
algorithm (``ALGORITHM``) with the record id as its value, and ``org.voxproof.provenance`` (the
record id, the watermark key's public id, the voice and the model manifest's sha256).

Example:
    >>> d = manifest_definition(record_id=0x0123456789, key_id="8e71eca305b2674f", voice="joe",
    ...                         model_manifest_sha256="ab" * 32, fmt="wav", version="0.1.0")
    >>> record_id_from_label(d["label"]) == 0x0123456789
    True
    >>> [a["label"] for a in d["assertions"]]
    ['c2pa.actions', 'c2pa.soft-binding', 'org.voxproof.provenance']
    >>> d["assertions"][1]["data"]["blocks"][0]["value"]
    'ASNFZ4k='
    >>> record_id_from_binding('ASNFZ4k=')
    4886718345
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from typing import Any, Final

#: The soft binding algorithm: voxproof's keyed audio mark, version 1 (an identifier of the
#: project's own; it is not on the C2PA soft binding algorithm list).
ALGORITHM: Final = "org.voxproof.audiomark.1"
#: IPTC's digital source type for media made by a trained model.
DIGITAL_SOURCE_TYPE: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia")
#: voxproof's own assertion.
PROVENANCE_LABEL: Final = "org.voxproof.provenance"
#: Output formats and the MIME type each is signed (and served) as.
MIME_TYPES: Final[dict[str, str]] = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4", "flac": "audio/flac",
}
FORMATS: Final = tuple(MIME_TYPES)
_RECORD_ID_BYTES: Final = 5  # the mark's 40-bit record id


def binding_value(record_id: int) -> str:
    """The soft binding's value for a record id: its 40 bits, big-endian, base64."""
    return base64.b64encode(record_id.to_bytes(_RECORD_ID_BYTES, "big")).decode()


def record_id_from_binding(value: str) -> int | None:
    """The record id a soft binding value names, or None if it is not one of ours."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw, "big") if len(raw) == _RECORD_ID_BYTES else None


def manifest_label(record_id: int) -> str:
    """A fresh manifest label (``urn:c2pa:<UUID v4>``) whose low 40 bits are the record id and
    whose other 74 bits are random: unique like any v4 UUID, and resolvable to the record the
    Soft Binding Resolution API's ``manifests/{manifestId}`` fetches."""
    value = (secrets.randbits(88) << _RECORD_ID_BYTES * 8) | record_id
    return f"urn:c2pa:{uuid.UUID(int=value, version=4)}"


def record_id_from_label(label: str) -> int | None:
    """The record id a voxproof manifest label carries, or None for another form."""
    parts = label.split(":")
    if len(parts) < 3 or parts[:2] != ["urn", "c2pa"]:
        return None
    try:
        value = uuid.UUID(parts[2])
    except ValueError:
        return None
    if value.version != 4 or str(value) != parts[2].lower():
        return None
    return value.int & (2 ** (_RECORD_ID_BYTES * 8) - 1)


def manifest_definition(*, record_id: int, key_id: str, voice: str, model_manifest_sha256: str,
                        fmt: str, version: str, label: str | None = None) -> dict[str, Any]:
    """The manifest definition c2pa's ``Builder`` signs for one output (``label``: a fresh
    ``manifest_label`` unless given)."""
    record_hex = f"{record_id:010x}"
    agent = {"name": "voxproof", "version": version}
    return {
        "label": label or manifest_label(record_id),
        "claim_generator_info": [agent],
        "title": f"{record_hex}.{fmt}",
        "format": MIME_TYPES[fmt],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": DIGITAL_SOURCE_TYPE,
                "softwareAgent": agent,
            }]}},
            {"label": "c2pa.soft-binding", "data": {
                "alg": ALGORITHM,
                "blocks": [{"scope": {}, "value": binding_value(record_id)}],
            }},
            {"label": PROVENANCE_LABEL, "data": {
                "record_id": record_hex,
                "key_id": key_id,
                "voice": voice,
                "model_manifest_sha256": model_manifest_sha256,
            }},
        ],
    }
