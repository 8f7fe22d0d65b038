"""Detection's memory is bounded and its results do not depend on the bound: the short-time power
in blocks, the hypotheses' arrays in a bounded cache (computed again, identically, when dropped),
the followed alignment one phase at a time. The peak RSS rise of a detection is measured in a
fresh subprocess (issue 12: at most 300 MB per accepted request)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from voxproof.watermark import WatermarkKey, embed
from voxproof.watermark import analysis as an
from voxproof.watermark import views as vw
from voxproof.watermark.detect import inspect
from watermark_hosts import speechlike

ROOT = Path(__file__).resolve().parents[1]
KEY = WatermarkKey.from_hex("5a" * 32)
OTHER = WatermarkKey.from_hex("17" * 32)
RSS_BUDGET_MB = 300


def _power_at_once(x8: np.ndarray) -> np.ndarray:
    """The short-time power as one transform of every frame (the layout before blocks)."""
    n = an.frame_count(len(x8))
    lead = an.FRAME // 2 - an.HOP // 2
    padded = np.zeros(lead + an.HOP * n + an.FRAME)
    padded[lead : lead + len(x8)] = x8
    frames = sliding_window_view(padded, an.FRAME)[: an.HOP * n : an.HOP] * an.WINDOW
    spec = np.fft.rfft(frames, axis=1)
    return spec.real**2 + spec.imag**2


@pytest.mark.parametrize("length", [0, 31, 8000, 8000 * 3 + 17])
def test_power_in_blocks_is_the_same_as_one_transform(monkeypatch, length):
    monkeypatch.setattr(an, "POWER_BLOCK_FRAMES", 100)  # several blocks and a partial one
    x = np.random.default_rng(length).normal(0, 0.1, length)
    assert np.array_equal(an.power(x), _power_at_once(x))


def test_a_views_frame_count_needs_no_arrays():
    for seconds in (1.1, 7.3):
        views = vw.Views(np.random.default_rng(1).normal(0, 0.1, int(seconds * 8000)))
        for hypothesis in views.plan:
            view = views.get(hypothesis)
            assert view is not None and view.frames == len(view.phasor) == len(view.square)
            assert view.activity.shape == view.phasor.shape


def test_detection_does_not_depend_on_the_cache_bound(monkeypatch):
    host = speechlike(9.0, 16000, seed=4)
    marked = embed(host, 16000, KEY, 0x00DEADBEEF)
    rng = np.random.default_rng(2)
    inputs = {"marked": marked, "unmarked": host,
              "marked, noisy": marked + rng.normal(0, 0.003, len(marked))}
    computed: list[int] = []
    real_cells = vw._cells

    def counting(*args):
        computed.append(1)
        return real_cells(*args)

    monkeypatch.setattr(vw, "_cells", counting)

    def run(x):
        computed.clear()
        detection, bits = inspect(x, 16000, [OTHER, KEY])  # two keys: the search runs twice
        return detection.to_dict(), None if bits is None else bits.tolist(), len(computed)

    whole = {name: run(x) for name, x in inputs.items()}
    monkeypatch.setattr(vw, "DETECT_BYTES", 0)  # a cache of one entry: everything again
    monkeypatch.setattr(vw, "MIN_CACHE_BYTES", 0)
    for name, x in inputs.items():
        detection, bits, count = run(x)
        assert (detection, bits) == whole[name][:2], name
        assert count > whole[name][2], name  # hypotheses were computed again
    assert whole["marked"][0]["found"] and not whole["unmarked"][0]["found"]
    # The bound really applied: with room for everything, 10 hypotheses are computed once.
    views = vw.Views(host, cache_bytes=2**40)
    for hypothesis in views.plan:
        views.get(hypothesis).phasor  # noqa: B018 - reading computes
    assert views.computed == 10


_PROBE = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from watermark_hosts import speechlike
from voxproof.watermark import WatermarkKey, detect

def vm(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

x = speechlike({seconds}, 8000, seed=3)
before = vm("VmRSS")
found = detect(x, 8000, [WatermarkKey.from_hex("5a" * 32)]).found
print(json.dumps({{"rise_mb": vm("VmHWM") - before, "found": found}}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_minute_of_unmarked_audio_stays_within_the_memory_budget():
    # Unmarked: every hypothesis and the followed alignment are searched (the most memory).
    # Before the bound, a minute raised the peak by 424 MB (7.5 MB per second of audio).
    code = _PROBE.format(tests=str(ROOT / "tests"), seconds=60.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["found"] is False
    assert result["rise_mb"] < RSS_BUDGET_MB, result
