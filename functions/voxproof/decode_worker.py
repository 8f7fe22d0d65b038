"""Decode untrusted uploads in a separate process that holds no secret.

``DecodeWorker`` keeps one spare worker ready: a fresh interpreter (``python -I``, exec'd, an
empty environment: no key, no AWS credentials, no ``VOXPROOF_*``) that limits its own address
space, CPU time, file size and core dumps before it reads a byte of the upload, decodes one
upload with ``audio.decode_mono`` (and, when asked, validates its embedded C2PA manifest store
with c2pa: the other parser of untrusted bytes), writes the mono PCM back over a pipe and exits. Each upload
gets a fresh worker; a crash, a limit hit or a timeout in it is a ``DecoderFailed`` (422),
never a 500. Costs and measurements: docs/verify-hardening.md.

Example:
    >>> from voxproof import audio
    >>> import numpy as np
    >>> with DecodeWorker() as worker:
    ...     clip = worker.decode(audio.encode(np.zeros(800, np.float32), 8000, "wav"))
    >>> clip.samples.shape, clip.source_rate
    ((800,), 8000)
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

import numpy as np

from voxproof import audio
from voxproof.errors import (
    AudioEmpty,
    AudioError,
    AudioTooLarge,
    CorruptAudio,
    MislabelledAudio,
    UnsupportedAudio,
    VoxproofError,
)

if TYPE_CHECKING:
    from voxproof.credentials.reader import CredentialsCheck

#: Address space the worker may add to what its imports take (decoding itself needs ~100 MB).
DEFAULT_MEMORY_MB: Final = 512
#: CPU seconds one decode may use (the wall-clock budget is the caller's ``max_decode_s``).
DEFAULT_CPU_S: Final = 30
#: Seconds kept beyond ``max_decode_s`` for the worker to start, write back and exit.
_GRACE_S: Final = 5.0
#: Seconds a manifest read may add (c2pa reads a few KB of claims: milliseconds).
_MANIFEST_S: Final = 5.0

#: The errors a worker may report, by name (anything else is a ``DecoderFailed``).
_REPORTABLE: Final[dict[str, type[AudioError]]] = {
    cls.__name__: cls for cls in (AudioError, AudioEmpty, AudioTooLarge, UnsupportedAudio,
                                  MislabelledAudio, CorruptAudio)
}


class DecoderFailed(CorruptAudio):
    """The decoder process crashed, hit its memory or CPU limit, or ran out of time."""

    code = "audio_decoder_failed"
    status = 422


@dataclasses.dataclass(frozen=True)
class ManifestQuery:
    """Also read the upload's C2PA manifest store, as ``mime``, against ``anchors_pem`` (the
    trust anchors' certificates: public, never a key)."""

    mime: str
    anchors_pem: str | None = None


class Decoder(Protocol):
    """What ``Service.verify`` decodes uploads with."""

    def start(self) -> None:
        """Get ready before the first upload (and before any key is read)."""

    def decode(self, data: bytes, *, declared: str | None = None,
               limits: audio.AudioLimits = audio.DEFAULT_LIMITS) -> audio.MonoAudio:
        """The upload as mono at the detector's rate, within ``limits``."""
        ...

    def decode_and_read(self, data: bytes, query: ManifestQuery, *,
                        declared: str | None = None,
                        limits: audio.AudioLimits = audio.DEFAULT_LIMITS
                        ) -> tuple[audio.MonoAudio, CredentialsCheck]:
        """``decode``, and the upload's embedded manifest store validated (c2pa parses it in
        the same place as FFmpeg: away from the keys)."""
        ...


class InProcessDecoder:
    """Decodes in this process (``audio.decode_mono``): for tests and trusted local files."""

    def start(self) -> None:
        """Nothing to start."""

    def decode(self, data: bytes, *, declared: str | None = None,
               limits: audio.AudioLimits = audio.DEFAULT_LIMITS) -> audio.MonoAudio:
        """``audio.decode_mono``."""
        return audio.decode_mono(data, declared=declared, limits=limits)

    def decode_and_read(self, data: bytes, query: ManifestQuery, *,
                        declared: str | None = None,
                        limits: audio.AudioLimits = audio.DEFAULT_LIMITS
                        ) -> tuple[audio.MonoAudio, CredentialsCheck]:
        """``audio.decode_mono`` and ``credentials.reader.read_embedded``."""
        from voxproof.credentials.reader import read_embedded

        clip = audio.decode_mono(data, declared=declared, limits=limits)
        return clip, read_embedded(data, query.mime, anchors_pem=query.anchors_pem)


