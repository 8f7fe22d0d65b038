"""espeak-ng phonemes -> Piper phoneme ids, exactly as Piper feeds its voices.

libespeak-ng 1.52.0 from the ``espeakng-loader`` wheel (GPL-3.0, a separate shared library
through ctypes) redoes piper-tts 1.8's steps; how the two espeak-ng builds differ and how that is
bridged, and how often the result equals Piper's: docs/voice.md. Guarantees: one library per
process, every call under one lock, input bounded (:data:`MAX_TEXT_CHARS`); phonemes the id map
lacks are skipped, as Piper does, but counted in :attr:`PhonemeIds.unknown` and logged (code
points only, never text).

Example:
    >>> from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP  # test-only reference map
    >>> phonemizer = Phonemizer(DEFAULT_PHONEME_ID_MAP)
    >>> phonemizer.phonemize("Hi, you.")
    [['h', 'ˈ', 'a', 'ɪ', ',', ' ', 'j', 'u', 'ː', '.']]
    >>> phonemizer.to_ids("Hi.").sentences
    ((1, 0, 20, 0, 120, 0, 14, 0, 74, 0, 10, 0, 2),)
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from voxproof.errors import LayerError

__all__ = ["ESPEAK_VOICE", "MAX_TEXT_CHARS", "PhonemeIds", "Phonemizer", "phonemes_to_ids"]

_LOG = logging.getLogger(__name__)

#: The espeak-ng voice of the default layer (Piper's ``espeak.voice``).
ESPEAK_VOICE: Final = "en-us"
#: The longest text one call accepts (a piece of :mod:`voxproof.text` is at most 250).
MAX_TEXT_CHARS: Final = 1000
PAD: Final = "_"
BOS: Final = "^"
EOS: Final = "$"

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_CHARS_UTF8: Final = 1
_PHONEMES_IPA: Final = 0x02
_SEPARATOR: Final = "\ue000"  # private use: never part of espeak-ng's IPA or mnemonics
_WITH_SEPARATOR: Final = ord(_SEPARATOR) << 8
_LINKING: Final = ";"  # espeak-ng's mnemonic for the linking glide ...
_LINKING_IPA: Final = "ʲ"  # ... which Piper's espeak-ng writes as this
_PAUSES: Final = re.compile(r"^(?:_[:!]?)+")
_LANGUAGE_FLAG: Final = re.compile(r"\([^)]+\)")
_CLOSERS: Final = "\"')]} \t"
_TERMINATORS: Final = {".": ".", "?": "?", "!": "!", ",": ",", ":": ":", ";": ";",
                       "—": ";", "–": ";"}
_ENDS_SENTENCE: Final = frozenset(".?!")


@dataclass(frozen=True, slots=True)
class PhonemeIds:
    """Ids for one text: one sequence per sentence, each framed ``^ _ ... _ $``."""

    sentences: tuple[tuple[int, ...], ...]
    unknown: tuple[tuple[str, int], ...] = ()
    """Phonemes the id map lacks (skipped, as Piper does) with how often each occurred."""


@dataclass(frozen=True, slots=True)
class _Clause:
    phonemes: str
    terminator: str
    end_of_sentence: bool


class Phonemizer:
    """Text -> Piper phonemes -> the voice's phoneme ids.

    Parameters
    ----------
    id_map:
        The voice's ``phoneme_id_map`` (symbol -> ids), as the model layer ships it. Must hold
        ``_``, ``^`` and ``$``.
    voice:
        espeak-ng voice name (the layer's ``espeak.voice``).
    """

    def __init__(self, id_map: Mapping[str, Sequence[int]], *, voice: str = ESPEAK_VOICE) -> None:
        self._id_map = _checked_map(id_map)
        self._voice = voice

    @property
    def id_map(self) -> Mapping[str, tuple[int, ...]]:
        """The voice's phoneme id map (symbol -> ids), as checked at construction."""
        return MappingProxyType(self._id_map)

    def phonemize(self, text: str) -> list[list[str]]:
        """Piper's phonemes of *text*, one list per sentence (empty sentences dropped)."""
        sentences: list[list[str]] = []
        current: list[str] = []
        for clause in _ESPEAK.clauses(self._voice, text):
            said = _LANGUAGE_FLAG.sub("", clause.phonemes) + clause.terminator
            if clause.terminator in (",", ":", ";"):
                said += " "
            current.extend(unicodedata.normalize("NFD", said))
            if clause.end_of_sentence:
                sentences.append(current)
                current = []
        sentences.append(current)
        return [s for s in sentences if s]

    def to_ids(self, text: str, *, max_ids: int | None = None) -> PhonemeIds:
        """The voice's ids for *text*: one framed sequence per sentence.

        With ``max_ids``, a sentence whose framed ids would be longer is cut into several
        framed sequences of at most ``max_ids`` ids, at the last word boundary that fits (else
        between phonemes); the space at a cut is dropped.
        """
        unknown: Counter[str] = Counter()
        sentences = tuple(
            phonemes_to_ids(chunk, self._id_map, unknown)
            for phonemes in self.phonemize(text)
            for chunk in self._chunks(phonemes, max_ids)
        )
        if unknown:
            _LOG.warning("phonemes missing from the id map: %s",
                         ", ".join(f"U+{ord(p[0]):04X}x{n}" for p, n in unknown.items()))
        return PhonemeIds(sentences, tuple(sorted(unknown.items())))

    def _chunks(self, phonemes: list[str], max_ids: int | None) -> list[list[str]]:
        """*phonemes* cut so that each part's framed ids fit in ``max_ids``."""
        if max_ids is None:
            return [phonemes]
        pad = len(self._id_map[PAD])
        frame = len(self._id_map[BOS]) + pad + len(self._id_map[EOS])
        cost = [len(self._id_map[p]) + pad if p in self._id_map else 0 for p in phonemes]
        if max_ids < frame + max(cost, default=0):
            raise ValueError(f"max_ids={max_ids} cannot hold a single framed phoneme")
        chunks: list[list[str]] = []
        start, used, space = 0, frame, -1  # space: index of the last " " in the current part
        for index, phoneme in enumerate(phonemes):
            if used + cost[index] > max_ids:
                tail = sum(cost[space + 1:index + 1]) if space > start else max_ids
                if frame + tail <= max_ids:  # cut at the last word boundary
                    chunks.append(phonemes[start:space])
                    start, used = space + 1, frame + tail - cost[index]
                else:  # no boundary that fits: cut between phonemes
                    chunks.append(phonemes[start:index])
                    start, used = index, frame
                space = -1
            if phoneme == " ":
                space = index
            used += cost[index]
        chunks.append(phonemes[start:])
        return [c for c in chunks if c]


def phonemes_to_ids(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]],
                    unknown: Counter[str] | None = None) -> tuple[int, ...]:
    """``^ _ p1 _ ... pn _ $`` as ids; phonemes the map lacks are skipped and counted."""
    ids: list[int] = [*id_map[BOS], *id_map[PAD]]
    for phoneme in phonemes:
        if phoneme not in id_map:
            if unknown is not None:
                unknown[phoneme] += 1
            continue
        ids.extend(id_map[phoneme])
        ids.extend(id_map[PAD])
    ids.extend(id_map[EOS])
    return tuple(ids)


