"""Benchmark Content Credentials: what signing costs a speech request, what reading costs verify.

Usage:
    PYTHONPATH=functions python scripts/bench_credentials.py [--texts N] [--rounds R]
        [--formats wav,mp3,m4a,flac] [--write-docs]

One process, one run, every number a ratio against a peer measured in the same run:

- per format, the speak request's wall time (synthesize, mark, encode, sign, record) and the
  part of it spent signing (the service's ``sign`` step), so signing is a share of speak time;
  the bytes the manifest adds, as a share of the file;
- the same with a callback signer (the KMS path's shape: c2pa reserves room for a timestamp),
  the key held locally so no network time hides the signer's own cost;
- verify of a signed file (decode, detect, look up, read the manifest) against verify of the
  same audio with its manifest stripped (which also fetches and checks the stored manifest), and
  c2pa's read of the manifest alone per file.

Texts are the first N lines of ``scripts/watermark_corpus.txt``, spoken by the default voice in
a temporary state folder (local CA, SQLite registry). ``--write-docs`` writes the tables into
``docs/credentials.md`` between ``<!-- bench_credentials:begin/end -->`` with the command, the
date and ``uptime``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from voxproof import __version__, audio
from voxproof.credentials.core import Credentials
from voxproof.credentials.identity import LocalIdentity
from voxproof.credentials.reader import read_embedded
from voxproof.credentials.signer import CredentialSigner
from voxproof.deadline import Deadline
from voxproof.runtime import build_service
from voxproof.service import Caller, Service
from voxproof.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "scripts" / "watermark_corpus.txt"
DOC = REPO / "docs" / "credentials.md"
CALLER = Caller("bench", "cli")


class Steps:
    """The service's step hook: wall time per step name, for the current request."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


def _callback_signer(identity: LocalIdentity) -> CredentialSigner:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(identity.key_pem, None)
    return CredentialSigner.from_callback(lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())),
                                          identity.chain_pem)


def bench_speak(service: Service, steps: Steps, texts: list[str], fmt: str, rounds: int):
    speak_s, sign_s, added, sizes, results = [], [], [], [], []
    for _ in range(rounds):
        for text in texts:
            steps.times.clear()
            start = time.perf_counter()
            result = service.speak(text, CALLER, Deadline.after(120), fmt=fmt)
            speak_s.append(time.perf_counter() - start)
            sign_s.append(steps.times.get("sign", 0.0))
            unsigned = audio.encode(result.samples, result.sample_rate, fmt,
                                    bitrate={"mp3": 128_000, "m4a": 128_000}.get(fmt))
            added.append(len(result.audio) - len(unsigned))
            sizes.append(len(result.audio))
            results.append(result)
    return {"speak_s": statistics.median(speak_s), "sign_s": statistics.median(sign_s),
            "sign_share": statistics.median(s / t for s, t in zip(sign_s, speak_s, strict=True)),
            "added": statistics.median(added),
            "added_share": statistics.median(a / n for a, n in zip(added, sizes, strict=True)),
            "manifest": statistics.median(len(r.manifest_store) for r in results)}, results


def bench_verify(service: Service, results, rounds: int):
    signed_s, stripped_s, read_s, read_absent_s = [], [], [], []
    anchors = service.credentials.anchors_pem
    for _ in range(rounds):
        for result in results:
            stripped = audio.encode(audio.decode(result.audio).samples[:, 0], result.sample_rate)
            start = time.perf_counter()
            assert service.verify(result.audio, CALLER).credentials.status == "manifest_and_mark"
            signed_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            status = service.verify(stripped, CALLER).credentials.status
            stripped_s.append(time.perf_counter() - start)
            assert status == "recovered", status
            start = time.perf_counter()
            read_embedded(result.audio, "audio/wav", anchors_pem=anchors)
            read_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            read_embedded(stripped, "audio/wav", anchors_pem=anchors)
            read_absent_s.append(time.perf_counter() - start)
    return {"verify_signed_s": statistics.median(signed_s),
            "verify_stripped_s": statistics.median(stripped_s),
            "read_ms": 1000 * statistics.median(read_s),
            "read_absent_ms": 1000 * statistics.median(read_absent_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--formats", default="wav,mp3,m4a,flac")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    texts = [line.strip() for line in CORPUS.read_text().splitlines()
             if line.strip() and not line.startswith("#")][: args.texts]
    state = Path(tempfile.mkdtemp(prefix="vx-bench-c2pa-"))
    settings = Settings(state_dir=state, decode_in_worker=False)
    steps = Steps()
    service = build_service(settings, step=steps)
    service.load()
    service.speak(texts[0], CALLER, Deadline.after(120))  # warm: the voice, the signer, the CA
    identity = LocalIdentity.load(settings.credentials_dir)

    header = ("| signer | format | speak (median) | signing | share of speak | manifest | "
              "bytes added | share of file |")
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    wav_results = None
    for signer_name in ("local key", "callback (KMS-shaped)"):
        if signer_name != "local key":
            service.credentials = Credentials(lambda: _callback_signer(identity),
                                              lambda: identity.ca_pem.decode(),
                                              version=__version__)
        for fmt in args.formats.split(","):
            row, results = bench_speak(service, steps, texts, fmt, args.rounds)
            if fmt == "wav" and signer_name == "local key":
                wav_results = results
            lines.append(
                f"| {signer_name} | {fmt} | {row['speak_s'] * 1000:.0f} ms | "
                f"{row['sign_s'] * 1000:.1f} ms | {100 * row['sign_share']:.2f} % | "
                f"{row['manifest'] / 1024:.1f} KB | {row['added'] / 1024:.1f} KB | "
                f"{100 * row['added_share']:.1f} % |")
            print(lines[-1], flush=True)
    assert wav_results is not None
    service.credentials = Credentials(lambda: CredentialSigner.local(identity),
                                      lambda: identity.ca_pem.decode(), version=__version__)
    v = bench_verify(service, wav_results, args.rounds)
    ratio = v["verify_stripped_s"] / v["verify_signed_s"]
    verify_lines = [
        "| verify (WAV, in-process decode) | median |", "| --- | --- |",
        ("| signed file: decode, detect, look up, read and validate the manifest | "
         f"{v['verify_signed_s'] * 1000:.0f} ms |"),
        ("| same audio, manifest stripped: ... and fetch + check the stored manifest | "
         f"{v['verify_stripped_s'] * 1000:.0f} ms (x{ratio:.2f}) |"),
        f"| c2pa's read + validation of the embedded manifest alone | {v['read_ms']:.2f} ms |",
        f"| c2pa's read of a file without one | {v['read_absent_ms']:.2f} ms |",
    ]
    print("\n".join(verify_lines))
    if args.write_docs:
        uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
        command = "PYTHONPATH=functions python scripts/bench_credentials.py " + shlex.join(
            sys.argv[1:])
        block = (f"<!-- bench_credentials:begin -->\nMeasured {datetime.date.today()} with "
                 f"`{command}` ({len(texts)} texts x {args.rounds} rounds; `uptime`: {uptime}).\n\n"
                 + "\n".join(lines) + "\n\n" + "\n".join(verify_lines)
                 + "\n<!-- bench_credentials:end -->")
        text = DOC.read_text()
        text = re.sub(r"<!-- bench_credentials:begin -->.*<!-- bench_credentials:end -->",
                      lambda _: block, text, flags=re.DOTALL)
        DOC.write_text(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
