#!/usr/bin/env python3
"""Peak memory and throughput of the process that speaks, at the longest text each function takes.

Usage: PYTHONPATH=functions python scripts/bench_memory.py [--chars 1000 20000] [--threads 2]

For each length, one fresh process (the default ONNX engine, ``--threads`` onnxruntime threads,
a throw-away state folder) loads the voice (``Service.load``: verify the layer, load the engine)
and speaks English text of that many characters through ``Service.speak`` (synthesize, mark,
record with the local key and registry), then writes the 16-bit WAV, as ``voxproof synth`` does.
1,000 characters is the speech function's limit (``max_text_chars_sync``), 20,000 the batch
function's (``max_text_chars_batch``: one job speaks its whole text in one call).

Printed per length: the process's peak RSS (``ru_maxrss``, which includes the loaded voice),
RSS after the voice loaded, the peak at the end of synthesis and at the end of marking (the
service's step hook), the speak time (wall and CPU: user + system of all its threads), the
seconds of audio, and characters per second of each. Characters per CPU second is what the
README's cost line uses: below 1,769 MB a Lambda function gets less than one vCPU, so what it
is billed for is, to first order, CPU seconds over its share of a vCPU, not wall time here. template.yaml's MemorySize
for the speech and batch functions is set from these peaks (its comments give the arithmetic).

The text is scripts/watermark_corpus.txt's sentences, repeated and cut at a sentence end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))
CORPUS = ROOT / "scripts" / "watermark_corpus.txt"


def text_of(chars: int) -> str:
    """English text of at most ``chars`` characters ending at a sentence end."""
    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    out = ""
    while True:
        for line in lines:
            if len(out) + 1 + len(line) > chars:
                return out
            out = f"{out} {line}" if out else line


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(chars: int, threads: int) -> dict[str, float]:
    from voxproof.audio import write_file
    from voxproof.deadline import Deadline
    from voxproof.runtime import build_service
    from voxproof.service import local_caller
    from voxproof.settings import Settings

    text = text_of(chars)
    settings = Settings(engine="onnx", torch_threads=threads, max_text_chars_sync=len(text))
    peaks: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str):  # the service's step hook: the peak so far at the end of each step
        yield
        peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    service = build_service(settings, max_chars=len(text), step=step)
    start = time.perf_counter()
    service.load()
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    cpu_before = _cpu_s()
    result = service.speak(text, local_caller("bench"), Deadline.after(3600))
    spoken = time.perf_counter()
    cpu_s = _cpu_s() - cpu_before
    with tempfile.TemporaryDirectory() as folder:
        write_file(Path(folder) / "out.wav", result.samples, result.sample_rate, "wav")
    return {
        "chars": len(text),
        "load_s": loaded - start,
        "speak_s": spoken - loaded,
        "speak_cpu_s": cpu_s,
        "audio_s": len(result.samples) / result.sample_rate,
        "rss_loaded_mb": rss_loaded,
        "peak_after_synthesis_mb": peaks["synthesize"],
        "peak_after_mark_mb": peaks["mark"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.threads)))
        return 0
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads, ONNX engine")
    print(f"{'chars':>7} {'audio s':>8} {'load s':>7} {'speak s':>8} {'chars/s':>8} "
          f"{'CPU s':>7} {'chars/CPU s':>11} {'RSS loaded MB':>14} {'peak synth MB':>14} "
          f"{'peak mark MB':>13} {'peak RSS MB':>12}")
    for chars in args.chars:
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "VOXPROOF_STATE_DIR": state,
                   "PYTHONPATH": str(ROOT / "functions")}
            done = subprocess.run(
                [sys.executable, __file__, "--worker", str(chars), "--threads", str(args.threads)],
                env=env, capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['chars']:7d} {r['audio_s']:8.1f} {r['load_s']:7.2f} {r['speak_s']:8.2f} "
              f"{r['chars'] / r['speak_s']:8.1f} {r['speak_cpu_s']:7.1f} "
              f"{r['chars'] / r['speak_cpu_s']:11.1f} {r['rss_loaded_mb']:14.0f} "
              f"{r['peak_after_synthesis_mb']:14.0f} {r['peak_after_mark_mb']:13.0f} "
              f"{r['peak_rss_mb']:12.0f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
