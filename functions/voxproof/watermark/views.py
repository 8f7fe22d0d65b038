"""The received audio under each hypothesis the detector tries: cell phasors and their weights.

Hypotheses: sub-hop time offsets and speed changes, all read from one spectrogram; weightings
``codec`` and ``noise``. See docs/watermark.md, "Views".

Memory: only the spectrogram is kept for a whole search; the hypotheses' arrays live in a
bounded cache (``DETECT_BYTES``) and are computed again, identically, when needed after being
dropped, so a view's arrays never depend on the bound (docs/verify-hardening.md).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
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
DETECT_BYTES: Final = 200 * 2**20
"""What a detection may hold: ``Views`` gives its cache what the rest leaves of this."""
OTHER_BYTES_PER_FRAME: Final = 4_000
"""What a detection holds besides the cache, per 4 ms frame: the power (1 KB), the followed
alignment's four stacked views (1.8 KB), the temporaries of computing one hypothesis."""
MIN_CACHE_BYTES: Final = 32 * 2**20


class View:
    """The received audio under one hypothesis; frame h of the view is received frame
    ``phase + h * time_scale`` (4 ms frames).

    Its arrays are made when first read and kept in its ``Views``' bounded cache, so holding
    a view (a sync candidate does) holds no audio-length memory."""

    def __init__(self, owner: Views, scale: float, phase: float, weighting: str) -> None:
        self._owner = weakref.proxy(owner)  # no cycle: the arrays go as soon as the Views do
        self.scale = scale  # speed change undone (0 for none)
        self.weighting = weighting
        self.phase = phase
        self.time_scale = 1.0 / (1.0 + scale)

    @property
    def frames(self) -> int:
        """How many frames the view has (``len(self.phasor)``, without computing it)."""
        return self._owner._frames(self.scale, self.phase)

    @property
    def key(self) -> tuple[float, float, str]:
        return (self.scale, self.phase, self.weighting)

    @property
    def phasor(self) -> np.ndarray:
        """(frames, BANDS) complex: weight * exp(2 pi i value / step)."""
        return self._owner._arrays(self)[0]

    @property
    def square(self) -> np.ndarray:
        """(frames, BANDS) complex: weight * exp(4 pi i value / step) (blind sync)."""
        return self._owner._arrays(self)[1]

    @property
    def activity(self) -> np.ndarray:
        """(frames, BANDS): speech activity of the cell's slots (0..1)."""
        phasor, _, activity = self._owner._arrays(self)
        return np.broadcast_to(activity[:, None], phasor.shape)

    @property
    def mode(self) -> str:
        return "speed" if self.scale else "none"

    def seconds(self, frame: float) -> float:
        """Time in the received audio of view frame ``frame``."""
        return ((self.phase + frame * self.time_scale) * an.HOP + an.HOP / 2) / an.RATE


