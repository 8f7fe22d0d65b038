"""Text in: validate, normalize, expand and split what a caller wants spoken. Pure, no I/O.

The policy, step by step and character class by class: docs/text.md. Guarantees of
:func:`prepare`: length is checked first, from ``len()`` alone (:class:`~voxproof.errors.TextTooLong`
past ``max_chars``, at most :data:`MAX_CHARS_CEILING`); every refused character is a named
:class:`~voxproof.errors.TextError` giving its position, code point and Unicode name, never the
surrounding text; markup is never interpreted; every piece holds only :data:`PIECE_CHARACTERS`,
some letter, and at most :data:`MAX_PIECE_CHARS` characters.

Example:
    >>> prepared = prepare("Dr. Smith paid $4.50\u200b.", max_chars=1000)
    >>> prepared.pieces
    ('Doctor Smith paid four dollars and fifty cents.',)
    >>> prepared.removed[0].code_point, prepared.removed[0].position
    ('U+200B', 20)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Final, NoReturn

from pydantic import AfterValidator, Field

from voxproof.errors import (
    ControlCharacter,
    ForbiddenCharacter,
    FormatCharacter,
    PrivateUseCharacter,
    SurrogateCharacter,
    TextEmpty,
    TextTooLong,
    UnassignedCharacter,
    UnsupportedCharacter,
)
from voxproof.expand import INPUT_CHARACTERS, OUTPUT_CHARACTERS, expand

__all__ = [
    "MAX_CHARS_CEILING",
    "MAX_PIECE_CHARS",
    "PIECE_CHARACTERS",
    "PreparedText",
    "Removal",
    "prepare",
    "speech_text",
]

#: The largest ``max_chars`` any entry point may pass (expansion and splitting stay bounded).
MAX_CHARS_CEILING: Final = 100_000
#: The longest piece :func:`prepare` returns (after expansion): about 15 s of speech.
MAX_PIECE_CHARS: Final = 250
#: Every character a piece can hold: letters, space and the punctuation espeak-ng uses.
PIECE_CHARACTERS: Final = OUTPUT_CHARACTERS

#: Invisible characters removed (and reported) because dropping them changes nothing heard.
_HARMLESS: Final = {
    "\u200b": "zero-width space",
    "\u200c": "zero-width non-joiner",
    "\u200d": "zero-width joiner",
    "\u2060": "word joiner",
    "\u00ad": "soft hyphen",
    "\ufeff": "byte order mark",
}
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE: Final = {"\t": " ", "\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n\n"}
_PLACEHOLDER_NAMES: Final = {"Cc": "<control>", "Cs": "<surrogate>", "Co": "<private use>",
                             "Cn": "<unassigned>"}
_NOT_ALLOWED: Final = re.compile(
    "[^" + "".join(re.escape(c) for c in sorted(INPUT_CHARACTERS | {"\n"})) + "]"
)
_PARAGRAPH_BREAK: Final = re.compile(r"\n[ \n]*\n")
_SPACES: Final = re.compile(r"\s+")
_SENTENCE_END: Final = re.compile(
    r"(?<![.!?])[.!?]++[\"')]*+(?= [\"'(]*+[A-Z\u00c0-\u00d6\u00d8-\u00de])"
)
_CLAUSE_END: Final = re.compile(r"(?<=[,;:]) ")


@dataclass(frozen=True, slots=True)
class Removal:
    """One harmless invisible character that :func:`prepare` dropped."""

    position: int
    """Index in the caller's original string."""
    code_point: str
    """``"U+200B"``."""
    name: str
    """Unicode name, ``"ZERO WIDTH SPACE"``."""
    reason: str
    """Why it could go: ``"zero-width space"``, ``"soft hyphen"``, ``"byte order mark"``..."""


@dataclass(frozen=True, slots=True)
class PreparedText:
    """What :func:`prepare` made of a caller's text."""

    normalized: str
    """The whole text after NFKC, policy and expansion: words, single spaces, punctuation;
    paragraphs separated by ``"\\n"``."""
    pieces: tuple[str, ...]
    """Sentences or clauses of at most :data:`MAX_PIECE_CHARS` characters, in order; the
    units of synthesis and of deadline checks."""
    removed: tuple[Removal, ...]
    """Invisible characters dropped from the caller's text, in order."""


