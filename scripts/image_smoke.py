"""Host side of the image smoke test: a loopback Lambda Runtime API and the image's entrypoint.

Called by scripts/image_smoke.sh, which prepares the buildah working container. This script:

1. starts ``LambdaRuntimeAPI`` (tests/integration/lambda_runtime.py) on 127.0.0.1;
2. runs the image's ENTRYPOINT (``python -m awslambdaric``) through the launcher (read-only
   root, writable /tmp, the image's non-root USER) with the probe handler
   (scripts/image_smoke_probe.py) wrapping the image's CMD handler, configured as template.yaml
   configures the speech function (``VOXPROOF_PRELOAD_VOICE=true``: the voice loads during
   init) but without AWS: the key file and SQLite registry are created under /tmp/voxproof;
3. sends: a sandbox probe (asserts non-root, EROFS outside /tmp, caches under /tmp), an import
   probe (onnxruntime loads; no torch, torchaudio, TTS, onnx, matplotlib or layer builder), a
   voice probe (the image's layer verifies, the ONNX engine loads and makes non-silent audio),
   ``GET /v1/health`` through the CMD handler, then
   ``POST /v1/speech`` -> ``POST /v1/verify`` (base64 JSON), and ``POST /v1/speech`` with
   ``Accept: audio/wav`` -> ``POST /v1/verify`` with the WAV as a binary body; asserts the
   verify answers name the records speech made;
4. prints the cold start: launcher start to the runtime's first poll (init) and to the first
   response, next to the launcher's own overhead (the same launcher running ``true``);
5. measures the cold start the issue asks for: ``--launches`` (default 5) fresh runtimes of the
   image's CMD handler itself (a fresh read-only root and /tmp each, the voice preloaded at
   init), each asked ``POST /v1/speech`` as soon as it is launched; the time from launching the
   runtime (awslambdaric through the launcher) to that first speech response completing, median
   and range, printed with the machine's load average. The issue asks for it on a quiet
   machine, and CI runs the smoke right after building the image: first it waits (at most
   ``--settle-s``, default 120 s) for the 1-minute load average to fall below ``--quiet-load``
   (default 1.0), and prints how long it waited and what the load was.

Exit status 0 only if every assertion held.

Example:
    python3 scripts/image_smoke.py --launcher "bash scripts/image_run.sh CTR --" \\
        --entrypoint '["python", "-m", "awslambdaric"]' --cmd '["voxproof.handlers.api.handler"]'
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from lambda_runtime import LambdaRuntimeAPI, Outcome, RuntimeProcess, api_gateway_event, start_ric

PROBE_HANDLER = "image_smoke_probe.handler"
SPEECH_TEXT = "Hello from the voxproof image smoke test."
READ_ONLY_PATHS = ("/", "/var/task", "/opt/venv", "/opt/voxproof/model", "/etc", "/usr")
#: The handler's settings in the smoke: the speech function's preload, local state under /tmp.
SMOKE_AUDITOR = "arn:aws:iam::123456789012:user/smoke-auditor"
HANDLER_ENV = {"VOXPROOF_PRELOAD_VOICE": "true", "VOXPROOF_STATE_DIR": "/tmp/voxproof",
               "VOXPROOF_AUDITOR_PRINCIPALS": SMOKE_AUDITOR}


class SmokeFailure(AssertionError):
    """One smoke assertion did not hold."""


def check(condition: bool, what: str) -> None:
    """Record one assertion: print it, raise ``SmokeFailure`` when it does not hold."""
    print(f"  {'ok ' if condition else 'FAIL'} {what}")
    if not condition:
        raise SmokeFailure(what)


def _json_body(outcome: Outcome) -> tuple[int, dict[str, Any]]:
    check(outcome.ok, f"the handler answered (not an error post): {outcome.body[:300]!r}")
    response = outcome.json()
    return int(response["statusCode"]), json.loads(response["body"] or "{}")


def check_sandbox(api: LambdaRuntimeAPI, wait_s: float) -> Outcome:
    """Non-root, read-only root, writable /tmp, every cache under /tmp."""
    print("sandbox probe")
    outcome = api.invoke_and_wait({"voxproof_smoke": "sandbox"}, wait_s=wait_s)
    check(outcome.ok, "the probe answered")
    box = outcome.json()
    check(box["uid"] != 0 and box["euid"] != 0, f"not root (uid {box['uid']}, euid {box['euid']})")
    check(
        box["gid"] != 0 and 0 not in box["groups"], f"no root group ({box['gid']}, {box['groups']})"
    )
    check(box["root_read_only"], "the root filesystem is mounted read-only")
    for path in READ_ONLY_PATHS:
        check(box["writes"][path] == "EROFS", f"write in {path} fails: {box['writes'][path]}")
    check(box["writes"]["/tmp"] == "written", "write in /tmp works")
    for name, value in box["cache_variables"].items():
        check(bool(value) and value.startswith("/tmp"), f"{name}={value} is under /tmp")
    check(box["tempdir"] == "/tmp", f"tempfile.gettempdir() is {box['tempdir']}")
    check(box["malloc_mmap_threshold"] == "131072",  # freed buffers return (functions/Dockerfile)
          f"the runtime has MALLOC_MMAP_THRESHOLD_={box['malloc_mmap_threshold']}")
    return outcome


def check_imports(api: LambdaRuntimeAPI, wait_s: float) -> dict[str, Any]:
    """onnxruntime imports on the read-only root; torch, TTS and the extras are absent."""
    print("import probe")
    outcome = api.invoke_and_wait({"voxproof_smoke": "imports"}, wait_s=wait_s)
    check(outcome.ok, f"onnxruntime imports: {outcome.body[:300]!r}")
    found = outcome.json()
    check(found["absent_found"] == [],
          "no torch, torchaudio, TTS, onnx, matplotlib or layer builder in the image: "
          f"{found['absent_found']}")
    print(f"  onnxruntime {found['onnxruntime']}")
    return found


def check_voice(api: LambdaRuntimeAPI, wait_s: float) -> dict[str, Any]:
    """The image's model layer verifies, loads and speaks (the ONNX engine, read-only root)."""
    print("voice probe (verify layer, load engine, first audio)")
    outcome = api.invoke_and_wait({"voxproof_smoke": "voice"}, timeout_ms=300_000, wait_s=wait_s)
    check(outcome.ok, f"layer verified, engine loaded, audio made: {outcome.body[:400]!r}")
    voice = outcome.json()
    check(voice["files"] >= 1, f"the layer in {voice['model_dir']} lists {voice['files']} files")
    check(voice["engine"] == "onnx", f"the default engine speaks ({voice['engine']})")
    check(voice["finite"] and voice["audio_s"] > 0.5, f"{voice['audio_s']} s of finite audio")
    check(voice["rms"] > 1e-3, f"the audio is not silent (rms {voice['rms']:.4f})")
    return voice


