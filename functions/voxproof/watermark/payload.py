"""The 64-bit payload of a mark unit: a 40-bit record id and its 24-bit keyed tag.

``tag = HMAC-SHA256(key, "voxproof tag" || id as 5 big-endian bytes)[:3]``: without the key
nobody can make a record id whose tag verifies, and a decoder that reads random bits accepts
them with probability 2^-24.

Example:
    >>> from voxproof.watermark.keys import WatermarkKey
    >>> key = WatermarkKey.from_hex("11" * 32)
    >>> bits = payload_bits(key, 0x0123456789)
    >>> len(bits), read_payload(key, bits)
    (64, (4886718345, True))
"""

from __future__ import annotations

from typing import Final

import numpy as np

from voxproof.errors import InvalidRecordId
from voxproof.watermark.keys import WatermarkKey

RECORD_ID_BITS: Final = 40
TAG_BITS: Final = 24
PAYLOAD_BITS: Final = RECORD_ID_BITS + TAG_BITS
_TAG_LABEL: Final = b"voxproof tag"


def check_record_id(record_id: int) -> int:
    """The id as an int in [0, 2^40); anything else raises ``InvalidRecordId``."""
    if isinstance(record_id, bool) or not isinstance(record_id, (int, np.integer)):
        raise InvalidRecordId("a record id is an integer")
    if not 0 <= int(record_id) < 1 << RECORD_ID_BITS:
        raise InvalidRecordId(f"a record id has {RECORD_ID_BITS} bits (10 hex characters)")
    return int(record_id)


def parse_record_id(text: str) -> int:
    """Parse a record id written as exactly 10 hex characters."""
    text = text.strip()
    digits = RECORD_ID_BITS // 4
    if len(text) != digits or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise InvalidRecordId(f"a record id is {digits} hex characters, e.g. 00000000a1")
    return int(text, 16)


def format_record_id(record_id: int) -> str:
    return f"{record_id:0{RECORD_ID_BITS // 4}x}"


def tag_of(key: WatermarkKey, record_id: int) -> int:
    """The keyed authentication tag of ``record_id`` (TAG_BITS bits)."""
    mac = key.mac(_TAG_LABEL + record_id.to_bytes(RECORD_ID_BITS // 8, "big"))
    return int.from_bytes(mac[: (TAG_BITS + 7) // 8], "big") >> (-TAG_BITS % 8)


def _to_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.int8)


def _from_bits(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2) if len(bits) else 0


def pack(record_id: int, tag: int) -> np.ndarray:
    """Payload bits (most significant first): id then tag. ``tag`` may be forged (tests)."""
    return np.concatenate([_to_bits(record_id, RECORD_ID_BITS), _to_bits(tag, TAG_BITS)])


def payload_bits(key: WatermarkKey, record_id: int) -> np.ndarray:
    record_id = check_record_id(record_id)
    return pack(record_id, tag_of(key, record_id))


def read_payload(key: WatermarkKey, bits: np.ndarray) -> tuple[int, bool]:
    """Split decoded bits into (record id, whether its tag verifies under ``key``)."""
    record_id = _from_bits(bits[:RECORD_ID_BITS])
    tag = _from_bits(bits[RECORD_ID_BITS:PAYLOAD_BITS])
    return record_id, tag == tag_of(key, record_id)
