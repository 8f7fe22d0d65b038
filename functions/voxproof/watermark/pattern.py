"""The keyed time-frequency layout of one mark unit (every choice comes from the key).

A unit is 16 blocks (1.024 s) x 28 bands = 448 cells; each carries one of 224 positions (32
pilots, 192 coded bits), every position twice, with a key-derived dither. docs/watermark.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

from voxproof.watermark import ecc
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.payload import PAYLOAD_BITS

BANDS: Final = 28
UNIT_BLOCKS: Final = 16
CELLS: Final = UNIT_BLOCKS * BANDS
CODED_BITS: Final = PAYLOAD_BITS * ecc.RATE_INV
PILOTS: Final = 32
POSITIONS: Final = CODED_BITS + PILOTS
COPIES: Final = CELLS // POSITIONS


@dataclass(frozen=True)
class Pattern:
    """Per-cell arrays (length CELLS, cell index = block * BANDS + band) for one key."""

    block: np.ndarray  # block of the unit (0..15)
    band: np.ndarray  # band (0..27)
    position: np.ndarray  # which position the cell carries (0..223)
    dither: np.ndarray  # fraction of the quantiser step, uniform in [0, 1)
    pilot_bits: np.ndarray  # (POSITIONS,) bit of each pilot position, -1 elsewhere
    coded_index: np.ndarray  # (POSITIONS,) index into the coded bits, -1 for pilots

    def cell_bits(self, coded: np.ndarray) -> np.ndarray:
        """The bit (0/1) each cell carries, given the 192 coded bits."""
        per_position = np.where(self.coded_index >= 0, coded[self.coded_index], self.pilot_bits)
        return per_position[self.position].astype(np.int8)

    @property
    def is_pilot(self) -> np.ndarray:
        """(CELLS,) whether each cell carries a pilot bit."""
        return self.coded_index[self.position] < 0

    @property
    def coded_positions(self) -> np.ndarray:
        """(CODED_BITS,) the position carrying each coded bit (the keyed interleaver)."""
        out = np.empty(CODED_BITS, dtype=np.int64)
        carrying = np.flatnonzero(self.coded_index >= 0)
        out[self.coded_index[carrying]] = carrying
        return out


@lru_cache(maxsize=64)
def pattern_for(key: WatermarkKey) -> Pattern:
    """Build (and cache) the layout of ``key``."""
    cells = np.arange(CELLS)
    position = key.stream("cells").permutation(CELLS) % POSITIONS
    roles = key.stream("roles").permutation(POSITIONS)
    coded_index = np.full(POSITIONS, -1, dtype=np.int64)
    coded_index[roles[PILOTS:]] = np.arange(CODED_BITS)
    pilot_bits = np.full(POSITIONS, -1, dtype=np.int8)
    pilot_bits[roles[:PILOTS]] = key.stream("pilots").bits(PILOTS)
    return Pattern(
        block=cells // BANDS,
        band=cells % BANDS,
        position=position,
        dither=key.stream("dither").uniform(CELLS),
        pilot_bits=pilot_bits,
        coded_index=coded_index,
    )
