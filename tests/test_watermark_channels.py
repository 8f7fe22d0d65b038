"""The watermark through issue 10's channels: pitch shifts, speed and tempo beyond +-3 %, echo.

The project's own voice, marked, goes through ffmpeg's filters (rubberband, asetrate, atempo,
aecho) and must come back with its record id from the second search stage; the unmarked twin
through the same filter must give nothing. Also: the search machinery the second stage relies on
(correlations, whole-input sync) and the false-positive bound counting both stages. The full
family table is ``scripts/bench_watermark.py --attacks channels``.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf
from ffmpeg_attacks import needs_ffmpeg
from voxproof.deadline import Deadline
from voxproof.watermark import TAG_BITS, WatermarkKey, align, detect, embed
from voxproof.watermark.detect import CANDIDATES, MAX_ATTEMPTS, WIDE_CANDIDATES
from voxproof.watermark.pattern import BANDS, pattern_for
from voxproof.watermark.views import Hypothesis, Views

KEY = WatermarkKey.from_hex("5e" * 32)
RID = 0x0A1B2C3D4E



def ffmpeg_filter(x: np.ndarray, sr: int, af: str, tmp_path) -> np.ndarray:
    """``x`` through ffmpeg's audio filter chain ``af`` (PCM16 WAV in and out, rate kept)."""
    sf.write(tmp_path / "in.wav", x, sr, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i",
                    str(tmp_path / "in.wav"), "-af", af, "-ar", str(sr), "-ac", "1",
                    str(tmp_path / "out.wav")], check=True)
    back, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == sr
    return back


@pytest.fixture(scope="module")
def speech(default_voice) -> tuple[np.ndarray, int]:
    """About 8 s of the service's voice (unmarked). Shorter clips lose a single echo for lack
    of capacity, not of search (a 3.8 s one does not decode even at the true alignment)."""
    text = ("Please call me back before noon. The meeting moved to the second floor, room twelve, "
            "and we will start a little later than planned, at half past two.")
    out = default_voice.synthesize(text, deadline=Deadline.after(600), max_chars=300, seed=11)
    assert 6.0 < out.duration_s < 11.0
    return out.samples, out.sample_rate


@pytest.fixture(scope="module")
def marked(speech) -> np.ndarray:
    samples, sr = speech
    return embed(samples, sr, KEY, RID)


def _cents(c: int) -> str:
    return f"rubberband=pitch={2.0 ** (c / 1200.0):.6f}"


CHANNELS = {
    "pitch_+100c": (lambda sr: _cents(100), "pitch", 2.0 ** (100 / 1200) - 1),
    "pitch_-100c": (lambda sr: _cents(-100), "pitch", 2.0 ** (-100 / 1200) - 1),
    "speed_+8%": (lambda sr: f"asetrate={round(sr * 1.08)},aresample={sr}", "speed", 0.08),
    "speed_-8%": (lambda sr: f"asetrate={round(sr * 0.92)},aresample={sr}", "speed", -0.08),
    "tempo_+8%": (lambda sr: "atempo=1.08", "tempo", 0.08),
    "tempo_-8%": (lambda sr: "atempo=0.92", "tempo", -0.08),
    "echo_single": (lambda sr: "aecho=0.8:0.9:120:0.5", None, None),
}


@needs_ffmpeg
@pytest.mark.parametrize("name", list(CHANNELS))
def test_channel_keeps_the_record_and_the_twin_finds_nothing(tmp_path, speech, marked,
                                                              name: str) -> None:
    samples, sr = speech
    af, mode, change = CHANNELS[name]
    found = detect(ffmpeg_filter(marked, sr, af(sr), tmp_path), sr, [KEY])
    assert found.found and found.tag_verified and found.record_id == RID
    if mode == "tempo":  # a tempo view, or the followed alignment (no change) first
        assert found.mode in ("tempo", "none")
        assert found.mode == "none" or abs(found.speed - change) < 0.006
    elif mode is not None:  # the hypothesis that found it is the change that was made
        assert found.mode == mode and abs(found.speed - change) < 0.006
    twin = detect(ffmpeg_filter(samples, sr, af(sr), tmp_path), sr, [KEY])
    assert not twin.found and twin.record_id is None
    assert twin.p_false <= MAX_ATTEMPTS * 2.0**-TAG_BITS


def test_bound_counts_both_stages(speech) -> None:
    """Unmarked speech runs the whole search: the second stage's decodes are counted too."""
    samples, sr = speech
    assert MAX_ATTEMPTS == 2 * (CANDIDATES + 1) + 1 + 2 * WIDE_CANDIDATES == 23
    found = detect(samples, sr, [KEY])
    assert not found.found
    first_stage = 2 * (CANDIDATES + 1) + 1
    assert first_stage * 2.0**-TAG_BITS < found.p_false <= MAX_ATTEMPTS * 2.0**-TAG_BITS