def check_api(api: LambdaRuntimeAPI, wait_s: float) -> None:
    """Health, then speech -> verify through the CMD handler (JSON, then WAV and a binary body)."""
    print("GET /v1/health through the image's CMD handler")
    status, health = _json_body(
        api.invoke_and_wait(api_gateway_event("GET", "/v1/health"), wait_s=wait_s)
    )
    check(status == 200, f"health answers 200 ({status}: {health})")
    check("placeholder" not in health, "the handler is the real one, not the placeholder")
    check(health.get("voice_loaded") is True, "the voice was loaded at init (preload)")
    check((health.get("checks") or {}).get("keys") == "ok" and "key_ids" not in health,
          f"the key is readable, and health names no key id: {health.get('checks')}")
    print("POST /v1/speech (JSON answer)")
    status, speech = _json_body(
        api.invoke_and_wait(
            api_gateway_event("POST", "/v1/speech", {"text": SPEECH_TEXT}),
            timeout_ms=60_000,
            wait_s=wait_s,
        )
    )
    check(status == 200, f"speech answers 200 ({status}: {str(speech)[:300]})")
    audio = base64.b64decode(speech["audio_base64"])
    check(
        audio[:4] == b"RIFF" and len(audio) > 10_000, f"speech returns a WAV ({len(audio)} bytes)"
    )
    print("POST /v1/verify on that audio (base64 JSON)")
    status, report = _json_body(
        api.invoke_and_wait(
            api_gateway_event("POST", "/v1/verify", {"audio_base64": speech["audio_base64"]}),
            timeout_ms=60_000,
            wait_s=wait_s,
        )
    )
    check(status == 200, f"verify answers 200 ({status}: {str(report)[:300]})")
    check(report.get("found") is True, "verify finds the mark")
    check(report.get("record_id") == speech["record_id"], "verify names the record speech made")
    check("score" not in report and "caller" not in (report.get("record") or {}),
          "the public verify answer carries no score and no caller")
    print("POST /v1/verify/detailed on that audio, as an IAM auditor")
    event = api_gateway_event("POST", "/v1/verify/detailed",
                              {"audio_base64": speech["audio_base64"]}, api_key_id=None)
    event["requestContext"]["identity"]["userArn"] = SMOKE_AUDITOR
    status, report = _json_body(api.invoke_and_wait(event, timeout_ms=60_000, wait_s=wait_s))
    check(status == 200, f"detailed verify answers 200 ({status}: {str(report)[:300]})")
    record = report.get("record") or {}
    check(record.get("entry_point") == "api" and record.get("caller") == "apikey:smoke-key-id",
          f"the record (SQLite under /tmp) names the caller and door: {record}")
    print("POST /v1/speech with Accept: audio/wav, then verify that WAV as a binary body")
    outcome = api.invoke_and_wait(
        api_gateway_event("POST", "/v1/speech", {"text": SPEECH_TEXT},
                          headers={"Accept": "audio/wav"}),
        timeout_ms=60_000, wait_s=wait_s)
    check(outcome.ok, "the handler answered")
    response = outcome.json()
    check(response["statusCode"] == 200 and response["isBase64Encoded"],
          f"audio/wav answer is base64 ({response['statusCode']})")
    wav = base64.b64decode(response["body"])
    record_id = response["multiValueHeaders"]["X-Voxproof-Record-Id"][0]
    status, report = _json_body(api.invoke_and_wait(
        api_gateway_event("POST", "/v1/verify", headers={"Content-Type": "audio/wav"},
                          raw_body=wav),
        timeout_ms=60_000, wait_s=wait_s))
    check(status == 200 and report.get("record_id") == record_id,
          "the binary upload verifies to the record in X-Voxproof-Record-Id")


