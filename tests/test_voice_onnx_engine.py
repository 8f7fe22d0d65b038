"""voxproof.voice.onnx_engine: the default engine gives the torch reference's audio.

The tolerance, for the same ids and the same noise: the same number of samples, no sample more
than 1e-3 apart (-60 dBFS, about 33 steps of 16-bit PCM) and an SNR of the difference of at
least 60 dB. Why: both engines compute the same float32 graph (Coqui's model, exported by
Coqui's exporter), so they differ only by the order of float32 sums; measured here <= 3.2e-5 and
>= 95 dB (about 1 step of 16-bit PCM). The margin (x30, 35 dB) is for other CPUs (AVX-512,
arm64 on Lambda) and other onnxruntime versions reordering sums; 60 dB is still 20-30 dB below
the watermark's own change to the audio (SNR ~31 dB) and far below hearing. The length check
catches the one failure that would matter: a duration that rounds up on one engine and not on
the other. A seed means the same noise on both engines (``inputs.seeded_noise``), so the same
text and seed give the same speech through the whole pipeline (``Voice.synthesize``), within
the same tolerance.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from voxproof.deadline import Deadline
from voxproof.errors import EngineMismatch, InvalidPhonemeIds, InvalidScales
from voxproof.layer_build.onnx_export import MAX_ABS_DIFF, MIN_SNR_DB, compare
from voxproof.voice.layer import verify_layer
from voxproof.voice.onnx_engine import MIN_IDS, load_onnx_engine
from voxproof.voice.synthesis import AdaptiveCost, Voice

SENTENCES = (
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "Meet me at seven thirty, by the old mill, unless it rains.",
    "She asked: why would anyone sell a violin that plays itself?",
)


@pytest.fixture(scope="module")
def sentence_ids(phonemizer) -> list[tuple[int, ...]]:
    return [phonemizer.to_ids(text).sentences[0] for text in SENTENCES]


def test_the_tolerance_is_the_one_the_build_checks():
    assert (MAX_ABS_DIFF, MIN_SNR_DB) == (1e-3, 60.0)


@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_without_noise_both_engines_give_the_same_audio(default_engine, torch_engine,
                                                         sentence_ids, index):
    ids = sentence_ids[index]
    quiet = {"noise_scale": 0.0, "noise_scale_dp": 0.0}
    assert compare(torch_engine.infer(ids, **quiet), default_engine.infer(ids, **quiet)) >= 60


@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_the_same_noise_gives_the_same_audio_at_the_voice_scales(default_engine, torch_engine,
                                                                 sentence_ids, index):
    ids = sentence_ids[index]
    rng = np.random.default_rng(index)
    noise = (rng.standard_normal((len(ids), 2), dtype=np.float32),
             rng.standard_normal((8 * len(ids), 192), dtype=np.float32))
    assert compare(torch_engine.infer(ids, noise=noise), default_engine.infer(ids, noise=noise)) >= 60


@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_the_same_seed_gives_the_same_audio_on_both_engines(default_engine, torch_engine,
                                                            sentence_ids, index):
    """A seed is the same noise on both engines (numpy PCG64 streams), not two RNGs' draws."""
    ids = sentence_ids[index]
    assert compare(torch_engine.infer(ids, seed=2024 + index),
                   default_engine.infer(ids, seed=2024 + index)) >= 60