#: RIFF chunks a WAV decoded by ``LocalFiles`` may hold: none can carry a C2PA manifest store
#: (``C2PA``) or XMP pointing at one (``_PMX``), so c2pa would find none.
_PLAIN_CHUNKS: Final = frozenset({b"fmt ", b"data", b"LIST", b"fact"})


class LocalFiles:
    """The CLI's decoder: a plain PCM WAV that can carry no manifest is decoded here, with
    numpy alone (``audio.is_plain_wav``: no FFmpeg or c2pa, no native parser, touches its
    bytes, so there is nothing to isolate from the key); everything else goes to ``worker``.

    The result is what the worker would have answered: the same samples (the worker reads a
    plain WAV with the same numpy code) and an absent manifest (tested).
    """

    def __init__(self, worker: Decoder) -> None:
        self.worker = worker

    def start(self) -> None:
        """Start the worker (for an upload that is not a plain WAV)."""
        self.worker.start()

    def decode(self, data: bytes, *, declared: str | None = None,
               limits: audio.AudioLimits = audio.DEFAULT_LIMITS) -> audio.MonoAudio:
        if _plain(data, declared, limits):
            return audio.decode_mono(data, declared=declared, limits=limits)
        return self.worker.decode(data, declared=declared, limits=limits)

    def decode_and_read(self, data: bytes, query: ManifestQuery, *,
                        declared: str | None = None,
                        limits: audio.AudioLimits = audio.DEFAULT_LIMITS
                        ) -> tuple[audio.MonoAudio, CredentialsCheck]:
        if _plain(data, declared, limits):
            from voxproof.credentials.reader import CredentialsCheck

            return (audio.decode_mono(data, declared=declared, limits=limits),
                    CredentialsCheck("absent"))
        return self.worker.decode_and_read(data, query, declared=declared, limits=limits)


def _plain(data: bytes, declared: str | None, limits: audio.AudioLimits) -> bool:
    """A complete plain PCM WAV within ``limits`` (declared as a WAV or not at all) whose
    RIFF chunks are all in ``_PLAIN_CHUNKS`` and end where the file does."""
    try:
        if declared is not None and audio.family_of(declared) not in (None, "wav"):
            return False  # mislabelled: the worker reports it as it always has
    except VoxproofError:
        return False
    if len(data) > limits.max_bytes or not audio.is_plain_wav(data, limits):
        return False
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk_id not in _PLAIN_CHUNKS:
            return False
        pos += 8 + size + (size & 1)
    return pos in (len(data), len(data) + 1)


def decoder_for(settings: Any, *, start: bool = False, spare: bool = True) -> Decoder:
    """The decoder ``settings`` ask for (``Settings`` or ``LocalSettings``): a
    ``DecodeWorker`` with their limits, started now if ``start``, or in-process decoding when
    ``decode_in_worker`` is off."""
    if not settings.decode_in_worker:
        return InProcessDecoder()
    return DecodeWorker(memory_mb=settings.decode_worker_memory_mb,
                        cpu_s=settings.decode_worker_cpu_s, start=start, spare=spare)


