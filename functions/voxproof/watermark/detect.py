"""Detection: search scale hypotheses and unit alignments, decode, verify the tag, localise.

For every hypothesis (no change, at four sub-hop offsets and two cell weightings; a speed change
by s on a grid within +-3 %, undone by resampling) every cell value v is turned into a
weighted phasor ``w * exp(2 pi i v / step)`` and the phasors are folded modulo the unit length
(soft combining of repeats). A key's dithers and pilot bits then give, for each of the 256
possible unit alignments, sync correlations; the best alignments are decoded (soft Viterbi)
and accepted only if the keyed tag verifies. Per-window correlations with the decoded codeword
give the marked / unmarked time ranges.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import resample_poly

from voxproof.watermark import analysis as an
from voxproof.watermark import ecc
from voxproof.watermark.embed import _SLOT_ENERGY_PER_POWER, FLOOR_POWER, GATE_DB
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.pattern import BANDS, UNIT_BLOCKS, Pattern, pattern_for
from voxproof.watermark.payload import TAG_BITS, format_record_id, read_payload

UNIT_HOPS: Final = UNIT_BLOCKS * an.BLOCK_HOPS  # 256 analysis hops = 1.024 s
SCALES: Final = tuple(round(0.01 * k, 4) for k in range(-3, 4))  # -3 % .. +3 %
PHASES: Final = (0.0, 0.25, 0.5, 0.75)  # sub-hop time offsets (fractions of 4 ms) searched
SPEED_PHASES: Final = (0.0,)  # ... under speed hypotheses
MODES: Final = ("speed",)  # "tempo" (time axis only) is supported but off: see the docstring
RELIABLE_STEP: Final = 0.5  # a cell's weight is step / (step + this): coarse cells are robust
WEIGHT_DB: Final = 0.0  # 0: no loudness weighting (codecs); the second weighting:
FLAT_WEIGHT_DB: Final = 10.0  # weight falls by e per this many dB below the loud tiles...
NOISE_KNEE_DB: Final = 15.0  # ... beyond this many (noise fills quiet tiles)
SEARCH_WINDOW: Final = 4 * UNIT_HOPS  # sync search windows (about 4 s, half overlapping)
LOCAL_WINDOW: Final = UNIT_HOPS  # localisation windows (about 1 s, half overlapping)
CANDIDATES: Final = 5  # alignments decoded per key (best sync correlations)
MAX_ATTEMPTS: Final = 2 * (CANDIDATES + 1) + 1  # decode attempts per key: the false-positive budget
EARLY_EXIT_Z: Final = 8.0  # sync this strong without a speed change: decode before searching
TRACK: Final = 24  # frames a search window may drift from the candidate's alignment
FOLLOW_WINDOW: Final = 4 * an.BLOCK_HOPS  # 256 ms windows for the followed alignment
FEEDBACK_ROUNDS: Final = 5  # decode, re-encode, re-follow
FOLLOW_JITTER: Final = 4  # quarter frames of jitter allowed around the drift per window
FOLLOW_RATES: Final = (-0.03, -0.015, 0.0, 0.015, 0.03)  # tempo drifts tried when following
MARKED_Z: Final = 5.0  # a localisation window is marked at or above this correlation
SPEECH_WEIGHT: Final = 8.0  # below this total cell weight a window has too little speech


@dataclass(frozen=True)
class Segment:
    """A time range judged marked or unmarked."""

    start_s: float
    end_s: float
    marked: bool
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "marked": self.marked,
            "score": round(self.score, 2),
        }


@dataclass(frozen=True)
class Detection:
    """What ``detect`` found. ``record_id`` is set only when its keyed tag verified."""

    found: bool
    record_id: int | None = None
    key_id: str | None = None
    tag_verified: bool = False
    score: float = 0.0
    p_false: float = 0.0
    windows: list[tuple[float, float, float]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    speed: float | None = None
    mode: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "record_id": None if self.record_id is None else format_record_id(self.record_id),
            "key_id": self.key_id,
            "tag_verified": self.tag_verified,
            "score": round(self.score, 2),
            "p_false": self.p_false,
            "speed": self.speed,
            "mode": self.mode,
            "windows": [[round(a, 3), round(b, 3), round(s, 2)] for a, b, s in self.windows],
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass
class _View:
    """The received audio under one scale hypothesis."""

    mode: str
    scale: float
    phase: float  # received frame = phase + hypothesis frame * time_scale
    time_scale: float
    phasor: np.ndarray  # (frames, BANDS) complex: weight * exp(2 pi i value / step)
    weight: np.ndarray  # (frames, BANDS)
    square: np.ndarray  # (frames, BANDS): phasor ** 2 / weight (second harmonic, blind sync)


@dataclass
class _Candidate:
    view: _View
    start: int  # first frame of the folded range
    stop: int
    offset: int  # alignment: a unit starts at frame offset (mod UNIT_HOPS)
    z: float


def detect(samples: np.ndarray, sample_rate: int, keys: Sequence[WatermarkKey]) -> Detection:
    """Look for a mark of any of ``keys`` in ``samples`` (float, (n,) or (n, channels)).

    Example:
        >>> key = WatermarkKey.from_hex("5a" * 32)
        >>> noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        >>> detect(noise, 8000, [key]).found
        False
    """
    return inspect(samples, sample_rate, keys)[0]


def inspect(
    samples: np.ndarray, sample_rate: int, keys: Sequence[WatermarkKey]
) -> tuple[Detection, np.ndarray | None]:
    """``detect`` plus the payload bits of the first decode attempt (for benchmarks only:
    unverified bits must never be reported as a record id)."""
    keys = list(keys)
    views = _Views(an.to_internal(samples, sample_rate))
    attempts = 0
    first_bits = None
    for key in keys:
        hit, used, bits = _search(views, key)
        attempts += used
        first_bits = bits if first_bits is None else first_bits
        if hit is not None:
            return _report(hit, key, attempts), hit[2]
    return Detection(found=False, p_false=_p_false(attempts)), first_bits


def _p_false(attempts: int) -> float:
    """Union bound: each decode attempt on unmarked audio verifies with probability 2^-24."""
    return min(1.0, attempts * 2.0**-TAG_BITS)


# --- the search -----------------------------------------------------------------------------
class _Views:
    """Scale hypotheses in search order (no change first), computed on first use.

    A speed change (resampling: time and pitch) is undone exactly by resampling the 8 kHz
    signal back; a tempo change (time only) by interpolating the frame axis of the spectrogram.
    """

    def __init__(self, x8: np.ndarray) -> None:
        self._x8 = x8
        self._power = an.power(x8)
        self._cache: dict[tuple[str, float, float], _View | None] = {}
        self._resampled: dict[float, np.ndarray] = {}
        self._unscaled: dict[float, tuple[np.ndarray, np.ndarray] | None] = {}
        order = sorted(SCALES, key=lambda s: (abs(s), s))
        self.plan = [(m, 0.0, p) for m in ("none", "flat") for p in PHASES] + [
            (m, s, p) for s in order if s for m in MODES for p in SPEED_PHASES
        ]

    def get(self, mode: str, scale: float, phase: float) -> _View | None:
        if (mode, scale, phase) not in self._cache:
            if mode == "speed":
                view = _make_view(self._power, 1.0 / (1.0 + scale), phase, 1.0 + scale)
            elif scale == 0.0:  # "none" and "flat" share the cells, not the weights
                if phase not in self._unscaled:
                    self._unscaled[phase] = _cell_phasors(self._power, 1.0, phase)
                cells = self._unscaled[phase]
                weight_db = FLAT_WEIGHT_DB if mode == "flat" else WEIGHT_DB
                view = None if cells is None else _weighted(cells, 1.0, phase, weight_db)
            else:
                view = _make_view(self._power, 1.0 / (1.0 + scale), phase)
            if view is not None:  # label it; times map back to the received audio
                view.mode = "none" if mode == "flat" else mode
                view.scale, view.time_scale = scale, 1.0 / (1.0 + scale)
            self._cache[(mode, scale, phase)] = view
        return self._cache[(mode, scale, phase)]

    def _speed_power(self, scale: float) -> np.ndarray:
        if scale not in self._resampled:
            up = round(_SPEED_DENOMINATOR * (1.0 + scale))
            self._resampled[scale] = an.power(resample_poly(self._x8, up, _SPEED_DENOMINATOR))
        return self._resampled[scale]


_SPEED_DENOMINATOR: Final = 200


def _search(
    views: _Views, key: WatermarkKey
) -> tuple[tuple[_Candidate, int, np.ndarray] | None, int, np.ndarray | None]:
    """Find and verify a mark of ``key``: (hit, decode attempts made, first decoded bits)."""
    pattern = pattern_for(key)
    attempts = 0
    firsts: list[np.ndarray] = []
    tried: list[_Candidate] = []
    candidates: list[_Candidate] = []
    for i, (mode, scale, phase) in enumerate(views.plan):
        view = views.get(mode, scale, phase)
        if view is None:
            break
        candidates.extend(_sync(view, pattern))
        if i == len(PHASES) - 1 and candidates:  # the common case, no speed change: try it now
            first = max(candidates, key=lambda c: c.z)
            if first.z >= EARLY_EXIT_Z:
                hit, used = _decode_candidate(first, pattern, key, firsts)
                attempts += used
                tried.append(first)
                if hit is not None:
                    return hit, attempts, firsts[0]
    for cand in _distinct(sorted(candidates, key=lambda c: -c.z), tried)[:CANDIDATES]:
        hit, used = _decode_candidate(cand, pattern, key, firsts)
        attempts += used
        if hit is not None:
            return hit, attempts, firsts[0]
    unscaled = [views.get("none", 0.0, p) for p in PHASES]
    if all(v is not None for v in unscaled):  # last: an alignment that follows the input
        followed = _followed_fold([v for v in unscaled if v is not None], pattern, key)
        if followed is not None:
            attempts += 1
            bits = ecc.decode(_position_soft(followed[0], pattern, 0)[pattern.coded_positions])
            firsts.append(bits)
            record_id, ok = read_payload(key, bits)
            if ok:
                return (followed[1], record_id, bits), attempts, firsts[0]
    return None, attempts, firsts[0] if firsts else None


def _distinct(cands: list[_Candidate], tried: list[_Candidate]) -> list[_Candidate]:
    """Drop candidates that repeat an earlier one (same view, same alignment)."""
    out: list[_Candidate] = []
    seen = {(id(c.view), c.offset) for c in tried}
    for c in cands:
        if (id(c.view), c.offset) not in seen:
            seen.add((id(c.view), c.offset))
            out.append(c)
    return out


def _decode_candidate(
    cand: _Candidate, pattern: Pattern, key: WatermarkKey, decoded: list[np.ndarray]
) -> tuple[tuple[_Candidate, int, np.ndarray] | None, int]:
    """Decode the whole input tracked from this alignment, then the candidate's window alone
    (unless that window is the whole input)."""
    attempts = 0
    folds = [_tracked_fold(cand, pattern)]
    if cand.stop - cand.start < len(cand.view.phasor):
        folds.append(_fold(cand.view.phasor, cand.start, cand.stop))
    for folded in folds:
        attempts += 1
        bits = ecc.decode(_position_soft(folded, pattern, cand.offset)[pattern.coded_positions])
        decoded.append(bits)
        record_id, ok = read_payload(key, bits)
        if ok:
            return (cand, record_id, bits), attempts
    return None, attempts


# --- views, folding, correlations ------------------------------------------------------------
def _make_view(power: np.ndarray, time_scale: float, phase: float,
               freq_scale: float = 1.0, weight_db: float = WEIGHT_DB) -> _View | None:
    """Cell phasors of ``power`` read at frames ``phase + h * time_scale``."""
    cells = _cell_phasors(power, time_scale, phase, freq_scale)
    return None if cells is None else _weighted(cells, time_scale, phase, weight_db)


def _cell_phasors(power: np.ndarray, time_scale: float, phase: float, freq_scale: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """(tile log energies, unit phasors exp(2 pi i value / step)) or None if too short."""
    bands = an.stretch_frames(an.band_energy(power, freq_scale), time_scale, phase)
    if len(bands) < UNIT_HOPS // 2:
        return None
    log_e = an.slot_log_energy(bands)
    steps = an.cell_steps(log_e[: -an.SLOT_HOPS], log_e[an.SLOT_HOPS :])
    angle = an.cell_values(log_e) * (2 * np.pi) / steps
    unit = np.empty(angle.shape, dtype=complex)
    unit.real, unit.imag = np.cos(angle), np.sin(angle)
    return log_e, unit * (steps / (steps + RELIABLE_STEP))


def _weighted(cells: tuple[np.ndarray, np.ndarray], time_scale: float, phase: float,
              weight_db: float) -> _View:
    log_e, unit = cells
    weight = _weights(log_e, weight_db)
    return _View("none", 0.0, phase, time_scale, weight * unit, weight, weight * unit * unit)


def _weights(log_e: np.ndarray, weight_db: float) -> np.ndarray:
    """Reliability of each cell: speech slots only, louder tiles count more."""
    db = np.log(10) / 10
    level = np.log(np.exp(log_e).sum(axis=1))
    ref = np.percentile(level, 99)
    floor = np.log(FLOOR_POWER * _SLOT_ENERGY_PER_POWER)
    act = np.clip((level - (ref - (GATE_DB + 5) * db)) / (5 * db), 0.0, 1.0) * (level >= floor)
    loud = log_e[act > 0]
    top = np.percentile(loud, 99) if len(loud) else 0.0
    weaker = np.minimum(log_e[: -an.SLOT_HOPS], log_e[an.SLOT_HOPS :])
    if weight_db <= 0:
        tile = 1.0
    else:
        tile = np.exp(-np.maximum(top - weaker - NOISE_KNEE_DB * db, 0.0) / (weight_db * db))
    return (act[: -an.SLOT_HOPS] * act[an.SLOT_HOPS :])[:, None] * tile


def _fold(phasor: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Sum phasors of frames start..stop-1 by frame index modulo the unit: (UNIT_HOPS, BANDS)."""
    first = start - start % UNIT_HOPS
    n = -(-(stop - first) // UNIT_HOPS) * UNIT_HOPS
    buf = np.zeros((n, BANDS), dtype=complex)
    buf[start - first : stop - first] = phasor[start:stop]
    return buf.reshape(-1, UNIT_HOPS, BANDS).sum(axis=0)


def _rows(offsets: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    return (offsets[:, None] + an.BLOCK_HOPS * blocks[None, :]) % UNIT_HOPS


def _correlate_parts(folded: np.ndarray, pattern: Pattern, cells: np.ndarray,
                     signs: np.ndarray, harmonic: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of ``cells`` with their expected ``signs`` at every alignment (UNIT_HOPS
    values), and its null variance: with the key's dithers uniform and independent, each
    cell's term is ``|folded| cos(uniform)``, whose variance is ``|folded|^2 / 2``.

    A cell of block u read at alignment h0 = 16 a + r is ``folded[16 (a + u) + r]``: a circular
    correlation over the 16 blocks, done with FFTs of length 16.
    """
    weights = np.zeros((UNIT_BLOCKS, BANDS), dtype=complex)
    weights[pattern.block[cells], pattern.band[cells]] = (
        np.exp(-2j * np.pi * harmonic * pattern.dither[cells]) * signs
    )
    chosen = np.zeros((UNIT_BLOCKS, BANDS))
    chosen[pattern.block[cells], pattern.band[cells]] = 0.5
    grid = folded.reshape(UNIT_BLOCKS, an.BLOCK_HOPS, BANDS)
    t = _circular(weights, np.fft.fft(grid, axis=0)).real
    n2 = _circular(chosen, np.fft.fft(grid.real**2 + grid.imag**2, axis=0)).real
    return t.reshape(-1), n2.reshape(-1)


def _circular(weights: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """sum_u sum_b weights[u, b] * x[(u + a) % 16, r, b] for all (a, r), given fft(x)."""
    kernel = np.conj(np.fft.fft(np.conj(weights), axis=0))  # (16, BANDS)
    return np.fft.ifft(np.einsum("kb,krb->kr", kernel, spectrum), axis=0)


def _z(t: np.ndarray, n2: np.ndarray) -> np.ndarray:
    return np.where(n2 > 0, t / np.sqrt(np.maximum(n2, 1e-300)), 0.0)


def _correlate(folded: np.ndarray, pattern: Pattern, cells: np.ndarray, signs: np.ndarray
               ) -> np.ndarray:
    """z of the correlation of ``cells`` with their expected ``signs`` at every alignment."""
    return _z(*_correlate_parts(folded, pattern, cells, signs))


def _pilot_cells(pattern: Pattern) -> tuple[np.ndarray, np.ndarray]:
    cells = np.flatnonzero(pattern.is_pilot)
    return cells, 1.0 - 2.0 * pattern.pilot_bits[pattern.position[cells]]


def _sync(view: _View, pattern: Pattern) -> list[_Candidate]:
    """The best alignments of each search window under this view: one by the pilots alone,
    one by pilots plus the blind second-harmonic statistic of all payload cells (near its
    lattice, a cell's value makes cos(2 theta) large whatever bit it carries)."""
    cells, signs = _pilot_cells(pattern)
    blind = np.flatnonzero(~pattern.is_pilot)
    n = len(view.phasor)
    out = []
    step = SEARCH_WINDOW // 2
    for start in range(0, max(1, n - step), step):
        stop = min(n, start + SEARCH_WINDOW)
        t, n2 = _correlate_parts(_fold(view.phasor, start, stop), pattern, cells, signs)
        tb, nb2 = _correlate_parts(_fold(view.square, start, stop), pattern, blind,
                                   np.ones(len(blind)), harmonic=2)
        for z in (_z(t, n2), _z(t + tb, n2 + nb2)):
            best = int(np.argmax(z))
            out.append(_Candidate(view, start, stop, best, float(z[best])))
    return out


def _position_soft(folded: np.ndarray, pattern: Pattern, offset: int) -> np.ndarray:
    """Soft value of every position (> 0 means bit 0), summed over its cells."""
    vals = folded[_rows(np.array([offset]), pattern.block)[0], pattern.band]
    soft = (vals * np.exp(-2j * np.pi * pattern.dither)).real
    return np.bincount(pattern.position, soft, minlength=len(pattern.coded_index))


def _tracked_fold(cand: _Candidate, pattern: Pattern) -> np.ndarray:
    """Fold the whole input, re-aligning each search window within +-TRACK of the candidate.

    Speed changes leave a residual scale error that drifts over long inputs; each window
    follows it by taking its best pilot alignment near the candidate's.
    """
    cells, signs = _pilot_cells(pattern)
    view = cand.view
    n = len(view.phasor)
    total = np.zeros((UNIT_HOPS, BANDS), dtype=complex)
    near = (cand.offset + np.arange(-TRACK, TRACK + 1)) % UNIT_HOPS
    step = SEARCH_WINDOW // 2
    for start in range(0, n, step):
        stop = min(n, start + step)
        folded = _fold(view.phasor, max(0, start - step // 2), min(n, stop + step // 2))
        shift = int(near[np.argmax(_correlate(folded, pattern, cells, signs)[near])])
        total += np.roll(_fold(view.phasor, start, stop), cand.offset - shift, axis=0)
    return total


def _followed_fold(views: list[_View], pattern: Pattern, key: WatermarkKey
                   ) -> tuple[np.ndarray, _Candidate] | None:
    """Fold with an alignment that follows the input 256 ms at a time; rows start at 0.

    Tempo changes by WSOLA (ffmpeg atempo) copy the input at its own rate in pieces of 100-300
    ms and skip or repeat a few ms between them, so the unit alignment is constant within a
    piece and jumps between pieces, drifting on average with the tempo. States are (alignment,
    sub-hop phase) on a quarter-frame grid; each window scores them by pilots plus the blind
    statistic; for each drift rate a Viterbi path that may move between no drift and twice the
    rate's drift per window picks one state per window. With the best rate, the path's decode
    then re-scores the windows against its own re-encoded codeword and follows again
    (decision feedback, ``FEEDBACK_ROUNDS`` times).
    """
    n = min(len(v.phasor) for v in views)
    edges = list(range(0, n - FOLLOW_WINDOW + 1, FOLLOW_WINDOW))
    if len(edges) < 2:
        return None
    edges.append(n)
    windows = list(itertools.pairwise(edges))
    steps = len(views)
    folds = [[_fold(v.phasor, a, b) for v in views] for a, b in windows]
    shape = (len(windows), steps, UNIT_BLOCKS, an.BLOCK_HOPS, BANDS)
    grids = np.array(folds).reshape(shape)
    squares = np.array([[_fold(v.square, a, b) for v in views] for a, b in windows]).reshape(shape)
    spectra = np.fft.fft(grids, axis=2)
    energy = np.fft.fft(grids.real**2 + grids.imag**2, axis=2)
    cells, signs = _pilot_cells(pattern)
    blind = np.flatnonzero(~pattern.is_pilot)
    t = _circular_many(_cell_weights(pattern, cells, signs), spectra)
    n2 = _circular_many(_cell_weights(pattern, cells, 0.5, rotate=False), energy)
    t += _circular_many(_cell_weights(pattern, blind, 1.0, harmonic=2), np.fft.fft(squares, axis=2))
    n2 += _circular_many(_cell_weights(pattern, blind, 0.5, rotate=False),
                         np.fft.fft(squares.real**2 + squares.imag**2, axis=2))
    scores = _state_scores(t, n2)
    drift = max((-s * FOLLOW_WINDOW * steps for s in FOLLOW_RATES),
                key=lambda d: _viterbi_path(scores, d)[1])
    path = _viterbi_path(scores, drift)[0]
    total = _fold_path(folds, path, steps)
    # every cell is chosen below, so the null variance does not depend on the alignment's block
    n2 = 0.5 * (grids.real**2 + grids.imag**2).sum(axis=(2, 4))[:, :, None, :]
    all_cells = np.arange(len(pattern.block))
    for _ in range(FEEDBACK_ROUNDS):
        bits = ecc.decode(_position_soft(total, pattern, 0)[pattern.coded_positions])
        signs = 1.0 - 2.0 * pattern.cell_bits(ecc.encode(bits))
        scores = _state_scores(_circular_many(_cell_weights(pattern, all_cells, signs), spectra), n2)
        path = _viterbi_path(scores, drift)[0]
        total = _fold_path(folds, path, steps)
    first_offset, first_phase = divmod(int(path[0]), steps)
    return total, _Candidate(views[first_phase], 0, n, first_offset, float(scores.max()))


def _cell_weights(pattern: Pattern, cells: np.ndarray, signs: np.ndarray | float,
                  harmonic: int = 1, rotate: bool = True) -> np.ndarray:
    """(UNIT_BLOCKS, BANDS) correlation weights of ``cells`` (their dither rotation x sign)."""
    weights = np.zeros((UNIT_BLOCKS, BANDS), dtype=complex)
    rot = np.exp(-2j * np.pi * harmonic * pattern.dither[cells]) if rotate else 1.0
    weights[pattern.block[cells], pattern.band[cells]] = rot * signs
    return weights


def _circular_many(weights: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """``_circular`` for many folds at once: spectra (W, P, 16, 16, BANDS) -> (W, P, 16, 16)."""
    kernel = np.conj(np.fft.fft(np.conj(weights), axis=0))
    return np.fft.ifft(np.einsum("kb,wpkrb->wpkr", kernel, spectra), axis=2).real


def _state_scores(t: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """z per window and state (alignment * phases + phase) from (W, P, 16, 16) parts."""
    z = np.where(n2 > 0, t / np.sqrt(np.maximum(n2, 1e-300)), 0.0)
    w, p = z.shape[:2]
    return z.reshape(w, p, UNIT_HOPS).transpose(0, 2, 1).reshape(w, -1)


def _fold_path(folds: list[list[np.ndarray]], path: np.ndarray, steps: int) -> np.ndarray:
    total = np.zeros((UNIT_HOPS, BANDS), dtype=complex)
    for w, state in enumerate(path):
        offset, i = divmod(int(state), steps)
        total += np.roll(folds[w][i], -offset, axis=0)
    return total


def _viterbi_path(scores: np.ndarray, drift: float) -> tuple[np.ndarray, float]:
    """Best state per row of ``scores`` (rows: windows; states on a circle) when each move
    lies between 0 and twice ``drift`` states, give or take ``FOLLOW_JITTER``."""
    low = int(np.floor(min(0.0, 2 * drift))) - FOLLOW_JITTER
    high = int(np.ceil(max(0.0, 2 * drift))) + FOLLOW_JITTER
    n_states = scores.shape[1]
    ring = (np.arange(n_states + high - low) - high) % n_states  # ring[k + high - d] = k - d
    total = scores[0].copy()
    back = np.zeros(scores.shape, dtype=np.int64)
    for w in range(1, len(scores)):
        reach = sliding_window_view(total[ring], high - low + 1)  # column j: move high - j
        j = np.argmax(reach, axis=1)
        back[w] = high - j
        total = reach[np.arange(n_states), j] + scores[w]
    path = np.zeros(len(scores), dtype=np.int64)
    path[-1] = int(np.argmax(total))
    for w in range(len(scores) - 1, 0, -1):
        path[w - 1] = (path[w] - back[w, path[w]]) % n_states
    return path, float(total.max())


# --- the report -------------------------------------------------------------------------------
def _codeword_cells(pattern: Pattern, coded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(pattern.block)), 1.0 - 2.0 * pattern.cell_bits(coded)


def _report(hit: tuple[_Candidate, int, np.ndarray], key: WatermarkKey, attempts: int) -> Detection:
    cand, record_id, bits = hit
    coded = ecc.encode(bits)
    pattern = pattern_for(key)
    cells, signs = _codeword_cells(pattern, coded)
    score = float(
        _correlate(_tracked_fold(cand, pattern), pattern, cells, signs)[cand.offset]
    )
    windows = _localise(cand.view, pattern, coded)
    return Detection(
        found=True,
        record_id=record_id,
        key_id=key.key_id,
        tag_verified=True,
        score=score,
        p_false=_p_false(attempts),
        windows=[(a, b, z) for a, b, z, _ in windows],
        segments=_segments(windows),
        speed=cand.view.scale,
        mode=cand.view.mode,
    )


def _seconds(view: _View, frame: float) -> float:
    return ((view.phase + frame * view.time_scale) * an.HOP + an.HOP / 2) / an.RATE


def _localise(view: _View, pattern: Pattern, coded: np.ndarray) -> list[tuple[float, float, float, bool]]:
    """Per window: (start s, end s, codeword correlation z, enough speech to judge)."""
    cells, signs = _codeword_cells(pattern, coded)
    n = len(view.phasor)
    step = LOCAL_WINDOW // 2
    out = []
    for start in range(0, max(1, n - step), step):
        stop = min(n, start + LOCAL_WINDOW)
        z = _correlate(_fold(view.phasor, start, stop), pattern, cells, signs)
        speech = float(view.weight[start:stop].sum()) >= SPEECH_WEIGHT
        centre = (start + stop) / 2
        begin = 0 if start == 0 else centre - step / 2
        end = n + an.BLOCK_HOPS if stop >= n else centre + step / 2
        out.append((_seconds(view, begin), _seconds(view, end), float(z.max()), speech))
    return out


def _segments(windows: list[tuple[float, float, float, bool]]) -> list[Segment]:
    """Merge windows into marked / unmarked ranges; windows without speech join a neighbour."""
    labels: list[bool | None] = [z >= MARKED_Z if speech else None for _, _, z, speech in windows]
    known = [i for i, lab in enumerate(labels) if lab is not None]
    if not known:
        return []
    for i, lab in enumerate(labels):
        if lab is None:
            nearest = min(known, key=lambda k: abs(k - i))
            labels[i] = labels[nearest]
    segs: list[Segment] = []
    for (a, b, z, _), lab in zip(windows, labels):
        if segs and segs[-1].marked == lab:
            last = segs[-1]
            segs[-1] = Segment(last.start_s, b, bool(lab), max(last.score, z) if lab else min(last.score, z))
        else:
            segs.append(Segment(a, b, bool(lab), z))
    return segs
