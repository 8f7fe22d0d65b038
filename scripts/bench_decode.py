"""Hostile uploads through the verify path: status or verdict, wall time, peak RSS rise.

Each file is made by ffmpeg (or by hand, for lying headers) in a temporary folder and verified
in a fresh subprocess (``Service.verify`` with a ``DecodeWorker`` and the limits
``POST /v1/verify`` applies with API Gateway's 29 s), which reports its own peak RSS rise
(VmHWM after - VmRSS before) and the worker's (``RUSAGE_CHILDREN`` max RSS). Seeded; nothing is
kept. Prints a Markdown table.

    PYTHONPATH=functions python scripts/bench_decode.py [--only NAME] [--cli-limits]
    PYTHONPATH=functions python scripts/bench_decode.py --fuzz 1000 [--seed 7]

``--fuzz N`` instead mutates small valid files of every family (truncation, bit flips, byte
runs, splices, header fields set to extremes) and verifies each in one process: counts by
status, unexpected exceptions (what the handler would answer 500; must be 0), the slowest
upload and the peak RSS rise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MB = 300


def ff(out: Path, *args: str) -> bytes:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args, "-y",
                    str(out)], check=True)
    return out.read_bytes()


def silence(tmp: Path, name: str, rate: int, layout: str, seconds: float, *codec: str) -> bytes:
    return ff(tmp / name, "-f", "lavfi", "-i", f"anullsrc=r={rate}:cl={layout}",
              "-t", str(seconds), *codec)


def tone(tmp: Path, name: str, rate: int, channels: int, seconds: float, *codec: str) -> bytes:
    return ff(tmp / name, "-f", "lavfi", "-i", f"sine=f=440:r={rate}", "-ac", str(channels),
              "-t", str(seconds), *codec)


def wav_header(channels: int, rate: int, data_bytes: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, min(rate * channels * 2, 2**32 - 1),
                      min(channels * 2, 65535), 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes) + payload)


MARKED_TEXT = ("Every word I say carries a watermark. It names a record kept by the service that "
               "spoke it, and it survives compression, noise and small changes of speed. ")


def marked_speech(seconds: float) -> bytes:
    """Real speech from the model layer's voice, repeated to ``seconds``, marked with the key
    the verify child uses (all zeros): a WAV whose verdict is ``marked``."""
    import numpy as np
    from voxproof.audio import encode
    from voxproof.deadline import Deadline
    from voxproof.settings import Settings
    from voxproof.voice import load_voice
    from voxproof.watermark import WatermarkKey, embed

    voice = load_voice(Settings(torch_threads=1))
    speech = voice.synthesize(MARKED_TEXT, deadline=Deadline.after(600), max_chars=1000)
    rate = speech.sample_rate
    host = np.tile(speech.samples, -(-int(seconds * rate) // len(speech.samples)))
    host = host[: int(seconds * rate)]
    return encode(embed(host, rate, WatermarkKey(bytes(32)), 0x0123456789).astype(np.float32),
                  rate, "wav")


def cases(tmp: Path, *, max_s: float = 139.0) -> dict[str, bytes]:
    rng = random.Random(12)
    speech = tone(tmp, "t.wav", 22050, 1, 8, "-f", "wav")
    out = {
        "issue: FLAC 8ch 192 kHz 135 s silence": silence(tmp, "a.flac", 192000, "7.1", 135,
                                                         "-f", "flac"),
        "same, piped (no length in header)": subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1",
             "-t", "135", "-f", "flac", "pipe:1"], capture_output=True, check=True).stdout,
        "FLAC 2ch 384 kHz 10 s": tone(tmp, "b.flac", 384000, 2, 10, "-f", "flac"),
        "FLAC 8ch 192 kHz 40 s tone": tone(tmp, "c.flac", 192000, 8, 40, "-f", "flac"),
        "FLAC 8ch 48 kHz 130 s tone": tone(tmp, "d.flac", 48000, 8, 130, "-f", "flac"),
        "FLAC 2ch 48 kHz 30 s tone": tone(tmp, "e.flac", 48000, 2, 30, "-f", "flac"),
        "FLAC 1ch 8 kHz 2 h silence": silence(tmp, "f.flac", 8000, "mono", 7200, "-f", "flac"),
        "WAV 64ch 48 kHz 1 s": wav_header(64, 48000, 64 * 2 * 48000, bytes(64 * 2 * 48000)),
        "Opus 2ch 48 kHz 1 h silence 6k": silence(tmp, "h.ogg", 48000, "stereo", 3600,
                                                  "-c:a", "libopus", "-b:a", "6k", "-f", "ogg"),
        "Opus 2ch 48 kHz 120 s silence": silence(tmp, "i.ogg", 48000, "stereo", 120,
                                                 "-c:a", "libopus", "-b:a", "6k", "-f", "ogg"),
        "MP3 2ch 48 kHz 1 h silence 32k": silence(tmp, "j.mp3", 48000, "stereo", 3600,
                                                  "-b:a", "32k", "-f", "mp3"),
        "MP3 2ch 48 kHz 120 s silence": silence(tmp, "k.mp3", 48000, "stereo", 120,
                                                "-b:a", "32k", "-f", "mp3"),
        "WAV data size > file": wav_header(2, 48000, 10**9, bytes(96000)),
        "WAV open data size, 65535 ch": wav_header(65535, 48000, 0xFFFFFFFF, bytes(4096)),
        "WAV 8ch 192 kHz header, tiny body": wav_header(8, 192000, 0xFFFFFFFF, bytes(4096)),
        "WAV 22 kHz speech-like 8 s": speech,
        "WAV truncated at 60 %": speech[: len(speech) * 6 // 10],
        f"WAV 22 kHz marked speech {max_s:.0f} s (the API's longest)": marked_speech(max_s),
    }
    flipped = bytearray(out["FLAC 2ch 48 kHz 30 s tone"])
    for _ in range(40):
        pos = rng.randrange(len(flipped))
        flipped[pos] ^= 1 << rng.randrange(8)
    out["FLAC bit-flipped (40 bits)"] = bytes(flipped)
    mp3 = out["MP3 2ch 48 kHz 120 s silence"]
    out["MP3 truncated at 50 %"] = mp3[: len(mp3) // 2]
    return out


#: What both child programs start with: /proc readings, the verify service's parts, one key.
CHILD_PRELUDE = r"""
import collections, json, random, resource, struct, sys, time
from pathlib import Path
def vm(f):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f + ":"):
            return int(line.split()[1]) * 1024
