#!/usr/bin/env python3
"""Time the model half in a fresh process: imports, layer verification, engine load, first audio.

Usage: python scripts/bench_model_load.py [--threads N] [--build]

Prints one line per step and the peak RSS. Ids are a fixed Piper-style sequence (no text
frontend), about 1.6 s of audio. With ``--build`` it first times a layer build into a temporary
folder (wheel from the cache, so no download). Numbers are noisy on a shared machine: run it
a few times.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build", action="store_true", help="also time a layer build")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch  # noqa: F401  (timed as part of the imports)
    from TTS.tts.models import vits  # noqa: F401
    from voxproof.settings import Settings
    from voxproof.voice.engine import load_engine
    from voxproof.voice.layer import verify_layer

    t1 = time.perf_counter()
    print(f"imports (torch, TTS, voxproof): {t1 - t0:.2f} s")
    settings = Settings()
    if args.build:
        from voxproof.layer_build.convert import build_into

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            manifest = build_into(Path(tmp), cache_dir=settings.wheel_cache_dir)
            size = manifest.file("model.pth").size
            print(f"build (wheel cached): {time.perf_counter() - start:.2f} s; "
                  f"model.pth {size} bytes")
    t1 = time.perf_counter()
    layer = verify_layer(settings.model_dir, manifest_sha256=settings.model_manifest_sha256)
    t2 = time.perf_counter()
    engine = load_engine(layer, threads=args.threads)
    t3 = time.perf_counter()
    phonemes = [20, 59, 24, 27, 3] * 8
    audio = engine.infer([1, 0, *[v for p in phonemes for v in (p, 0)], 2])
    t4 = time.perf_counter()
    seconds = len(audio) / engine.sample_rate
    print(f"verify layer (sha256 of {len(layer.manifest.files)} files): {t2 - t1:.2f} s")
    print(f"load engine ({args.threads} threads): {t3 - t2:.2f} s")
    print(f"first audio ({seconds:.2f} s of speech): {t4 - t3:.2f} s, RTF {(t4 - t3) / seconds:.3f}")
    if not args.build:
        print(f"fresh process to first audio (after interpreter start): {t4 - t0:.2f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
