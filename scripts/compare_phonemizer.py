"""Compare voxproof's phonemizer with piper-tts's on the paragraphs of any English text files.

Run: PYTHONPATH=functions python scripts/compare_phonemizer.py /usr/share/common-licenses/*
Both get the same raw text (no voxproof expansion); prints how many paragraphs give identical
phonemes and the most frequent word-level differences (espeak-ng version effects).
"""

from __future__ import annotations

import collections
import difflib
import re
import sys
from pathlib import Path

from voxproof.voice.phonemize import Phonemizer


def paragraphs(paths: list[str], limit: int) -> list[str]:
    found: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(block.split())
            letters = sum(c.isalpha() for c in block)
            if 20 < len(block) < 900 and block.isascii() and letters > 0.6 * len(block):
                found.append(block)
    return list(dict.fromkeys(found))[:limit]


def main(paths: list[str], limit: int = 5000) -> None:
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
    from piper.phonemize_espeak import EspeakPhonemizer

    ours, piper = Phonemizer(DEFAULT_PHONEME_ID_MAP), EspeakPhonemizer()
    texts = paragraphs(paths, limit)
    differences: collections.Counter[tuple[str, str]] = collections.Counter()
    same = 0
    for text in texts:
        mine = ours.phonemize(text)
        theirs = [s for s in piper.phonemize("en-us", text) if s]
        if mine == theirs:
            same += 1
            continue
        a = " | ".join("".join(s) for s in mine).split(" ")
        b = " | ".join("".join(s) for s in theirs).split(" ")
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
            if tag != "equal":
                differences[(" ".join(a[i1:i2]), " ".join(b[j1:j2]))] += 1
    print(f"{same}/{len(texts)} paragraphs identical ({same / max(1, len(texts)):.1%})")
    for (mine_words, theirs_words), count in differences.most_common(15):
        print(f"{count:5d}  voxproof {mine_words!r}  piper {theirs_words!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