def launcher_overhead(launcher: list[str]) -> float:
    """Seconds the launcher itself takes (namespace, mounts, buildah run) around ``true``."""
    start = time.monotonic()
    subprocess.run([*launcher, "true"], check=True, capture_output=True, timeout=120)
    return time.monotonic() - start


def settle(quiet_load: float, limit_s: float) -> float:
    """Wait until the 1-minute load average is below ``quiet_load`` (at most ``limit_s``
    seconds); returns the seconds waited."""
    start = time.monotonic()
    while os.getloadavg()[0] >= quiet_load and time.monotonic() - start < limit_s:
        time.sleep(2.0)
    return time.monotonic() - start


def cold_starts(launcher: list[str], entrypoint: list[str], handler: str, launches: int,
                wait_s: float) -> list[float]:
    """Seconds from launching a fresh runtime of ``handler`` to its first speech response.

    Each launch is a new runtime process on a fresh read-only root and /tmp (the launcher's own
    namespace), configured like the speech function (the voice loads during init); the speech
    request is queued at launch, so the runtime's first poll receives it.
    """
    times = []
    for n in range(launches):
        with LambdaRuntimeAPI() as api:
            runtime = start_ric(handler, api, command=[*launcher, *entrypoint, handler],
                                env=HANDLER_ENV)
            try:
                outcome = api.invoke_and_wait(
                    api_gateway_event("POST", "/v1/speech", {"text": SPEECH_TEXT}),
                    timeout_ms=60_000, wait_s=wait_s)
                status, speech = _json_body(outcome)
                check(status == 200 and "audio_base64" in speech,
                      f"launch {n + 1}: the first request, speech, answers 200 ({status})")
            except Exception:
                print("---- runtime output ----\n" + runtime.stop()[-6000:], file=sys.stderr)
                raise
            runtime.stop()
        times.append(outcome.completed_at - runtime.started_at)
    return times


