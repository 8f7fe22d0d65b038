"""Lambda handler the image smoke test puts in the container's /var/task (never in the image).

It wraps the image's own CMD handler (named by ``SMOKE_DELEGATE``, imported at init like Lambda
imports the CMD) and adds two probe events, so that what the smoke test asserts about privileges
and the file system is measured in the very process that serves the requests:

* ``{"voxproof_smoke": "sandbox"}``: uid/gid, which writes fail and how (EROFS versus EACCES),
  where every cache and temp variable points;
* ``{"voxproof_smoke": "imports"}``: imports onnxruntime and times it (with the image's
  precompiled bytecode on a read-only root), and lists which of torch, torchaudio, Coqui's TTS,
  onnx, matplotlib and the layer builder the image holds (none: the image runs the ONNX engine);
* ``{"voxproof_smoke": "voice"}``: verifies the image's model layer, loads the configured engine
  (``VOXPROOF_ENGINE``, default onnx) and synthesizes a fixed phoneme sequence (the model half of
  a cold start, as scripts/bench_model_load.py times it on a checkout).

Every other event goes to the delegate unchanged.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

#: Variables that must point under /tmp on a read-only root filesystem.
CACHE_VARIABLES = (
    "HOME",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "VOXPROOF_STATE_DIR",
)
#: What the image must not hold: the [torch], [build] and [plot] extras, the layer builder.
ABSENT_MODULES = ("torch", "torchaudio", "TTS", "onnx", "matplotlib", "voxproof.layer_build")
#: Places a write must fail: the root itself, the code, the venv, the model layer.
READ_ONLY_PATHS = ("/", "/var/task", "/opt/venv", "/opt/voxproof/model", "/etc", "/usr")


def _load_delegate(spec: str) -> Any:
    module, _, function = spec.rpartition(".")
    return getattr(importlib.import_module(module), function)


_DELEGATE = _load_delegate(os.environ["SMOKE_DELEGATE"])


def _try_write(folder: str) -> str:
    target = Path(folder) / f".smoke-write-{os.getpid()}"
    try:
        target.write_bytes(b"x")
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    target.unlink()
    return "written"


def _process_age_s() -> float:
    """Seconds since this Python process started (from /proc: boot-relative start time)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return round(uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


def _sandbox() -> dict[str, Any]:
    return {
        "process_age_s": _process_age_s(),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "root_read_only": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
        "writes": {path: _try_write(path) for path in (*READ_ONLY_PATHS, "/tmp")},
        "cache_variables": {name: os.environ.get(name) for name in CACHE_VARIABLES},
        "tempdir": tempfile.gettempdir(),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


def _imports() -> dict[str, Any]:
    start = time.perf_counter()
    import onnxruntime

    return {
        "onnxruntime_import_s": round(time.perf_counter() - start, 3),
        "onnxruntime": onnxruntime.__version__,
        "absent_found": [name for name in ABSENT_MODULES
                         if importlib.util.find_spec(name) is not None],
    }


def _voice() -> dict[str, Any]:
    import resource

    import numpy as np
    from voxproof.settings import Settings
    from voxproof.voice.layer import verify_layer
    from voxproof.voice.synthesis import load_engine, unread_by

    settings = Settings()
    start = time.perf_counter()
    layer = verify_layer(settings.model_dir, manifest_sha256=settings.model_manifest_sha256,
                         unread=lambda manifest: unread_by(settings.engine, manifest))
    verified = time.perf_counter()
    engine = load_engine(layer, engine=settings.engine, threads=settings.torch_threads)
    loaded = time.perf_counter()
    phonemes = [20, 59, 24, 27, 3] * 8  # bos=1, each phoneme then pad=0, eos=2 (Piper ids)
    audio = engine.infer([1, 0, *[v for p in phonemes for v in (p, 0)], 2], seed=0)
    done = time.perf_counter()
    return {
        "model_dir": str(settings.model_dir),
        "engine": engine.name,
        "threads": engine.threads,
        "files": len(layer.manifest.files) - len(layer.unread),  # hashed (the rest: sized)
        "verify_s": round(verified - start, 3),
        "load_s": round(loaded - verified, 3),
        "first_audio_s": round(done - loaded, 3),
        "audio_s": round(len(audio) / engine.sample_rate, 3),
        "rms": float(np.sqrt(np.mean(np.square(audio)))),
        "finite": bool(np.isfinite(audio).all()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def handler(event: Any, context: Any) -> Any:
    """Probe events answered here; everything else goes to the image's CMD handler."""
    probe = event.get("voxproof_smoke") if isinstance(event, dict) else None
    if probe == "sandbox":
        return _sandbox()
    if probe == "imports":
        return _imports()
    if probe == "voice":
        return _voice()
    return _DELEGATE(event, context)