# --- the search machinery -----------------------------------------------------------------------
@pytest.mark.parametrize("blocks", [4, 16, 37])
def test_correlate_matches_its_definition(blocks: int) -> None:
    """The fast path (real product, strided cyclic sum) equals the sum it stands for, for
    complex and real inputs and for more blocks than a unit has."""
    rng = np.random.default_rng(blocks)
    x = rng.normal(size=(blocks, 16, BANDS)) + 1j * rng.normal(size=(blocks, 16, BANDS))
    w = rng.normal(size=(16, BANDS)) + 1j * rng.normal(size=(16, BANDS))
    want = np.zeros(256)
    for a in range(16):
        for r in range(16):
            want[16 * a + r] = sum((w[(j - a) % 16] * x[j, r]).sum().real for j in range(blocks))
    assert np.allclose(align.correlate(x, 0, w), want)
    assert np.allclose(align.correlate(x[None], np.zeros(1, dtype=int), w)[0], want)  # gather
    power, real_w = np.abs(x) ** 2, np.abs(w)
    assert np.allclose(align.correlate(power, 0, real_w),
                       align.correlate(power[None], np.zeros(1, dtype=int), real_w)[0])


def test_sync_scores_the_whole_input_once() -> None:
    """An input longer than a search window also gets whole-input candidates."""
    rng = np.random.default_rng(2)
    x8 = rng.normal(0.0, 0.1, 8000 * 9)
    views = Views(x8)  # a View reads through its Views: keep them alive together
    view = views.get(Hypothesis("none", 0.0, 0.0))
    assert view is not None
    cands = align.sync(view, pattern_for(KEY))
    n = len(view.phasor)
    assert sum((c.start, c.stop) == (0, n) for c in cands) == 2  # by pilots, pilots + blind
    assert all(c.stop - c.start <= align.SEARCH_WINDOW for c in cands if (c.start, c.stop) != (0, n))


def test_second_stage_plan_covers_issue_10s_grid() -> None:
    plan = Views(np.zeros(8000 * 3)).wide_plan
    speeds = sorted(h.change for h in plan if h.mode == "speed")
    tempos = sorted(h.change for h in plan if h.mode == "tempo")
    cents = sorted(round(1200 * np.log2(1 + h.change)) for h in plan if h.mode == "pitch")
    assert speeds == tempos == [-0.08, -0.07, -0.06, -0.05, -0.04, 0.04, 0.05, 0.06, 0.07, 0.08]
    assert cents == [-100, -75, -50, -25, 25, 50, 75, 100]
    assert {h.weighting for h in plan if h.mode == "none"} == {"onset"}


# --- short utterances (issue 10 item 3) ----------------------------------------------------------
SHORT_TEXTS = ("Hi.", "No.", "Sure.", "Right.", "Wait.", "Hello.", "Yes.", "Stop.")


@pytest.fixture(scope="module")
def short_outputs(default_voice) -> list[tuple[np.ndarray, int]]:
    """Real short utterances of 0.4-0.7 s (two seeds each), unmarked."""
    outs = [default_voice.synthesize(text, deadline=Deadline.after(60), max_chars=20, seed=seed)
            for text in SHORT_TEXTS for seed in (1, 2)]
    assert all(0.4 < o.duration_s < 0.7 for o in outs), [o.duration_s for o in outs]
    return [(o.samples, o.sample_rate) for o in outs]


@pytest.mark.parametrize(("seconds", "least"), [(None, 10), (0.3, 1)])
def test_short_utterances_are_searched_and_found(short_outputs, seconds, least: int) -> None:
    """Whole outputs of 0.4-0.7 s and 0.3 s from their middles: before issue 10 nothing under
    0.51 s was searched at all (no view): none of the 0.3 s pieces and 9 of the 16 outputs were
    found. Now most outputs give their record (12 of 16 when written; the rate by
    length: scripts/bench_short.py), 0.3 s pieces rarely (2 of 16: issue 10's presence from
    0.3 s is not met), a record always with presence, and the unmarked twins find nothing,
    within the bound for the decodes made."""
    records = present = 0
    for samples, sr in short_outputs:
        marked = embed(samples, sr, KEY, RID)
        cut = slice(None) if seconds is None else slice(
            len(marked) // 2 - int(seconds * sr / 2), len(marked) // 2 + int(seconds * sr / 2))
        found = detect(marked[cut], sr, [KEY])
        assert found.presence.hypotheses > 0  # searched
        assert found.presence.found or not found.found  # a record implies presence
        assert found.record_id in (None, RID)
        records += found.found
        present += found.presence.found
        nothing = detect(samples[cut], sr, [KEY])
        assert not nothing.found and not nothing.presence.found
        assert 0 < nothing.p_false <= MAX_ATTEMPTS * 2.0**-TAG_BITS
    print(f"records {records}, presence {present} of {len(short_outputs)}")
    assert present >= records >= least
