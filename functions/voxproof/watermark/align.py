"""Where the units lie: folds (soft combining of repeats), keyed correlations, sync, tracking.

``sync`` proposes alignments per search window and for the whole input; ``tracked_fold``
follows a small speed drift; ``followed_fold`` follows WSOLA tempo changes piece by piece. See
docs/watermark.md, "Folds and alignment" and "Search".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import as_strided

from voxproof.watermark import analysis as an
from voxproof.watermark import ecc
from voxproof.watermark.pattern import BANDS, UNIT_BLOCKS, Pattern
from voxproof.watermark.views import UNIT_HOPS, View

SEARCH_WINDOW: Final = 4 * UNIT_HOPS  # sync search windows (about 4 s, half overlapping)
TRACK_STEP: Final = 8  # frames a 2 s tracking window may move from its neighbour's alignment
FOLLOW_BLOCKS: Final = 4  # 256 ms windows for the followed alignment
FEEDBACK_ROUNDS: Final = 5  # decode, re-encode, re-follow
FOLLOW_JITTER: Final = 4  # quarter frames of jitter allowed around the drift per window
FOLLOW_RATES: Final = (-0.03, -0.015, 0.0, 0.015, 0.03)  # tempo drifts tried when following
_ROWS: Final = an.BLOCK_HOPS


@dataclass
class Candidate:
    """An alignment worth decoding: a unit starts at frame ``offset`` (mod 256) of ``view``."""

    view: View
    start: int  # the frames whose fold gave it
    stop: int
    offset: int
    z: float
    blind: bool = False  # z counts the blind statistic of the payload cells beside the pilots

    @property
    def whole(self) -> bool:
        """Whether the candidate's span is the whole input."""
        return self.start == 0 and self.stop >= len(self.view.phasor)