from voxproof import audio
from voxproof.decode_worker import DecodeWorker
from voxproof.deadline import Deadline
from voxproof.errors import VoxproofError
from voxproof.handlers.routes.verify import _verify_limits
from voxproof.keyring import KeyRing
from voxproof.provenance import SQLiteRegistry
from voxproof.service import Caller, Service
from voxproof.watermark.keys import WatermarkKey
import numpy  # what verify imports anyway, before the baseline
class Keys:
    def keyring(self):
        return KeyRing(WatermarkKey(bytes(32)))
"""


CHILD = CHILD_PRELUDE + r"""
data = Path(sys.argv[1]).read_bytes()
limits = audio.DEFAULT_LIMITS if sys.argv[2] == "cli" else _verify_limits(Deadline.after(28.0))
worker = DecodeWorker()
svc = Service(lambda: None, Keys(), SQLiteRegistry(sys.argv[3]), max_chars=1, decoder=worker)
time.sleep(1.0)  # the spare worker is ready, as after a Lambda init
Path("/proc/self/clear_refs").write_text("5")
before = vm("VmRSS")
t = time.perf_counter()
try:
    outcome = svc.verify(data, Caller("bench", "cli"), limits=limits).verdict
    status = 200
except VoxproofError as err:
    outcome, status = err.code, err.status
wall = time.perf_counter() - t
rise = vm("VmHWM") - before
worker.close()
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"status": status, "outcome": outcome, "wall": wall, "rise": rise,
                  "worker": child}))
"""


FUZZ_CHILD = CHILD_PRELUDE + r"""
seeds = [p.read_bytes() for p in sorted(Path(sys.argv[1]).glob("seed*"))]
n, rng = int(sys.argv[2]), random.Random(int(sys.argv[3]))
svc = Service(lambda: None, Keys(), SQLiteRegistry(sys.argv[4]), max_chars=1,
              decoder=DecodeWorker())
limits = _verify_limits(Deadline.after(28.0))
def mutate(data):
    d = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        d = d[:rng.randrange(1, len(d))]
    elif kind == 1:
        for _ in range(rng.randrange(1, 64)):
            i = rng.randrange(len(d)); d[i] ^= 1 << rng.randrange(8)
    elif kind == 2:
        i = rng.randrange(len(d)); d[i:i + rng.randrange(1, 256)] = bytes([rng.randrange(256)]) * rng.randrange(1, 256)
    elif kind == 3:
        other = rng.choice(seeds); i = rng.randrange(len(d)); d = d[:i] + other[rng.randrange(len(other)):]
    elif kind == 4:  # a header field (first 64 bytes) set to an extreme
        i = rng.randrange(4, min(60, len(d) - 4)); struct.pack_into("<I", d, i, rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, 384000, 2**31]))
    else:
        d = d + bytes(rng.randrange(1, 4096))
    return bytes(d)
