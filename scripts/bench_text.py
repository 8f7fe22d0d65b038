"""Benchmark the text frontend: prepare() throughput, worst cases, and phonemizing vs Piper.

Run: PYTHONPATH=functions python scripts/bench_text.py
Prints characters per second and the ratio voxproof / piper-tts for phonemizing the same
pieces (piper-tts is a dev dependency; it is only the yardstick here).
"""

from __future__ import annotations

import time
from pathlib import Path

from voxproof.errors import TextError
from voxproof.text import MAX_CHARS_CEILING, prepare
from voxproof.voice.phonemize import Phonemizer

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [line for line in (ROOT / "tests/data/frontend_sentences.txt").read_text(
    encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
WORST = {
    "dots": "." * MAX_CHARS_CEILING,
    "digits": "9" * MAX_CHARS_CEILING,
    "dashes": "1-" * (MAX_CHARS_CEILING // 2),
    "colons": "1:" * (MAX_CHARS_CEILING // 2),
    "money": ("$1," * MAX_CHARS_CEILING)[:MAX_CHARS_CEILING],
}


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    batch = " ".join(SENTENCES * 8)[:20_000]
    seconds = best_of(5, lambda: prepare(batch, max_chars=20_000))
    print(f"prepare, {len(batch)} chars of the sentence set: {seconds * 1000:.1f} ms "
          f"({len(batch) / seconds / 1000:.0f}k chars/s)")
    for name, text in WORST.items():
        def run(text: str = text) -> None:
            try:
                prepare(text, max_chars=MAX_CHARS_CEILING)
            except TextError:
                pass
        print(f"prepare, worst case {name!r} ({len(text)} chars): {best_of(3, run) * 1000:.0f} ms")
    start = time.perf_counter()
    try:
        prepare("a" * 1_000_000, max_chars=1_000)
    except TextError:
        pass
    print(f"prepare, 1 MB over the limit: {(time.perf_counter() - start) * 1e6:.0f} us")

    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
    from piper.phonemize_espeak import EspeakPhonemizer

    pieces = [p for s in SENTENCES for p in prepare(s, max_chars=1_000).pieces]
    chars = sum(len(p) for p in pieces)
    ours, piper = Phonemizer(DEFAULT_PHONEME_ID_MAP), EspeakPhonemizer()
    ours.phonemize("warm up")
    t_ours = best_of(5, lambda: [ours.to_ids(p) for p in pieces])
    t_piper = best_of(5, lambda: [piper.phonemize("en-us", p) for p in pieces])
    print(f"phonemize {len(pieces)} pieces / {chars} chars: voxproof {t_ours * 1000:.1f} ms, "
          f"piper-tts {t_piper * 1000:.1f} ms, ratio voxproof/piper {t_ours / t_piper:.2f}")


if __name__ == "__main__":
    main()