def _checked_map(id_map: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    checked: dict[str, tuple[int, ...]] = {}
    for symbol, ids in id_map.items():
        if not isinstance(symbol, str) or not symbol or not isinstance(ids, Sequence) or not ids \
                or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise LayerError("the phoneme id map has an entry that is not symbol -> [ids >= 0]")
        checked[symbol] = tuple(ids)
    missing = [s for s in (PAD, BOS, EOS) if s not in checked]
    if missing:
        raise LayerError(f"the phoneme id map lacks {', '.join(missing)}")
    return checked


# --- the one libespeak-ng --------------------------------------------------------------------
class _Espeak:
    """libespeak-ng from espeakng-loader, loaded and initialized on first use, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None

    def clauses(self, voice: str, text: str) -> list[_Clause]:
        """espeak-ng's clauses of *text* with Piper's terminators (see the module docstring)."""
        data = _encoded(text)
        with self._lock:
            lib = self._library()
            if lib.espeak_SetVoiceByName(voice.encode("ascii")) != 0:
                raise LayerError(f"espeak-ng has no voice {voice!r}")
            ipa = self._run(lib, data, _PHONEMES_IPA | _WITH_SEPARATOR)
            mnemonics = self._run(lib, data, _WITH_SEPARATOR)
        clauses: list[_Clause] = []
        held = ""  # espeak-ng reads one character past a clause and keeps it for the next
        for (phonemes, consumed, at_end), (names, _, _) in zip(ipa, mnemonics, strict=True):
            own = held + (consumed if at_end else consumed[:-1])
            held = "" if at_end else consumed[-1:]
            clauses.append(_Clause(_with_linking(phonemes, names), *_terminator(own, at_end)))
        return clauses

    def _library(self) -> ctypes.CDLL:
        if self._lib is None:
            import espeakng_loader  # the wheel that ships libespeak-ng and its data

            try:
                lib = ctypes.CDLL(espeakng_loader.get_library_path())
                data_path = espeakng_loader.get_data_path().encode()
            except (OSError, RuntimeError):
                raise LayerError("espeak-ng (espeakng-loader) is not installed") from None
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                              ctypes.c_int]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                                  ctypes.c_int]
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0) <= 0:
                raise LayerError("espeak-ng did not initialize")
            self._lib = lib
        return self._lib

    @staticmethod
    def _run(lib: ctypes.CDLL, data: bytes, mode: int) -> list[tuple[str, str, bool]]:
        """(phonemes, consumed text, at end) per clause, as ``espeak_TextToPhonemes`` gives."""
        buffer = ctypes.create_string_buffer(data, len(data) + 1)
        base = ctypes.addressof(buffer)
        pointer = ctypes.c_void_p(base)
        out: list[tuple[str, str, bool]] = []
        while pointer.value:
            start = pointer.value - base
            phonemes = lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode) or b""
            end = pointer.value - base if pointer.value else len(data)
            consumed = data[start:end].decode("utf-8", errors="replace")
            out.append((phonemes.decode("utf-8", errors="replace"), consumed, not pointer.value))
        return out


def _encoded(text: str) -> bytes:
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"phonemize at most {MAX_TEXT_CHARS} characters per call")
    if any(c in text for c in "\x00\n\r"):
        raise ValueError("text for espeak-ng is one piece: no NUL and no line breaks")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text for espeak-ng must be valid Unicode (no lone surrogates)") \
            from None


def _with_linking(ipa: str, names: str) -> str:
    """IPA (with separators) -> Piper's IPA: separators gone, ``ʲ`` where espeak has ``;``.

    Both passes print the same phonemes in the same slots: the IPA slot of a ``;`` is empty
    (pauses, whose names start with ``_``, may be glued in front of the next name). If the
    slots do not line up, the IPA is used without the glide and the miss is logged.
    """
    plain = ipa.replace(_SEPARATOR, "")
    if _LINKING not in names:
        return plain
    ipa_words, name_words = ipa.split(" "), names.split(" ")
    out_words: list[str] = []
    for ipa_word, name_word in zip(ipa_words, name_words, strict=False):
        symbols, slots = ipa_word.split(_SEPARATOR), name_word.split(_SEPARATOR)
        if len(ipa_words) != len(name_words) or len(symbols) != len(slots):
            _LOG.warning("espeak-ng passes do not line up; linking glide not restored")
            return plain
        out_words.append("".join(
            _LINKING_IPA if not symbol and _PAUSES.sub("", name) == _LINKING else symbol
            for symbol, name in zip(symbols, slots, strict=True)
        ))
    return " ".join(out_words)


def _terminator(clause: str, at_end: bool) -> tuple[str, bool]:
    """Piper's (terminator, end of sentence) for a clause, from the clause's own text.

    The terminator is the first mark of the clause's final punctuation run (closing quotes
    and brackets after it do not count), provided a letter or digit comes before it: marks
    with nothing before them are skipped or spoken by espeak-ng, not clause ends.
    """
    text = clause.rstrip(_CLOSERS)
    run_start = len(text)
    while run_start and text[run_start - 1] in _TERMINATORS:
        run_start -= 1
    run = text[run_start:]
    if not run or not any(c.isalnum() for c in text[:run_start]):
        return "", at_end
    if run.startswith(".."):
        return "", False  # an ellipsis: espeak-ng pauses but neither terminates nor ends
    terminator = _TERMINATORS[run[0]]
    return terminator, terminator in _ENDS_SENTENCE


_ESPEAK: Final = _Espeak()
