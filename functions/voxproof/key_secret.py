"""The watermark key secret's JSON (AWS Secrets Manager): the key that marks and its history.

A module of its own so that pydantic is imported where a secret is read (``keyring``'s
``SecretsManagerKeySource`` and ``rotate``), never by a verify that reads key files.

Example:
    >>> secret = KeySecret.parse("00" * 32)
    >>> secret.previous, len(secret.keyring().accepted)
    ((), 1)
"""

from __future__ import annotations

import json
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxproof.errors import KeyError_
from voxproof.keyring import MAX_KEY_HISTORY, KeyRing
from voxproof.watermark.keys import WatermarkKey

HEX_KEY_PATTERN: Final = r"^[0-9a-fA-F]{64}$"


class KeySecret(BaseModel):
    """The watermark key secret's JSON: the key that marks and every retired key, newest first.

    ``{"current": "<64 hex>", "previous": ["<64 hex>", ...]}``. A secret that is 64 hex
    characters alone (the template's first value, and secrets made before key history) reads
    as a current key with no history.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    current: str = Field(pattern=HEX_KEY_PATTERN)
    """Marks new audio."""

    previous: tuple[str, ...] = Field(default=(), max_length=MAX_KEY_HISTORY)
    """Retired keys, newest first: every one still verifies."""

    @classmethod
    def parse(cls, value: str) -> KeySecret:
        """The secret's text as a ``KeySecret`` (``KeyError_`` that never echoes the value)."""
        text = value.strip()
        if not text.startswith("{"):
            text = json.dumps({"current": text})
        try:
            secret = cls.model_validate_json(text)
            for item in secret.previous:
                WatermarkKey.from_hex(item)
        except (ValidationError, KeyError_):
            raise KeyError_("the watermark key secret must be 64 hex characters or JSON "
                            '{"current": hex, "previous": [hex, ...]}') from None
        return secret

    def rotated(self, new: WatermarkKey) -> KeySecret:
        """The next value: ``new`` marks, the current key heads the history (none dropped)."""
        history = (self.current, *(k for k in self.previous if k != self.current))
        if len(history) > MAX_KEY_HISTORY:
            raise KeyError_(f"the key history holds at most {MAX_KEY_HISTORY} retired keys; "
                            "retire the oldest by hand (audio marked under it stops verifying)")
        return KeySecret(current=new.to_hex(), previous=history)

    def keyring(self) -> KeyRing:
        return KeyRing(WatermarkKey.from_hex(self.current),
                       tuple(WatermarkKey.from_hex(k) for k in self.previous))

    def to_json(self) -> str:
        return json.dumps({"current": self.current, "previous": list(self.previous)})
