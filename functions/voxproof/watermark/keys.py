"""The watermark key: a 256-bit secret from which every pseudo-random choice of the mark derives.

A key file is one line: the key as 64 hex characters. The public ``key_id`` is one-way (the
first 8 bytes of ``HMAC-SHA256(key, "voxproof key id")`` in hex); reprs show only the key id.

Example:
    >>> key = WatermarkKey.from_hex("00" * 32)
    >>> len(key.key_id)
    16
    >>> WatermarkKey.from_hex(key.to_hex()) == key
    True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path
from typing import Final

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from voxproof.errors import KeyError_

KEY_BYTES: Final = 32
_KEY_ID_LABEL: Final = b"voxproof key id"
_HEX: Final = frozenset(string.hexdigits)


class WatermarkKey:
    """A 256-bit watermark secret. Compare with ``==``; never printed by ``repr``."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != KEY_BYTES:
            raise KeyError_("a watermark key is exactly 32 bytes (64 hex characters)")
        self._secret = secret

    # --- construction / serialisation ----------------------------------------------------
    @classmethod
    def generate(cls) -> WatermarkKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> WatermarkKey:
        """Parse 64 hex characters (surrounding whitespace ignored)."""
        text = text.strip()
        if len(text) != 2 * KEY_BYTES or not set(text) <= _HEX:
            raise KeyError_("a watermark key is 64 hex characters")
        return cls(bytes.fromhex(text))

    def to_hex(self) -> str:
        return self._secret.hex()

    @classmethod
    def read_key_file(cls, path: str | os.PathLike[str]) -> WatermarkKey:
        """Read a key file (one line of 64 hex characters)."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read(4 * KEY_BYTES + 16)
        except FileNotFoundError:
            raise KeyError_("the key file does not exist; create one with `voxproof keygen`")
        except OSError:
            raise KeyError_("the key file cannot be read")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyError_("the key file does not hold 64 hex characters")
        return cls.from_hex(text)

    def write_key_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the key to a new file with mode 0600; refuses to overwrite an existing file."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyError_("the key file already exists; refusing to overwrite it")
        except OSError:
            raise KeyError_("the key file cannot be created")
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(self.to_hex() + "\n")
        os.chmod(path, 0o600)
        return path

    # --- derivation -----------------------------------------------------------------------
    @property
    def key_id(self) -> str:
        """Short public id: hex of the first 8 bytes of HMAC-SHA256(key, "voxproof key id")."""
        return self.mac(_KEY_ID_LABEL)[:8].hex()

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key."""
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def stream(self, label: str) -> KeyStream:
        """An AES-256-CTR keystream whose key is HMAC(key, label): one per kind of choice."""
        return KeyStream(self.mac(b"voxproof stream " + label.encode()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatermarkKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"WatermarkKey(key_id={self.key_id})"


class KeyStream:
    """Deterministic pseudo-random values from AES-256-CTR (a DRBG keyed by a derived key)."""

    def __init__(self, aes_key: bytes) -> None:
        self._enc = Cipher(algorithms.AES(aes_key), modes.CTR(bytes(16))).encryptor()

    def bytes(self, n: int) -> bytes:
        return self._enc.update(bytes(n))

    def uint64(self, n: int) -> np.ndarray:
        return np.frombuffer(self.bytes(8 * n), dtype="<u8").copy()

    def uniform(self, n: int) -> np.ndarray:
        """``n`` floats uniform in [0, 1) with 53 random bits each."""
        return (self.uint64(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def bits(self, n: int) -> np.ndarray:
        return (self.uint64(n) & np.uint64(1)).astype(np.int8)

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of ``range(n)`` (ties have probability ~n^2/2^64)."""
        return np.argsort(self.uint64(n), kind="stable")
