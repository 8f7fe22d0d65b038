"""audiowmark, the classical peer, on bench_watermark.py's corpus and attacks (issue 10: "no
family below audiowmark").

Usage:
    PYTHONPATH=functions python scripts/bench_audiowmark.py --audiowmark PATH
        [--corpus voxproof|piper|DIR] [--clips N] [--skip N] [--attacks issue3,channels|a,b,...] [--jobs N]
        [--out bench-out/audiowmark.json] [--voxproof bench-out/watermark.json]
        [--from RESULT.json ...] [--write-docs NAME]

audiowmark is GPL and not a dependency: build it from its public source outside the repository
(e.g. under /tmp; README "The watermark") and pass the binary. For every clip of the corpus it
embeds a 128-bit payload (``audiowmark add``, default strength 10, one fixed key), applies each
attack exactly as bench_watermark.py does (the same functions and seeds, so crops cut the same
places and noise is the same noise) to the marked clip and to the unmarked original, and runs
``audiowmark get`` (default options: no speed search) on both:

- *exact %*: the payload is among the patterns ``get`` reports (its own success measure);
- *FP*: the payload is reported for the unmarked twin (never expected); *any* counts unmarked
  twins for which ``get`` reported some pattern (audiowmark has no stated false-positive bound).

It prints one row per attack beside voxproof's row from ``--voxproof bench-out/watermark.json``
(bench_watermark.py's ``--out``) when given, plus audiowmark's own SNR and PESQ-WB on the corpus
(it marks at a different strength from voxproof's 30 dB / 4.5). ``--from`` reprints (and
merges) earlier ``--out`` files instead of running; ``--write-docs NAME`` writes the table into
docs/watermark.md between ``<!-- bench_audiowmark:NAME:begin/end -->`` with the command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_watermark as bw

KEY_NAME = "voxproof-bench"
PATTERN = re.compile(r"\b[0-9a-f]{32}\b")


def _payload(index: int) -> str:
    return f"{int(np.random.default_rng(bw.SEED + index).integers(0, 1 << 62)):032x}"


def _get(tool: str, key: Path, x: np.ndarray, sr: int) -> tuple[set[str], float]:
    """The patterns ``audiowmark get`` reports for ``x``, and its wall time."""
    with tempfile.TemporaryDirectory() as d:
        sf.write(f"{d}/in.wav", x, sr, subtype="FLOAT")
        start = time.perf_counter()
        done = subprocess.run([tool, "get", "--key", str(key), f"{d}/in.wav"],
                              capture_output=True, text=True, timeout=600, check=False)
        seconds = time.perf_counter() - start
    return set(PATTERN.findall(done.stdout)), seconds


def bench_clip(job: tuple[str, Path, Path, int, list[str], list[Path]]) -> dict:
    tool, key, path, index, attacks, corpus = job
    x, sr = bw._read_mono(path)
    if any(name.startswith("babble") for name in attacks):
        bw.BABBLE_SOURCES.clear()
        for other in corpus:
            if other != path:
                src, rate = bw._read_mono(other)
                bw.BABBLE_SOURCES.append(src if rate == sr else
                                         bw.resample_poly(src, sr, rate).astype(np.float32))
    payload = _payload(index)
    with tempfile.TemporaryDirectory() as d:
        sf.write(f"{d}/in.wav", x, sr, subtype="FLOAT")
        subprocess.run([tool, "add", "--key", str(key), f"{d}/in.wav", f"{d}/out.wav", payload],
                       check=True, capture_output=True, timeout=600)
        y, _ = sf.read(f"{d}/out.wav", dtype="float32")
    y = y[: len(x)] if y.ndim == 1 else y.mean(axis=1)[: len(x)]
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2)
                        / np.sum((y - x[: len(y)]).astype(np.float64) ** 2))
    result = {"clip": path.name, "seconds": len(x) / sr, "snr": float(snr),
              "pesq": bw._pesq_wb(x[: len(y)], y, sr), "attacks": {}}
    for name in attacks:
        seed = bw.SEED + 1000 * index + zlib.crc32(name.encode()) % 1000  # bench_watermark's
        marked = bw.ATTACKS[name](y, sr, seed)
        if marked is None:
            continue
        plain = bw.ATTACKS[name](x, sr, seed)
        found, seconds = _get(tool, key, marked, sr)
        noise, _ = _get(tool, key, plain, sr)
        result["attacks"][name] = {"exact": payload in found, "false_positive": payload in noise,
                                   "any_on_unmarked": bool(noise), "get_s": seconds,
                                   "seconds": len(marked) / sr}
    return result


def summarise(results: list[dict], attacks: list[str], ours: dict[str, float]) -> str:
    lines = [(f"{'attack':<16}{'n':>4}{'audiowmark %':>14}{'voxproof %':>12}{'FP':>4}{'any':>5}"
             f"  {'tier':<9}{'get s/clip':>11}")]
    below = []
    for name in attacks:
        rows = [r["attacks"][name] for r in results if name in r["attacks"]]
        if not rows:
            continue
        peer = 100 * np.mean([r["exact"] for r in rows])
        mine = ours.get(name)
        if mine is not None and mine < peer:
            below.append(name)
        lines.append(f"{name:<16}{len(rows):>4}{peer:>14.1f}"
                     f"{'-' if mine is None else f'{mine:.1f}':>12}"
                     f"{sum(r['false_positive'] for r in rows):>4}"
                     f"{sum(r['any_on_unmarked'] for r in rows):>5}  {bw._tier(name)[0]:<9}"
                     f"{np.mean([r['get_s'] for r in rows]):>11.2f}")
    snrs, pesqs = [r["snr"] for r in results], [r["pesq"] for r in results]
    lines += ["", (f"clips {len(results)}, {sum(r['seconds'] for r in results):.1f} s; "
              f"audiowmark's marks: SNR mean {np.mean(snrs):.2f} dB (min {np.min(snrs):.2f}), "
              f"PESQ-WB mean {np.mean(pesqs):.3f} (min {np.min(pesqs):.3f})")]
    if ours:
        lines.append("rows where voxproof keeps fewer records than audiowmark: "
                     + (", ".join(below) if below else "none"))
    return "\n".join(lines)


def _ours(*paths: Path) -> dict[str, float]:
    """voxproof's exact % per attack from bench_watermark.py's JSON files (merged)."""
    results = [r for path in paths for r in json.loads(path.read_text())["results"]]
    if not results:
        return {}
    names = {n for r in results for n in r["attacks"]}
    return {n: 100 * float(np.mean([r["attacks"][n]["exact"] for r in results
                                    if n in r["attacks"]])) for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audiowmark", help="the audiowmark binary (unless --from)")
    parser.add_argument("--corpus", default="voxproof")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N clips")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N clips")
    parser.add_argument("--attacks", default="issue3,channels")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--voxproof", type=Path, nargs="*", default=[],
                        help="bench_watermark.py's --out JSON files of the same clips")
    parser.add_argument("--out", type=Path, default=bw.CACHE / "audiowmark.json")
    parser.add_argument("--from", dest="sources", type=Path, nargs="*", default=[],
                        help="reprint earlier --out files (merged) instead of running")
    parser.add_argument("--write-docs", metavar="NAME", help="docs/watermark.md section")
    args = parser.parse_args(argv)
    if args.sources:
        loaded = [json.loads(path.read_text()) for path in args.sources]
        results = [clip for part in loaded for clip in part["clips"]]
        attacks = list(dict.fromkeys(n for r in results for n in r["attacks"]))
        return report(loaded[0]["version"], results, attacks, args)
    if not args.audiowmark:
        parser.error("give --audiowmark (or --from)")
    corpus_dir = (bw.spoken_corpus(args.corpus, bw.CORPORA[args.corpus])
                  if args.corpus in bw.CORPORA else Path(args.corpus))
    corpus = sorted(corpus_dir.glob("*.wav"))
    clips = corpus[args.skip:][: args.clips or None]
    groups = {"issue3": list(bw.ISSUE3), "channels": list(bw.CHANNELS)}
    attacks = [a for part in args.attacks.split(",") for a in groups.get(part, [part])]
    key = bw.CACHE / "audiowmark.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.audiowmark, "gen-key", str(key), "--name", KEY_NAME], check=True)
    version = subprocess.run([args.audiowmark, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    jobs = [(args.audiowmark, key, path, args.skip + i, attacks, corpus)
            for i, path in enumerate(clips)]
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(bench_clip, jobs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"version": version, "clips": results}, indent=1))
    return report(version, results, attacks, args)


def report(version: str, results: list[dict], attacks: list[str],
           args: argparse.Namespace) -> int:
    text = (f"{version} on {len(results)} clips (default strength, no speed search)\n"
            + summarise(results, attacks, _ours(*args.voxproof)))
    print(text)
    if args.write_docs:
        begin = f"<!-- bench_audiowmark:{args.write_docs}:begin -->"
        end = f"<!-- bench_audiowmark:{args.write_docs}:end -->"
        docs = bw.DOCS.read_text(encoding="utf-8")
        if begin not in docs or end not in docs:
            raise SystemExit(f"{bw.DOCS}: no {begin} ... {end} section to write")
        command = "PYTHONPATH=functions python scripts/bench_audiowmark.py " + shlex.join(
            sys.argv[1:])
        section = (f"{begin}\nLast written by `scripts/bench_audiowmark.py` on "
                   f"{datetime.date.today()} (`{command}`, {os.cpu_count()} CPUs):\n\n"
                   f"```\n{text}\n```\n{end}")
        bw.DOCS.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section,
                                  docs, flags=re.DOTALL), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
