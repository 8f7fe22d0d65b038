#!/usr/bin/env python3
"""Check what the README's main command (``bash scripts/dev.sh demo``) made: CI runs it first,
on a clean clone with a fresh venv and no model layer, then this.

Usage: python scripts/check_demo.py [demo.wav] [--text TEXT] [--max-wer 0.5]

Fails (exit 1, saying why) unless the WAV is intelligible speech of the demo text (pocketsphinx's
word error rate, as in tests/test_voice_intelligibility.py, at most ``--max-wer``) and
``voxproof verify --json`` finds its mark with a stored record. On the demo text pocketsphinx
scored 0.2-0.3 in five syntheses ("voxproof" is not in its vocabulary: always two of the ten
words); speech of another text or a tone scores 1.0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from asr import Recognizer, edit_distance, reference_words, words

DEMO_TEXT = "Hello from voxproof. Every word I say carries a watermark."  # scripts/dev.sh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", type=Path, default=ROOT / "demo.wav")
    parser.add_argument("--text", default=DEMO_TEXT)
    parser.add_argument("--max-wer", type=float, default=0.5)
    args = parser.parse_args(argv)

    samples, rate = sf.read(args.wav, dtype="float32")
    heard = Recognizer().transcribe(samples, rate)
    reference = reference_words(args.text)
    wer = edit_distance(reference, words(heard)) / len(reference)
    print(f"demo: {len(samples) / rate:.2f} s at {rate} Hz; pocketsphinx heard {heard!r}; "
          f"WER {wer:.2f} (at most {args.max_wer})")

    verify = subprocess.run([sys.executable, "-m", "voxproof", "verify", str(args.wav), "--json"],
                            capture_output=True, text=True, check=True)
    report = json.loads(verify.stdout)
    print(f"demo: verify found={report['found']} record_id={report['record_id']} "
          f"verdict={report.get('verdict')}")
    problems = []
    if wer > args.max_wer:
        problems.append(f"not intelligible enough (WER {wer:.2f} > {args.max_wer})")
    if not report["found"] or report.get("verdict") != "recorded":
        problems.append("the mark or its record was not found")
    for problem in problems:
        print(f"demo: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
