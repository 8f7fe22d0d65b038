"""Embedding: distortion-compensated dither modulation (DC-QIM) of cell values, iterated.

The mark is a residual computed at 8 kHz, brought back to the caller's rate and added to every
channel; slots without speech get none of it. See docs/watermark.md, "Modulation".
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voxproof.watermark import analysis as an
from voxproof.watermark import ecc
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.pattern import BANDS, UNIT_BLOCKS, Pattern, pattern_for
from voxproof.watermark.payload import payload_bits

ALPHA: Final = 0.70  # distortion compensation: fraction of the way to the lattice point
ROUNDS: Final = 4  # embed / re-measure rounds
MAX_GAIN: Final = 1.0  # largest change of a tile's log energy (about 4.3 dB)
MIN_SNR_DB: Final = 30.5  # the mark is scaled down if it would come closer to the host
GATE_DB: Final = 40.0  # a slot is speech if within this many dB of the loudest slots
FLOOR_POWER: Final = 1e-8  # ... and above this mean in-band power (about -80 dBFS)
_EHOP: Final = 64  # embedding STFT hop (75 % overlap)
_EWIN: Final = np.hanning(an.FRAME + 1)[:-1]
_WINDOW: Final = an.WINDOW
_LEAD: Final = 224  # embedding frame i starts at sample 64 i - 224 (centre 64 (i - 2) + 32)
_BINS: Final = slice(an.FIRST_BIN, an.FIRST_BIN + BANDS * an.BAND_BINS)
SLOT_ENERGY_PER_POWER: Final = an.SLOT_HOPS * BANDS * an.BAND_BINS * float(np.sum(_EWIN**2))


def embed(samples: np.ndarray, sample_rate: int, key: WatermarkKey, record_id: int) -> np.ndarray:
    """Return ``samples`` with the mark of ``record_id`` under ``key`` (same shape and dtype).

    Parameters
    ----------
    samples:
        Float audio in [-1, 1], shape (n,) or (n, channels); silence and pauses stay untouched.
    sample_rate:
        8 000 to 192 000 Hz (the mark lives in 125-3625 Hz).
    key:
        The watermark key; only its holder can detect or forge the mark.
    record_id:
        The provenance record, 0 <= id < 2^40.

    Example:
        >>> import numpy as np
        >>> key = WatermarkKey.from_hex("5a" * 32)
        >>> t = np.arange(16000) / 16000
        >>> tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        ...     np.float32)
        >>> marked = embed(tone, 16000, key, 0x00000000A1)
        >>> marked.shape == tone.shape and marked.dtype == tone.dtype
        True
    """
    coded = ecc.encode(payload_bits(key, record_id))
    return embed_coded(samples, sample_rate, key, coded)


def embed_coded(
    samples: np.ndarray, sample_rate: int, key: WatermarkKey, coded: np.ndarray
) -> np.ndarray:
    """Embed given coded bits (192): the mechanism behind ``embed`` (tests forge with it)."""
    samples = an.check_audio(samples, sample_rate)
    x8 = an.to_internal(samples, sample_rate)
    residual8 = _residual(x8, pattern_for(key), coded)
    if not np.any(residual8):
        return samples.copy()
    residual = an.from_internal(residual8, sample_rate, samples.shape[0])
    if samples.ndim == 2:
        residual = residual[:, None]
    out = np.clip(samples.astype(np.float64) + residual, -1.0, 1.0)
    return out.astype(samples.dtype)


def _residual(x8: np.ndarray, pattern: Pattern, coded: np.ndarray) -> np.ndarray:
    n_slots = len(x8) // (an.SLOT_HOPS * an.HOP)
    host = _tile_log_energy(x8, n_slots)
    n_slots = len(host)  # the analysis may hold one slot fewer than the length suggests
    n_blocks = n_slots // 2
    if n_blocks == 0:
        return np.zeros_like(x8)
    active = _speech_blocks(host)
    if not active.any():
        return np.zeros_like(x8)
    targets = _targets(host, pattern, coded, n_blocks)
    spec = _stft(x8)[:, _BINS]  # the mark changes these bins alone
    slots = _frame_slots(len(spec), n_slots)
    gains = np.zeros((n_slots, BANDS))
    for round_ in range(ROUNDS):
        if round_ == 0:
            tiles = host  # no gain yet: the residual is exactly zero and the tiles the host's
        else:
            residual = _istft(_change(spec, gains, slots), len(x8))
            tiles = _tile_log_energy(x8 + residual, n_slots, active)
        err = np.where(active[:, None], targets - _cell_values(tiles, n_blocks), 0.0)
        gains[0 : 2 * n_blocks : 2] += err / 2
        gains[1 : 2 * n_blocks : 2] -= err / 2
        np.clip(gains, -MAX_GAIN, MAX_GAIN, out=gains)
    residual = _istft(_change(spec, gains, slots), len(x8))
    return residual * _snr_guard(x8, residual)


def _snr_guard(x8: np.ndarray, residual: np.ndarray) -> float:
    """Scale factor (<= 1) that keeps the mark MIN_SNR_DB below the host (8 kHz band)."""
    noise = float(np.sum(residual**2))
    allowed = float(np.sum(x8**2)) * 10 ** (-MIN_SNR_DB / 10)
    return 1.0 if noise <= allowed else float(np.sqrt(allowed / noise))


def _tile_log_energy(x8: np.ndarray, n_slots: int,
                     blocks: np.ndarray | None = None) -> np.ndarray:
    """Log energy of the tiles of slots 0, 1, ... (at most ``n_slots``): what
    ``an.slot_log_energy(an.band_energy(an.power(x8)))[::SLOT_HOPS]`` measures, computed for the
    slot starts alone (the embedder re-measures every round; the detector needs every frame).
    Band energies are plain sums of their four bins (at scale 1 the band edges fall on bin
    edges), so values agree with the analysis module's to rounding (test_watermark).

    ``blocks``: measure only the slots of these blocks (a mask over blocks, the speech the
    embedder changes); the others' values are then meaningless."""
    n_frames = an.frame_count(len(x8))
    n_slots = min(n_slots, max(0, -(-(n_frames - an.SLOT_HOPS) // an.SLOT_HOPS)))
    used = an.SLOT_HOPS * n_slots + 1 if n_slots else 0  # slot s spans frames 8 s .. 8 s + 8
    rows = None
    if blocks is not None:  # block b: slots 2 b, 2 b + 1, i.e. frames 16 b .. 16 b + 16
        first = an.BLOCK_HOPS * np.flatnonzero(blocks[: n_slots // 2])
        frames = (first[:, None] + np.arange(an.BLOCK_HOPS + 1)).ravel()
        wanted = np.zeros(used, dtype=bool)  # (not np.unique: it imports numpy.ma, ~35 ms)
        wanted[frames[frames < used]] = True
        rows = np.flatnonzero(wanted)
    bands = _band_energy(x8, used, rows)
    whole = bands[: used - 1].reshape(n_slots, an.SLOT_HOPS, BANDS).sum(axis=1)
    ends = bands[0:used:an.SLOT_HOPS]  # the trapezoid's half-weight ends
    energy = whole - 0.5 * ends[:-1] + 0.5 * ends[1:]
    return np.log(np.maximum(energy, 0.0) + an.FLOOR)


def _band_energy(x8: np.ndarray, n_frames: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, BANDS) energy per band of the first ``n_frames`` analysis frames
    (``an.power``'s frames and window); ``rows``: only these frames (the others are 0)."""
    if n_frames == 0:
        return np.zeros((0, BANDS))
    lead = an.FRAME // 2 - an.HOP // 2
    padded = np.zeros(lead + an.HOP * n_frames + an.FRAME)
    stop = min(len(x8), len(padded) - lead)
    padded[lead : lead + stop] = x8[:stop]
    frames = sliding_window_view(padded, an.FRAME)[: an.HOP * n_frames : an.HOP]
    out = np.zeros((n_frames, BANDS))
    rows = np.arange(n_frames) if rows is None else rows
    for start in range(0, len(rows), an.POWER_BLOCK_FRAMES):
        chunk = rows[start : start + an.POWER_BLOCK_FRAMES]
        spec = np.fft.rfft(frames[chunk] * _WINDOW, axis=1)
        # each band's bins as (re, im) pairs: one product-and-sum gives its energy
        parts = spec[:, _BINS].view(np.float64).reshape(len(spec), BANDS, 2 * an.BAND_BINS)
        out[chunk] = np.einsum("fbk,fbk->fb", parts, parts)
    return out


def _cell_values(tiles: np.ndarray, n_blocks: int) -> np.ndarray:
    return tiles[0 : 2 * n_blocks : 2] - tiles[1 : 2 * n_blocks : 2]


def _speech_blocks(tiles: np.ndarray) -> np.ndarray:
    """Blocks whose two slots both carry speech-level energy."""
    level = np.log(np.exp(tiles).sum(axis=1))
    ref = an.percentile(level, 99)
    speech = (level >= ref - GATE_DB * np.log(10) / 10) & (
        level >= np.log(FLOOR_POWER * SLOT_ENERGY_PER_POWER)
    )
    n_blocks = len(tiles) // 2
    return speech[0 : 2 * n_blocks : 2] & speech[1 : 2 * n_blocks : 2]


def _targets(host: np.ndarray, pattern: Pattern, coded: np.ndarray, n_blocks: int) -> np.ndarray:
    """(blocks, BANDS) target cell values: host moved ALPHA of the way to its bit's lattice."""
    values = _cell_values(host, n_blocks)
    steps = an.cell_steps(host[0 : 2 * n_blocks : 2], host[1 : 2 * n_blocks : 2])
    cell = (np.arange(n_blocks) % UNIT_BLOCKS)[:, None] * BANDS + np.arange(BANDS)[None, :]
    bits = pattern.cell_bits(coded)[cell]
    offset = (pattern.dither[cell] + 0.5 * bits) * steps
    nearest = offset + steps * np.round((values - offset) / steps)
    return values + ALPHA * (nearest - values)


def _stft(x8: np.ndarray) -> np.ndarray:
    n_frames = (len(x8) + _LEAD) // _EHOP + 1
    padded = np.zeros(_EHOP * n_frames + an.FRAME)
    padded[_LEAD : _LEAD + len(x8)] = x8
    idx = _EHOP * np.arange(n_frames)[:, None] + np.arange(an.FRAME)[None, :]
    return np.fft.rfft(padded[idx] * _EWIN, axis=1)


def _istft(bins: np.ndarray, length: int) -> np.ndarray:
    """The signal of an embedding STFT that is zero outside ``_BINS`` (``bins``: those bins).
    Frames that are zero throughout (no gain: silence, pauses) add nothing and are skipped."""
    n_frames = len(bins)
    rows = np.flatnonzero(np.any(bins != 0, axis=1))
    spec = np.zeros((len(rows), an.FRAME // 2 + 1), dtype=complex)
    spec[:, _BINS] = bins[rows]
    frames = (np.fft.irfft(spec, an.FRAME, axis=1) * _EWIN).reshape(
        len(rows), an.FRAME // _EHOP, _EHOP)
    out = np.zeros((n_frames + 3, _EHOP))  # overlap-add, one hop per row
    for j in range(an.FRAME // _EHOP):
        out[rows + j] += frames[:, j]  # rows are distinct: no two adds to one row
    out = out.ravel()
    out /= float(np.sum(_EWIN**2)) / _EHOP  # Hann at 75 % overlap: constant 1.5
    return out[_LEAD : _LEAD + length]


def _frame_slots(n_frames: int, n_slots: int) -> np.ndarray:
    """The slot each embedding frame's centre falls in (-1: before the first or after the
    last slot, where the mark changes nothing)."""
    slot = (_EHOP * (np.arange(n_frames) - 2) + 32) // (an.SLOT_HOPS * an.HOP)
    return np.where((slot >= 0) & (slot < n_slots), slot, -1)


def _change(bins: np.ndarray, gains: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The change the per-tile log-energy ``gains`` make to the embedding STFT's ``_BINS``:
    each band's bins times ``exp(gain / 2) - 1`` of the tile its frame's centre falls in."""
    per_band = np.exp(gains[np.maximum(slots, 0)] / 2) - 1.0
    per_band[slots < 0] = 0.0
    shaped = bins.reshape(len(bins), BANDS, an.BAND_BINS) * per_band[:, :, None]
    return shaped.reshape(len(bins), BANDS * an.BAND_BINS)
