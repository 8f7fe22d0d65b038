"""``voxproof mark`` / ``voxproof verify`` as whole processes, beside audiowmark's add / get.

Each command runs as a fresh process on the same 10 s speech WAV, ``--runs`` times, the
commands interleaved round by round (after one untimed warm-up round that fills the page
cache); per command it reports the median wall time (and its range), the median CPU time
(user + sys, the process and the children it waited for, e.g. verify's decode worker) and the
peak RSS (``ru_maxrss`` from ``os.wait4``: the largest process of the tree). audiowmark (the
peer, GPL, built from its public source outside the repository) is measured in the same run;
ratios are voxproof / audiowmark by median wall. Prints a Markdown table with issue 10's targets
(mark <= 0.4 s, verify <= 0.6 s per process) and ``uptime``.

    PYTHONPATH=functions python scripts/bench_cli.py [--runs 7] [--audiowmark PATH]
        [--input WAV] [--before DIR]

``--before DIR`` also times the voxproof in ``DIR`` (a ``functions`` folder of an earlier
commit, e.g. from ``git archive``) in the same rounds, and prints a before/after table.

The input, unless ``--input`` is given: a text of ``scripts/watermark_corpus.txt`` spoken
unmarked by voxproof's own voice with a fixed seed, cut to 10.0 s, cached in
``bench-out/cli/speech-10s.wav``. Every output is checked (the marked file must verify to its
record, the unmarked one must not), so a fast wrong answer is an error, not a number. The
peer: ``--audiowmark``, else ``audiowmark`` on PATH, else ``/tmp/audiowmark-src/src/audiowmark``;
if none runs, its columns say "not measured".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench-out" / "cli"
TEXTS = ROOT / "scripts" / "watermark_corpus.txt"
TEXT_INDEX = 6  # "Scientists have discovered a new species of frog ..." (about 10.2 s)
SEED = 6
SECONDS = 10.0
KEY_HEX = "7d" * 32
AW_KEY_HEX = "5e" * 16
RECORD_ID = "00000000a1"
AW_MESSAGE = "0123456789abcdef0123456789abcdef"
AW_DEFAULT = Path("/tmp/audiowmark-src/src/audiowmark")
TARGETS = {"mark": 0.4, "verify marked": 0.6, "verify unmarked": 0.6}
BEFORE = "voxproof before"
BULK = 8  # marked copies verified by one process (the bulk row: seconds per file)
BULK_STEP = f"verify marked, {BULK} files in one process (per file)"


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    rss_mb: float
    stdout: str
    stderr: str


def run(cmd: list[str], env: dict[str, str]) -> Run:
    """One process: wall clock from spawn to reap, and its rusage from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                     out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{result.stderr}")
    return result


def speech_input() -> Path:
    """The cached 10 s of unmarked speech (spoken once, seeded)."""
    path = CACHE / "speech-10s.wav"
    if path.exists():
        return path
    import numpy as np
    from voxproof.deadline import Deadline
    from voxproof.settings import Settings
    from voxproof.voice import load_voice

    texts = [t.strip() for t in TEXTS.read_text().splitlines() if t.strip() and t[0] != "#"]
    voice = load_voice(Settings())
    speech = voice.synthesize(texts[TEXT_INDEX], deadline=Deadline.after(600),
                              max_chars=20_000, seed=SEED)
    n = int(SECONDS * speech.sample_rate)
    if len(speech.samples) < n:
        raise SystemExit(f"the text spoke only {len(speech.samples) / speech.sample_rate:.2f} s")
    pcm = np.round(np.clip(speech.samples[:n], -1, 1) * 32767).astype("<i2")
    CACHE.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def find_audiowmark(given: str | None) -> str | None:
    for candidate in ([given] if given else [shutil.which("audiowmark"), str(AW_DEFAULT)]):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if given:
        raise SystemExit(f"--audiowmark {given}: not an executable")
    return None


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True,
                          check=True).stdout.strip()