def prepare(text: str, *, max_chars: int) -> PreparedText:
    """Validate, normalize, expand and split *text* for English speech.

    Parameters
    ----------
    text:
        What the caller wants spoken (any ``str``, including lone surrogates).
    max_chars:
        The entry point's limit in code points, 1 to :data:`MAX_CHARS_CEILING`.

    Returns
    -------
    PreparedText
        Pieces that hold only :data:`PIECE_CHARACTERS`, each at least one letter.

    Raises
    ------
    TextTooLong, TextEmpty, ForbiddenCharacter (its subclasses), UnsupportedCharacter
        Each with the position and code point of the offending character where there is one.

    Example:
        >>> prepare("Meet me at 7:30 pm.", max_chars=200).pieces
        ('Meet me at seven thirty p.m.',)
    """
    if not isinstance(max_chars, int) or not 1 <= max_chars <= MAX_CHARS_CEILING:
        raise ValueError(f"max_chars must be an int from 1 to {MAX_CHARS_CEILING}")
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    if len(text) > max_chars:
        raise TextTooLong(
            f"text is {len(text)} characters; the limit here is {max_chars}",
            length=len(text), limit=max_chars,
        )
    kept, positions, removed = _apply_policy(text)
    normalized = _normalize(text, kept, positions)
    paragraphs = [expand(_SPACES.sub(" ", p).strip()) for p in _PARAGRAPH_BREAK.split(normalized)]
    paragraphs = [p for p in paragraphs if p]
    pieces = tuple(piece for p in paragraphs for piece in _split(p) if _has_letter(piece))
    if not pieces:
        raise TextEmpty("text has nothing to speak (no letters or digits)")
    return PreparedText("\n".join(paragraphs), pieces, tuple(removed))


def speech_text(max_chars: int) -> Any:
    """A ``str`` type for pydantic v2 request models that :func:`prepare` would accept.

    The validator raises the same :class:`~voxproof.errors.TextError` subclasses as
    :func:`prepare` (pydantic passes them through unwrapped), so an edge answers with the
    same code and position; the JSON schema carries ``maxLength``.

    Example:
        >>> from pydantic import BaseModel
        >>> class SpeechRequest(BaseModel):
        ...     text: speech_text(1000)
        >>> SpeechRequest(text="Hello.").text
        'Hello.'
    """

    def check(value: str) -> str:
        prepare(value, max_chars=max_chars)
        return value

    return Annotated[str, Field(strict=True, json_schema_extra={"maxLength": max_chars}),
                     AfterValidator(check)]


# --- step 3: character policy ---------------------------------------------------------------
def _apply_policy(text: str) -> tuple[list[str], list[int], list[Removal]]:
    """Judge every character; return the kept ones (one char each), positions, removals."""
    kept: list[str] = []
    positions: list[int] = []
    removed: list[Removal] = []
    for position, char in enumerate(text):
        if " " <= char <= "~":  # printable ASCII: the common case, nothing to judge
            kept.append(char)
            positions.append(position)
        elif char in _WHITESPACE:
            if char == "\r" and text[position + 1:position + 2] == "\n":
                continue  # CR LF is one line break
            for replacement in _WHITESPACE[char]:
                kept.append(replacement)
                positions.append(position)
        elif char in _HARMLESS:
            code_point, name = _describe(char)
            removed.append(Removal(position, code_point, name, _HARMLESS[char]))
        else:
            _reject_forbidden(char, position)
            kept.append(char)
            positions.append(position)
    return kept, positions, removed


