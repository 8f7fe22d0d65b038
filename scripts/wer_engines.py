"""pocketsphinx WER of the two engines (and piper-tts) over several seed bases, per sentence.

The intelligibility test (tests/test_voice_intelligibility.py) speaks its 30 sentences once,
with seed ``base + 100 * k`` for sentence ``k`` (base 2024). This script repeats exactly that
(same sentences, ``Voice.synthesize`` on the whole pipeline, the test's ASR and WER from
tests/asr.py) for each engine and each seed base, so that the spread across seeds can be set
against the gap between engines. Results: docs/voice.md, "Intelligibility of the two engines".

Usage (from the repository root):
    PYTHONPATH=functions nice -n 10 python scripts/wer_engines.py \
        --engines onnx torch --bases 2024 10000 20000 --out /tmp/wer.jsonl

``torch-rng`` and ``onnx-torch-rng`` are the torch and ONNX engines fed the noise the torch
engine drew from torch's RNG until seeds meant the same noise on both engines (2026-12-03;
tests/reference_noise.py): the ONNX one gives the same audio at ONNX speed, so torch's RNG and
numpy's can be compared over many seeds. Each (engine, base, sentence) is one JSON line
(reference words, edits, transcript); the summary at the end prints WER per engine and base,
the mean and spread over bases, and how many transcripts differ between engines on the same
base.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from asr import Recognizer, edit_distance, reference_words, words
from reference_noise import TorchRngNoise

SENTENCES = REPO / "tests" / "data" / "intelligibility_sentences.txt"


def sentences() -> list[str]:
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def voxproof_voice(engine: str, threads: int):
    from voxproof.settings import Settings
    from voxproof.voice.synthesis import Voice, load_voice

    if engine not in ("torch-rng", "onnx-torch-rng"):
        return load_voice(Settings(engine=engine, torch_threads=threads))
    runs_on = {"torch-rng": "torch", "onnx-torch-rng": "onnx"}[engine]
    voice = load_voice(Settings(engine=runs_on, torch_threads=threads))
    return Voice(TorchRngNoise(voice.engine), voice.phonemizer, voice.cost)


def piper_speaker(seed: int):
    """piper-tts on the pinned wheel's ONNX, onnxruntime seeded before its session exists."""
    import tempfile

    import onnxruntime
    from piper import PiperVoice
    from voxproof.layer_build.convert import check_source, locate_wheel, read_voice
    from voxproof.settings import Settings

    wheel = locate_wheel(None, Settings().wheel_cache_dir)
    check_source(wheel)
    voice = read_voice(wheel)
    folder = Path(tempfile.mkdtemp(prefix="wer-piper-"))
    (folder / "voice.onnx").write_bytes(voice.onnx)
    (folder / "voice.onnx.json").write_text(json.dumps(voice.config), encoding="utf-8")
    onnxruntime.set_seed(seed)
    piper = PiperVoice.load(folder / "voice.onnx", folder / "voice.onnx.json")

    def speak(text: str) -> tuple[np.ndarray, int]:
        audio = np.concatenate([c.audio_float_array for c in piper.synthesize(text)])
        return audio, piper.config.sample_rate

    return speak


def run(engine: str, base: int, texts: list[str], threads: int, out) -> list[dict]:
    from voxproof.deadline import Deadline

    asr = Recognizer()
    rows = []
    if engine == "piper":
        speak = piper_speaker(base)
    else:
        voice = VOICES.setdefault(engine, voxproof_voice(engine, threads))

        def speak(text: str, k: int) -> tuple[np.ndarray, int]:
            speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000,
                                      seed=base + 100 * k)
            return speech.samples, speech.sample_rate
    for k, text in enumerate(texts):
        audio, rate = speak(text) if engine == "piper" else speak(text, k)
        reference = reference_words(text)
        heard = words(asr.transcribe(audio, rate))
        row = {"engine": engine, "base": base, "k": k, "words": len(reference),
               "edits": edit_distance(reference, heard), "heard": " ".join(heard),
               "samples": len(audio)}
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
    return rows


VOICES: dict = {}


def wer(rows: list[dict]) -> float:
    return 100.0 * sum(r["edits"] for r in rows) / sum(r["words"] for r in rows)


def summarize(rows: list[dict], texts: list[str]) -> None:
    plain = {k for k, t in enumerate(texts) if not any(c.isdigit() for c in t)}
    engines = sorted({r["engine"] for r in rows})
    print(f"\n{'engine':8} {'base':>6} {'all':>6} {'plain':>6} {'numbers':>7}")
    for engine in engines:
        per_base = []
        for base in sorted({r["base"] for r in rows if r["engine"] == engine}):
            got = [r for r in rows if r["engine"] == engine and r["base"] == base]
            w = wer(got)
            per_base.append(w)
            print(f"{engine:8} {base:>6} {w:6.1f} {wer([r for r in got if r['k'] in plain]):6.1f}"
                  f" {wer([r for r in got if r['k'] not in plain]):7.1f}")
        if len(per_base) > 1:
            print(f"{engine:8} {'mean':>6} {statistics.mean(per_base):6.1f}  sd "
                  f"{statistics.stdev(per_base):.1f}, min {min(per_base):.1f}, "
                  f"max {max(per_base):.1f} over {len(per_base)} bases")
    for a in engines:
        for b in engines:
            if a >= b:
                continue
            same = differ = 0
            for base in sorted({r["base"] for r in rows}):
                ra = {r["k"]: r for r in rows if r["engine"] == a and r["base"] == base}
                rb = {r["k"]: r for r in rows if r["engine"] == b and r["base"] == base}
                for k in ra.keys() & rb.keys():
                    same += ra[k]["heard"] == rb[k]["heard"]
                    differ += ra[k]["heard"] != rb[k]["heard"]
            if same + differ:
                print(f"{a} vs {b}, same base: {same} transcripts identical, {differ} differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=["onnx", "torch"],
                        choices=["onnx", "torch", "torch-rng", "onnx-torch-rng", "piper"],
                        help="torch-rng: the torch engine on torch's own RNG (before "
                        "2026-12-03); onnx-torch-rng: the same noise fed to the ONNX engine")
    parser.add_argument("--bases", nargs="+", type=int, default=[2024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--summary-only", action="store_true",
                        help="only summarize what --out already holds")
    args = parser.parse_args()
    texts = sentences()
    if not args.summary_only:
        with args.out.open("a", encoding="utf-8") as out:
            for base in args.bases:
                for engine in args.engines:
                    start = time.perf_counter()
                    rows = run(engine, base, texts, args.threads, out)
                    print(f"{engine} base {base}: WER {wer(rows):.1f} % "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
    rows = [json.loads(line) for line in args.out.read_text(encoding="utf-8").splitlines()]
    summarize(rows, texts)


if __name__ == "__main__":
    main()