counts, unexpected, slowest = collections.Counter(), 0, (0.0, "")
Path("/proc/self/clear_refs").write_text("5"); before = vm("VmRSS")
for k in range(n):
    data = mutate(rng.choice(seeds))
    t = time.perf_counter()
    try:
        counts[f"200 {svc.verify(data, Caller('fuzz', 'cli'), limits=limits).verdict}"] += 1
    except VoxproofError as err:
        reason = err.details.get("reason") if err.code == "audio_decoder_failed" else None
        counts[f"{err.status} {err.code}" + (f" ({reason})" if reason else "")] += 1
    except Exception as err:
        unexpected += 1; counts[f"500 {type(err).__name__}"] += 1
    dt = time.perf_counter() - t
    if dt > slowest[0]:
        slowest = (dt, f"#{k} ({len(data)} bytes)")
print(json.dumps({"counts": dict(counts), "unexpected": unexpected, "slowest": slowest,
                  "rise": vm("VmHWM") - before}))
"""


def fuzz(n: int, seed: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "functions"))
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        specs = [("wav", 22050, 1, ["-f", "wav"]), ("flac", 48000, 2, ["-f", "flac"]),
                 ("ogg", 48000, 2, ["-c:a", "libopus", "-b:a", "24k", "-f", "ogg"]),
                 ("mp3", 44100, 2, ["-b:a", "64k", "-f", "mp3"]),
                 ("m4a", 44100, 1, ["-c:a", "aac", "-f", "ipod"]),
                 ("aac", 16000, 1, ["-c:a", "aac", "-f", "adts"])]
        for name, rate, ch, codec in specs:
            tone(tmp, f"seed.{name}", rate, ch, 3, *codec)
        started = time.perf_counter()
        run = subprocess.run(["nice", sys.executable, "-c", FUZZ_CHILD, str(tmp), str(n),
                              str(seed), str(tmp / "r.sqlite3")],
                             check=False, capture_output=True, text=True, env=env, timeout=3600)
        if run.returncode:
            print(run.stderr[-2000:])
            return 1
        r = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}: {n} mutated uploads (seed {seed}) through Service.verify "
          f"with a DecodeWorker and the API's limits, {time.perf_counter() - started:.0f} s\n")
    print("| status code | uploads |\n| --- | ---: |")
    for key, count in sorted(r["counts"].items()):
        print(f"| {key} | {count} |")
    print(f"\nunexpected exceptions (500s): {r['unexpected']}; slowest: {r['slowest'][0]:.2f} s "
          f"{r['slowest'][1]}; verify RSS rise: {r['rise'] / 2**20:.0f} MB")
    return 0 if r["unexpected"] == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--cli-limits", action="store_true",
                    help="the CLI's limits (600 s) instead of the API's (28 s left)")
    ap.add_argument("--fuzz", type=int, metavar="N", help="N mutated uploads instead")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.fuzz:
        return fuzz(args.fuzz, args.seed)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "functions"))
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}, limits: {'cli' if args.cli_limits else 'api (28 s)'}\n")
    print("| upload | bytes | status | verdict / error | wall s | verify RSS rise MB | "
          "worker peak RSS MB |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        for name, data in cases(tmp, max_s=599.0 if args.cli_limits else 139.0).items():
            if args.only and args.only not in name:
                continue
            path = tmp / "upload.bin"
            path.write_bytes(data)
            run = subprocess.run(
                ["nice", sys.executable, "-c", CHILD, str(path),
                 "cli" if args.cli_limits else "api", str(tmp / "r.sqlite3")],
                check=False, capture_output=True, text=True, env=env, timeout=600)
            if run.returncode:
                print(f"| {name} | {len(data):,} | crash | {run.stderr.strip()[-80:]} | | | |")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            worst = max(worst, r["rise"] / 2**20)
            print(f"| {name} | {len(data):,} | {r['status']} | {r['outcome']} | "
                  f"{r['wall']:.2f} | {r['rise'] / 2**20:.0f} | {r['worker'] / 2**20:.0f} |")
    print(f"\nlargest verify RSS rise: {worst:.0f} MB (budget {BUDGET_MB} MB)")
    return 0 if worst < BUDGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