def _reject_forbidden(char: str, position: int) -> None:
    category = unicodedata.category(char)
    if category == "Cc":
        raise _forbidden(ControlCharacter, char, position, "is a control character")
    if category == "Cf":
        what = ("is a bidirectional control character" if char in _BIDI
                else "is an invisible format character")
        raise _forbidden(FormatCharacter, char, position, what)
    if category == "Co":
        raise _forbidden(PrivateUseCharacter, char, position, "is a private-use character")
    if category == "Cs":
        raise _forbidden(SurrogateCharacter, char, position,
                         "is a lone surrogate (not a character)")
    if category == "Cn":
        raise _forbidden(UnassignedCharacter, char, position,
                         "is unassigned or a noncharacter in Unicode")


def _forbidden(kind: type[ForbiddenCharacter], char: str, position: int,
               what: str) -> ForbiddenCharacter:
    code_point, name = _describe(char)
    return kind(f"character {code_point} ({name}) at position {position} {what}",
                position=position, code_point=code_point, name=name)


def _describe(char: str) -> tuple[str, str]:
    name = unicodedata.name(char, None) or _PLACEHOLDER_NAMES.get(
        unicodedata.category(char), "<unnamed>")
    return f"U+{ord(char):04X}", name


# --- step 2: NFKC with positions, then the allow-list ---------------------------------------
def _normalize(text: str, kept: list[str], positions: list[int]) -> str:
    """NFKC of the kept characters, checked against the allow-list with original positions."""
    joined = "".join(kept)
    if unicodedata.is_normalized("NFKC", joined):  # nearly always: one output char per input
        bad = _NOT_ALLOWED.search(joined)
        if bad is not None:
            _unsupported(text, kept, positions, [bad.start()])
        return joined
    runs: list[list[int]] = []  # indices into kept: a base character and its combining marks
    for index, char in enumerate(kept):
        if runs and unicodedata.combining(char):
            runs[-1].append(index)
        else:
            runs.append([index])
    out: list[str] = []
    for run in runs:
        piece = unicodedata.normalize("NFKC", "".join(kept[i] for i in run))
        if _NOT_ALLOWED.search(piece):
            _unsupported(text, kept, positions, run)
        out.append(piece)
    return "".join(out)


def _unsupported(text: str, kept: list[str], positions: list[int], run: list[int]) -> NoReturn:
    """Raise for the first character of *run* that is not allowed on its own."""
    culprit = next(
        (i for i in run if _NOT_ALLOWED.search(unicodedata.normalize("NFKC", kept[i]))), run[0]
    )
    position = positions[culprit]
    code_point, name = _describe(text[position])
    raise UnsupportedCharacter(
        f"character {code_point} ({name}) at position {position} is not supported "
        "for English speech",
        position=position, code_point=code_point, name=name,
    )


# --- step 5: sentences, clauses, pieces -----------------------------------------------------
def _has_letter(piece: str) -> bool:
    return any(c.isalpha() for c in piece)


def _split(paragraph: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(paragraph):
        if not end.group(0).rstrip("\"')").endswith(".."):  # an ellipsis does not end one
            pieces.extend(_bounded(paragraph[start:end.end()].strip()))
            start = end.end()
    pieces.extend(_bounded(paragraph[start:].strip()))
    return [p for p in pieces if p]


def _bounded(sentence: str) -> list[str]:
    """The sentence itself, or its clauses (else words, else slices) packed to the bound."""
    if len(sentence) <= MAX_PIECE_CHARS:
        return [sentence]
    return _pack(_CLAUSE_END.split(sentence), then=lambda clause: _pack(clause.split(" "),
                 then=lambda word: [word[i:i + MAX_PIECE_CHARS]
                                    for i in range(0, len(word), MAX_PIECE_CHARS)]))


def _pack(parts: list[str], then: Any) -> list[str]:
    """Join consecutive *parts* with spaces while they fit; hand oversized ones to *then*."""
    out: list[str] = []
    current = ""
    for part in parts:
        if len(part) > MAX_PIECE_CHARS:
            out.extend([current] if current else [])
            out.extend(then(part))
            current = ""
        elif current and len(current) + 1 + len(part) > MAX_PIECE_CHARS:
            out.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    out.extend([current] if current else [])
    return [p for p in (piece.strip() for piece in out) if p]
