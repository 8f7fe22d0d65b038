"""The received audio under each hypothesis the detector tries: cell phasors and their weights.

Hypotheses: sub-hop time offsets, speed changes (time and frequency scaled alike), pitch shifts
with tempo kept (frequency only) and tempo changes with pitch kept (time only), all read from one
spectrogram; weightings ``codec``, ``noise`` and ``onset``. ``Views.plan`` lists the first stage
of the search (no change, speed +-3 %), ``Views.wide_plan`` the second (speed +-4..8 %, pitch
+-25..100 cents, tempo +-4..8 %, the onset weighting). Views only choose which alignments get
decoded; they do not enter the record's false-positive bound, and the presence tier counts each
as 256 hypotheses (docs/watermark.md, "Views", "Guarantees", "Presence").
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
WIDE_SPEEDS: Final = tuple(round(0.01 * k, 4) for k in (4, 5, 6, 7, 8))  # +- each: 2nd stage
PITCH_CENTS: Final = (25, 50, 75, 100)  # +- each, tempo kept (2nd stage)
TEMPOS: Final = tuple(round(0.01 * k, 4) for k in (4, 5, 6, 7, 8))  # +- each, pitch kept
PHASES: Final = (0.0, 0.25, 0.5, 0.75)  # sub-hop time offsets tried without a speed change
SPEED_PHASES: Final = (0.0,)  # ... and under a speed change (tracking absorbs the rest)
WEIGHTINGS: Final = ("codec", "noise")  # tried without a speed change; speed views: "codec"
WIDE_WEIGHTINGS: Final = ("onset",)  # tried without a change in the second stage
RELIABLE_STEP: Final = 0.5  # a cell's weight is step / (step + RELIABLE_STEP)
NOISE_DB: Final = 10.0  # "noise" weighting: e per this many dB below the loud tiles ...
NOISE_KNEE_DB: Final = 15.0  # ... beyond this many
ONSET_LAGS: Final = (16, 48)  # "onset": the same band 64 .. 192 ms earlier (in 4 ms hops) ...
ONSET_WIDTH_DB: Final = 3.0  # ... weight = logistic((weaker tile - loudest of those) / this)
_DB: Final = np.log(10.0) / 10.0
MIN_FRAMES: Final = 2 * an.BLOCK_HOPS
"""Fewest analysis frames a view is made of: one block of cells (the slots' energies and the
cells' second slot take a block). Shorter inputs (under about 0.13 s) have no view and nothing
is searched. It was half a unit (0.51 s) before issue 10: a 0.3-0.5 s utterance was never
searched, though a third of a unit often holds a decodable record (docs/watermark.md, "Short
utterances"); the bounds count decodes and hypotheses, not frames, and are unchanged."""
DETECT_BYTES: Final = 200 * 2**20
"""What a detection may hold: ``Views`` gives its cache what the rest leaves of this."""
OTHER_BYTES_PER_FRAME: Final = 5_000
"""What a detection holds besides the cache, per 4 ms frame: the power and its running sum over
bins (2 KB), the followed alignment's four stacked views (1.8 KB), the temporaries of computing
one hypothesis."""
MIN_CACHE_BYTES: Final = 32 * 2**20


@dataclass(frozen=True)
class Hypothesis:
    """A change the detector undoes: ``mode`` none / speed / pitch / tempo and its size
    ``change`` (speed and tempo: the rate change, +0.05 = 5 % faster; pitch: the frequency
    factor - 1, +0.0595 = +100 cents), read at sub-hop ``phase`` with ``weighting``."""

    mode: str
    change: float
    phase: float
    weighting: str = "codec"

    @property
    def freq_scale(self) -> float:
        """Factor the change moved frequencies by (band edges are stretched by it)."""
        return 1.0 + self.change if self.mode in ("speed", "pitch") else 1.0

    @property
    def time_scale(self) -> float:
        """View frame h is received frame ``phase + h * time_scale``."""
        return 1.0 / (1.0 + self.change) if self.mode in ("speed", "tempo") else 1.0


def pitch_change(cents: float) -> float:
    """A pitch shift of ``cents`` as a frequency factor - 1."""
    return round(2.0 ** (cents / 1200.0) - 1.0, 6)


class View:
    """The received audio under one hypothesis; frame h of the view is received frame
    ``phase + h * time_scale`` (4 ms frames).

    Its arrays are made when read, from the cells its ``Views`` keeps in a bounded cache (the
    phasors of the costly weightings are kept there too), so holding a view (a sync candidate
    does) holds no audio-length memory."""

    def __init__(self, owner: Views, hyp: Hypothesis) -> None:
        self._owner = weakref.proxy(owner)  # no cycle: the arrays go as soon as the Views do
        self.hyp = hyp
        self.scale = hyp.change  # change undone (0 for none): ``Hypothesis.change``
        self.weighting = hyp.weighting
        self.phase = hyp.phase
        self.time_scale = hyp.time_scale
        self.mode = hyp.mode  # none / speed / pitch / tempo

    @property
    def frames(self) -> int:
        """How many frames the view has (``len(self.phasor)``, without computing it)."""
        return self._owner._frames(self.time_scale, self.phase)

    @property
    def phasor(self) -> np.ndarray:
        """(frames, BANDS) complex: weight * exp(2 pi i value / step)."""
        return self._owner._phasor(self.hyp)

    @property
    def square(self) -> np.ndarray:
        """(frames, BANDS) complex: weight * exp(4 pi i value / step) (blind sync)."""
        return self._owner._phasor(self.hyp) * self._owner._cells_of(self.hyp).unit

    def phasors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(phasor, square)``, the phasor made once for both."""
        phasor = self._owner._phasor(self.hyp)
        return phasor, phasor * self._owner._cells_of(self.hyp).unit

    @property
    def activity(self) -> np.ndarray:
        """(frames, BANDS): speech activity of the cell's slots (0..1)."""
        cells = self._owner._cells_of(self.hyp)
        return np.broadcast_to(cells.activity[:, None], cells.unit.shape)

    def seconds(self, frame: float) -> float:
        """Time in the received audio of view frame ``frame``."""
        return ((self.phase + frame * self.time_scale) * an.HOP + an.HOP / 2) / an.RATE


class Views:
    """The hypotheses in search order (no change first), each computed on first use.

    Memory is bounded: only the short-time power (and its running sum over bins, which every
    band energy reads) is kept for the whole search; the band
    energies, cells and view arrays of each hypothesis live in a least-recently-used cache of
    at most ``cache_bytes`` (by default what ``DETECT_BYTES`` leaves after the search's other
    arrays, at least ``MIN_CACHE_BYTES``) and are computed again, identically, when needed after
    being dropped. Short inputs fit whole and are computed once, as before."""

    def __init__(self, x8: np.ndarray, cache_bytes: int | None = None) -> None:
        self._power = an.power(x8)
        self._running: np.ndarray | None = None  # an.running_power, made on first use
        frames = len(self._power)
        self.cache_bytes = cache_bytes if cache_bytes is not None else max(
            MIN_CACHE_BYTES, DETECT_BYTES - OTHER_BYTES_PER_FRAME * frames)
        self._cache: OrderedDict[tuple, tuple[int, object]] = OrderedDict()
        self._cached_bytes = 0
        self._views: dict[Hypothesis, View | None] = {}
        self._short: set[tuple[float, float, float]] = set()
        self.computed = 0  # cells computed (a measure of the work the cache bound costs)
        speeds = sorted((s for s in SCALES if s), key=lambda s: (abs(s), s))
        self.plan: list[Hypothesis] = [
            Hypothesis("none", 0.0, p, w) for w in WEIGHTINGS for p in PHASES
        ] + [Hypothesis("speed", s, p) for s in speeds for p in SPEED_PHASES]
        self.wide_plan: list[Hypothesis] = [
            Hypothesis("none", 0.0, p, w) for w in WIDE_WEIGHTINGS for p in PHASES
        ] + [
            Hypothesis(mode, change, p)
            for mode, changes in (
                ("speed", [sign * s for s in WIDE_SPEEDS for sign in (1, -1)]),
                ("pitch", [pitch_change(sign * c) for c in PITCH_CENTS for sign in (1, -1)]),
                ("tempo", [sign * t for t in TEMPOS for sign in (1, -1)]))
            for change in changes for p in SPEED_PHASES
        ]

    def get(self, hyp: Hypothesis) -> View | None:
        """The view of one hypothesis, or None if the audio is too short for a unit."""
        if hyp not in self._views:
            cells = self._cells(hyp.freq_scale, hyp.time_scale, hyp.phase)
            self._views[hyp] = None if cells is None else View(self, hyp)
        return self._views[hyp]

    def compute(self, hyp: Hypothesis) -> View | None:
        """As ``get`` (the bounded cache decides what is kept)."""
        return self.get(hyp)

    def _frames(self, time_scale: float, phase: float) -> int:
        """Frames of the views of one shape: ``stretch_frames``' rows, less a slot for the
        slots' energies and another for the cells (two slots)."""
        rows = len(self._power) if time_scale == 1.0 and phase == 0.0 else \
            int(np.floor((len(self._power) - 1 - phase) / time_scale)) + 1
        return rows - 2 * an.SLOT_HOPS

    # --- the cache --------------------------------------------------------------------------
    def _band_energy(self, freq_scale: float) -> np.ndarray:
        bands = self._cached(("bands", freq_scale))
        if bands is None:
            if self._running is None:
                self._running = an.running_power(self._power)
            bands = an.band_energy(self._power, freq_scale, self._running)
            self._keep(("bands", freq_scale), bands, bands.nbytes)
        return bands  # type: ignore[return-value]

    def _cells(self, freq_scale: float, time_scale: float, phase: float) -> _Cells | None:
        shape = (freq_scale, time_scale, phase)
        if shape in self._short:
            return None
        cells = self._cached(("cells", *shape))
        if cells is None:
            cells = _cells(self._band_energy(freq_scale), time_scale, phase)
            self.computed += 1
            if cells is None:
                self._short.add(shape)
                return None
            self._keep(("cells", *shape), cells, cells.nbytes)
        return cells  # type: ignore[return-value]

    def _cells_of(self, hyp: Hypothesis) -> _Cells:
        cells = self._cells(hyp.freq_scale, hyp.time_scale, hyp.phase)
        assert cells is not None  # get() made no view of a too-short hypothesis
        return cells

    def _phasor(self, hyp: Hypothesis) -> np.ndarray:
        """``hyp``'s phasor: the codec weighting's is one product of the cells' arrays, made at
        each read (keeping it would cost more in fresh memory than it saves); the other
        weightings' are kept in the cache."""
        if hyp.weighting == "codec":
            return self._cells_of(hyp).phasor(hyp)
        phasor = self._cached(("view", hyp))
        if phasor is None:
            phasor = self._cells_of(hyp).phasor(hyp)
            self._keep(("view", hyp), phasor, phasor.nbytes)  # type: ignore[union-attr]
        return phasor  # type: ignore[return-value]

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

    log_e: np.ndarray  # (frames + 8, BANDS) slot log energies
    unit: np.ndarray  # (frames, BANDS) reliability * exp(2 pi i value / step)
    activity: np.ndarray  # (frames,) speech activity of the cell's two slots
    slot_activity: np.ndarray  # (frames + 8,) speech activity of each slot

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.log_e, self.unit, self.activity, self.slot_activity))

    def phasor(self, hyp: Hypothesis) -> np.ndarray:
        """The view's phasor under ``hyp``'s weighting: weight * unit."""
        extra = {"noise": self.loud_weight, "onset": self.onset_weight}.get(hyp.weighting)
        weight = self.activity[:, None] * (1.0 if extra is None else extra())
        return weight * self.unit

    def tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Log energies of each cell's first and second tile (frames, BANDS)."""
        frames = len(self.unit)
        return self.log_e[:frames], self.log_e[an.SLOT_HOPS : an.SLOT_HOPS + frames]

    def loud_weight(self) -> np.ndarray:
        """A fall of e per ``NOISE_DB`` for cells whose weaker tile is more than
        ``NOISE_KNEE_DB`` below the loud tiles."""
        loud = self.log_e[self.slot_activity > 0]
        top = an.percentile(loud, 99) if len(loud) else 0.0  # the loud tiles
        loud_db = np.maximum(top - np.minimum(*self.tiles()), 0.0) / _DB
        return np.exp(-np.maximum(loud_db - NOISE_KNEE_DB, 0.0) / NOISE_DB)

    def onset_weight(self) -> np.ndarray:
        """Trust in each cell against echoes: a logistic of how far (dB) the cell's weaker tile
        stands above the loudest tile of its band 64-192 ms earlier (an echo tail fills decays,
        not onsets). Key-independent."""
        frames = len(self.unit)
        first, second = self.tiles()
        low, high = ONSET_LAGS
        padded = np.vstack([np.full((high, self.log_e.shape[1]), -np.inf), self.log_e])
        # earlier[t] = max of log_e[t - high .. t - low] (padded rows t .. t + high - low)
        earlier = _window_max(padded, high - low + 1)
        margin = np.where(first <= second, first - earlier[:frames],
                          second - earlier[an.SLOT_HOPS : an.SLOT_HOPS + frames])
        margin_db = np.clip(margin / _DB, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-margin_db / ONSET_WIDTH_DB))


