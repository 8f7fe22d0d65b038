"""glibc's fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_=131072``, the image's environment:
functions/Dockerfile; the image smoke checks the runtime has it): freed large buffers go back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# A freed 16 MB buffer raises glibc's dynamic mmap threshold; then 40 buffers of 8 MB with a
# small live object after each are freed: from the heap, their pages stay resident.
_SCENARIO = """
import numpy as np
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
big = np.ones(16 << 20, np.uint8)
del big
base = rss()
keep, bufs = [], []
for _ in range(40):
    bufs.append(np.ones(8 << 20, np.uint8))
    keep.append(bytearray(4096))
del bufs
print(rss() - base)
"""
DOCKERFILE = Path(__file__).resolve().parents[1] / "functions" / "Dockerfile"


def _rise(threshold: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    if threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = threshold
    out = subprocess.run([sys.executable, "-c", _SCENARIO], check=True, timeout=120, env=env,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_images_malloc_threshold_returns_freed_buffers():
    value = re.search(r"MALLOC_MMAP_THRESHOLD_=(\d+)", DOCKERFILE.read_text()).group(1)
    assert _rise(None) > 200  # the ratchet it guards against: 320 MB freed, still resident
    assert _rise(value) < 40
