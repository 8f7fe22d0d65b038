"""voxproof.voice.synthesis: text -> speech on the real default voice, within a deadline.

Deadline tests that need time to pass use a clock moved by the engine wrapper (``watch.py``):
the model really runs for every call, but how long it "took" is fixed by the test, so the
outcome does not depend on the machine's load.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from voxproof.deadline import Deadline
from voxproof.errors import (
    ControlCharacter,
    DeadlineExceeded,
    DeadlineTooShort,
    FormatCharacter,
    ManifestDigestMismatch,
    TextEmpty,
    TextTooLong,
)
from voxproof.settings import Settings
from voxproof.text import prepare
from voxproof.voice import CostModel, Voice, load_voice
from voxproof.voice.synthesis import (
    CALIBRATION_TEXTS,
    CLAUSE_PAUSE_S,
    PEAK_TARGET,
    PRIORS,
    SENTENCE_PAUSE_S,
    AdaptiveCost,
    calibrate,
)
from watch import ManualClock, WatchedEngine

RATE = 22050
THREE = ("The boy was there when the sun rose. A rod is used to catch pink salmon. "
         "Kick the ball straight and follow through.")


def units_of(voice: Voice, text: str) -> list[tuple[int, ...]]:
    """The id sequences the voice will send to the engine for ``text``."""
    return [ids for piece in prepare(text, max_chars=1000).pieces
            for ids in voice.phonemizer.to_ids(piece, max_ids=voice.max_ids).sentences]


def zero_runs(samples: np.ndarray, at_least: int = 100) -> list[int]:
    """Lengths of the runs of exact zeros (inserted silence; the model never makes them)."""
    padded = np.concatenate([[1.0], samples, [1.0]]) != 0
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [int(e - s) for s, e in zip(edges[::2], edges[1::2], strict=True) if e - s >= at_least]


def watched(default_voice: Voice, **kwargs) -> tuple[Voice, WatchedEngine]:
    """The default voice (same calibration) on a watched engine."""
    engine = WatchedEngine(default_voice.engine, **kwargs)
    return Voice(engine, default_voice.phonemizer, default_voice.cost), engine


def clocked(default_voice: Voice, cost: CostModel, steps) -> tuple[Voice, WatchedEngine,
                                                                    ManualClock]:
    """A voice whose engine 'takes' ``steps(n_ids)`` seconds per call on a manual clock."""
    clock = ManualClock()
    engine = WatchedEngine(default_voice.engine, clock=clock, cost=steps)
    return Voice(engine, default_voice.phonemizer, cost), engine, clock


# --- the pipeline ---------------------------------------------------------------------------


def test_speech_is_each_sentence_from_the_engine_joined_by_a_pause(default_voice,
                                                                   default_engine):
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background!"
    speech = default_voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000, seed=7)
    units = units_of(default_voice, text)
    assert speech.units == len(units) == 2
    first, second = (default_engine.infer(ids, seed=7 + i) for i, ids in enumerate(units))
    pause = round(SENTENCE_PAUSE_S * RATE)
    assert len(speech.samples) == len(first) + pause + len(second)
    gain = PEAK_TARGET / max(np.abs(first).max(), np.abs(second).max())
    fade = round(0.003 * RATE)
    np.testing.assert_allclose(speech.samples[fade:len(first) - fade],
                               gain * first[fade:-fade], atol=1e-5)
    assert not speech.samples[len(first):len(first) + pause].any()
    np.testing.assert_allclose(speech.samples[-len(second) + fade:-fade],
                               gain * second[fade:-fade], atol=1e-5)


def test_output_is_float32_mono_with_a_safe_peak_and_its_identity(default_voice):
    speech = default_voice.synthesize("Hello\u200b there.", deadline=Deadline.after(600),
                                      max_chars=1000)
    samples = speech.samples
    assert samples.dtype == np.float32 and samples.ndim == 1 and np.isfinite(samples).all()
    assert np.abs(samples).max() == pytest.approx(PEAK_TARGET, abs=1e-6)  # -1 dBFS, no clip
    assert speech.sample_rate == RATE and speech.duration_s == len(samples) / RATE
    assert speech.voice == "en_US-joe-medium"
    assert speech.manifest_sha256 == default_voice.engine.manifest_sha256
    assert [r.code_point for r in speech.removed] == ["U+200B"]


def test_clauses_of_a_long_sentence_get_the_shorter_pause(default_voice):
    text = ("When the storm passed, the villagers came out of their houses, looked at the "
            "fallen trees and the broken fences along the river, and began, slowly and "
            "patiently, to clear the roads that led from the old mill to the market square at "
            "the far end of the valley. "
            "Then they rested.")
    assert len(prepare(text, max_chars=1000).pieces) == 3  # two clause pieces, one sentence
    speech = default_voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000)
    clause, sentence = round(CLAUSE_PAUSE_S * RATE) + 2, round(SENTENCE_PAUSE_S * RATE) + 2
    assert zero_runs(speech.samples) == [clause, sentence]  # +2: the faded end samples


def test_seed_reproduces_and_different_seeds_differ(default_voice):
    def say(seed):
        return default_voice.synthesize("Rice is often served in round bowls.",
                                        deadline=Deadline.after(600), max_chars=1000,
                                        seed=seed).samples

    a, b, c = say(3), say(3), say(4)
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_a_sentence_over_the_id_limit_is_cut_at_word_boundaries(default_voice):
    engine = WatchedEngine(default_voice.engine)
    voice = Voice(engine, default_voice.phonemizer, default_voice.cost, max_ids=60)
    text = "The source of the huge river is the clear spring that rises in the hills."
    assert len(units_of(default_voice, text)) == 1  # one sentence at the engine's own limit
    speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000)
    assert len(engine.calls) >= 3 and max(engine.calls) <= 60
    assert speech.units == len(engine.calls)
    cut = round(CLAUSE_PAUSE_S * RATE) + 2
    assert zero_runs(speech.samples) == [cut] * (speech.units - 1)


@pytest.mark.parametrize(("text", "error"), [
    ("", TextEmpty),
    (" ...  ", TextEmpty),
    ("a" * 1001, TextTooLong),
    ("ring \x07 the bell", ControlCharacter),
    ("abc\u202edef", FormatCharacter),
])
def test_bad_text_is_refused_before_the_engine_runs(default_voice, text, error):
    voice, engine = watched(default_voice)
    with pytest.raises(error):
        voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000)
    assert engine.calls == []


# --- the deadline ---------------------------------------------------------------------------


def test_too_short_a_deadline_is_refused_before_any_synthesis(default_voice):
    voice, engine = watched(default_voice)
    with pytest.raises(DeadlineTooShort) as caught:
        voice.synthesize(THREE, deadline=Deadline.after(0.0), max_chars=1000)
    assert engine.calls == []
    assert caught.value.details["estimate_s"] > 0 and caught.value.details["remaining_s"] == 0


def test_the_refusal_is_decided_by_the_estimate_of_the_whole_text(default_voice):
    cost = CostModel(per_call_s=0.05, per_id_s=0.001, safety=1.0)
    total = sum(cost.estimate(len(ids)) for ids in units_of(default_voice, THREE))
    voice, engine, clock = clocked(default_voice, cost, cost.estimate)
    with pytest.raises(DeadlineTooShort):
        voice.synthesize(THREE, deadline=Deadline.after(total * 0.99, clock=clock),
                         max_chars=1000)
    assert engine.calls == []
    speech = voice.synthesize(THREE, deadline=Deadline.after(total * 1.01, clock=clock),
                              max_chars=1000)
    assert len(engine.calls) == speech.units == 3 and speech.duration_s > 3


def test_running_out_mid_way_stops_between_sentences_with_no_audio(default_voice):
    # Estimates say 0.1 s per sentence; the engine "takes" 0.15 s. The budget (0.42 s) fits the
    # estimate of all three (0.3 s). After two sentences 0.12 s are left: enough by the raw
    # estimate, not at the 1.5x pace this request has shown, so it stops there.
    cost = CostModel(per_call_s=0.1, per_id_s=1e-9, safety=1.0)
    voice, engine, clock = clocked(default_voice, cost, lambda n: 0.15)
    with pytest.raises(DeadlineExceeded) as caught:
        voice.synthesize(THREE, deadline=Deadline.after(0.42, clock=clock), max_chars=1000)
    assert len(engine.calls) == 2
    assert caught.value.details == {"done": 2, "total": 3}


def test_a_last_sentence_that_ends_late_returns_nothing(default_voice):
    cost = CostModel(per_call_s=0.1, per_id_s=1e-9, safety=1.0)
    steps = iter([0.1, 0.1, 0.2])
    voice, engine, clock = clocked(default_voice, cost, lambda n: next(steps))
    with pytest.raises(DeadlineExceeded) as caught:
        voice.synthesize(THREE, deadline=Deadline.after(0.35, clock=clock), max_chars=1000)
    assert len(engine.calls) == 3 and caught.value.details == {"done": 3, "total": 3}


def test_a_generous_deadline_gives_all_the_audio(default_voice):
    voice, engine = watched(default_voice)
    speech = voice.synthesize(THREE, deadline=Deadline.after(600), max_chars=1000)
    assert len(engine.calls) == speech.units == 3
    assert zero_runs(speech.samples) == [round(SENTENCE_PAUSE_S * RATE) + 2] * 2


def test_waiting_for_a_busy_voice_counts_against_the_deadline(default_voice):
    gate = threading.Event()
    voice, engine = watched(default_voice, gate=gate)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", voice.synthesize(
        "Hello there.", deadline=Deadline.after(600), max_chars=1000)))
    first.start()
    try:
        assert engine.entered.wait(timeout=30)  # the first request holds the voice
        with pytest.raises(DeadlineTooShort, match="busy"):
            voice.synthesize("Help the woman get back to her feet.",
                             deadline=Deadline.after(0.2), max_chars=1000)
    finally:
        gate.set()
        first.join(timeout=60)
    assert len(engine.calls) == 1 and results["first"].duration_s > 0.3


def test_concurrent_requests_get_the_same_audio_as_one_by_one(default_voice):
    texts = ["Smoky fires lack flame and heat.", "The girl at the booth sold fifty bonds."]
    alone = [default_voice.synthesize(t, deadline=Deadline.after(600), max_chars=1000,
                                      seed=5).samples for t in texts]
    together: dict[int, np.ndarray] = {}

    def speak(i):
        together[i] = default_voice.synthesize(texts[i], deadline=Deadline.after(600),
                                               max_chars=1000, seed=5).samples

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(np.array_equal(alone[i], together[i]) for i in range(2))


# --- calibration and loading ------------------------------------------------------------------


def test_calibration_fits_cost_per_call_and_per_id_and_ignores_a_stall(default_voice):
    short, long = (len(default_voice.phonemizer.to_ids(t).sentences[0])
                   for t in CALIBRATION_TEXTS)
    clock = ManualClock()
    stalls = iter([0.0, 5.0, 0.0, 0.0, 9.0])  # one stall on each sentence's timed calls
    engine = WatchedEngine(default_voice.engine, clock=clock,
                           cost=lambda n: 0.02 + 0.003 * n + next(stalls))
    model = calibrate(engine, default_voice.phonemizer, clock=clock)
    assert engine.calls == [short, short, short, long, long]  # warm-up, then two timed each
    assert model.per_call_s == pytest.approx(0.02) and model.per_id_s == pytest.approx(0.003)
    assert model.estimate(100) == pytest.approx(1.5 * (0.02 + 0.3))


def test_a_noisy_short_call_cannot_make_ids_look_free(default_voice):
    clock = ManualClock()
    engine = WatchedEngine(default_voice.engine, clock=clock,
                           cost=lambda n: 1.0 if n < 50 else 0.5)  # short call hit a stall
    model = calibrate(engine, default_voice.phonemizer, clock=clock)
    long = engine.calls[-1]
    assert model.per_id_s == pytest.approx(0.5 * 0.5 / long)


@pytest.mark.parametrize("values", [(0.0, 0.0, 1.0), (-1.0, 0.1, 1.0), (0.0, 0.1, 0.5),
                                    (0.0, float("nan"), 1.0)])
def test_a_cost_model_must_be_positive_and_finite(values):
    with pytest.raises(ValueError):
        CostModel(*values)


def test_load_voice_verifies_loads_and_calibrates_a_layer(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    voice = load_voice(Settings(model_dir=folder, model_manifest_sha256=pin, engine="torch",
                                state_dir=tmp_path / "state", torch_threads=1))
    assert voice.name == "tiny-test" and voice.sample_rate == 16_000
    assert voice.cost.per_id_s > 0
    speech = voice.synthesize("A bad cafe.", deadline=Deadline.after(60), max_chars=100)
    assert speech.sample_rate == 16_000 and speech.duration_s > 0
    assert speech.manifest_sha256 == pin


def test_load_voice_refuses_a_layer_that_is_not_the_pinned_one(tiny_layer, tmp_path):
    folder, _ = tiny_layer
    with pytest.raises(ManifestDigestMismatch):
        load_voice(Settings(model_dir=folder, model_manifest_sha256="0" * 64,
                            state_dir=tmp_path / "state"))


# --- the cost model: a prior refined by the requests ---------------------------------------------


def test_load_voice_makes_no_synthesis_and_starts_from_the_engine_prior(tiny_layer, tmp_path,
                                                                          monkeypatch):
    from voxproof.voice import synthesis

    monkeypatch.setattr(synthesis, "calibrate", lambda *a, **k: pytest.fail("calibrated"))
    folder, pin = tiny_layer
    voice = load_voice(Settings(model_dir=folder, model_manifest_sha256=pin, engine="torch",
                                state_dir=tmp_path / "state", torch_threads=1))
    assert isinstance(voice.cost, AdaptiveCost)
    assert (voice.cost.per_call_s, voice.cost.per_id_s) == PRIORS["torch", 1]


def test_the_prior_only_rises_on_thin_evidence_then_follows_the_calls():
    cost = AdaptiveCost(CostModel(per_call_s=0.05, per_id_s=0.004))
    prior = cost.estimate(100)
    cost.observe(100, 0.01)  # one fast call proves nothing
    assert cost.estimate(100) == prior
    cost.observe(100, 0.9)  # one slow call (x2) raises it at once
    assert cost.estimate(100) == pytest.approx(2 * prior)
    for _ in range(40):  # many fast calls: it follows them, never below a quarter of the prior
        cost.observe(100, 0.01)
    assert cost.estimate(100) == pytest.approx(0.25 * prior)
    for _ in range(40):
        cost.observe(100, 0.45 * 0.5)  # half the prior's raw cost
    assert cost.estimate(100) == pytest.approx(0.5 * prior)
    cost.observe(100, float("nan"))
    assert cost.estimate(100) == pytest.approx(0.5 * prior)


def test_a_request_is_judged_by_one_snapshot_and_teaches_the_next(default_voice):
    """The deadline contract holds with the learning model: the first request's refusal and
    stop are decided by the snapshot taken before it; what it observed judges the next one."""
    cost = AdaptiveCost(CostModel(per_call_s=0.1, per_id_s=1e-9, safety=1.0))
    voice, engine, clock = clocked(default_voice, cost, lambda n: 0.3)  # 3x the prior
    with pytest.raises(DeadlineExceeded):  # fits 3 x 0.1 up front; stops at the 3x pace
        voice.synthesize(THREE, deadline=Deadline.after(0.65, clock=clock), max_chars=1000)
    assert len(engine.calls) == 2
    assert cost.estimate(10) == pytest.approx(0.3, rel=1e-3)  # it learned the slow pace
    calls = len(engine.calls)
    with pytest.raises(DeadlineTooShort):  # now refused up front: 3 x 0.3 > 0.65
        voice.synthesize(THREE, deadline=Deadline.after(0.65, clock=clock), max_chars=1000)
    assert len(engine.calls) == calls
