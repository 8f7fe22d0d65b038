"""Audio hosts built from code for the watermark tests and scripts/bench_watermark.py.

``speechlike`` is a speech-shaped host (voiced syllables, formants, fricatives, pauses);
``synthetic`` makes unmarked clips of every kind in ``KINDS`` for false-positive checks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def speechlike(seconds: float, sr: int, seed: int = 0, pauses: bool = True) -> np.ndarray:
    """Voiced syllables (gliding pitch, moving formants) with fricative bursts and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 15 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / sr
    source = np.sign(np.sin(phase)) * 0.3 + 0.7 * ((phase / (2 * np.pi)) % 1.0 - 0.5)
    out = np.zeros(n)
    seg = int(0.25 * sr)
    for start in range(0, n, seg):
        chunk = source[start : start + seg]
        for f in rng.uniform([300, 900, 2200], [800, 2000, 3200]):  # three formants
            r = np.exp(-np.pi * 120 / sr)
            a = [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
            out[start : start + len(chunk)] += lfilter([1 - r], a, chunk)
        if rng.random() < 0.3:  # a fricative
            out[start : start + len(chunk)] += 0.05 * rng.standard_normal(len(chunk))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    if pauses:
        envelope *= np.clip(np.sin(2 * np.pi * 0.33 * t + rng.uniform(0, 6)) * 4 + 2, 0, 1)
    out *= envelope
    return (0.3 * out / np.max(np.abs(out) + 1e-12)).astype(np.float32)


def synthetic(kind: str, seconds: float, sr: int, seed: int) -> np.ndarray:
    """An unmarked clip of one of ``KINDS`` (false-positive checks in tests and the benchmark)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if kind == "speech":
        return speechlike(seconds, sr, seed, pauses=bool(seed % 2))
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = lfilter([0.049922, -0.095993, 0.050613, -0.004408],
                    [1, -2.494956, 2.017265, -0.522190], rng.standard_normal(n))
    elif kind == "brown":
        x = np.cumsum(rng.standard_normal(n))
        x -= np.mean(x)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(100, 3500) * t)
    elif kind == "chord":
        x = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 2000, 3))
    elif kind == "sweep":
        f = np.linspace(rng.uniform(100, 500), rng.uniform(1000, 3800), n)
        x = np.sin(2 * np.pi * np.cumsum(f) / sr)
    elif kind == "music":  # notes with harmonics and decaying envelopes
        x = np.zeros(n)
        step = int(rng.uniform(0.1, 0.4) * sr)
        for start in range(0, n, step):
            f = 110 * 2 ** (rng.integers(0, 36) / 12)
            k = np.arange(min(step * 2, n - start)) / sr
            note = sum(np.sin(2 * np.pi * f * h * k) / h for h in range(1, 6) if f * h < sr / 2)
            x[start : start + len(k)] += note * np.exp(-k * rng.uniform(2, 8))
    elif kind == "clicks":
        x = np.zeros(n)
        x[rng.integers(0, n, 20)] = 1.0
    else:  # silence with a whisper of noise
        x = 1e-5 * rng.standard_normal(n)
    x = np.asarray(x, dtype=np.float64)
    return (rng.uniform(0.05, 0.5) * x / (np.max(np.abs(x)) + 1e-12)).astype(np.float32)


KINDS = ("speech", "white", "pink", "brown", "tone", "chord", "sweep", "music", "clicks", "quiet")