class Views:
    """The hypotheses in search order (no change first), each computed on first use.

    Memory is bounded: only the short-time power is kept for the whole search; the cells and
    view arrays of each hypothesis live in a least-recently-used cache of at most
    ``cache_bytes`` (by default what ``DETECT_BYTES`` leaves after the search's other arrays,
    at least ``MIN_CACHE_BYTES``) and are computed again, identically, when needed after being
    dropped. Short inputs fit whole and are computed once, as before."""

    def __init__(self, x8: np.ndarray, cache_bytes: int | None = None) -> None:
        self._power = an.power(x8)
        frames = len(self._power)
        self.cache_bytes = cache_bytes if cache_bytes is not None else max(
            MIN_CACHE_BYTES, DETECT_BYTES - OTHER_BYTES_PER_FRAME * frames)
        self._cache: OrderedDict[tuple, tuple[int, object]] = OrderedDict()
        self._cached_bytes = 0
        self._views: dict[tuple[float, float, str], View | None] = {}
        self._short: set[tuple[float, float]] = set()
        self.computed = 0  # cells computed (a measure of the work the cache bound costs)
        speeds = sorted((s for s in SCALES if s), key=lambda s: (abs(s), s))
        self.plan: list[tuple[float, float, str]] = [
            (0.0, p, w) for w in WEIGHTINGS for p in PHASES
        ] + [(s, p, "codec") for s in speeds for p in SPEED_PHASES]

    def get(self, scale: float, phase: float, weighting: str = "codec") -> View | None:
        """The view of one hypothesis, or None if the audio is too short for a unit."""
        key = (scale, phase, weighting)
        if key not in self._views:
            cells = self._cells(scale, phase)
            self._views[key] = None if cells is None else View(self, scale, phase, weighting)
        return self._views[key]

    def _frames(self, scale: float, phase: float) -> int:
        """Frames of the views of one hypothesis: ``stretch_frames``' rows, less a slot for
        the slots' energies and another for the cells (two slots)."""
        time_scale = 1.0 / (1.0 + scale)
        rows = len(self._power) if time_scale == 1.0 and phase == 0.0 else \
            int(np.floor((len(self._power) - 1 - phase) / time_scale)) + 1
        return rows - 2 * an.SLOT_HOPS

    # --- the cache --------------------------------------------------------------------------
    def _cells(self, scale: float, phase: float) -> _Cells | None:
        if (scale, phase) in self._short:
            return None
        cells = self._cached(("cells", scale, phase))
        if cells is None:
            cells = _cells(self._power, scale, phase)
            self.computed += 1
            if cells is None:
                self._short.add((scale, phase))
                return None
            self._keep(("cells", scale, phase), cells, cells.nbytes)
        return cells  # type: ignore[return-value]

    def _arrays(self, view: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(phasor, square, activity) of ``view``, from the cache or computed now."""
        arrays = self._cached(("view", *view.key))
        if arrays is None:
            cells = self._cells(view.scale, view.phase)
            assert cells is not None  # get() made no view of a too-short hypothesis
            arrays = cells.arrays(view.weighting)
            self._keep(("view", *view.key), arrays, sum(a.nbytes for a in arrays[:2]))
        return arrays  # type: ignore[return-value]

    def _cached(self, key: tuple) -> object | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        self._cache.move_to_end(key)
        return entry[1]

    def _keep(self, key: tuple, value: object, size: int) -> None:
        """Cache ``value``, dropping the least recently used entries beyond the budget (never
        the newest: the caller is using it)."""
        self._cache[key] = (size, value)
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (dropped, _) = self._cache.popitem(last=False)
            self._cached_bytes -= dropped


@dataclass
class _Cells:
    """Weighting-independent parts of a view."""

    unit: np.ndarray  # (frames, BANDS) reliability * exp(2 pi i value / step)
    activity: np.ndarray  # (frames,) speech activity of the cell's two slots
    loud_db: np.ndarray  # (frames, BANDS) how far (dB) the weaker tile is below the loud tiles

    @property
    def nbytes(self) -> int:
        return self.unit.nbytes + self.activity.nbytes + self.loud_db.nbytes

    def arrays(self, weighting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(phasor, square, activity) under ``weighting``."""
        weight = self.activity[:, None] * (self.loud_weight() if weighting == "noise" else 1.0)
        phasor = weight * self.unit
        return phasor, phasor * self.unit, self.activity

    def loud_weight(self) -> np.ndarray:
        return np.exp(-np.maximum(self.loud_db - NOISE_KNEE_DB, 0.0) / NOISE_DB)


def _cells(power: np.ndarray, scale: float, phase: float) -> _Cells | None:
    time_scale = 1.0 / (1.0 + scale)
    bands = an.stretch_frames(an.band_energy(power, 1.0 + scale), time_scale, phase)
    if len(bands) < UNIT_HOPS // 2:
        return None
    log_e = an.slot_log_energy(bands)
    del bands
    first, second = log_e[: -an.SLOT_HOPS], log_e[an.SLOT_HOPS :]
    steps = an.cell_steps(first, second)
    angle = an.cell_values(log_e)
    angle *= 2 * np.pi
    angle /= steps
    unit = np.empty(angle.shape, dtype=complex)
    np.cos(angle, out=unit.real)
    np.sin(angle, out=unit.imag)
    del angle
    steps /= steps + RELIABLE_STEP
    unit *= steps
    del steps
    act = _activity(log_e)
    loud = log_e[act > 0]
    top = np.percentile(loud, 99) if len(loud) else 0.0
    del loud
    loud_db = np.minimum(first, second)
    np.subtract(top, loud_db, out=loud_db)
    np.maximum(loud_db, 0.0, out=loud_db)
    loud_db /= _DB
    return _Cells(unit, act[: -an.SLOT_HOPS] * act[an.SLOT_HOPS :], loud_db)


def _activity(log_e: np.ndarray) -> np.ndarray:
    """Speech activity of each slot: 1 within GATE_DB of the loudest slots, fading to 0 over
    the next 5 dB; 0 below the embedder's floor (the embedder marks only such slots)."""
    level = np.log(np.exp(log_e).sum(axis=1))
    ref = np.percentile(level, 99)
    floor = np.log(FLOOR_POWER * SLOT_ENERGY_PER_POWER)
    return np.clip((level - (ref - (GATE_DB + 5) * _DB)) / (5 * _DB), 0.0, 1.0) * (level >= floor)
