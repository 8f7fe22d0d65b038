"""What every engine shares: its layer's facts, phoneme ids and scales checked one way, and
the sampling noise a seed stands for.

Imports numpy and voxproof's own models only, so both engines (torch and ONNX) share it
without either pulling in the other's libraries. A seed means the same noise on every engine
(:func:`seeded_noise`), so the same text and seed give the same audio on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from voxproof.errors import InvalidPhonemeIds, InvalidScales
from voxproof.voice.manifest import InferenceScales, Manifest

if TYPE_CHECKING:
    from voxproof.voice.layer import VerifiedLayer

MAX_IDS: Final = 4_000
"""Most phoneme ids one ``infer`` call takes (a long clause is a few hundred)."""
NOISE_DP_STREAM: Final = 0
"""PCG64 stream of the stochastic duration predictor's noise (``[ids, 2]``)."""
NOISE_Z_STREAM: Final = 1
"""PCG64 stream of the prior's noise (``[frames, channels]``)."""


def seeded_noise(seed: int | None, stream: int, rows: int, columns: int) -> np.ndarray:
    """``rows x columns`` float32 standard normals: what a seed means on every engine.

    numpy's PCG64 seeded with ``[seed, stream]`` (fresh entropy for ``None``), filled row by
    row, so the first rows never depend on ``rows``: a longer buffer starts with the same
    noise as a shorter one. Row ``i`` is the noise of phoneme id ``i`` (``NOISE_DP_STREAM``) or
    of decoder frame ``i`` (``NOISE_Z_STREAM``).
    """
    rng = np.random.default_rng(None if seed is None else [seed, stream])
    return rng.standard_normal((rows, columns), dtype=np.float32)


def check_ids(ids: Sequence[int], num_symbols: int, *, min_ids: int = 1) -> np.ndarray:
    """``ids`` as a 1-D int64 array, or ``InvalidPhonemeIds`` naming what is wrong."""
    try:
        array = np.asarray(ids)
    except (TypeError, ValueError):
        raise InvalidPhonemeIds("phoneme ids must be a flat sequence of integers") from None
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise InvalidPhonemeIds("phoneme ids must be a non-empty flat sequence of integers")
    if array.size > MAX_IDS:
        raise InvalidPhonemeIds(f"{array.size} phoneme ids; one call takes at most {MAX_IDS}")
    if array.size < min_ids:
        raise InvalidPhonemeIds(f"{array.size} phoneme ids; this engine needs at least {min_ids}")
    if array.min() < 0 or array.max() >= num_symbols:
        raise InvalidPhonemeIds(f"phoneme ids must lie in [0, {num_symbols})")
    return array.astype(np.int64)


def resolve_scales(defaults: InferenceScales, noise: float | None, length: float | None,
                   noise_dp: float | None) -> InferenceScales:
    """The voice's default scales with this call's overrides, or ``InvalidScales``."""
    try:
        return InferenceScales(
            noise_scale=float(defaults.noise_scale if noise is None else noise),
            length_scale=float(defaults.length_scale if length is None else length),
            noise_scale_dp=float(defaults.noise_scale_dp if noise_dp is None else noise_dp),
        )
    except ValueError:
        raise InvalidScales("inference scales are out of range") from None


class LayerEngine:
    """What an engine reads from its verified layer (both engines set ``self._layer``)."""

    _layer: VerifiedLayer

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""
        return self._layer.manifest.engine.settings.sample_rate

    @property
    def voice(self) -> str:
        """The voice's name, e.g. ``en_US-joe-medium``."""
        return self._layer.manifest.model.name

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the layer's manifest: the model's identity for provenance."""
        return self._layer.manifest_sha256

    @property
    def manifest(self) -> Manifest:
        """The layer's manifest (frontend settings, licences, sources)."""
        return self._layer.manifest

    @property
    def num_symbols(self) -> int:
        """Every phoneme id must be below this."""
        return self._layer.manifest.engine.settings.num_symbols

    @property
    def defaults(self) -> InferenceScales:
        """The voice's default sampling scales."""
        return self._layer.manifest.engine.settings.inference
