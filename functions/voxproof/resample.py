"""Polyphase resampling in numpy alone: ``resample_poly`` and the streaming ``PolyResampler``.

The same filter as ``scipy.signal.resample_poly``'s default (a Kaiser window, beta 5, ten
zero crossings of the wider rate; zero padding at the ends), so results agree with scipy's to
rounding (about 1e-15). It exists because importing ``scipy.signal`` costs seconds in a fresh
process, and the mark and verify paths need nothing else from it. Each output sample is one
dot product of the same filter taps with the same inputs wherever it is computed, so a
stream fed block by block gives exactly the array the whole input gives.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """``x`` (1-D) resampled by ``up / down``, as ``scipy.signal.resample_poly(x, up, down)``.

    Example:
        >>> y = resample_poly(np.ones(882), 320, 882)
        >>> len(y), bool(np.allclose(y[100:220], 1.0, atol=1e-3))
        (320, True)
    """
    g = gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    x = np.asarray(x, dtype=np.float64)
    if up == down == 1:
        return x.copy()
    r = PolyResampler.from_factors(up, down)
    return np.concatenate([r.feed(x), r.finish()])


@lru_cache(maxsize=16)
def _phases(up: int, down: int) -> tuple[np.ndarray, int]:
    """The filter split into ``up`` phases, each reversed for a dot with rising inputs, and
    the index offset of its first tap: ``(phases[up, taps], pre)``."""
    widest = max(up, down)
    half = 10 * widest
    h = _kaiser_lowpass(2 * half + 1, 1.0 / widest, 5.0) * up
    pre = down - half % down
    h = np.concatenate([np.zeros(pre), h])
    taps = -(-len(h) // up)
    h = np.concatenate([h, np.zeros(taps * up - len(h))])
    phases = h.reshape(taps, up).T[:, ::-1].copy()  # phases[p, j] = h[p + (taps-1-j) * up]
    phases.setflags(write=False)
    return phases, pre


def _kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``: a windowed sinc,
    scaled to unit gain at 0 Hz (``cutoff`` as a fraction of Nyquist)."""
    m = np.arange(numtaps) - (numtaps - 1) / 2
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


class PolyResampler:
    """``resample_poly(x, up, down)`` computed block by block as ``x`` arrives: the output is
    the same array, and memory is one block of input plus the filter.

    Example:
        >>> x = np.random.default_rng(0).standard_normal(50_000)
        >>> r = PolyResampler(22050, 8000, block=4096)
        >>> y = np.concatenate([r.feed(x[:12_345]), r.feed(x[12_345:]), r.finish()])
        >>> bool(np.array_equal(y, resample_poly(x, 320, 882)))
        True
    """

    def __init__(self, rate_in: int, rate_out: int, *, block: int = 1 << 16) -> None:
        g = gcd(int(rate_in), int(rate_out))
        self._init(int(rate_out) // g, int(rate_in) // g, block)

    @classmethod
    def from_factors(cls, up: int, down: int, *, block: int = 1 << 16) -> PolyResampler:
        """A resampler by ``up / down`` (already reduced)."""
        self = cls.__new__(cls)
        self._init(up, down, block)
        return self

    def _init(self, up: int, down: int, block: int) -> None:
        self.up, self.down = up, down
        self.n_in = 0
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._next = 0  # the next output index to produce
        self._start = 0  # input index of the first pending sample
        if up == down == 1:
            return
        self._phases, self._pre = _phases(up, down)
        self._taps = self._phases.shape[1]
        half = 10 * max(up, down)
        self._first = (half + self._pre) // down  # output index of resample_poly's y[0]
        self._next = self._first
        self._block = max(block, 4 * self._taps)

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Take the next input samples; returns the outputs they complete."""
        self.n_in += len(x)
        if self.up == self.down == 1:
            return np.array(x, dtype=np.float64)
        self._pending.append(np.asarray(x, dtype=np.float64))
        self._pending_len += len(x)
        if self._pending_len < self._block:
            return np.zeros(0)
        return self._run(final=False)

    def finish(self) -> np.ndarray:
        """The remaining outputs, once all input is in."""
        if self.up == self.down == 1:
            return np.zeros(0)
        return self._run(final=True)

    def _run(self, *, final: bool) -> np.ndarray:
        """Outputs ``_next ..`` whose inputs are all here (or, at the end, all the rest)."""
        up, down, taps = self.up, self.down, self._taps
        x = (self._pending[0] if len(self._pending) == 1
             else np.concatenate(self._pending) if self._pending else np.zeros(0))
        if final:
            stop = self._first - (-self.n_in * up // down)  # ceil(n_in * up / down) outputs
        else:  # output k reads inputs up to k * down // up: all must have arrived
            stop = ((self._start + len(x)) * up - 1) // down + 1
        out = self._outputs(x, self._next, max(stop, self._next))
        self._next = max(stop, self._next)
        # keep the inputs the next output still needs
        keep = max(self._start, (self._next * down) // up - taps + 1)
        x = x[keep - self._start:]
        self._start = keep
        self._pending, self._pending_len = [x], len(x)
        return out

    def _outputs(self, x: np.ndarray, first: int, stop: int) -> np.ndarray:
        """Outputs ``first .. stop`` of the full (zero-padded) polyphase filter over ``x``,
        whose first sample is input index ``self._start``."""
        if stop <= first:
            return np.zeros(0)
        up, down, taps = self.up, self.down, self._taps
        k = np.arange(first, stop, dtype=np.int64)
        last_in = k * down // up  # the newest input this output reads (h holds the pre-pad)
        phase = k * down - last_in * up
        lo = int(last_in[0]) - taps + 1  # the oldest input any of these outputs reads
        hi = int(last_in[-1]) + 1
        padded = np.zeros(hi - lo)
        a, b = max(lo, self._start), min(hi, self._start + len(x))
        if b > a:
            padded[a - lo:b - lo] = x[a - self._start:b - self._start]
        windows = sliding_window_view(padded, taps)
        out = np.empty(len(k))
        # Outputs k and k + up share a phase and read windows ``down`` inputs apart: per phase,
        # one matrix-vector product over a strided view of the windows (no gathered copy).
        for i in range(min(up, len(k))):
            rows = windows[last_in[i] - taps + 1 - lo::down][: len(range(i, len(k), up))]
            out[i::up] = np.einsum("ij,j->i", rows, self._phases[phase[i]])
        return out
