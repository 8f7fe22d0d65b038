"""Short utterances: does the mark of a 0.3-2 s output verify, unattacked and after MP3 64k?

Usage:
    PYTHONPATH=functions python scripts/bench_short.py [--repeat N] [--out bench-out/short.json]

Real short texts ("Hi.", "Yes.", "Call me back.", ...) are spoken through the service (the
layer's default engine, marked and recorded in a throw-away state folder, as ``voxproof synth``
does), then verified through the service as they are and after ffmpeg's MP3 at 64 kbit/s. The
voice's unmarked speech of the same text is the twin that must find nothing.
Results are grouped by duration in 0.1 s steps from 0.3 to 2 s: outputs, records found exactly,
twins found (false positives), and the presence tier (a record or the presence statistic at its
threshold) for the outputs and the twins. Issue 10's target: every output of at least 0.5 s
carries a record, unattacked and after MP3 64k; presence from 0.3 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from voxproof import audio
from voxproof.deadline import Deadline
from voxproof.runtime import build_service
from voxproof.service import local_caller
from voxproof.settings import Settings

#: Short things people say (and a voice message might be), shortest first, roughly.
TEXTS = (
    "Hi.", "Yes.", "No.", "Okay.", "Thanks.", "Sure.", "Hello.", "Right.", "Wait.", "Stop.",
    "Hi there.", "Got it.", "Not now.", "See you.", "Call me.", "Good night.", "Of course.",
    "Thank you.", "I agree.", "Me neither.", "Talk soon.", "Happy birthday.", "Sounds good.",
    "Call me back.", "I'm on my way.", "See you tomorrow.", "Can you hear me?",
    "Send me the code.", "Please call me back.", "I will be there soon.", "Where are you now?",
    "The meeting is at noon.", "Transfer the money today.", "Please confirm the payment.",
    "I need your password, quickly.", "Let me know when you get home.",
    "This is your bank calling about your account.", "Mum, I lost my phone, text this number.",
)
BINS = [round(0.3 + 0.1 * i, 1) for i in range(18)]  # 0.3 .. 2.0 s


def _mp3_64k(wav: bytes) -> bytes:
    """ffmpeg's libmp3lame at 64 kbit/s (what a messaging app might send)."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-f", "wav", "-i", "pipe:0", "-c:a",
                           "libmp3lame", "-b:a", "64k", "-f", "mp3", "pipe:1"],
                          input=wav, capture_output=True, check=True)
    return done.stdout


def _bin(duration_s: float) -> str:
    if duration_s < 0.3:
        return "<0.3"
    if duration_s >= 2.05:
        return ">2.0"
    return f"{min(BINS, key=lambda b: abs(b - duration_s)):.1f}"


def run(repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(state_dir=state)
        service = build_service(settings, create_key=True)
        service.decoder.start()
        caller = local_caller("bench")
        rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for rep in range(repeat):
            for text in TEXTS:
                spoken = service.speak(text, caller, Deadline.after(60))
                twin = service.voice.synthesize(text, deadline=Deadline.after(60),
                                                max_chars=1000)
                row = rows[_bin(spoken.duration_s)]
                row["outputs"] += 1
                wav = spoken.wav()
                want = spoken.record.record_id
                for name, data in (("plain", wav), ("mp3_64k", _mp3_64k(wav))):
                    found = service.verify(data, caller).detection
                    row[f"record_{name}"] += int(found.found and found.record_id == want)
                    row[f"presence_{name}"] += int(found.presence.found)
                twin_wav = audio.encode(twin.samples, twin.sample_rate, "wav")
                for name, data in (("plain", twin_wav), ("mp3_64k", _mp3_64k(twin_wav))):
                    found = service.verify(data, caller).detection
                    row[f"fp_{name}"] += int(found.found)
                    row[f"fp_presence_{name}"] += int(found.presence.found)
            print(f"round {rep + 1}/{repeat} done", file=sys.stderr)
        getattr(service.decoder, "close", lambda: None)()
    return {k: dict(v) for k, v in rows.items()}


def table(rows: dict) -> str:
    order = ["<0.3", *(f"{b:.1f}" for b in BINS), ">2.0"]
    lines = [("| duration (s) | outputs | record, as spoken | record, MP3 64k | "
              "presence, as spoken | presence, MP3 64k | unmarked twins found (record / "
              "presence) |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key in order:
        r = rows.get(key)
        if not r:
            continue
        n = r["outputs"]
        lines.append(f"| {key} | {n} | {r.get('record_plain', 0)}/{n} | "
                     f"{r.get('record_mp3_64k', 0)}/{n} | {r.get('presence_plain', 0)}/{n} | "
                     f"{r.get('presence_mp3_64k', 0)}/{n} | "
                     f"{r.get('fp_plain', 0) + r.get('fp_mp3_64k', 0)}/{2 * n} / "
                     f"{r.get('fp_presence_plain', 0) + r.get('fp_presence_mp3_64k', 0)}"
                     f"/{2 * n} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1,
                        help="speak every text this many times (new record ids, new noise)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/short.json"))
    args = parser.parse_args()
    rows = run(args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    load = os.getloadavg()[0]
    print(f"# bench_short.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"load {load:.1f}, {len(TEXTS)} texts x {args.repeat}")
    print(table(rows))


if __name__ == "__main__":
    main()
