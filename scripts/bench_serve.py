"""Load test of ``voxproof serve``: concurrent clients, each making speech -> verify pairs.

Starts ``python -m voxproof serve --port 0`` with a fresh state folder (unless ``--url`` names a
running server), waits until it listens (the voice is loaded by then), then runs ``--clients``
threads, each doing ``--requests`` pairs over one keep-alive connection: ``POST /v1/speech``
(JSON, audio inline) then ``POST /v1/verify`` with that WAV as the body. A pair is an error unless
both answer 200 and verify names the record speech made. Prints throughput, latency percentiles
(per pair, speech, verify), errors, and the server's peak RSS (VmHWM from /proc), at start and at
the end. All traffic stays on 127.0.0.1.

The server handles one request at a time (one Lambda container), so latency under 8 clients is
mostly queueing; the single-client numbers (``--clients 1``) are the per-request cost.

Example:
    PYTHONPATH=functions python scripts/bench_serve.py                 # 8 clients x 50 pairs
    PYTHONPATH=functions python scripts/bench_serve.py --clients 1 --requests 10
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
TEXT = "Short speech for the load test."


@dataclass
class Tally:
    pairs: list[float] = field(default_factory=list)
    speech: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def post(conn: http.client.HTTPConnection, path: str, body: bytes,
         content_type: str) -> tuple[int, dict]:
    conn.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def client(host: str, port: int, requests: int, text: str, tally: Tally) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=300)
    speech_body = json.dumps({"text": text}).encode()
    for _ in range(requests):
        start = time.perf_counter()
        try:
            status, speech = post(conn, "/v1/speech", speech_body, "application/json")
            spoken = time.perf_counter()
            if status != 200:
                raise ValueError(f"speech {status}: {speech.get('error')}")
            wav = base64.b64decode(speech["audio_base64"])
            status, report = post(conn, "/v1/verify", wav, "audio/wav")
            done = time.perf_counter()
            if status != 200 or report.get("record_id") != speech["record_id"]:
                raise ValueError(f"verify {status}: {report.get('error') or report['verdict']}")
        except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.errors.append(str(exc)[:200])
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=300)
            continue
        with tally.lock:
            tally.pairs.append(done - start)
            tally.speech.append(spoken - start)
            tally.verify.append(done - spoken)
            tally.audio_s.append(speech["duration_s"])
    conn.close()


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    pairs = re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE)
    found = {k: int(v) for k, v in pairs}
    return found["VmRSS"] / 1024, found["VmHWM"] / 1024


def start_server(state: str) -> tuple[subprocess.Popen, str, float]:
    env = {**os.environ, "VOXPROOF_STATE_DIR": state,
           "PYTHONPATH": str(REPO / "functions"), "POWERTOOLS_METRICS_DISABLED": "true"}
    log = open(Path(state) / "serve.log", "w+b")  # noqa: SIM115 - read while the server runs
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "voxproof", "serve", "--port", "0"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    while time.monotonic() - started < 600:
        log.seek(0)
        found = re.search(rb"listening on (http://127\.0\.0\.1:\d+)", log.read())
        if found:
            return proc, found.group(1).decode(), time.monotonic() - started
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    log.seek(0)
    raise SystemExit("voxproof serve did not start:\n" + log.read().decode()[-3000:])


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def report(name: str, values: list[float]) -> str:
    return (f"  {name:<7} p50 {percentile(values, 50):6.3f} s   p99 {percentile(values, 99):6.3f} s"
            f"   mean {statistics.fmean(values):6.3f} s   max {max(values):6.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="speech+verify pairs per client")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vx-bench-serve-") as state:
        proc = None
        if args.url:
            url, startup = args.url, None
        else:
            proc, url, startup = start_server(state)
        parts = urlsplit(url)
        try:
            at_start = peak_rss_mb(proc.pid) if proc else None
            tally = Tally()
            threads = [threading.Thread(target=client, args=(parts.hostname, parts.port,
                                                             args.requests, args.text, tally))
                       for _ in range(args.clients)]
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - began
            at_end = peak_rss_mb(proc.pid) if proc else None
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)

    done = len(tally.pairs)
    print(f"voxproof serve load: {args.clients} clients x {args.requests} pairs "
          f"(speech of {args.text!r} + verify of its WAV), {os.cpu_count()} cores "
          f"(shared machine: numbers are noisy)")
    if startup is not None:
        print(f"  server start (voice loaded, listening): {startup:.1f} s")
    print(f"  pairs ok {done}, errors {len(tally.errors)}, wall {wall:.1f} s")
    if done:
        print(f"  throughput {done / wall:.2f} pairs/s ({2 * done / wall:.2f} requests/s), "
              f"{sum(tally.audio_s) / wall:.2f} s of speech per s")
        print(report("pair", tally.pairs))
        print(report("speech", tally.speech))
        print(report("verify", tally.verify))
    if at_start and at_end:
        print(f"  server RSS after start {at_start[0]:.0f} MB; peak RSS (VmHWM) {at_end[1]:.0f} MB")
    for error in tally.errors[:5]:
        print(f"  error: {error}")
    return 1 if tally.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
