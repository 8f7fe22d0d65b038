"""schemathesis against a real ``voxproof serve``, from the server's own OpenAPI document.

Starts ``voxproof serve --port 0`` in a temporary state folder (no AWS: SQLite records and a key
file, no input bucket), then runs ``schemathesis run`` on ``/v1/openapi.json`` with every check
on (``scripts/schemathesis.toml`` says which refusals the document cannot express), seeded and
bounded by ``--examples`` per operation, and prints counts from its NDJSON report: test cases,
responses by status and error code, failures by check, server errors (must be 0) and the
slowest request. Exit status 1 when any check failed.

    PYTHONPATH=functions python scripts/bench_api_fuzz.py [--examples 100] [--seed 1]
        [--max-text-chars 1000]

``--max-text-chars`` sets ``VOXPROOF_MAX_TEXT_CHARS_SYNC`` (the document's ``maxLength``): every
schema-valid speech text is really spoken, so a lower cap bounds the CPU a run costs.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "schemathesis.toml"
STARTUP_S = 240.0


@contextmanager
def serve(state: Path, *, max_text_chars: int | None = None,
          torch_threads: int = 1) -> Iterator[str]:
    """A running ``voxproof serve`` on a free loopback port; yields its base URL."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(state),
           "PYTHONPATH": str(ROOT / "functions"), "VOXPROOF_STATE_DIR": str(state),
           "VOXPROOF_TORCH_THREADS": str(torch_threads)}
    if max_text_chars is not None:
        env["VOXPROOF_MAX_TEXT_CHARS_SYNC"] = str(max_text_chars)
    log = (state / "serve.log").open("w+b")
    process = subprocess.Popen([sys.executable, "-m", "voxproof", "serve", "--port", "0"],
                               cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + STARTUP_S
        while True:
            text = (state / "serve.log").read_text(errors="replace")
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
            if found:
                break
            if process.poll() is not None or time.monotonic() > end:
                raise RuntimeError("voxproof serve did not start:\n" + text[-4000:])
            time.sleep(0.2)
        yield found.group(1)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class Summary:
    """What one schemathesis run did, from its NDJSON report."""

    cases: int = 0
    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    checks_run: set[str] = field(default_factory=set)
    slowest: tuple[float, str] = (0.0, "")
    errors: list[str] = field(default_factory=list)
    """Scenarios that errored (the tool could not run them), not check failures."""

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.by_status.items() if key.startswith("5"))


def summarize(ndjson: Path) -> Summary:
    """Counts over every interaction and check result in a schemathesis NDJSON report."""
    summary = Summary()
    failed_cases: set[tuple[str, str]] = set()
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        if finished.get("status") == "error":
            summary.errors.append(f"{finished['recorder']['label']}: {finished.get('phase')}")
        recorder = finished["recorder"]
        operation = recorder.get("label", "").partition(" ")[2]
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            request = interaction["request"]
            label = f"{request['method']} {request['uri']}"
            if response is None:
                summary.by_status[f"none {request['method']} {operation} no_response"] += 1
                continue
            summary.cases += 1
            path = operation or urlsplit(request["uri"]).path  # {parameters} unexpanded
            method = "(other)" if response["status_code"] == 405 else request["method"]
            summary.by_status[f"{response['status_code']} {method} {path} "
                              f"{_error_code(response)}"] += 1
            if response["elapsed"] > summary.slowest[0]:
                summary.slowest = (response["elapsed"], f"{label} -> {response['status_code']}")
        for case_id, results in recorder.get("checks", {}).items():
            for result in results:
                summary.checks_run.add(result["name"])
                if result["status"] == "failure" and (case_id, result["name"]) not in failed_cases:
                    failed_cases.add((case_id, result["name"]))
                    summary.failures[result["name"]] += 1
    return summary


def _error_code(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else \
        str(content.get("string", "")).encode()
    try:
        body = json.loads(raw)
    except ValueError:
        return "(not JSON)" if raw else ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    if isinstance(body, dict) and "verdict" in body:
        return str(body["verdict"])
    return "ok"


def run(url: str, report_dir: Path, *, examples: int, seed: int,
        workers: int = 1) -> tuple[int, Summary, str]:
    """``schemathesis run`` against ``url``: exit code, summary, its console output."""
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
               "--no-color", "run", f"{url}/v1/openapi.json", "--max-examples", str(examples),
               "--seed", str(seed), "--workers", str(workers), "--request-timeout", "60",
               "--no-shrink", "--report", "ndjson", "--report-dir", str(report_dir)]
    report_dir.mkdir(parents=True, exist_ok=True)  # its cache (.schemathesis/) goes there too
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=report_dir)
    reports = sorted(report_dir.glob("*.ndjson"))
    if not reports:
        raise RuntimeError("schemathesis wrote no report:\n" + done.stdout[-4000:] + done.stderr)
    return done.returncode, summarize(reports[-1]), done.stdout


def print_summary(summary: Summary, *, examples: int, seed: int, seconds: float,
                  max_text_chars: int | None) -> None:
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load:.2f}: schemathesis "
          f"(seed {seed}, max {examples} examples per operation, text cap "
          f"{max_text_chars or 'default'}) against voxproof serve, {seconds:.0f} s\n")
    print("| status | request | error code / verdict | responses |\n| ---: | --- | --- | ---: |")
    for key, count in sorted(summary.by_status.items()):
        status, method, path, code = (key.split(" ", 3) + ["", "", ""])[:4]
        print(f"| {status} | {method} {path} | {code} | {count} |")
    print(f"\nresponses: {summary.cases}; server errors (5xx): {summary.server_errors}; "
          f"slowest: {summary.slowest[0]:.2f} s ({summary.slowest[1]})")
    print(f"checks run: {', '.join(sorted(summary.checks_run))}")
    failures = ", ".join(f"{name} {n}" for name, n in sorted(summary.failures.items()))
    print(f"check failures: {failures or 0}")
    if summary.errors:
        print(f"scenarios that errored: {summary.errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-text-chars", type=int, default=None)
    parser.add_argument("--show-output", action="store_true", help="print schemathesis' output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-api-fuzz-") as tmp:
        state, reports = Path(tmp) / "state", Path(tmp) / "reports"
        state.mkdir()
        with serve(state, max_text_chars=args.max_text_chars) as url:
            started = time.monotonic()
            code, summary, output = run(url, reports, examples=args.examples, seed=args.seed)
            seconds = time.monotonic() - started
        if args.show_output or code != 0:
            print(output)
        print_summary(summary, examples=args.examples, seed=args.seed, seconds=seconds,
                      max_text_chars=args.max_text_chars)
    return 0 if code == 0 and not summary.failures and not summary.server_errors else 1


if __name__ == "__main__":
    sys.exit(main())
