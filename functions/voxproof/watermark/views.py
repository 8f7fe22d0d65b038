"""The received audio under each hypothesis the detector tries: cell phasors and their weights.

Hypotheses: sub-hop time offsets and speed changes, all read from one spectrogram; weightings
``codec`` and ``noise``. See docs/watermark.md, "Views".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from voxproof.watermark import analysis as an
from voxproof.watermark.embed import FLOOR_POWER, GATE_DB, SLOT_ENERGY_PER_POWER
from voxproof.watermark.pattern import UNIT_BLOCKS

UNIT_HOPS: Final = UNIT_BLOCKS * an.BLOCK_HOPS  # 256 analysis hops = 1.024 s
SCALES: Final = tuple(round(0.01 * k, 4) for k in range(-3, 4))  # speed changes, -3 .. +3 %
PHASES: Final = (0.0, 0.25, 0.5, 0.75)  # sub-hop time offsets tried without a speed change
SPEED_PHASES: Final = (0.0,)  # ... and under a speed change (tracking absorbs the rest)
WEIGHTINGS: Final = ("codec", "noise")  # tried without a speed change; speed views: "codec"
RELIABLE_STEP: Final = 0.5  # a cell's weight is step / (step + RELIABLE_STEP)
NOISE_DB: Final = 10.0  # "noise" weighting: e per this many dB below the loud tiles ...
NOISE_KNEE_DB: Final = 15.0  # ... beyond this many
_DB: Final = np.log(10.0) / 10.0


@dataclass
class View:
    """The received audio under one hypothesis; frame h of the view is received frame
    ``phase + h * time_scale`` (4 ms frames)."""

    scale: float  # speed change undone (0 for none)
    weighting: str
    phase: float
    time_scale: float
    phasor: np.ndarray  # (frames, BANDS) complex: weight * exp(2 pi i value / step)
    square: np.ndarray  # (frames, BANDS) complex: weight * exp(4 pi i value / step) (blind sync)
    activity: np.ndarray  # (frames, BANDS): speech activity of the cell's slots (0..1)

    @property
    def mode(self) -> str:
        return "speed" if self.scale else "none"

    def seconds(self, frame: float) -> float:
        """Time in the received audio of view frame ``frame``."""
        return ((self.phase + frame * self.time_scale) * an.HOP + an.HOP / 2) / an.RATE


class Views:
    """The hypotheses in search order (no change first), each computed on first use."""

    def __init__(self, x8: np.ndarray) -> None:
        self._power = an.power(x8)
        self._cells: dict[tuple[float, float], _Cells | None] = {}
        self._views: dict[tuple[float, float, str], View | None] = {}
        speeds = sorted((s for s in SCALES if s), key=lambda s: (abs(s), s))
        self.plan: list[tuple[float, float, str]] = [
            (0.0, p, w) for w in WEIGHTINGS for p in PHASES
        ] + [(s, p, "codec") for s in speeds for p in SPEED_PHASES]

    def get(self, scale: float, phase: float, weighting: str = "codec") -> View | None:
        """The view of one hypothesis, or None if the audio is too short for a unit."""
        if (scale, phase, weighting) not in self._views:
            if (scale, phase) not in self._cells:
                self._cells[(scale, phase)] = _cells(self._power, scale, phase)
            cells = self._cells[(scale, phase)]
            self._views[(scale, phase, weighting)] = (
                None if cells is None else cells.view(scale, phase, weighting)
            )
        return self._views[(scale, phase, weighting)]


@dataclass
class _Cells:
    """Weighting-independent parts of a view."""

    log_e: np.ndarray  # (frames + 8, BANDS) slot log energies
    unit: np.ndarray  # (frames, BANDS) reliability * exp(2 pi i value / step)
    activity: np.ndarray  # (frames,) speech activity of the cell's two slots
    loud_db: np.ndarray  # (frames, BANDS) how far (dB) the weaker tile is below the loud tiles

    def view(self, scale: float, phase: float, weighting: str) -> View:
        weight = self.activity[:, None] * (self.loud_weight() if weighting == "noise" else 1.0)
        phasor = weight * self.unit
        return View(scale, weighting, phase, 1.0 / (1.0 + scale), phasor, phasor * self.unit,
                    np.broadcast_to(self.activity[:, None], phasor.shape))

    def loud_weight(self) -> np.ndarray:
        return np.exp(-np.maximum(self.loud_db - NOISE_KNEE_DB, 0.0) / NOISE_DB)


def _cells(power: np.ndarray, scale: float, phase: float) -> _Cells | None:
    time_scale = 1.0 / (1.0 + scale)
    bands = an.stretch_frames(an.band_energy(power, 1.0 + scale), time_scale, phase)
    if len(bands) < UNIT_HOPS // 2:
        return None
    log_e = an.slot_log_energy(bands)
    first, second = log_e[: -an.SLOT_HOPS], log_e[an.SLOT_HOPS :]
    steps = an.cell_steps(first, second)
    angle = an.cell_values(log_e) * (2 * np.pi) / steps
    unit = np.empty(angle.shape, dtype=complex)
    unit.real, unit.imag = np.cos(angle), np.sin(angle)
    unit *= steps / (steps + RELIABLE_STEP)
    act = _activity(log_e)
    loud = log_e[act > 0]
    top = np.percentile(loud, 99) if len(loud) else 0.0
    loud_db = np.maximum(top - np.minimum(first, second), 0.0) / _DB
    return _Cells(log_e, unit, act[: -an.SLOT_HOPS] * act[an.SLOT_HOPS :], loud_db)


def _activity(log_e: np.ndarray) -> np.ndarray:
    """Speech activity of each slot: 1 within GATE_DB of the loudest slots, fading to 0 over
    the next 5 dB; 0 below the embedder's floor (the embedder marks only such slots)."""
    level = np.log(np.exp(log_e).sum(axis=1))
    ref = np.percentile(level, 99)
    floor = np.log(FLOOR_POWER * SLOT_ENERGY_PER_POWER)
    return np.clip((level - (ref - (GATE_DB + 5) * _DB)) / (5 * _DB), 0.0, 1.0) * (level >= floor)
