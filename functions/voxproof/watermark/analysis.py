"""The internal domain every embed and detect works in: 8 kHz mono, 32 ms frames every 4 ms.

Tiles (125 Hz x 32 ms), cells (two tiles of one band in a 64 ms block), cell levels and the
quantiser step each level gets (``cell_steps``). See docs/watermark.md, "Algorithm".
"""

from __future__ import annotations

from math import gcd
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voxproof.errors import AudioError, UnsupportedAudio
from voxproof.resample import resample_poly
from voxproof.watermark.pattern import BANDS

RATE: Final = 8000
MIN_RATE: Final = 8000
MAX_RATE: Final = 192_000
FRAME: Final = 256
HOP: Final = 32  # analysis hop (4 ms); frame g is centred on sample HOP * g + HOP // 2
SLOT_HOPS: Final = 8  # one slot (32 ms) = 8 analysis hops
BLOCK_HOPS: Final = 2 * SLOT_HOPS
FIRST_BIN: Final = 4  # 125 Hz
BAND_BINS: Final = 4
WINDOW: Final = np.hanning(FRAME + 1)[:-1]  # the analysis frames' window
FLOOR: Final = 1e-12  # added to energies before their log


def check_audio(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The samples as an array, or a clear error for what the mark cannot work on."""
    x = np.asarray(samples)
    if x.ndim not in (1, 2) or x.dtype.kind != "f":
        raise AudioError("audio must be float samples of shape (n,) or (n, channels)")
    if isinstance(sample_rate, bool) or not MIN_RATE <= int(sample_rate) <= MAX_RATE:
        raise UnsupportedAudio(f"the sample rate must be {MIN_RATE} to {MAX_RATE} Hz")
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    return x


def to_internal(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float64 at 8 kHz (a new array). The channels are averaged before any float64 copy,
    so the only full-length float64 arrays are mono."""
    x = check_audio(samples, sample_rate)
    x = x.mean(axis=1, dtype=np.float64) if x.ndim == 2 else x.astype(np.float64)
    if sample_rate == RATE:
        return x
    g = gcd(int(sample_rate), RATE)
    return resample_poly(x, RATE // g, int(sample_rate) // g)


def from_internal(residual: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    """Bring an 8 kHz residual back to ``sample_rate`` with exactly ``length`` samples."""
    if sample_rate == RATE:
        out = residual
    else:
        g = gcd(int(sample_rate), RATE)
        out = resample_poly(residual, int(sample_rate) // g, RATE // g)
    if len(out) >= length:
        return out[:length]
    return np.pad(out, (0, length - len(out)))


def frame_count(n_samples: int) -> int:
    return max(0, (n_samples + HOP // 2) // HOP)


POWER_BLOCK_FRAMES: Final = 4096
"""``power`` transforms this many frames at a time (16 s of audio), so its temporaries (windowed
frames, complex spectra) stay a few MB whatever the input's length."""


def power(x8: np.ndarray) -> np.ndarray:
    """Short-time power (frames x 129 bins); frame g is centred on sample 32 g + 16.

    Computed ``POWER_BLOCK_FRAMES`` frames at a time (each row is its own transform, so the
    result is the same, bit for bit, as one transform of every frame)."""
    n = frame_count(len(x8))
    lead = FRAME // 2 - HOP // 2
    padded = np.zeros(lead + HOP * n + FRAME)
    padded[lead : lead + len(x8)] = x8
    frames = sliding_window_view(padded, FRAME)[: HOP * n : HOP]
    out = np.empty((n, FRAME // 2 + 1))
    for start in range(0, n, POWER_BLOCK_FRAMES):
        spec = np.fft.rfft(frames[start : start + POWER_BLOCK_FRAMES] * WINDOW, axis=1)
        np.add(spec.real**2, spec.imag**2, out=out[start : start + POWER_BLOCK_FRAMES])
    return out


def band_energy(power_: np.ndarray, freq_scale: float = 1.0,
                running: np.ndarray | None = None) -> np.ndarray:
    """(frames, BANDS) energy per band, the band edges stretched by ``freq_scale``.

    Each bin's power is spread evenly over its width, so an edge may cut a bin: band energy is
    the difference of the interpolated running sum at the two edges. ``running``: the running
    sum over bins (``running_power``), when the caller keeps it for several scales.
    """
    edges = (FIRST_BIN - 0.5 + BAND_BINS * np.arange(BANDS + 1)) * freq_scale + 0.5
    whole = np.floor(edges).astype(np.int64)
    frac = edges - whole
    if running is None:
        running = running_power(power_[:, : whole[-1] + 1])
    below = np.where(whole > 0, running[:, np.maximum(whole - 1, 0)], 0.0)
    at_edge = below + frac * power_[:, whole]
    return np.diff(at_edge, axis=1) / freq_scale


def running_power(power_: np.ndarray) -> np.ndarray:
    """The running sum of each frame's power over its bins: ``band_energy``'s one costly part,
    the same for every ``freq_scale`` (a prefix of the bins gives a prefix of the sums)."""
    return np.cumsum(power_, axis=1)


def stretch_frames(p: np.ndarray, time_scale: float, phase: float = 0.0) -> np.ndarray:
    """Resample the frame axis: row h of the result is row ``phase + h * time_scale`` of ``p``
    (linear interpolation; the power of 32 ms frames 4 ms apart varies smoothly)."""
    if time_scale == 1.0 and phase == 0.0:
        return p
    n = int(np.floor((len(p) - 1 - phase) / time_scale)) + 1
    pos = phase + np.arange(n) * time_scale
    i = np.minimum(pos.astype(np.int64), len(p) - 2)
    f = (pos - i)[:, None]
    return p[i] * (1.0 - f) + p[i + 1] * f


def slot_log_energy(bands: np.ndarray) -> np.ndarray:
    """Log energy of the slot starting at each frame h (frames - 8, BANDS).

    Rows h .. h+8 are summed with half weight on the two ends (a trapezoid over the slot's 32
    ms), which makes the value vary smoothly when the input is shifted by part of a hop.
    """
    c = np.empty((len(bands) + 1, bands.shape[1]))
    c[0] = 0.0
    np.cumsum(bands, axis=0, out=c[1:])
    # in place, the same operations in the same order (fresh temporaries cost page faults)
    e = c[SLOT_HOPS:-1] - c[:-SLOT_HOPS - 1]
    e -= 0.5 * bands[:-SLOT_HOPS]
    e += 0.5 * bands[SLOT_HOPS:]
    np.maximum(e, 0.0, out=e)
    e += FLOOR
    return np.log(e, out=e)


def cell_values(log_e: np.ndarray) -> np.ndarray:
    """Cell value at each frame h: log E(slot at h) - log E(slot at h + 8), per band."""
    return log_e[:-SLOT_HOPS] - log_e[SLOT_HOPS:]


STEP_LOUD: Final = 0.15  # quantiser step of the loudest cells of a block (neper)
STEP_QUIET: Final = 4.0  # ... and of cells this far or further below their block's level
LOUD_DB: Final = 10.0
QUIET_DB: Final = 35.0
_DB: Final = 10.0 / np.log(10.0)
_STEP_GROWTH: Final = float(np.log(STEP_QUIET / STEP_LOUD) / (QUIET_DB - LOUD_DB))  # per dB


def slot_levels(log_e: np.ndarray) -> np.ndarray:
    """Log of each slot's power over all bands: ``log sum_b exp(log_e[..., b])``."""
    return np.log(np.exp(log_e).sum(axis=-1))


def cell_levels(first: np.ndarray, second: np.ndarray,
                levels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """How far (dB) each cell lies below its block: the block's mean power over all bands
    against the cell's mean log energy. Both are symmetric in the two slots, so the mark, which
    moves a cell's two tiles in opposite directions, leaves the cell's mean unchanged and the
    block's power nearly so (its loud cells move least); volume and cuts cancel out.
    ``levels``: ``slot_levels`` of ``first`` and ``second``, when the caller has them."""
    a, b = levels if levels is not None else (slot_levels(first), slot_levels(second))
    block = np.logaddexp(a, b)
    return _DB * (block[..., None] - np.log(2.0) - 0.5 * (first + second))


def cell_steps(first: np.ndarray, second: np.ndarray,
               levels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Quantiser step of each cell: small for the cells that hold a block's energy, growing
    geometrically for quieter ones (cheap in mark energy, and kept by codecs to about their
    band energy). ``levels``: as for ``cell_levels``."""
    # STEP_LOUD * (STEP_QUIET / STEP_LOUD) ** frac, frac = (level - LOUD_DB) / (QUIET_DB -
    # LOUD_DB) clipped to [0, 1]: as an exp, in place (pow and fresh temporaries cost 3x)
    steps = np.clip(cell_levels(first, second, levels), LOUD_DB, QUIET_DB)
    steps -= LOUD_DB
    steps *= _STEP_GROWTH
    np.exp(steps, out=steps)
    steps *= STEP_LOUD
    return steps


def percentile(values: np.ndarray, q: float) -> np.floating:
    """``np.percentile(values, q)`` of a 1-D array, bit for bit (numpy's default linear method,
    NaN in, NaN out), without its import of ``numpy.ma`` (~35 ms of every cold process that
    marks: ``np.percentile`` goes through ``np.unique``, which loads it).

    Example:
        >>> float(percentile(np.arange(101.0), 99))
        99.0
    """
    a = np.asarray(values).ravel()
    n = a.size
    if n == 0:
        raise IndexError("percentile of an empty array")
    if np.issubdtype(a.dtype, np.inexact) and np.isnan(a).any():
        return a.dtype.type(np.nan)
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        low = high = n - 1
    elif virtual < 0:
        low = high = 0
    else:
        low = int(np.floor(virtual))
        high = low + 1
    gamma = virtual - float(np.floor(virtual))
    part = np.partition(a, sorted({0, -1, low, high}))  # numpy's own kth: the same order
    below, above = part[low], part[high]
    diff = above - below
    if gamma >= 0.5:  # numpy's _lerp: from the nearer end, for monotonicity
        return above - diff * (1 - gamma)
    return below + diff * gamma
