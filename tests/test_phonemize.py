"""voxproof.voice.phonemize against Piper's own phonemizer (piper-tts, a test-only reference)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from piper.phoneme_ids import phonemes_to_ids as piper_phonemes_to_ids
from piper.phonemize_espeak import EspeakPhonemizer
from voxproof.errors import LayerError
from voxproof.voice.phonemize import MAX_TEXT_CHARS, Phonemizer


def piper_phonemes(piper_reference: EspeakPhonemizer, text: str) -> list[list[str]]:
    """Piper's sentences; empty ones dropped, as PiperVoice.phonemize/synthesize do."""
    return [s for s in piper_reference.phonemize("en-us", text) if s]


# Clause ends, quotes, brackets, ellipses, dashes, stray marks, and the linking glide.
EDGE_CASES = [
    "Hello, world! How are you? Fine; thanks: really.",
    "Wait... are you sure?",
    "Well, I suppose... maybe.",
    "end...",
    "Really?! Yes. No!! Okay?.",
    'She said, "I will be there soon." Then she left.',
    "He replied, 'Not if I get there first.'",
    '"Really?" she asked, with a smile.',
    "(a, b) and (c.) then d.",
    "with (this): more",
    "hi (e.g.): more",
    "a, . b",
    "a. , b",
    "fatal.\", )",
    "x , , y; z",
    "word — word – word - word -- word",
    "Yes. no. The U.S. Army",
    "one, two, three",
    "Three apples, the old man, happy ending, being, video, radio, reality, ski area.",
    "We agree on a free entry to the idea of money orders.",
    "Café au lait, s'il vous plaît, naïve Zürich señor.",
    "tab\tseparated",
    "Mr. Smith met Dr. Brown at 7:30 pm.",
    "It costs $4.50, i.e. 4 dollars 50.",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_phonemes_equal_piper_on_the_same_text(phonemizer: Phonemizer,
                                               piper_reference: EspeakPhonemizer,
                                               text: str) -> None:
    assert phonemizer.phonemize(text) == piper_phonemes(piper_reference, text)


def test_linking_glide_is_restored(phonemizer: Phonemizer) -> None:
    # libespeak-ng 1.52.0 alone writes nothing here; Piper's espeak-ng writes ʲ.
    assert "".join(phonemizer.phonemize("three apples")[0]) == "θɹˈiːʲ ˈæpəlz"


def test_ids_are_framed_like_piper(phonemizer: Phonemizer, piper_reference: EspeakPhonemizer,
                                   voice_id_map: dict[str, list[int]]) -> None:
    text = "Hello there, friend. How are you?"
    expected = tuple(tuple(piper_phonemes_to_ids(s, voice_id_map))
                     for s in piper_phonemes(piper_reference, text))
    result = phonemizer.to_ids(text)
    assert result.sentences == expected
    assert len(result.sentences) == 2
    for ids in result.sentences:
        assert ids[:2] == (1, 0) and ids[-1] == 2  # ^ _ ... $
        assert all(i == 0 for i in ids[1:-1:2])      # a PAD after every phoneme
    assert result.unknown == ()


def test_unknown_phonemes_are_skipped_counted_and_logged(
        caplog: pytest.LogCaptureFixture, voice_id_map: dict[str, list[int]]) -> None:
    without_i = {k: v for k, v in voice_id_map.items() if k != "ɪ"}
    with caplog.at_level(logging.WARNING):
        result = Phonemizer(without_i).to_ids("This is it.")
    assert result.unknown == (("ɪ", 3),)
    full = Phonemizer(voice_id_map).to_ids("This is it.").sentences[0]
    assert len(result.sentences[0]) == len(full) - 2 * 3  # each one: phoneme + PAD
    assert "U+026A" in caplog.text and "This is it" not in caplog.text


@pytest.mark.parametrize("bad", [
    {"_": [0], "^": [1]},                  # no EOS
    {"_": [0], "^": [1], "$": []},          # no id
    {"_": [0], "^": [1], "$": [-2]},        # negative id
    {"_": [0], "^": [1], "$": ["2"]},       # not an int
    {"_": [0], "^": [1], "$": [2], "": [3]},  # empty symbol
])
def test_a_broken_id_map_is_a_layer_error(bad: dict[str, list[object]]) -> None:
    with pytest.raises(LayerError):
        Phonemizer(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["x" * (MAX_TEXT_CHARS + 1), "a\x00b", "a\nb", "a\ud800b"])
def test_input_is_bounded_and_one_piece(phonemizer: Phonemizer, bad: str) -> None:
    with pytest.raises(ValueError):
        phonemizer.phonemize(bad)


def test_concurrent_calls_give_the_same_results(phonemizer: Phonemizer) -> None:
    texts = EDGE_CASES[:8]
    expected = [phonemizer.to_ids(t) for t in texts]
    results: dict[int, list[object]] = {}

    def work(worker: int) -> None:
        results[worker] = [phonemizer.to_ids(t) for t in texts * 3]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == expected * 3 for n in range(4))


def test_runs_without_piper_installed() -> None:
    # piper-tts is a test-only reference: block its import and phonemize in a fresh process.
    code = (
        "import sys; sys.modules['piper'] = None\n"
        "from voxproof.voice.phonemize import Phonemizer\n"
        "m = {'_': [0], '^': [1], '$': [2], 'h': [20], 'ˈ': [120], 'a': [14], 'ɪ': [74], "
        "'.': [10]}\n"
        "print(Phonemizer(m).to_ids('Hi.').sentences)\n"
    )
    functions = Path(__file__).resolve().parents[1] / "functions"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(functions)})
    assert out.stdout.strip() == "((1, 0, 20, 0, 120, 0, 14, 0, 74, 0, 10, 0, 2),)"


def _inner(ids: tuple[int, ...]) -> list[int]:
    return list(ids[2:-1])  # without "^ _" in front and "$" behind


def test_long_sentences_are_cut_to_max_ids_at_word_boundaries(phonemizer: Phonemizer) -> None:
    text = "The quick brown fox jumps over the lazy dog and runs far away into the dark forest."
    (whole,) = phonemizer.to_ids(text).sentences
    parts = phonemizer.to_ids(text, max_ids=60).sentences
    assert len(parts) > 1 and all(len(p) <= 60 for p in parts)
    assert all(p[:2] == whole[:2] and p[-1] == whole[-1] for p in parts)  # each one framed
    gap = [*phonemizer.id_map[" "], *phonemizer.id_map["_"]]  # the dropped space at each cut
    joined = _inner(parts[0])
    for part in parts[1:]:
        joined += gap + _inner(part)
    assert joined == _inner(whole)
    assert phonemizer.to_ids(text, max_ids=len(whole)).sentences == (whole,)


def test_a_word_longer_than_max_ids_is_cut_between_phonemes(phonemizer: Phonemizer) -> None:
    (whole,) = phonemizer.to_ids("Supercalifragilisticexpialidocious.").sentences
    parts = phonemizer.to_ids("Supercalifragilisticexpialidocious.", max_ids=15).sentences
    assert all(len(p) <= 15 for p in parts)
    assert [i for p in parts for i in _inner(p)] == _inner(whole)


def test_max_ids_must_hold_a_framed_phoneme(phonemizer: Phonemizer) -> None:
    with pytest.raises(ValueError):
        phonemizer.to_ids("Hi.", max_ids=4)
