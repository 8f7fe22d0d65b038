"""Error correction: a tail-biting convolutional code (rate 1/3, constraint length 7).

64 payload bits become exactly 192 coded bits; decoding is a soft-input Viterbi over the
circular trellis (docs/watermark.md, "Unit and payload").

Example:
    >>> import numpy as np
    >>> bits = np.random.default_rng(1).integers(0, 2, 64).astype(np.int8)
    >>> coded = encode(bits)
    >>> soft = 1.0 - 2.0 * coded              # +1 for a 0 bit, -1 for a 1 bit
    >>> soft[::5] *= -1                       # flip every fifth coded bit
    >>> bool((decode(soft) == bits).all())
    True
"""

from __future__ import annotations

from typing import Final

import numpy as np

CONSTRAINT: Final = 7
RATE_INV: Final = 3
_GENERATORS: Final = (0o133, 0o171, 0o165)
_MEMORY: Final = CONSTRAINT - 1
_STATES: Final = 1 << _MEMORY


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """Predecessor states (64, 2) and the branch's coded bits as +-1 (64, 2, 3)."""
    new = np.arange(_STATES)
    u = new >> (_MEMORY - 1)
    low = (new & ((_STATES >> 1) - 1)) << 1
    pred = np.stack([low, low | 1], axis=1)
    reg = (u[:, None] << _MEMORY) | pred
    out = np.stack([_parity(reg & g) for g in _GENERATORS], axis=-1)
    return pred, 1.0 - 2.0 * out


_PRED, _BRANCH = _trellis()


def encode(bits: np.ndarray) -> np.ndarray:
    """Tail-biting encode ``bits`` (0/1) into ``3 * len(bits)`` coded bits (0/1, int8)."""
    bits = np.asarray(bits, dtype=np.int64)
    n = len(bits)
    state = 0
    for i in range(_MEMORY):  # the state the last six bits leave: newest in the top bit
        state |= int(bits[n - 1 - i]) << (_MEMORY - 1 - i)
    out = np.empty((n, RATE_INV), dtype=np.int8)
    for t, u in enumerate(bits):
        reg = (int(u) << _MEMORY) | state
        out[t] = [(reg & g).bit_count() & 1 for g in _GENERATORS]
        state = reg >> 1
    return out.reshape(-1)


def decode(soft: np.ndarray, passes: int = 3) -> np.ndarray:
    """Soft Viterbi decode; ``soft`` holds one value per coded bit, > 0 meaning 0.

    Returns the ``len(soft) // 3`` most likely information bits (0/1, int8).
    """
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, RATE_INV)
    n = len(soft)
    seq = np.tile(soft, (passes, 1))
    gains = np.einsum("sbk,tk->tbs", _BRANCH, seq)  # (T, 2, 64) branch metrics
    pred0, pred1 = _PRED[:, 0], _PRED[:, 1]
    metric = np.zeros(_STATES)
    choice = np.empty((len(seq), _STATES), dtype=bool)
    for t in range(len(seq)):
        via0 = metric[pred0] + gains[t, 0]
        via1 = metric[pred1] + gains[t, 1]
        np.greater(via1, via0, out=choice[t])
        metric = np.maximum(via0, via1)
        if t % 32 == 31:
            metric -= metric.max()
    state = int(np.argmax(metric))
    decided = np.empty(len(seq), dtype=np.int8)
    for t in range(len(seq) - 1, -1, -1):
        decided[t] = state >> (_MEMORY - 1)
        state = int(_PRED[state, int(choice[t, state])])
    mid = (passes // 2) * n
    return decided[mid : mid + n]