def run(args: argparse.Namespace) -> int:
    for name in [n for n in os.environ if n.startswith("VOXPROOF_")]:
        del os.environ[name]  # image_run.sh forwards VOXPROOF_*: only HANDLER_ENV's may pass
    launcher = shlex.split(args.launcher)
    entrypoint, cmd = json.loads(args.entrypoint), json.loads(args.cmd)
    overhead = launcher_overhead(launcher)
    with LambdaRuntimeAPI() as api:
        runtime: RuntimeProcess = start_ric(
            PROBE_HANDLER,
            api,
            command=[*launcher, *entrypoint, PROBE_HANDLER],
            env={"SMOKE_DELEGATE": cmd[0], **HANDLER_ENV},
        )
        try:
            ready = api.wait_ready(args.wait_s)
            first = check_sandbox(api, args.wait_s)
            imports = check_imports(api, args.wait_s)
            voice = check_voice(api, args.wait_s)
            check_api(api, args.wait_s)
            check(runtime.alive(), "the runtime is still running after all requests")
        except Exception:
            print("---- runtime output ----\n" + runtime.stop()[-6000:], file=sys.stderr)
            raise
        runtime.stop()
    waited = settle(args.quiet_load, args.settle_s)
    load_before = os.getloadavg()
    print(f"cold start: {args.launches} fresh launches of {cmd[0]}, speech as the first request"
          f" (after {waited:.0f} s waiting for the 1-minute load to fall below {args.quiet_load})")
    launches = cold_starts(launcher, entrypoint, cmd[0], args.launches, args.wait_s)
    load_after = os.getloadavg()
    print("cold start (launcher start -> ...):")
    print(f"  runtime's first poll (init + voice) {ready - runtime.started_at:6.2f} s")
    print(f"  first response                     {first.completed_at - runtime.started_at:6.2f} s")
    print(f"  of which launcher overhead         {overhead:6.2f} s (buildah run of `true`)")
    print(
        f"  python process start -> 1st event  {first.json()['process_age_s']:6.2f} s (in the image)"
    )
    print("  (init preloads the voice, so the import probe below runs with onnxruntime imported)")
    print(f"  onnxruntime import in the image    {imports['onnxruntime_import_s']:6.2f} s")
    print(f"  verify layer ({voice['files']} files)            {voice['verify_s']:6.2f} s")
    print(f"  load engine ({voice['engine']}, {voice['threads']} threads)       {voice['load_s']:6.2f} s")
    print(f"  first audio ({voice['audio_s']:.2f} s of speech)     {voice['first_audio_s']:6.2f} s")
    print(f"  peak RSS of the runtime process    {voice['peak_rss_mb']:6d} MB")
    ordered = sorted(launches)
    print(f"cold start, launcher start -> first speech response (voice loaded at init), "
          f"{len(launches)} launches:")
    print(f"  median {statistics.median(launches):.2f} s, min {ordered[0]:.2f} s, "
          f"max {ordered[-1]:.2f} s ({' '.join(f'{t:.2f}' for t in launches)}); of which "
          f"launcher overhead {overhead:.2f} s")
    print(f"  machine load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load_before)}"
          f", after {' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs")
    print("smoke: PASSED")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--launcher", required=True, help="command prefix running a command in the image"
    )
    parser.add_argument("--entrypoint", required=True, help="the image's ENTRYPOINT, JSON")
    parser.add_argument("--cmd", required=True, help="the image's CMD, JSON")
    parser.add_argument("--wait-s", type=float, default=180.0, help="longest wait for one answer")
    parser.add_argument("--launches", type=int, default=5,
                        help="fresh launches timed for the cold start (median printed)")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="1-minute load average below which the machine counts as quiet")
    parser.add_argument("--settle-s", type=float, default=120.0,
                        help="longest wait for a quiet machine before the cold start")
    try:
        return run(parser.parse_args(argv))
    except SmokeFailure as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
