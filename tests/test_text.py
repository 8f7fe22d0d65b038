"""voxproof.text and voxproof.expand: every bad-input class, removals, expansion, splitting."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from voxproof.errors import (
    ControlCharacter,
    ForbiddenCharacter,
    FormatCharacter,
    PrivateUseCharacter,
    SurrogateCharacter,
    TextEmpty,
    TextError,
    TextTooLong,
    UnassignedCharacter,
    UnsupportedCharacter,
)
from voxproof.text import (
    MAX_CHARS_CEILING,
    MAX_PIECE_CHARS,
    PIECE_CHARACTERS,
    PreparedText,
    prepare,
    speech_text,
)

LIMIT = 5_000


def said(text: str) -> str:
    return prepare(text, max_chars=LIMIT).normalized


# --- length ---------------------------------------------------------------------------------
def test_one_megabyte_is_refused_in_under_50_ms_before_any_scan() -> None:
    # Forbidden characters up front: a scan would raise ForbiddenCharacter, not TextTooLong.
    text = "\u202e\x00" + "a" * 999_998
    start = time.perf_counter()
    with pytest.raises(TextTooLong) as caught:
        prepare(text, max_chars=LIMIT)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.050, f"took {elapsed * 1000:.1f} ms"
    assert caught.value.details == {"length": 1_000_000, "limit": LIMIT}
    assert caught.value.status == 413


def test_the_limit_is_the_callers() -> None:
    text = "Hello there. " * 10  # 130 characters
    assert prepare(text, max_chars=130).pieces
    with pytest.raises(TextTooLong):
        prepare(text, max_chars=129)


@pytest.mark.parametrize("bad", [0, -1, MAX_CHARS_CEILING + 1, 2.5, "100"])
def test_max_chars_must_be_a_sane_int(bad: object) -> None:
    with pytest.raises(ValueError):
        prepare("Hello.", max_chars=bad)  # type: ignore[arg-type]


# --- character policy -----------------------------------------------------------------------
FORBIDDEN = [
    # (character, error type, Unicode name or placeholder)
    ("\x00", ControlCharacter, "<control>"),
    ("\x07", ControlCharacter, "<control>"),
    ("\x0b", ControlCharacter, "<control>"),  # vertical tab: not one of tab/LF/CR
    ("\x1b", ControlCharacter, "<control>"),  # ESC: terminal escape sequences
    ("\x7f", ControlCharacter, "<control>"),
    ("\x85", ControlCharacter, "<control>"),  # C1 next line
    ("\u202a", FormatCharacter, "LEFT-TO-RIGHT EMBEDDING"),
    ("\u202b", FormatCharacter, "RIGHT-TO-LEFT EMBEDDING"),
    ("\u202c", FormatCharacter, "POP DIRECTIONAL FORMATTING"),
    ("\u202d", FormatCharacter, "LEFT-TO-RIGHT OVERRIDE"),
    ("\u202e", FormatCharacter, "RIGHT-TO-LEFT OVERRIDE"),
    ("\u2066", FormatCharacter, "LEFT-TO-RIGHT ISOLATE"),
    ("\u2067", FormatCharacter, "RIGHT-TO-LEFT ISOLATE"),
    ("\u2068", FormatCharacter, "FIRST STRONG ISOLATE"),
    ("\u2069", FormatCharacter, "POP DIRECTIONAL ISOLATE"),
    ("\u200e", FormatCharacter, "LEFT-TO-RIGHT MARK"),
    ("\u200f", FormatCharacter, "RIGHT-TO-LEFT MARK"),
    ("\u061c", FormatCharacter, "ARABIC LETTER MARK"),
    ("\u2061", FormatCharacter, "FUNCTION APPLICATION"),
    ("\U000e0041", FormatCharacter, "TAG LATIN CAPITAL LETTER A"),  # ASCII smuggling
    ("\ue000", PrivateUseCharacter, "<private use>"),
    ("\uf8ff", PrivateUseCharacter, "<private use>"),
    ("\U000f0000", PrivateUseCharacter, "<private use>"),
    ("\U0010fffd", PrivateUseCharacter, "<private use>"),
    ("\ud800", SurrogateCharacter, "<surrogate>"),
    ("\udfff", SurrogateCharacter, "<surrogate>"),
    ("\u0378", UnassignedCharacter, "<unassigned>"),
    ("\ufffe", UnassignedCharacter, "<unassigned>"),  # noncharacter
    ("\U0010ffff", UnassignedCharacter, "<unassigned>"),
    ("\U0001ffff", UnassignedCharacter, "<unassigned>"),
    ("Ω", UnsupportedCharacter, "GREEK CAPITAL LETTER OMEGA"),
    ("你", UnsupportedCharacter, "CJK UNIFIED IDEOGRAPH-4F60"),
    ("\U0001f600", UnsupportedCharacter, "GRINNING FACE"),
    ("§", UnsupportedCharacter, "SECTION SIGN"),
    ("½", UnsupportedCharacter, "VULGAR FRACTION ONE HALF"),  # NFKC: 1 U+2044 2
    ("ł", UnsupportedCharacter, "LATIN SMALL LETTER L WITH STROKE"),
]


@pytest.mark.parametrize(("char", "kind", "name"), FORBIDDEN,
                         ids=[f"U+{ord(c):04X}" for c, _, _ in FORBIDDEN])
def test_each_bad_character_class_has_its_error_with_position(
        char: str, kind: type[TextError], name: str) -> None:
    # "…" and "ﬁ" grow under NFKC: the position must still be the one in the caller's string.
    text = "…ﬁne " + char + " end"
    with pytest.raises(kind) as caught:
        prepare(text, max_chars=LIMIT)
    err = caught.value
    code_point = f"U+{ord(char):04X}"
    assert type(err) is kind
    assert err.details == {"position": 5, "code_point": code_point, "name": name}
    assert code_point in err.message and name in err.message and "position 5" in err.message
    assert err.status == 422


def test_forbidden_classes_share_a_base_and_have_distinct_codes() -> None:
    kinds = {ControlCharacter, FormatCharacter, PrivateUseCharacter, SurrogateCharacter,
             UnassignedCharacter}
    assert all(issubclass(k, ForbiddenCharacter) for k in kinds)
    assert len({k.code for k in kinds | {UnsupportedCharacter}}) == 6


def test_a_combining_mark_outside_the_allow_list_is_named_where_it_sits() -> None:
    # e + circumflex + dot below composes to U+1EC7, outside Latin-1: blame the first mark.
    with pytest.raises(UnsupportedCharacter) as caught:
        prepare("Viet e\u0302\u0323 x", max_chars=LIMIT)
    assert caught.value.details["position"] == 6
    assert caught.value.details["code_point"] == "U+0302"


def test_error_messages_never_echo_the_input() -> None:
    secret = "my password is hunter2 " * 20
    with pytest.raises(FormatCharacter) as caught:
        prepare(secret + "\u202e", max_chars=LIMIT)
    body = str(caught.value.to_dict())
    assert "hunter2" not in body and "\u202e" not in body
    assert len(caught.value.message) < 120


@pytest.mark.parametrize(("char", "reason"), [
    ("\u200b", "zero-width space"),
    ("\u200c", "zero-width non-joiner"),
    ("\u200d", "zero-width joiner"),
    ("\u2060", "word joiner"),
    ("\u00ad", "soft hyphen"),
    ("\ufeff", "byte order mark"),
])
def test_harmless_invisibles_are_removed_and_reported(char: str, reason: str) -> None:
    prepared = prepare(f"ﬁne{char}st and{char} more.", max_chars=LIMIT)
    assert prepared.pieces == ("finest and more.",)
    assert [(r.position, r.code_point, r.reason) for r in prepared.removed] == [
        (3, f"U+{ord(char):04X}", reason), (10, f"U+{ord(char):04X}", reason)]
    assert prepared.removed[0].name == unicodedata.name(char)


def test_pieces_without_letters_are_dropped() -> None:
    prepared = prepare("...\n\nHello. Bye.\n\n!!!", max_chars=LIMIT)
    assert prepared.pieces == ("Hello.", "Bye.")
    assert prepared.normalized == "...\nHello. Bye.\n!!!"


def test_line_breaks_become_spaces_and_blank_lines_paragraphs() -> None:
    prepared = prepare("Dear team\r\nthe build\tis green\n\n  Thanks\u2028all\u2029Bye",
                       max_chars=LIMIT)
    assert prepared.normalized == "Dear team the build is green\nThanks all\nBye"
    assert prepared.pieces == ("Dear team the build is green", "Thanks all", "Bye")
    assert prepared.removed == ()


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "...", "?!", "\u200b\ufeff", "<> | _"])
def test_nothing_to_speak_is_text_empty(text: str) -> None:
    with pytest.raises(TextEmpty):
        prepare(text, max_chars=LIMIT)


@pytest.mark.parametrize(("text", "expected"), [
    ("ﬁne ﬂy", "fine fly"),                       # ligatures
    ("Ｈｅｌｌｏ", "Hello"),                         # fullwidth
    ("a\u00a0b\u2003c", "a b c"),                   # no-break and em spaces
    ("cafe\u0301", "café"),                         # composed
    ("x\u00b2", "x two"),                           # superscript digit
    ("\u2122", "TM"),
    ("“quoted” ‘single’ it’s", "\"quoted\" 'single' it's"),
    ("wait…", "wait..."),
])
def test_nfkc_and_typography(text: str, expected: str) -> None:
    assert said(text) == expected


# --- markup is text -------------------------------------------------------------------------
def test_markup_is_plain_text_never_interpreted() -> None:
    text = '<speak><break time="3s"/>Hi &amp; <b>bye</b></speak>'
    assert said(text) == ('speak break time equals "three s" slash Hi and amp; b bye slash b '
                          "slash speak")


# --- expansion ------------------------------------------------------------------------------
EXPANSIONS = [
    # integers, thousands separators, negatives, decimals
    ("I have 3 apples.", "I have three apples."),
    ("It has 1,250,000 rows", "It has one million two-hundred fifty thousand rows"),
    ("page 237", "page two-hundred thirty seven"),
    ("It fell to -5 degrees", "It fell to minus five degrees"),
    ("Pi is 3.14159", "Pi is three point one four one five nine"),
    ("only 0.5 left", "only zero point five left"),
    ("agent 007", "agent zero zero seven"),
    ("card 1234567890123456", ("card one two three four five six seven eight nine zero one two "
                              "three four five six")),
    ("version 1.2.3", "version one point two point three"),
    ("1,000,000,000,000,000,000 reasons", "one quintillion reasons"),
    # ordinals, percentages, decades, ranges, phone numbers
    ("He came 1st and 22nd", "He came first and twenty second"),
    ("the 101st day", "the one-hundred first day"),
    ("up 15%", "up fifteen percent"),
    ("down -2.5 %", "down minus two point five percent"),
    ("the 1990s", "the nineteen nineties"),
    ("the '90s", "the nineties"),
    ("pages 10-20", "pages ten to twenty"),
    ("won 3-2", "won three to two"),
    ("from 2019–2020", "from twenty nineteen to twenty twenty"),
    ("call 555-1234", "call five five five, one two three four"),
    ("call (555) 123-4567", "call five five five, one two three, four five six seven"),
    ("a 3:2 ratio", "a three to two ratio"),
    ("read pp. 10-15", "read pages ten to fifteen"),
    # money
    ("It costs $4.50.", "It costs four dollars and fifty cents."),
    ("$1", "one dollar"),
    ("$1,200 and $35", "one thousand two-hundred dollars and thirty five dollars"),
    ("$0.99", "ninety nine cents"),
    ("$0.01", "one cent"),
    ("$1.5 million", "one point five million dollars"),
    ("$2.5B raised", "two point five billion dollars raised"),
    ("a $40k salary", "a forty thousand dollars salary"),
    ("£20", "twenty pounds"),
    ("£1.01", "one pound and one penny"),
    ("€15", "fifteen euros"),
    ("€2.50", "two euros and fifty cents"),
    ("99¢", "ninety nine cents"),
    # years and dates
    ("in 1945", "in nineteen forty five"),
    ("by 2020", "by twenty twenty"),
    ("in 2005", "in two thousand five"),
    ("since 1900", "since nineteen-hundred"),
    ("The room holds 1500 people", "The room holds one thousand five-hundred people"),
    ("code 4567", "code four thousand five-hundred sixty seven"),
    ("on 2024-03-05", "on March fifth, twenty twenty four"),
    ("on 3/5/2024", "on March fifth, twenty twenty four"),
    ("on March 5, 2024, in Boston", "on March fifth, twenty twenty four, in Boston"),
    ("on Jan. 1st", "on January first"),
    ("on 5 March 2024", "on the fifth of March twenty twenty four"),
    ("in March 2024", "in March twenty twenty four"),
    ("in Oct. 2022", "in October twenty twenty two"),
    # times
    ("at 7:30", "at seven thirty"),
    ("at 7:30 pm", "at seven thirty p.m"),
    ("at 7:30 P.M. Then", "at seven thirty p.m. Then"),
    ("at 6:05", "at six oh five"),
    ("at 7:00", "at seven o'clock"),
    ("at 6:00 am", "at six a.m"),
    ("at 19:45", "at nineteen forty five"),
    ("at 19:00", "at nineteen-hundred"),
    ("at 7 pm", "at seven p.m"),
    ("at 10:15:30", "at ten fifteen and thirty seconds"),
    # abbreviations
    ("Mr. Smith and Mrs. Jones", "Mister Smith and Missus Jones"),
    ("Ms. Lee met Dr. Brown", "Miz Lee met Doctor Brown"),
    ("Prof. Xu on Mt. Hood", "Professor Xu on Mount Hood"),
    ("St. Louis", "Saint Louis"),
    ("on Main St. yesterday", "on Main Street yesterday"),
    ("We live on Main St. It is quiet.", "We live on Main Street. It is quiet."),
    ("Bob Jr. and Bob Sr.", "Bob Junior and Bob Senior."),
    ("Lakers vs. Celtics", "Lakers versus Celtics"),
    ("fruit, e.g. apples", "fruit, for example apples"),
    ("a pen, i.e. ink", "a pen, that is ink"),
    ("pears, etc. to eat", "pears, et cetera to eat"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("approx. 5 km", "approximately five km"),
    ("No. 5", "number five"),
    ("No. I refuse", "No. I refuse"),
    # symbols
    ("Tom & Jerry", "Tom and Jerry"),
    ("me@example.com", "me at example.com"),
    ("C++", "C plus plus"),
    ("a = b", "a equals b"),
    ("and/or", "and slash or"),
    ("#1 fan", "number one fan"),
    ("5°C", "five degrees Celsius"),
    ("3 × 4", "three times four"),
    ("[note] {x}", "(note) (x)"),
    ("COVID-19", "COVID nineteen"),
    ("MP3 and 3D", "MP three and three D"),
    ("a — b – c -- d", "a; b; c; d"),
]


@pytest.mark.parametrize(("text", "expected"), EXPANSIONS, ids=[t for t, _ in EXPANSIONS])
def test_expansion_gives_exact_words(text: str, expected: str) -> None:
    assert said(text) == expected


# --- splitting ------------------------------------------------------------------------------
def test_sentences_become_pieces() -> None:
    prepared = prepare('Wait... are you sure? Yes. "Really?" she asked. Dr. Lee left!',
                       max_chars=LIMIT)
    assert prepared.pieces == ("Wait... are you sure?", "Yes.", '"Really?" she asked.',
                               "Doctor Lee left!")


def test_a_long_sentence_is_split_at_clauses_within_the_bound() -> None:
    clauses = [f"clause number {i} keeps going for a while" for i in range(40)]
    prepared = prepare(", ".join(clauses) + ".", max_chars=LIMIT)
    assert len(prepared.pieces) > 1
    assert all(len(p) <= MAX_PIECE_CHARS for p in prepared.pieces)
    assert all(p.endswith((",", ".")) for p in prepared.pieces)  # clause ends, not mid-clause
    assert " ".join(prepared.pieces) == prepared.normalized


def test_a_long_clause_is_split_at_words_and_a_long_word_sliced() -> None:
    words = " ".join(["word"] * 200) + "."
    giant = "x" * (2 * MAX_PIECE_CHARS + 10)
    prepared = prepare(f"{words} {giant}", max_chars=LIMIT)
    assert all(0 < len(p) <= MAX_PIECE_CHARS for p in prepared.pieces)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in prepared.pieces)
    assert "".join(prepared.pieces[-3:]) == giant
    assert " ".join(prepared.pieces[:-3]) == words


def test_prepared_text_is_immutable() -> None:
    prepared = prepare("Hello\u200b there.", max_chars=LIMIT)
    with pytest.raises(AttributeError):
        prepared.pieces = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        prepared.removed[0].position = 0  # type: ignore[misc]
    assert isinstance(prepared.pieces, tuple) and isinstance(prepared.removed, tuple)


# --- the pydantic edge ----------------------------------------------------------------------
class SpeechRequest(BaseModel):
    text: speech_text(40)


def test_request_models_validate_with_the_same_rules() -> None:
    assert SpeechRequest(text="Hello there.").text == "Hello there."
    with pytest.raises(TextTooLong):
        SpeechRequest(text="x" * 41)
    with pytest.raises(FormatCharacter) as caught:
        SpeechRequest.model_validate_json('{"text": "abc\\u202e"}')
    assert caught.value.details["position"] == 3
    with pytest.raises(ValidationError):
        SpeechRequest(text=42)  # type: ignore[arg-type]
    assert SpeechRequest.model_json_schema()["properties"]["text"]["maxLength"] == 40


# --- fuzz -----------------------------------------------------------------------------------
#: All of Unicode, surrogates, controls, private use and unassigned code points included.
ANY_UNICODE = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
SPEAKABLE = st.sampled_from([
    "the", "Dr.", "Mr.", "St.", "etc.", "e.g.", "vs", "No.", "$", "£", "€", "¢", "%", "#", "°C",
    "&", "<b>", "&amp;", "...", "—", "–", "-", ",", ";", ":", "?", "!", ".", "'", '"', "(", ")",
    "\n", "\n\n", "\t", "\r\n", "\u200b", "\u00ad", "\ufeff", "\u2028", "ﬁ", "…", "é",
    "am", "pm", "a.m.", "March", "Jan.", "1st", "22nd", "1990s", "'90s", "0", "007", "x" * 260,
])
HOSTILE = st.sampled_from(["\u202e", "\x00", "\x1b", "\ue000", "\ud800", "\u0378", "Ω",
                           "e\u0302\u0323", "\U000e0041", "\U0001f600"])
NUMBERISH = st.from_regex(
    r"[-$£€#(]?[0-9]{1,22}([,.:/-][0-9]{1,4}){0,4}(st|nd|rd|th|s|%|¢| ?[ap]\.?m\.?)?[.,]?",
    fullmatch=True)
LETTERS = st.text("abcXYZé", min_size=1, max_size=8)
TARGETED = st.lists(st.one_of(SPEAKABLE, NUMBERISH, LETTERS), max_size=80).map(" ".join)
SPRINKLED = st.lists(st.one_of(SPEAKABLE, NUMBERISH, LETTERS, HOSTILE), max_size=40).map("".join)


def _assert_well_formed(text: str, prepared: PreparedText) -> None:
    assert prepared.pieces
    for piece in prepared.pieces:
        assert 0 < len(piece) <= MAX_PIECE_CHARS
        assert any(c.isalpha() for c in piece)
        assert set(piece) <= PIECE_CHARACTERS, set(piece) - PIECE_CHARACTERS
        assert piece == piece.strip()
    assert set(prepared.normalized) <= PIECE_CHARACTERS | {"\n"}
    assert not any(c.isdigit() for c in prepared.normalized)
    for removal in prepared.removed:
        assert removal.code_point == f"U+{ord(text[removal.position]):04X}"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile
@given(st.one_of(ANY_UNICODE, TARGETED, SPRINKLED))
def test_fuzz_raises_only_text_errors_and_yields_bounded_allowed_pieces(text: str) -> None:
    try:
        prepared = prepare(text, max_chars=LIMIT)
    except TextError as err:  # anything else (IndexError, KeyError, ...) fails the test
        position = err.details.get("position")
        if position is not None:
            assert err.details["code_point"] == f"U+{ord(text[position]):04X}"
        return
    _assert_well_formed(text, prepared)


ADVERSARIAL = {  # 100,000 characters each: inputs that make naive regular expressions quadratic
    "dots": "." * 100_000,
    "digits": "9" * 100_000,
    "spaces": "a" + " " * 99_998 + "b",
    "quotes": "a" + '"' * 99_999,
    "dashes": "1-" * 50_000,
    "colons": "1:" * 50_000,
    "money": "$1," * 33_333,
    "abbreviations": "etc. " * 20_000,
    "mixed": "Dr. Smith paid $4.50 at 7:30 pm on 2024-03-05. " * 2_000,
}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_inputs_at_the_ceiling_stay_well_formed(name: str) -> None:
    text = ADVERSARIAL[name][:MAX_CHARS_CEILING]
    try:
        prepared = prepare(text, max_chars=MAX_CHARS_CEILING)
    except TextEmpty:
        assert not any(c.isalnum() for c in text)
        return
    _assert_well_formed(text, prepared)