class DecodeWorker:
    """Decodes uploads in throw-away worker processes, one per upload, one kept spare.

    The worker parses the upload (FFmpeg) and sends mono float64 blocks at the upload's own
    rate; this process resamples them to ``rate`` as they arrive (``audio.Resampled``), so
    neither side holds more than the output and one block, and the result is bit for bit
    ``audio.decode_mono``'s.

    Parameters
    ----------
    memory_mb:
        Address space the worker may use beyond its imports (``RLIMIT_AS``).
    cpu_s:
        CPU seconds per decode (``RLIMIT_CPU``).
    rate:
        The rate of the PCM returned (the detector's).
    start:
        Start the spare worker now (else on ``start()`` or the first upload).
    spare:
        Start the next upload's worker as soon as one finishes (off: when it is needed; a
        command that decodes one file need not pay for a second worker).
    """

    def __init__(self, *, memory_mb: int = DEFAULT_MEMORY_MB, cpu_s: int = DEFAULT_CPU_S,
                 rate: int = 8000, start: bool = True, spare: bool = True) -> None:
        self.rate = rate
        self.keep_spare = spare
        self._config = {"memory_mb": memory_mb, "cpu_s": cpu_s, "path": _import_path()}
        self._lock = threading.Lock()
        self._spare: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the spare worker now (a verify function's init), not on the first upload."""
        with self._lock:
            if self._spare is None:
                self._spare = self._spawn()

    def __del__(self) -> None:
        spare = getattr(self, "_spare", None)
        if spare is not None:
            _reap(spare)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the spare worker."""
        with self._lock:
            if self._spare is not None:
                _reap(self._spare)
                self._spare = None

    @property
    def spare_pid(self) -> int | None:
        """The process id of the worker the next upload will use (tests inspect it)."""
        return None if self._spare is None else self._spare.pid

    def decode(self, data: bytes, *, declared: str | None = None,
               limits: audio.AudioLimits = audio.DEFAULT_LIMITS) -> audio.MonoAudio:
        """``audio.decode_mono(data, ...)``, the parsing done in a fresh worker."""
        sink = audio.Resampled(self.rate, limits)
        request = {"declared": declared, "limits": dataclasses.asdict(limits)}
        info, _ = self._run(request, data, sink, timeout=limits.max_decode_s + _GRACE_S)
        return sink.result(info)

    def decode_and_read(self, data: bytes, query: ManifestQuery, *,
                        declared: str | None = None,
                        limits: audio.AudioLimits = audio.DEFAULT_LIMITS
                        ) -> tuple[audio.MonoAudio, CredentialsCheck]:
        """``decode``, and the manifest store read by c2pa in the same worker after it."""
        sink = audio.Resampled(self.rate, limits)
        request = {"declared": declared, "limits": dataclasses.asdict(limits),
                   "manifest": dataclasses.asdict(query)}
        info, check = self._run(request, data, sink,
                                timeout=limits.max_decode_s + _MANIFEST_S + _GRACE_S)
        if check is None:
            raise DecoderFailed("the decoder sent a malformed answer", reason="protocol")
        return sink.result(info), check

    def _run(self, request: dict[str, Any], data: bytes, sink: audio.MonoSink | None, *,
             timeout: float) -> Any:
        with self._lock:
            spare, self._spare = self._spare, None
        proc = spare if spare is not None and spare.poll() is None else self._spawn()
        try:
            head = json.dumps(request).encode()
            exchange = _Exchange(proc, _LEN.pack(len(head)) + head + data, sink,
                                 time.monotonic() + timeout)
            return exchange.run(), exchange.manifest
        finally:
            _reap(proc)
            with self._lock:
                if self._spare is None and self.keep_spare:
                    self._spare = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        code = ("import sys, json; c = json.loads(sys.argv[1]); sys.path[:0] = c['path']; "
                "from voxproof.decode_worker import main; main(c)")
        return subprocess.Popen([sys.executable, "-I", "-c", code, json.dumps(self._config)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env={}, close_fds=True, cwd="/")

    def _probe(self, what: str) -> Any:
        """Test hook: what the worker sees (``environ``), or a worker that dies mid-decode
        (``kill``), spins (``spin``) or allocates without bound (``allocate``)."""
        return self._run({"probe": what}, b"", None, timeout=30.0)[0]


#: Frames from the worker: one type byte and a length, then the payload.
_LEN: Final = struct.Struct("<I")
_FRAME: Final = struct.Struct("<cI")
_MAX_FRAME: Final = 16 * 2**20


class _Exchange:
    """One request to one worker: write the upload, read frames as they come, until the
    worker's last frame, its exit or the deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], request: bytes,
                 sink: audio.MonoSink | None, deadline: float) -> None:
        self.proc, self.sink, self.deadline = proc, sink, deadline
        self.out = memoryview(request)
        self.buf = bytearray()
        self.manifest: CredentialsCheck | None = None

    def run(self) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            sel.register(self.proc.stdin, selectors.EVENT_WRITE)
            while True:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise DecoderFailed("the upload took too long to decode", reason="timeout")
                for key, _ in sel.select(left):
                    if key.fileobj is self.proc.stdin:
                        if not self._write():
                            sel.unregister(self.proc.stdin)
                            self.proc.stdin.close()
                        continue
                    chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                    if not chunk:
                        raise _failed(self.proc.wait())
                    self.buf += chunk
                    done = self._frames()
                    if done is not _MORE:
                        return done

    def _write(self) -> bool:
        """Write what the pipe takes; False once all is written (or the reader is gone)."""
        assert self.proc.stdin is not None
        try:
            n = os.write(self.proc.stdin.fileno(), self.out[:1 << 20])
        except BlockingIOError:
            return True
        except (BrokenPipeError, OSError):
            return False
        self.out = self.out[n:]
        return len(self.out) > 0

    def _frames(self) -> Any:
        """Handle every complete frame in the buffer; the answer after the last one."""
        while len(self.buf) >= _FRAME.size:
            kind, n = _FRAME.unpack_from(self.buf)
            if n > _MAX_FRAME or (kind == b"D" and n % 8):
                raise DecoderFailed("the decoder sent a malformed answer", reason="protocol")
            if len(self.buf) < _FRAME.size + n:
                return _MORE
            payload = bytes(self.buf[_FRAME.size:_FRAME.size + n])
            del self.buf[:_FRAME.size + n]
            answer = self._frame(kind, payload)
            if answer is not _MORE:
                return answer
        return _MORE

    def _frame(self, kind: bytes, payload: bytes) -> Any:
        if kind == b"D" and self.sink is not None:
            samples = np.frombuffer(payload, "<f8")
            if not np.isfinite(samples).all() or np.abs(samples).max(initial=0.0) > 1.0:
                raise DecoderFailed("the decoder sent a malformed answer", reason="protocol")
            self.sink.add(samples.astype(np.float64))
            return _MORE
        try:
            head = json.loads(payload)
        except ValueError:
            raise DecoderFailed("the decoder sent a malformed answer",
                                reason="protocol") from None
        if kind == b"H" and self.sink is not None:
            self.sink.start(int(head["rate"]))
            return _MORE
        if kind == b"E":
            raise _error(head)
        if kind == b"M" and self.manifest is None:
            self.manifest = _check_from_worker(head)
            return _MORE
        if kind == b"P":
            return head
        if kind == b"F" and self.sink is not None:
            self.sink.finish()
            return audio.StreamInfo(source_rate=int(head["source_rate"]),
                                    channels=int(head["channels"]), frames=int(head["frames"]),
                                    family=str(head["family"]), codec=str(head["codec"]))
        raise DecoderFailed("the decoder sent a malformed answer", reason="protocol")