def _window_max(x: np.ndarray, width: int) -> np.ndarray:
    """``out[t] = x[t : t + width].max(axis=0)``: maxima over windows of 1, 2, 4, ... rows, then
    of two overlapping windows of the largest power of two (the same values as a maximum over
    each whole window, in a few passes instead of ``width`` per row)."""
    span = 1
    out = x
    while 2 * span <= width:
        out = np.maximum(out[:-span], out[span:])
        span *= 2
    rows = len(x) - width + 1
    return np.maximum(out[:rows], out[width - span : width - span + rows])


def _cells(band_energy: np.ndarray, time_scale: float, phase: float) -> _Cells | None:
    bands = an.stretch_frames(band_energy, time_scale, phase)
    if len(bands) < MIN_FRAMES:
        return None
    log_e = an.slot_log_energy(bands)
    first, second = log_e[: -an.SLOT_HOPS], log_e[an.SLOT_HOPS :]
    level = an.slot_levels(log_e)  # read by the steps and the activity alike
    steps = an.cell_steps(first, second, (level[: -an.SLOT_HOPS], level[an.SLOT_HOPS :]))
    turns = an.cell_values(log_e)
    turns /= steps
    # the angle reduced to +-pi, then cos and sin in float32 (SIMD, ten times float64's speed;
    # within 2e-7 of float64's, far below any cell's noise); in place where it can be
    turns -= np.rint(turns)
    turns *= 2 * np.pi
    angle = turns.astype(np.float32)
    unit = np.empty(steps.shape, dtype=complex)
    unit.real, unit.imag = np.cos(angle), np.sin(angle)
    weight = steps + RELIABLE_STEP
    np.divide(steps, weight, out=weight)
    unit *= weight
    act = _activity(level)
    return _Cells(log_e, unit, act[: -an.SLOT_HOPS] * act[an.SLOT_HOPS :], act)


def _activity(level: np.ndarray) -> np.ndarray:
    """Speech activity of each slot from its ``slot_levels``: 1 within GATE_DB of the loudest
    slots, fading to 0 over the next 5 dB; 0 below the embedder's floor (the embedder marks
    only such slots)."""
    ref = an.percentile(level, 99)
    floor = np.log(FLOOR_POWER * SLOT_ENERGY_PER_POWER)
    return np.clip((level - (ref - (GATE_DB + 5) * _DB)) / (5 * _DB), 0.0, 1.0) * (level >= floor)