def test_a_seeded_torch_call_repeats_and_leaves_torchs_rng_alone(torch_engine, sentence_ids):
    import torch

    ids = sentence_ids[2]
    state = torch.random.get_rng_state()
    first = torch_engine.infer(ids, seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.array_equal(first, torch_engine.infer(ids, seed=7))
    assert not np.array_equal(first[:1000], torch_engine.infer(ids, seed=8)[:1000])
    with pytest.raises(ValueError, match="does not cover"):
        torch_engine.infer(ids, noise=(np.zeros((2, 2), np.float32), np.zeros((9, 192), np.float32)))


#: Whole requests: several units (sentences, a clause, numbers) so each unit's seed (seed + i)
#: is checked, along with the pauses, fades and gain of the join.
SPOKEN = (
    "The birch canoe slid on the smooth planks. She bought 3 books for $24 at the market!",
    "Meet me at seven thirty, by the old mill; unless it rains, of course.",
)


@pytest.mark.parametrize("text", SPOKEN)
def test_the_same_text_and_seed_give_the_same_speech_on_both_engines(default_voice, torch_engine,
                                                                     phonemizer, text):
    """The full speak path (text -> units -> engine -> join), not only the model call: this is
    what the intelligibility and watermark tests hear. Before seeds meant the same noise on
    both engines, the same seed gave two different samples of the model (docs/voice.md)."""
    torch_voice = Voice(torch_engine, phonemizer,
                        AdaptiveCost.for_engine(torch_engine.name, torch_engine.threads))
    spoken = [voice.synthesize(text, deadline=Deadline.after(600), max_chars=500, seed=2024)
              for voice in (torch_voice, default_voice)]
    assert spoken[0].sample_rate == spoken[1].sample_rate
    assert compare(spoken[0].samples, spoken[1].samples) >= MIN_SNR_DB


def test_a_seed_repeats_and_thread_counts_agree(default_layer, default_engine, sentence_ids):
    ids = sentence_ids[0]
    first = default_engine.infer(ids, seed=3)
    assert np.array_equal(first, default_engine.infer(ids, seed=3))
    assert not np.array_equal(first[:1000], default_engine.infer(ids, seed=4)[:1000])
    one_thread = load_onnx_engine(default_layer, threads=1)
    assert np.max(np.abs(one_thread.infer(ids, seed=3) - first)) <= MAX_ABS_DIFF


def test_a_noise_buffer_that_is_too_short_is_grown_not_truncated(default_engine, sentence_ids):
    """A slow length scale needs more frames than the first buffer holds: the engine redraws a
    longer one (its first rows unchanged), so the audio is complete and still seeded."""
    ids = sentence_ids[1]
    slow = default_engine.infer(ids, seed=5, length_scale=3.0)
    assert np.array_equal(slow, default_engine.infer(ids, seed=5, length_scale=3.0))
    assert len(slow) > 2.5 * len(default_engine.infer(ids, seed=5, length_scale=1.0))


def test_bad_ids_and_scales_are_refused_like_the_torch_engine(default_engine):
    for bad in ([], [1, 0, 2], [[1, 0, 20, 0, 2]], [1, 0, 999, 0, 2], [1.5] * 5):
        with pytest.raises(InvalidPhonemeIds):
            default_engine.infer(bad)
    assert MIN_IDS == 5 and default_engine.infer([1, 0, 20, 0, 2], seed=0).size > 0
    with pytest.raises(InvalidScales):
        default_engine.infer([1, 0, 20, 0, 2], length_scale=0.0)


def test_a_layer_without_an_export_is_refused_naming_the_torch_engine(tiny_layer):
    folder, pin = tiny_layer
    with pytest.raises(EngineMismatch, match="VOXPROOF_ENGINE=torch"):
        load_onnx_engine(verify_layer(folder, manifest_sha256=pin))


def test_the_default_path_never_imports_torch_or_tts(default_layer, tmp_path):
    """load_voice with default settings, then speak: torch, TTS and onnx stay unimported."""
    code = (
        "import sys\n"
        "from voxproof.deadline import Deadline\n"
        "from voxproof.settings import Settings\n"
        "from voxproof.voice import load_voice\n"
        f"voice = load_voice(Settings(state_dir={str(tmp_path)!r}, torch_threads=1))\n"
        "speech = voice.synthesize('Hello there.', deadline=Deadline.after(60), max_chars=100)\n"
        "assert speech.duration_s > 0.3, speech.duration_s\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'TTS', 'trainer', 'onnx', 'torchaudio', 'coqpit'))\n"
        "assert not bad, bad\n"
        "assert type(voice.engine).__name__ == 'OnnxEngine'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_layers_graph_was_optimized_at_build_and_is_not_optimized_again(default_layer,
                                                                            default_engine,
                                                                            monkeypatch):
    """The export in the layer is onnxruntime's build-time optimization of the edited export
    (this onnxruntime's version), so the engine opens it with optimizations off; a runtime of
    another version would re-optimize it (the default level) and still load it."""
    import onnxruntime

    entry = default_layer.manifest.engine.onnx
    assert entry.optimized is not None and entry.optimized.level == "extended"
    assert entry.optimized.onnxruntime_version == onnxruntime.__version__
    assert entry.optimized.input_sha256 != default_layer.manifest.file(entry.file).sha256
    level = onnxruntime.GraphOptimizationLevel
    options = default_engine._session.get_session_options()
    assert options.graph_optimization_level == level.ORT_DISABLE_ALL
    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")  # as a differently pinned runtime
    other = load_onnx_engine(default_layer, threads=1)
    assert other._session.get_session_options().graph_optimization_level == level.ORT_ENABLE_ALL
    ids = [1, 0, 20, 0, 30, 0, 40, 0, 2]
    assert compare(default_engine.infer(ids, seed=1), other.infer(ids, seed=1)) >= MIN_SNR_DB