_MORE: Final = object()


def _import_path() -> list[str]:
    """Where the worker finds voxproof and its dependencies: this process's path, with
    voxproof's own folder first (so a source checkout wins over an installed copy)."""
    here = str(Path(audio.__file__).resolve().parent.parent)
    return [here, *(p for p in sys.path if p and p != here)]


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


def _error(head: dict[str, Any]) -> AudioError:
    """The named audio error a worker reported, or ``DecoderFailed``."""
    cls = _REPORTABLE.get(head.get("type"))
    if cls is None:
        return DecoderFailed("the upload could not be decoded (damaged, or beyond the "
                             "decoder's limits)", reason=str(head.get("reason", "error"))[:20])
    details = head.get("details")
    return cls(str(head.get("message", "the upload could not be decoded"))[:300],
               **(details if isinstance(details, dict) else {}))


def _check_from_worker(head: Any) -> CredentialsCheck:
    """The worker's manifest answer, shape-checked (a worker is not trusted to be well)."""
    from voxproof.credentials.reader import CredentialsCheck

    def text(value: Any, limit: int = 300) -> str | None:
        return None if value is None else str(value)[:limit]

    try:
        state = head["state"]
        if state not in ("trusted", "valid_untrusted", "invalid", "absent"):
            raise ValueError(state)
        record_id = head.get("record_id")
        if record_id is not None and not (isinstance(record_id, int) and 0 <= record_id < 2**40):
            raise ValueError(record_id)
        assertions = head.get("assertions") or {}
        signer = head.get("signer")
        if not isinstance(assertions, dict) or not (signer is None or isinstance(signer, dict)):
            raise ValueError("shape")
        return CredentialsCheck(
            state, tuple(str(code)[:120] for code in head.get("failures", [])[:50]),
            text(head.get("manifest_label")), record_id,
            {k: v for k, v in assertions.items()
             if k in ("digital_source_type", "software_agent", "provenance")},
            None if signer is None else {k: text(signer.get(k))
                                         for k in ("issuer", "common_name", "alg")})
    except (KeyError, TypeError, ValueError):
        raise DecoderFailed("the decoder sent a malformed answer", reason="protocol") from None


