"""Intelligibility: pocketsphinx's word error rate on voxproof's speech vs on piper-tts's.

Both engines speak the committed sentences (tests/data/intelligibility_sentences.txt) from the
raw text, each through its own frontend, at the voice's default scales (noise 0.667, length
1.0, duration noise 0.8): voxproof through ``Voice.synthesize`` (its whole pipeline), Piper
through ``PiperVoice.synthesize`` (piper-tts 1.8's defaults: per-sentence peak normalization,
no added silence). Both are seeded (voxproof per sentence, on its default engine; onnxruntime before Piper's session is
made, in the ``piper_voice`` fixture) so a run is reproducible on one machine; the two engines cannot share noise, so the comparison is between
two samples of the same model. Each engine's audio goes through its own pocketsphinx decoder
(default en-US model, 16 kHz after ``resample_poly``); WER as defined in ``asr.py``.

Gate (issue 2): voxproof's WER is at most 2 points above Piper's.

Gate (issue 11): the default engine is no less intelligible than the torch reference's
22.6 % (2026-11), judged on the noise that figure was measured with: the torch engine's draws
for the test's seeds (``reference_noise.TorchRngNoise``), fed to the default engine. Only the
engine changes, not the sample of the model. On its own seeds the default engine draws other
noise (numpy's PCG64, which the torch engine now shares): another sample, whose WER moves by a
few points from seed to seed on either engine (docs/voice.md, "Intelligibility of the two
engines"; ``scripts/wer_engines.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from asr import Recognizer, edit_distance, reference_words, words
from reference_noise import TorchRngNoise
from voxproof.deadline import Deadline
from voxproof.voice.synthesis import AdaptiveCost, Voice

SENTENCES = Path(__file__).parent / "data" / "intelligibility_sentences.txt"
SEED = 2024
GATE_POINTS = 2.0
REFERENCE_EDITS = 59
"""The torch engine's word errors on its own noise for ``SEED``: 59 of the 261 words, the
22.6 % of 2026-11 (README), reproduced 2026-12-03 by ``scripts/wer_engines.py --engines
torch-rng --bases 2024``."""


def sentences() -> list[str]:
    lines = SENTENCES.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def wer(rows: list[tuple[int, int]]) -> float:
    """Percent: total edits over total reference words."""
    return 100.0 * sum(e for _, e in rows) / sum(n for n, _ in rows)


def voxproof_rows(voice, texts: list[str]) -> list[tuple[int, int]]:
    """(reference words, edits) per sentence, sentence ``k`` spoken with seed ``SEED + 100 k``."""
    asr = Recognizer()
    rows = []
    for k, text in enumerate(texts):
        reference = reference_words(text)
        speech = voice.synthesize(text, deadline=Deadline.after(600), max_chars=1000,
                                  seed=SEED + 100 * k)
        heard = words(asr.transcribe(speech.samples, speech.sample_rate))
        rows.append((len(reference), edit_distance(reference, heard)))
    return rows


@pytest.mark.slow
def test_the_default_engine_is_as_intelligible_as_the_torch_reference(default_voice, capsys):
    pytest.importorskip("torch")  # only for torch's RNG, to redraw the reference's noise
    engine = TorchRngNoise(default_voice.engine)
    voice = Voice(engine, default_voice.phonemizer,
                  AdaptiveCost.for_engine(default_voice.engine.name, default_voice.engine.threads))
    ours = voxproof_rows(voice, sentences())
    with capsys.disabled():
        print(f"\npocketsphinx WER, default engine ({default_voice.engine.name}) on the torch "
              f"reference's noise: {wer(ours):.1f} % ({sum(e for _, e in ours)} errors; the "
              f"reference {REFERENCE_EDITS})")
    assert sum(n for n, _ in ours) == 261
    assert sum(e for _, e in ours) <= REFERENCE_EDITS


@pytest.mark.slow
def test_voxproof_is_as_intelligible_as_piper(default_voice, piper_voice, capsys):
    texts = sentences()
    assert len(texts) >= 20
    ours = voxproof_rows(default_voice, texts)
    asr_piper = Recognizer()
    piper: list[tuple[int, int]] = []
    for text in texts:
        reference = reference_words(text)
        audio = np.concatenate([c.audio_float_array for c in piper_voice.synthesize(text)])
        heard = words(asr_piper.transcribe(audio, piper_voice.config.sample_rate))
        piper.append((len(reference), edit_distance(reference, heard)))
    plain = [i for i, t in enumerate(texts) if not any(c.isdigit() for c in t)]
    numeric = [i for i in range(len(texts)) if i not in plain]
    with capsys.disabled():
        print(f"\npocketsphinx WER over {len(texts)} sentences "
              f"({sum(n for n, _ in ours)} words): voxproof {wer(ours):.1f} %, "
              f"piper-tts {wer(piper):.1f} %")
        for name, index in (("plain", plain), ("numbers", numeric)):
            print(f"  {name} ({len(index)}): voxproof {wer([ours[i] for i in index]):.1f} %, "
                  f"piper-tts {wer([piper[i] for i in index]):.1f} %")
    assert wer(ours) <= wer(piper) + GATE_POINTS