def spread(runs: list[Run]) -> str:
    """``median (min-max)`` wall seconds."""
    walls = [r.wall_s for r in runs]
    return f"{statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (median)")
    parser.add_argument("--audiowmark", help="the peer's executable")
    parser.add_argument("--input", type=Path, help="a WAV to use instead of the spoken one")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also time the voxproof package in DIR (a functions folder)")
    args = parser.parse_args()
    if args.before is not None and not (args.before / "voxproof" / "cli.py").is_file():
        parser.error(f"--before {args.before}: no voxproof package there")
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be 1 to 50")

    source = args.input or speech_input()
    with wave.open(str(source)) as w:
        info = (f"{w.getnframes() / w.getframerate():.2f} s, {w.getframerate()} Hz, "
                f"{w.getnchannels()} ch, {8 * w.getsampwidth()}-bit")
    peer = find_audiowmark(args.audiowmark)

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "speech.wav"
        shutil.copyfile(source, src)
        (tmp / "wm.key").write_text(KEY_HEX + "\n")
        (tmp / "wm.key").chmod(0o600)
        (tmp / "aw.key").write_text(f"# watermarking key for audiowmark\n\nkey {AW_KEY_HEX}\n")
        env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"))
        vx = [sys.executable, "-m", "voxproof"]
        key = ["--key-file", str(tmp / "wm.key")]
        commands: dict[str, dict[str, list[str]]] = {
            "mark": {"voxproof": [*vx, "mark", str(src), str(tmp / "vx.wav"), *key,
                                  "--record-id", RECORD_ID]},
            "verify marked": {"voxproof": [*vx, "verify", str(tmp / "vx-marked.wav"), *key,
                                           "--json"]},
            "verify unmarked": {"voxproof": [*vx, "verify", str(src), *key, "--json"]},
            BULK_STEP: {"voxproof": [*vx, "verify", *(str(tmp / f"vx-marked-{i}.wav")
                                                       for i in range(BULK)), *key, "--json"]},
        }
        aw_names = {"mark": "add", "verify marked": "get", "verify unmarked": "get",
                    BULK_STEP: "get"}
        if peer:
            awk = ["--key", str(tmp / "aw.key")]
            commands["mark"]["audiowmark"] = [peer, "add", *awk, str(src), str(tmp / "aw.wav"),
                                              AW_MESSAGE]
            commands["verify marked"]["audiowmark"] = [peer, "get", *awk,
                                                       str(tmp / "aw-marked.wav")]
            commands["verify unmarked"]["audiowmark"] = [peer, "get", *awk, str(src)]
            commands["verify marked"]["audiowmark --detect-speed"] = [
                peer, "get", "--detect-speed", *awk, str(tmp / "aw-marked.wav")]
            commands["verify unmarked"]["audiowmark --detect-speed"] = [
                peer, "get", "--detect-speed", *awk, str(src)]
            commands[BULK_STEP]["audiowmark"] = [peer, "get", *awk,  # no bulk mode: one file
                                                 str(tmp / "aw-marked.wav")]
        # the files verify reads, made once (not timed)
        run(commands["mark"]["voxproof"][:5] + [str(tmp / "vx-marked.wav"), *key,
                                                "--record-id", RECORD_ID], env)
        for i in range(BULK):
            shutil.copyfile(tmp / "vx-marked.wav", tmp / f"vx-marked-{i}.wav")
        if peer:
            run([peer, "add", *awk, str(src), str(tmp / "aw-marked.wav"), AW_MESSAGE], env)

        envs = {tool: env for tools in commands.values() for tool in tools}
        if args.before is not None:
            envs[BEFORE] = dict(env, PYTHONPATH=str(args.before.resolve()))
        times: dict[tuple[str, str], list[Run]] = {}
        before = load()
        for round_ in range(args.runs + 1):  # round 0 warms the page cache, untimed
            for step, tools in commands.items():
                runs = [*tools.items()]
                if args.before is not None:
                    runs.insert(1, (BEFORE, tools["voxproof"]))
                for tool, cmd in runs:
                    result = run(cmd, envs[tool])
                    check(step, tool, result)
                    if round_:
                        times.setdefault((step, tool), []).append(result)
        after = load()

    print(f"# bench_cli: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{args.runs} runs per command (+1 warm-up), input {info}")
    print(f"# uptime before: {before}\n# uptime after:  {after}")
    print(f"# peer: {peer or 'NOT MEASURED: no audiowmark found (--audiowmark PATH)'}")
    print(f"# python: {sys.executable}; {os.cpu_count()} CPUs")
    print("# bytecode: " + ("PYTHONDONTWRITEBYTECODE is set: a module without a .pyc (a fresh "
                            "checkout's) is compiled again by every process"
                            if os.environ.get("PYTHONDONTWRITEBYTECODE") else
                            "written and reused (.pyc files, as an installed package has them)")
          + "\n")
    print("| step | voxproof wall s, median (min-max) | CPU s | peak RSS MB | target | met "
          "| audiowmark | its wall s | CPU s | peak RSS MB | voxproof / audiowmark (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for step, tools in commands.items():
        n = BULK if step == BULK_STEP else 1
        vx_runs = [Run(r.wall_s / n, r.cpu_s / n, r.rss_mb, "", "")
                   for r in times[(step, "voxproof")]]
        wall = statistics.median(r.wall_s for r in vx_runs)
        target = TARGETS.get(step)
        cells = [step, spread(vx_runs), f"{statistics.median(r.cpu_s for r in vx_runs):.3f}",
                 f"{max(r.rss_mb for r in vx_runs):.0f}",
                 "-" if target is None else f"<= {target}",
                 "-" if target is None else "yes" if wall <= target else "**NO**"]
        peers = [t for t in tools if t != "voxproof"]
        if not peers:
            print("| " + " | ".join(cells + ["**NOT MEASURED**"] * 5) + " |")
            continue
        for i, tool in enumerate(peers):
            aw = times[(step, tool)]
            aw_wall = statistics.median(r.wall_s for r in aw)
            row = cells if i == 0 else ["", "", "", "", "", ""]
            row = row + [f"`{tool.replace('audiowmark', aw_names[step])}`", spread(aw),
                         f"{statistics.median(r.cpu_s for r in aw):.3f}",
                         f"{max(r.rss_mb for r in aw):.0f}", f"x{wall / aw_wall:.2f}"]
            print("| " + " | ".join(row) + " |")
    if args.before is not None:
        print(f"\nBefore ({args.before}) and after (this checkout), same rounds:\n")
        print("| step | before: wall s, median (min-max) | CPU s | peak RSS MB "
              "| after: wall s | CPU s | peak RSS MB | after / before (wall) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for step in commands:
            n = BULK if step == BULK_STEP else 1
            pair = [[Run(r.wall_s / n, r.cpu_s / n, r.rss_mb, "", "")
                     for r in times[(step, tool)]] for tool in (BEFORE, "voxproof")]
            cells = [step]
            for runs in pair:
                cells += [spread(runs), f"{statistics.median(r.cpu_s for r in runs):.3f}",
                          f"{max(r.rss_mb for r in runs):.0f}"]
            walls = [statistics.median(r.wall_s for r in runs) for runs in pair]
            print("| " + " | ".join([*cells, f"x{walls[1] / walls[0]:.2f}"]) + " |")
    return 0


def check(step: str, tool: str, result: Run) -> None:
    """Each output says what it should, or the timing means nothing."""
    marked = step != "verify unmarked"
    if tool.startswith("voxproof") and step.startswith("verify"):
        reports = [json.loads(line) for line in result.stdout.splitlines()]
        if len(reports) != (BULK if step == BULK_STEP else 1) or any(
                r.get("found") is not marked or (marked and r.get("record_id") != RECORD_ID)
                for r in reports):
            raise SystemExit(f"{step}: unexpected report {result.stdout[:300]}")
    elif tool.startswith("audiowmark") and step.startswith("verify"):
        found = AW_MESSAGE in result.stdout
        if found is not marked:
            raise SystemExit(f"{step} ({tool}): unexpected output {result.stdout[:300]}")


if __name__ == "__main__":
    raise SystemExit(main())