def _failed(returncode: int) -> DecoderFailed:
    reason = {-signal.SIGXCPU: "cpu", -signal.SIGKILL: "killed"}.get(returncode, "crash")
    return DecoderFailed("the decoder stopped on this upload (damaged, or beyond its limits)",
                         reason=reason)


# --- the worker side --------------------------------------------------------------------------
class _Pipe:
    """The worker's ``MonoSink``: every block goes straight down stdout."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def send(self, kind: bytes, payload: bytes) -> None:
        self.out.write(_FRAME.pack(kind, len(payload)))
        self.out.write(payload)

    def start(self, rate: int) -> None:
        self.send(b"H", json.dumps({"rate": rate}).encode())

    def add(self, mono: np.ndarray) -> None:
        self.send(b"D", mono.astype("<f8").tobytes())

    def finish(self) -> None:
        pass


def main(config: dict[str, Any]) -> None:
    """The worker: limit itself, read one request from stdin, answer on stdout, exit."""
    _preload()
    _limit_self(int(config["memory_mb"]), int(config["cpu_s"]))
    stdin = sys.stdin.buffer
    size = stdin.read(_LEN.size)
    if len(size) < _LEN.size:  # the parent went away before asking anything
        return
    (n,) = _LEN.unpack(size)
    request = json.loads(stdin.read(n))
    data = stdin.read()
    pipe = _Pipe(sys.stdout.buffer)
    try:
        if "probe" in request:
            pipe.send(b"P", json.dumps(_probe(request["probe"])).encode())
        else:
            info = audio.decode_mono_to(data, pipe, declared=request.get("declared"),
                                        limits=audio.AudioLimits(**request["limits"]))
            if "manifest" in request:  # after the audio checks out: c2pa reads the same bytes
                pipe.send(b"M", json.dumps(_read_manifest(data, request["manifest"])).encode())
            pipe.send(b"F", json.dumps(dataclasses.asdict(info)).encode())
    except AudioError as err:
        pipe.send(b"E", json.dumps({"type": type(err).__name__, "message": err.message,
                                    "details": err.details}).encode())
    except MemoryError:
        pipe.send(b"E", b'{"type": null, "reason": "memory"}')
    except Exception:  # noqa: BLE001  (a decoder bug: no trace leaves the worker)
        pipe.send(b"E", b'{"type": null, "reason": "error"}')
    pipe.out.flush()


def _read_manifest(data: bytes, query: dict[str, Any]) -> dict[str, Any]:
    from voxproof.credentials.reader import read_embedded

    check = read_embedded(data, str(query["mime"]), anchors_pem=query.get("anchors_pem"))
    return dataclasses.asdict(check)


def _preload() -> None:
    """Import what a request may need before the limits are set (FFmpeg's and c2pa's native
    libraries)."""
    audio.pyav()
    try:
        import c2pa  # noqa: F401

        import voxproof.credentials.reader  # noqa: F401
    except ImportError:  # c2pa-python missing: a manifest request then fails as a crash would
        pass


def _limit_self(memory_mb: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + memory_mb * 2**20,) * 2)
    spent = int(time.process_time()) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_s, spent + cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _probe(what: str) -> Any:
    if what == "environ":
        return {"environ": sorted(os.environ), "pid": os.getpid(),
                "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
                "rlimit_cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
                "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                  ("boto3", "botocore", "scipy", "voxproof"))}
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "spin":
        while True:
            pass
    if what == "allocate":
        return len(bytearray(2**40))
    raise ValueError(what)