# --- folds and correlations -------------------------------------------------------------------
def fold(phasor: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Sum frames start..stop-1 by frame index modulo the unit: (UNIT_HOPS, BANDS)."""
    stop = len(phasor) if stop is None else stop
    first = start - start % UNIT_HOPS
    n = -(-(stop - first) // UNIT_HOPS) * UNIT_HOPS
    buf = np.zeros((n, phasor.shape[1]), dtype=phasor.dtype)
    buf[start - first : stop - first] = phasor[start:stop]
    return buf.reshape(-1, UNIT_HOPS, phasor.shape[1]).sum(axis=0)


def key_weights(pattern: Pattern, cells: np.ndarray, signs: np.ndarray | float,
                harmonic: int = 1) -> np.ndarray:
    """(UNIT_BLOCKS, BANDS) complex weights of ``cells``: sign x dither rotation."""
    w = np.zeros((UNIT_BLOCKS, BANDS), dtype=complex)
    w[pattern.block[cells], pattern.band[cells]] = (
        np.exp(-2j * np.pi * harmonic * pattern.dither[cells]) * signs
    )
    return w


def null_weights(pattern: Pattern, cells: np.ndarray) -> np.ndarray:
    """(UNIT_BLOCKS, BANDS) 0.5 on ``cells``: the null variance of a correlation over them."""
    w = np.zeros((UNIT_BLOCKS, BANDS))
    w[pattern.block[cells], pattern.band[cells]] = 0.5
    return w


def correlate(blocks: np.ndarray, first: np.ndarray | int, weights: np.ndarray) -> np.ndarray:
    """``Re sum_j sum_b weights[(first + j - a) % 16, b] * blocks[..., j, r, b]`` for all (a, r).

    ``blocks``: (..., J, 16, BANDS), J consecutive blocks of which the first is block ``first``
    (mod 16, per leading index) of the fold; returns (..., 256) indexed by alignment 16 a + r.
    """
    lead = blocks.shape[:-3]
    j_count = blocks.shape[-3]
    flat, w = _real_operands(blocks, weights)
    prod = _products(flat, w).reshape(*lead, j_count, _ROWS, UNIT_BLOCKS)
    if isinstance(first, int) and first == 0:
        return _cyclic_sum(prod).reshape(*lead, UNIT_HOPS)
    first = np.broadcast_to(np.asarray(first), lead).reshape(*lead, 1, 1)
    j = np.arange(j_count)[:, None]
    a = np.arange(UNIT_BLOCKS)[None, :]
    u = (first + j - a) % UNIT_BLOCKS  # (..., J, 16 a)
    # picked[..., j, r, a] = prod[..., j, r, u[..., j, a]]: one flat gather
    rows = np.arange(prod.size // UNIT_BLOCKS).reshape(*lead, j_count, _ROWS, 1) * UNIT_BLOCKS
    picked = prod.reshape(-1)[rows + u[..., None, :]]  # (..., J, r, a)
    return picked.sum(axis=-3).swapaxes(-1, -2).reshape(*lead, UNIT_HOPS)


GEMM_MNK: Final = 262_144
"""OpenBLAS runs a product of at most this many multiply-adds (m n k) on one thread: small
products on threads that spin cost more than they save, so ``_products`` stays under it."""


def _products(flat: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``flat @ w.T`` in BLAS products of at most ``GEMM_MNK`` multiply-adds (each row's
    result is the same whichever rows share its product)."""
    rows = max(1, GEMM_MNK // w.size)
    out = np.empty((len(flat), len(w)))
    wt = w.T
    for start in range(0, len(flat), rows):
        np.matmul(flat[start : start + rows], wt, out=out[start : start + rows])
    return out


def _real_operands(blocks: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, bands) and (16, bands) real arrays whose product is the real part of the complex
    one: a complex array is read as interleaved (real, imaginary) floats, no copy."""
    if not np.iscomplexobj(blocks):
        return blocks.reshape(-1, BANDS), np.real(weights)
    flat = np.ascontiguousarray(blocks).reshape(-1, BANDS).view(np.float64)
    w = np.zeros((UNIT_BLOCKS, 2 * BANDS))
    w[:, 0::2] = np.real(weights)
    w[:, 1::2] = -np.imag(weights)
    return flat, w


def _cyclic_sum(prod: np.ndarray) -> np.ndarray:
    """(..., 16 a, 16 r): ``sum_j prod[..., j, r, (j - a) % 16]`` of a (..., J, 16 r, 16 u)
    array, through a strided view of it doubled along u (no gather)."""
    *lead, j_count, rows, units = prod.shape
    if j_count > UNIT_BLOCKS:  # blocks j and j + 16 read the same weights: add them first
        pad = np.zeros((*lead, -j_count % UNIT_BLOCKS, rows, units))
        prod = np.concatenate([prod, pad], axis=-3).reshape(*lead, -1, UNIT_BLOCKS, rows, units)
        prod = prod.sum(axis=-4)
    twice = np.concatenate([prod, prod], axis=-1)[..., 1:]  # u = 1 .. 31
    *lead_strides, s_j, s_r, s_u = twice.strides
    # diag[..., j, r, k] = twice[..., j, r, j + k] = prod[..., j, r, (j + k + 1) % 16]
    diag = as_strided(twice, shape=prod.shape, strides=(*lead_strides, s_j + s_u, s_r, s_u),
                      writeable=False)
    by_k = diag.sum(axis=-3)  # (..., r, k): alignment block a = 15 - k
    return by_k[..., ::-1].swapaxes(-1, -2)


def z_score(t: np.ndarray, n2: np.ndarray) -> np.ndarray:
    return np.where(n2 > 0, t / np.sqrt(np.maximum(n2, 1e-300)), 0.0)


def grid(folded: np.ndarray) -> np.ndarray:
    """A fold as (16 blocks, 16 rows, BANDS)."""
    return folded.reshape(UNIT_BLOCKS, _ROWS, -1)


def correlation_z(folded: np.ndarray, pattern: Pattern, cells: np.ndarray,
                  signs: np.ndarray) -> np.ndarray:
    """z of the correlation of a fold with ``cells`` carrying ``signs``, at every alignment."""
    g = grid(folded)
    t = correlate(g, 0, key_weights(pattern, cells, signs))
    n2 = correlate(g.real**2 + g.imag**2, 0, null_weights(pattern, cells))
    return z_score(t, n2)


def pilot_cells(pattern: Pattern) -> tuple[np.ndarray, np.ndarray]:
    cells = np.flatnonzero(pattern.is_pilot)
    return cells, 1.0 - 2.0 * pattern.pilot_bits[pattern.position[cells]]


def codeword_cells(pattern: Pattern, coded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(pattern.block)), 1.0 - 2.0 * pattern.cell_bits(coded)


def position_soft(folded: np.ndarray, pattern: Pattern, offset: int) -> np.ndarray:
    """Soft value of every position (> 0 means bit 0) at an alignment, summed over its cells."""
    rows = (offset + _ROWS * pattern.block) % UNIT_HOPS
    soft = (folded[rows, pattern.band] * np.exp(-2j * np.pi * pattern.dither)).real
    return np.bincount(pattern.position, soft, minlength=len(pattern.coded_index))


def decode_fold(folded: np.ndarray, pattern: Pattern, offset: int = 0) -> np.ndarray:
    """The payload bits a fold holds at an alignment (soft Viterbi)."""
    return ecc.decode(position_soft(folded, pattern, offset)[pattern.coded_positions])


# --- sync and tracking ------------------------------------------------------------------------
def sync(view: View, pattern: Pattern) -> list[Candidate]:
    """The best alignments of each search window of ``view``, and of the whole input as one
    span when it is longer than a window: by the pilots, and by the pilots plus the blind
    statistic of the payload cells (the whole input's is also the presence statistic, its
    ``z`` the best of the 256 alignments)."""
    cells, signs = pilot_cells(pattern)
    blind = np.flatnonzero(~pattern.is_pilot)
    phasor, square = view.phasors()
    n = len(phasor)
    step = SEARCH_WINDOW // 2
    spans = [(a, min(n, a + SEARCH_WINDOW)) for a in range(0, max(1, n - step), step)]
    if spans[0] != (0, n):
        spans.append((0, n))  # the whole input: on long inputs its pilots are the strongest
    g = _span_grids(phasor, spans)
    s = _span_grids(square, spans)
    del phasor, square
    t = correlate(g, 0, key_weights(pattern, cells, signs))
    n2 = correlate(g.real**2 + g.imag**2, 0, null_weights(pattern, cells))
    tb = correlate(s, 0, key_weights(pattern, blind, 1.0, harmonic=2))
    nb2 = correlate(s.real**2 + s.imag**2, 0, null_weights(pattern, blind))
    out = []
    for (a, b), z_pilot, z_both in zip(spans, z_score(t, n2), z_score(t + tb, n2 + nb2)):
        for z, blind in ((z_pilot, False), (z_both, True)):
            best = int(np.argmax(z))
            out.append(Candidate(view, a, b, best, float(z[best]), blind))
    return out


def _span_grids(phasor: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """``grid(fold(phasor, a, b))`` for every span of ``sync`` at once: the folds of the
    half-window chunks, each window the sum of two, the whole input the sum of all."""
    step = SEARCH_WINDOW // 2
    n, bands = phasor.shape
    full = n // step
    chunks = -(-n // step) + 1  # one zero chunk past the end
    half = np.zeros((chunks, UNIT_HOPS, bands), dtype=phasor.dtype)
    half[:full] = phasor[: full * step].reshape(full, step // UNIT_HOPS, UNIT_HOPS, bands).sum(1)
    if n > full * step:  # the last, partial chunk, padded with zeros
        tail = np.zeros((step, bands), dtype=phasor.dtype)
        tail[: n - full * step] = phasor[full * step :]
        half[full] = tail.reshape(step // UNIT_HOPS, UNIT_HOPS, bands).sum(axis=0)
    out = np.empty((len(spans), UNIT_HOPS, bands), dtype=phasor.dtype)
    for i, (a, b) in enumerate(spans):
        if (a, b) == (0, n):
            np.sum(half, axis=0, out=out[i])
        else:
            np.add(half[a // step], half[a // step + 1], out=out[i])
    return out.reshape(len(spans), UNIT_BLOCKS, _ROWS, bands)


def tracked_fold(cand: Candidate, pattern: Pattern) -> np.ndarray:
    """Fold the whole input at the candidate's alignment, each 2 s window re-aligned.

    A residual speed error drifts the alignment over long inputs: each window (with half of
    each neighbour) is scored by its pilots, and a Viterbi path through the candidate's
    alignment, moving at most ``TRACK_STEP`` frames from one window to the next, picks one
    alignment per window.
    """
    cells, signs = pilot_cells(pattern)
    phasor = cand.view.phasor
    n = len(phasor)
    step = SEARCH_WINDOW // 2
    starts = list(range(0, n, step))
    g = np.array([grid(fold(phasor, max(0, a - step // 2), min(n, a + step + step // 2)))
                  for a in starts])
    z = z_score(correlate(g, 0, key_weights(pattern, cells, signs)),
                correlate(g.real**2 + g.imag**2, 0, null_weights(pattern, cells)))
    home = min(range(len(starts)), key=lambda k: abs(starts[k] - cand.start))
    z[home, cand.offset] += 1e6  # the candidate's own window keeps its alignment
    shift = _viterbi_path(z, -TRACK_STEP, TRACK_STEP)[0]
    total = np.zeros((UNIT_HOPS, phasor.shape[1]), dtype=complex)
    for k, a in enumerate(starts):
        total += np.roll(fold(phasor, a, min(n, a + step)), cand.offset - shift[k], axis=0)
    return total


# --- following the alignment ------------------------------------------------------------------
def followed_fold(views: list[View], pattern: Pattern) -> tuple[np.ndarray, Candidate] | None:
    """Fold with an alignment that follows the input 256 ms at a time; rows start at 0.

    ``views``: the no-change views at the sub-hop phases. States are (alignment, phase) on a
    quarter-frame grid; windows score them by pilots plus the blind statistic; for each drift
    rate a Viterbi path that may move between no drift and twice the rate's drift per window
    (give or take ``FOLLOW_JITTER``) picks a state per window. With the best rate the path's
    decode re-scores the windows against its re-encoded codeword and is followed again
    (decision feedback). Returns (fold, a candidate for the report) or None if too short.
    """
    frames = FOLLOW_BLOCKS * _ROWS
    n = min(v.frames for v in views)
    if n < 2 * frames:
        return None
    n_windows = -(-n // frames)
    phases = len(views)
    stacked = np.zeros((phases, n_windows * frames, BANDS), dtype=complex)
    x = stacked.reshape(phases, n_windows, FOLLOW_BLOCKS, _ROWS, BANDS).swapaxes(0, 1)
    first = ((np.arange(n_windows) * FOLLOW_BLOCKS) % UNIT_BLOCKS)[:, None]
    first = np.broadcast_to(first, (n_windows, phases))
    cells, signs = pilot_cells(pattern)
    blind = np.flatnonzero(~pattern.is_pilot)
    pilots, pilots_null = key_weights(pattern, cells, signs), null_weights(pattern, cells)
    blinds, blinds_null = key_weights(pattern, blind, 1.0, harmonic=2), null_weights(pattern, blind)
    # x: (W, P, J, 16, BANDS). One phase at a time (the same sums, so the same numbers): only
    # one view's arrays and one phase's temporaries exist at once, whatever the input's length.
    t = np.empty((n_windows, phases, UNIT_HOPS))
    n2 = np.empty((n_windows, phases, UNIT_HOPS))
    n2_all = np.empty((n_windows, phases, _ROWS))  # every cell is read: the null variance is
    for p, view in enumerate(views):  # the window's power at that row, any block
        phasor, square = view.phasors()
        stacked[p, :n] = phasor[:n]
        xp, sq = x[:, p], _phase_blocks(square, n, n_windows)
        power = xp.real**2 + xp.imag**2
        t[:, p] = correlate(xp, first[:, p], pilots)
        t[:, p] += correlate(sq, first[:, p], blinds)
        n2[:, p] = correlate(power, first[:, p], pilots_null)
        n2[:, p] += correlate(sq.real**2 + sq.imag**2, first[:, p], blinds_null)
        n2_all[:, p] = 0.5 * power.sum(axis=(1, 3))
        del phasor, square, xp, sq, power
    scores = _state_scores(t, n2)
    moves = max((_drift_moves(-rate * frames * phases) for rate in FOLLOW_RATES),
                key=lambda m: _viterbi_path(scores, *m)[1])
    path = _viterbi_path(scores, *moves)[0]
    total = _fold_path(x, path, phases)
    n2_all = np.tile(n2_all, (1, 1, UNIT_BLOCKS))  # alignment 16 a + r -> row r
    all_cells = np.arange(len(pattern.block))
    for _ in range(FEEDBACK_ROUNDS):
        coded = ecc.encode(decode_fold(total, pattern))
        weights = key_weights(pattern, all_cells, 1.0 - 2.0 * pattern.cell_bits(coded))
        for p in range(phases):
            t[:, p] = correlate(x[:, p], first[:, p], weights)
        scores = _state_scores(t, n2_all)
        path = _viterbi_path(scores, *moves)[0]
        total = _fold_path(x, path, phases)
    offset, phase = divmod(int(path[0]), phases)
    return total, Candidate(views[phase], 0, n, offset, float(scores.max()))


def _phase_blocks(array: np.ndarray, n: int, n_windows: int) -> np.ndarray:
    """The first ``n`` frames of one view's ``array`` as (W, J, 16, BANDS) windows, the last
    padded with zeros."""
    frames = FOLLOW_BLOCKS * _ROWS
    out = np.zeros((n_windows * frames, BANDS), dtype=complex)
    out[:n] = array[:n]
    return out.reshape(n_windows, FOLLOW_BLOCKS, _ROWS, BANDS)


def _state_scores(t: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """z per window and state (alignment * phases + phase) from (W, P, 256) parts."""
    z = z_score(t, n2)
    return z.transpose(0, 2, 1).reshape(len(z), -1)


def _fold_path(x: np.ndarray, path: np.ndarray, phases: int) -> np.ndarray:
    """Sum the windows' frames, each at its state's phase, into unit rows (start at 0)."""
    _, _, j_count, rows, bands = x.shape
    frames = j_count * rows
    total = np.zeros((UNIT_HOPS, bands), dtype=complex)
    span = np.arange(frames)
    for w, state in enumerate(path):
        offset, phase = divmod(int(state), phases)
        total[(w * frames + span - offset) % UNIT_HOPS] += x[w, phase].reshape(frames, bands)
    return total


def _drift_moves(drift: float) -> tuple[int, int]:
    """Moves per window between no drift and twice ``drift`` states, give or take the jitter."""
    return (int(np.floor(min(0.0, 2 * drift))) - FOLLOW_JITTER,
            int(np.ceil(max(0.0, 2 * drift))) + FOLLOW_JITTER)


def _viterbi_path(scores: np.ndarray, low: int, high: int) -> tuple[np.ndarray, float]:
    """Best state per row of ``scores`` (rows: windows; states on a circle) when each move
    from one row to the next lies between ``low`` and ``high`` states; and its total score."""
    n_states = scores.shape[1]
    width = high - low + 1
    ring = (np.arange(n_states + width - 1) - high) % n_states  # ring[k + j] = k - (high - j)
    ext = np.empty(len(ring))
    # reach[j, k]: the best total of state k - (high - j) (move high - j into state k), a view
    reach = as_strided(ext, shape=(width, n_states), strides=(ext.strides[0],) * 2,
                       writeable=False)
    totals = np.empty(scores.shape)
    totals[0] = scores[0]
    for w in range(1, len(scores)):
        np.take(totals[w - 1], ring, out=ext, mode="clip")
        np.add(reach.max(axis=0), scores[w], out=totals[w])
    # back through the rows, for the path's states only: the first move that reaches the best
    path = np.zeros(len(scores), dtype=np.int64)
    path[-1] = int(np.argmax(totals[-1]))
    for w in range(len(scores) - 1, 0, -1):
        j = int(np.argmax(totals[w - 1][ring[path[w] : path[w] + width]]))
        path[w - 1] = (path[w] - (high - j)) % n_states
    return path, float(totals[-1].max())
