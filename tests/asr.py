"""Speech recognition for intelligibility checks: pocketsphinx (its bundled en-US acoustic model
and language model, default configuration, 16 kHz) and a standard word error rate.

WER = word-level Levenshtein distance (substitutions + deletions + insertions) between the
reference and the hypothesis, over the number of reference words. Both sides are normalized
the same way: numbers and symbols in the reference are expanded to words with
``voxproof.expand`` (whichever engine spoke), then lowercase, hyphens as spaces, everything but
letters and apostrophes dropped.
"""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly
from voxproof.expand import expand

ASR_RATE = 16_000
_NOT_WORD = re.compile(r"[^a-z' ]+")


def words(text: str) -> list[str]:
    """Normalized words of a transcript (no number expansion)."""
    return [w.strip("'") for w in _NOT_WORD.sub(" ", text.lower().replace("-", " ")).split()
            if w.strip("'")]


def reference_words(text: str) -> list[str]:
    """Normalized words of what a text says (numbers, money, dates expanded)."""
    return words(expand(text))


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                           diagonal + (ref_word != hyp_word))
    return row[-1]


class Recognizer:
    """One pocketsphinx decoder (default en-US model and LM); utterances decoded in order."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL")

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        """The decoder's best hypothesis for float mono audio at any rate."""
        ratio = Fraction(ASR_RATE, sample_rate)
        audio = np.asarray(samples, dtype=np.float64)
        if ratio != 1:
            audio = resample_poly(audio, ratio.numerator, ratio.denominator)
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""
