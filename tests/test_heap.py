"""voxproof.heap: freed large buffers go back to the OS, even after glibc's threshold moved."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A freed 16 MB buffer raises glibc's dynamic mmap threshold; then 40 buffers of 8 MB with a
# small live object after each are freed: from the heap, their pages stay resident.
_SCENARIO = """
import sys
import numpy as np
from voxproof.heap import release_large_buffers
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
applied = release_large_buffers() if sys.argv[1] == "fixed" else None
big = np.ones(16 << 20, np.uint8)
del big
base = rss()
keep, bufs = [], []
for _ in range(40):
    bufs.append(np.ones(8 << 20, np.uint8))
    keep.append(bytearray(4096))
del bufs
print(applied, rss() - base)
"""


def _rise(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _SCENARIO, mode], check=True, timeout=120,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_buffers_are_returned_once_the_threshold_is_fixed():
    applied, fixed = _rise("fixed")
    _, dynamic = _rise("dynamic")
    assert applied == "True"
    assert dynamic > 200  # the ratchet this guards against: 320 MB freed, still resident
    assert fixed < 40


def test_loading_the_voice_fixes_the_threshold(monkeypatch, tmp_path):
    import voxproof.voice.synthesis as synthesis

    calls = []
    monkeypatch.setattr(synthesis, "release_large_buffers", lambda: calls.append(1) or True)
    from voxproof.settings import Settings

    voice = synthesis.load_voice(Settings(state_dir=tmp_path, torch_threads=1))
    assert calls == [1] and voice.engine.name == "onnx"
