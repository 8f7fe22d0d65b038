"""English expansion to words: numbers, money, dates, times, abbreviations and symbols.

:func:`expand` takes validated, NFKC-normalized text (only :data:`INPUT_CHARACTERS`) and returns
only letters, spaces and :data:`SPOKEN_PUNCTUATION`, spelled as espeak-ng would say it where it
already says the same words. Every choice, with examples: docs/text.md.

Example:
    >>> expand("$4.50 at 7:30 pm, e.g. on March 5, 2024.")
    'four dollars and fifty cents at seven thirty p.m, for example on March fifth, twenty twenty four.'
"""

from __future__ import annotations

import re
from typing import Final

from num2words import num2words

#: Characters :func:`expand` accepts (after NFKC); :mod:`voxproof.text` enforces it.
LATIN1_LETTERS: Final = "".join(
    chr(c) for c in range(0xC0, 0x100) if chr(c) not in "\u00d7\u00f7"
)
INPUT_CHARACTERS: Final = frozenset(
    [chr(c) for c in range(0x20, 0x7F)]
    + list(LATIN1_LETTERS)
    + list("£€¢°×«»‘’‚‛“”„‟′″–—‒―−")
)
#: Punctuation that survives expansion (what espeak-ng uses for clauses and intonation).
SPOKEN_PUNCTUATION: Final = ".,!?;:'\"()-"
#: Every character :func:`expand` can return.
OUTPUT_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ " + LATIN1_LETTERS + SPOKEN_PUNCTUATION
)
#: Integers with more digits than this are read digit by digit (account and card numbers).
MAX_CARDINAL_DIGITS: Final = 15
#: ... unless grouped with commas, up to this many (num2words names groups to sextillions).
MAX_GROUPED_DIGITS: Final = 21

_DIGIT_WORDS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine")
_MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December")
_MONTH_BY_PREFIX: Final = {m[:3].lower(): m for m in _MONTHS}
_YEAR_CUES: Final = frozenset({
    "in", "by", "since", "from", "until", "till", "to", "of", "year", "years", "circa",
    "before", "after", "during", "around", "early", "late", "mid", "spring", "summer",
    "autumn", "fall", "winter", "between", "and",
}) | {m.lower() for m in _MONTHS}
_SCALE_LETTERS: Final = {"k": "thousand", "K": "thousand", "M": "million", "B": "billion",
                          "bn": "billion", "T": "trillion"}
_CURRENCIES: Final = {  # symbol: (unit, units, subunit, subunits)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
#: Abbreviations whose dot never ends a sentence (a name or a phrase always follows).
_TITLES: Final = {"mr": "Mister", "mrs": "Missus", "ms": "Miz", "dr": "Doctor",
                  "prof": "Professor", "mt": "Mount"}
_PHRASES: Final = {"vs": "versus", "e.g": "for example", "i.e": "that is",
                   "approx": "approximately"}
#: Abbreviations whose dot is also the sentence's full stop when the sentence ends there.
_ENDINGS: Final = {"etc": "et cetera", "jr": "Junior", "sr": "Senior"}

_TYPOGRAPHY: Final = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
    "‒": "–", "−": "-", "[": "(", "]": ")", "{": "(", "}": ")",
})
_DASH: Final = re.compile(r"\s*(?:—|―|--+)\s*|\s+[–-]\s+(?=\D)|(?<=\D)\s+–\s+")
_LETTER_DIGIT_HYPHEN: Final = re.compile(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])")
_NUM: Final = r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
_MONTH_NAME: Final = (r"(?:January|February|March|April|May|June|July|August|September|"
                      r"October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|"
                      r"Nov|Dec)")
_ORD: Final = r"(?:st|nd|rd|th)"
_RULES: Final = re.compile(
    rf"""
    (?P<iso>(?<![\d-])(?P<iso_y>\d{{4}})-(?P<iso_m>\d\d)-(?P<iso_d>\d\d)(?![\d-]))
  | (?P<us>(?<![\d/])(?P<us_m>\d{{1,2}})/(?P<us_d>\d{{1,2}})/(?P<us_y>\d{{4}})(?![\d/]))
  | (?P<phone>(?:\(\d{{3}}\)\s?|(?<![\d-]))(?:\d{{3}}-)?\d{{3}}-\d{{4}}(?![\d-]))
  | (?P<md>\b(?P<md_m>{_MONTH_NAME})\.?\s(?P<md_d>\d{{1,2}}){_ORD}?\b
        (?:(?P<md_sep>,?\s)(?P<md_y>\d{{4}})\b)?)
  | (?P<my>\b(?P<my_m>{_MONTH_NAME})\.?\s(?P<my_y>\d{{4}})\b)
  | (?P<dm>(?<![\d.,])\b(?P<dm_d>\d{{1,2}}){_ORD}?\s(?:of\s)?(?P<dm_m>{_MONTH_NAME})\b
        (?:(?P<dm_sep>,?\s)(?P<dm_y>\d{{4}})\b)?)
  | (?P<time>(?<![\d.:,])(?P<t_h>\d{{1,2}}):(?P<t_m>\d\d)(?::(?P<t_s>\d\d))?(?![\d:])
        (?:\s?(?P<t_ap>[AaPp])\.?[Mm](?P<t_dot>\.)?(?![A-Za-z]))?)
  | (?P<clock>(?<![\d.:,])(?P<c_h>\d{{1,2}})\s?(?P<c_ap>[AaPp])\.?[Mm](?P<c_dot>\.)?
        (?![A-Za-z]))
  | (?P<money>(?P<cur>[$£€])\s?(?P<m_neg>-)?(?P<m_num>{_NUM})
        (?:\s?(?P<m_scale>thousand|million|billion|trillion|bn|[kKMBT])\b)?)
  | (?P<cents>(?<![\d.])(?P<c_num>\d+)\s?¢)
  | (?P<pct>(?P<p_neg>(?<![\w.,])-)?(?P<p_num>{_NUM})\s?%)
  | (?P<ord>(?<![\d.,])(?P<o_num>\d{{1,3}}(?:,\d{{3}})+|\d+)(?i:{_ORD})\b)
  | (?P<decade>(?<![\d.,])'?(?P<dec>\d{{1,3}}0)'?s\b)
  | (?P<range>(?<![\d.,:-])(?P<r_a>{_NUM})\s?[-–:]\s?(?P<r_b>{_NUM})(?![\d.,:]?\d))
  | (?P<num>(?P<n_neg>(?<![^\s("'])-)?(?P<n_num>{_NUM}))
  | (?P<abbr>\b(?P<a_word>(?i:mrs|mr|ms|dr|prof|mt|jr|sr|approx|etc|vs)|St|No|pp)\.
        |\b(?P<a_phrase>(?i:e\.g|i\.e))\b\.?|\b(?P<a_bare>(?i:vs|etc))\b)
  | (?P<sym>[&@+=/\\#°×<>|_^`*~$£€¢%])
    """,
    re.VERBOSE | re.ASCII,  # digits are 0-9 only (text.py has NFKC-mapped the others or refused)
)


def expand(text: str) -> str:
    """Rewrite *text* (one paragraph, characters of :data:`INPUT_CHARACTERS`) into words.

    Parameters
    ----------
    text:
        Validated, NFKC-normalized text without newlines.

    Returns
    -------
    str
        Words, single spaces and :data:`SPOKEN_PUNCTUATION` only.
    """
    text = _DASH.sub("; ", text.translate(_TYPOGRAPHY)).replace("–", "-")
    text = _LETTER_DIGIT_HYPHEN.sub(" ", text)
    text = _RULES.sub(_expand_match, text)
    return _tidy(text)


# --- numbers as words -----------------------------------------------------------------------
def cardinal(n: int) -> str:
    """``1250`` -> "one thousand two-hundred fifty" (American, no "and", "hundred" joined)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if len(str(n)) > MAX_CARDINAL_DIGITS:
        return digits(str(n))
    return _words(num2words(n, lang="en"))


def ordinal(n: int) -> str:
    """``22`` -> "twenty second"."""
    if len(str(n)) > MAX_CARDINAL_DIGITS:
        return digits(str(n)) + "th"
    return _words(num2words(n, lang="en", to="ordinal"))


def year(n: int) -> str:
    """``1945`` -> "nineteen forty five"; ``2005`` -> "two thousand five"."""
    return _words(num2words(n, lang="en", to="year"))


def digits(s: str) -> str:
    """``"007"`` -> "zero zero seven"."""
    return " ".join(_DIGIT_WORDS[int(c)] for c in s if c.isdigit())


def number(s: str) -> str:
    """A numeral as written (``"1,250"``, ``"3.14"``, ``".5"``, ``"007"``) in words."""
    whole, _, fraction = s.replace(",", "").partition(".")
    grouped = "," in s  # 1,000,000,000,000,000 is clearly one number, however long
    if len(whole) > 1 and whole.startswith("0") or len(whole) > (
            MAX_GROUPED_DIGITS if grouped else MAX_CARDINAL_DIGITS):
        spoken = digits(whole)
    else:
        spoken = _words(num2words(int(whole), lang="en")) if whole else ""
    if "." in s:
        spoken = f"{spoken} point {digits(fraction)}".strip()
    return spoken


def _words(raw: str) -> str:
    out: list[str] = []
    for word in raw.replace(",", " ").replace("-", " ").split():
        if word == "and":
            continue
        if word.startswith("hundred") and out:
            out[-1] = f"{out[-1]}-{word}"
        else:
            out.append(word)
    return " ".join(out)


# --- one match -> words ---------------------------------------------------------------------
def _expand_match(m: re.Match[str]) -> str:
    kind = m.lastgroup
    spoken = _EXPANDERS[kind](m) if kind else m.group(0)
    before = m.string[m.start() - 1] if m.start() else " "
    after = m.string[m.end()] if m.end() < len(m.string) else " "
    return f"{' ' if before.isalnum() else ''}{spoken}{' ' if after.isalnum() else ''}"


def _date(month: int, day: int, year_: int | None, sep: str = ", ") -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    said = f"{_MONTHS[month - 1]} {ordinal(day)}"
    return f"{said}{sep}{year(year_)}" if year_ is not None else said


def _iso(m: re.Match[str]) -> str:
    said = _date(int(m["iso_m"]), int(m["iso_d"]), int(m["iso_y"]))
    return said or " to ".join(number(p) for p in m.group(0).split("-"))


def _us(m: re.Match[str]) -> str:
    said = _date(int(m["us_m"]), int(m["us_d"]), int(m["us_y"]))
    return said or " slash ".join(number(p) for p in m.group(0).split("/"))


def _phone(m: re.Match[str]) -> str:
    return ", ".join(digits(group) for group in re.split(r"[-)]\s?", m.group(0).lstrip("(")))


def _month_day(m: re.Match[str]) -> str:
    month = _MONTH_BY_PREFIX[m["md_m"][:3].lower()]
    year_ = int(m["md_y"]) if m["md_y"] else None
    said = _date(_MONTHS.index(month) + 1, int(m["md_d"]), year_, m["md_sep"] or "")
    return said or f"{month} {number(m['md_d'])}" + (
        f"{m['md_sep']}{year(year_)}" if year_ is not None else "")


def _month_year(m: re.Match[str]) -> str:
    return f"{_MONTH_BY_PREFIX[m['my_m'][:3].lower()]} {year(int(m['my_y']))}"


def _day_month(m: re.Match[str]) -> str:
    month = _MONTH_BY_PREFIX[m["dm_m"][:3].lower()]
    day = int(m["dm_d"])
    if not 1 <= day <= 31:
        return f"{number(m['dm_d'])} {month}" + (
            f"{m['dm_sep']}{year(int(m['dm_y']))}" if m["dm_y"] else "")
    said = f"the {ordinal(day)} of {month}"
    return said + (f"{m['dm_sep']}{year(int(m['dm_y']))}" if m["dm_y"] else "")


def _meridiem(letter: str | None, dot: str | None, m: re.Match[str]) -> str:
    if not letter:
        return ""
    said = " a.m" if letter in "Aa" else " p.m"
    return said + ("." if dot and _sentence_ends_at(m.string, m.end()) else "")


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m["t_h"]), int(m["t_m"])
    if hour > 24 or minute > 59:
        return f"{number(m['t_h'])} to {number(m['t_m'])}"
    if minute == 0:
        said = (f"{cardinal(hour)} o'clock" if 1 <= hour <= 12 and not m["t_ap"]
                else cardinal(hour) if m["t_ap"] else f"{cardinal(hour)}-hundred")
    elif minute < 10:
        said = f"{cardinal(hour)} oh {cardinal(minute)}"
    else:
        said = f"{cardinal(hour)} {cardinal(minute)}"
    if m["t_s"] and int(m["t_s"]) < 60:
        seconds = int(m["t_s"])
        said += f" and {cardinal(seconds)} second{'s' if seconds != 1 else ''}"
    return said + _meridiem(m["t_ap"], m["t_dot"], m)


def _clock(m: re.Match[str]) -> str:
    return cardinal(int(m["c_h"])) + _meridiem(m["c_ap"], m["c_dot"], m)


def _money(m: re.Match[str]) -> str:
    unit, units, sub, subs = _CURRENCIES[m["cur"]]
    minus = "minus " if m["m_neg"] else ""
    raw = m["m_num"].replace(",", "")
    whole, _, fraction = raw.partition(".")
    if m["m_scale"]:
        scale = _SCALE_LETTERS.get(m["m_scale"], m["m_scale"])
        return f"{minus}{number(m['m_num'])} {scale} {units}"
    if len(fraction) > 2 or len(whole) > MAX_CARDINAL_DIGITS:
        return f"{minus}{number(m['m_num'])} {units}"
    amount = int(whole or "0")
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if amount or not cents:
        parts.append(f"{cardinal(amount)} {unit if amount == 1 else units}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub if cents == 1 else subs}")
    return minus + " and ".join(parts)


def _cents(m: re.Match[str]) -> str:
    count = int(m["c_num"])
    return f"{number(m['c_num'])} {'cent' if count == 1 else 'cents'}"


def _percent(m: re.Match[str]) -> str:
    return f"{'minus ' if m['p_neg'] else ''}{number(m['p_num'])} percent"


def _ordinal(m: re.Match[str]) -> str:
    return ordinal(int(m["o_num"].replace(",", "")))


def _decade(m: re.Match[str]) -> str:
    value = int(m["dec"])
    if len(m["dec"]) == 4 and 1100 <= value <= 2099:
        return _plural(year(value))
    return _plural(number(m["dec"]))


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def _range(m: re.Match[str]) -> str:
    return f"{_numeral(m['r_a'], m, m.start('r_a'))} to {_numeral(m['r_b'], m, m.start('r_a'))}"


def _number(m: re.Match[str]) -> str:
    said = _numeral(m["n_num"], m, m.start())
    return f"minus {said}" if m["n_neg"] else said


def _numeral(s: str, m: re.Match[str], start: int) -> str:
    """A plain numeral, read as a year when its context says so."""
    if s.isdigit() and len(s) == 4 and 1100 <= int(s) <= 2099 and _year_cue(m.string, start):
        return year(int(s))
    return number(s)


def _year_cue(text: str, start: int) -> bool:
    before = re.search(r"([A-Za-z]+)\W*$", text[max(0, start - 24):start])
    return bool(before) and before.group(1).lower() in _YEAR_CUES


def _abbreviation(m: re.Match[str]) -> str:
    text, end = m.string, m.end()
    if m["a_phrase"] or m["a_bare"]:
        return _PHRASES.get((m["a_phrase"] or m["a_bare"]).lower(),
                            _ENDINGS.get((m["a_bare"] or "").lower(), ""))
    word = m["a_word"]
    key = word.lower()
    if word in ("No", "pp"):
        said = "number" if word == "No" else "pages"
        return said if re.match(r"\s?\d", text[end:end + 2]) else m.group(0)
    if word == "St":
        before = text[max(0, m.start() - 24):m.start()]
        if re.match(r"\s[A-Z]", text[end:end + 2]) and not re.search(r"[A-Z][a-z]*\s$", before):
            return "Saint"
        return "Street" + ("." if _sentence_ends_at(text, end) else "")
    if key in _TITLES:
        return _TITLES[key]
    if key in _PHRASES:
        return _PHRASES[key]
    return _ENDINGS[key] + ("." if _sentence_ends_at(text, end) else "")


_SYMBOLS: Final = {
    "&": "and", "@": "at", "+": "plus", "=": "equals", "/": "slash", "\\": "backslash",
    "×": "times", "°": "degrees", "$": "dollars", "£": "pounds", "€": "euros", "¢": "cents",
    "%": "percent",
}


def _symbol(m: re.Match[str]) -> str:
    char = m.group(0)
    if char == "#":
        return "number" if re.match(r"\s?\d", m.string[m.end():m.end() + 2]) else " hash "
    return f" {_SYMBOLS[char]} " if char in _SYMBOLS else " "


_EXPANDERS: Final = {
    "iso": _iso, "us": _us, "phone": _phone, "md": _month_day, "my": _month_year,
    "dm": _day_month,
    "time": _time, "clock": _clock, "money": _money, "cents": _cents, "pct": _percent,
    "ord": _ordinal, "decade": _decade, "range": _range, "num": _number,
    "abbr": _abbreviation, "sym": _symbol,
}


# --- sentence ends and tidying --------------------------------------------------------------
_SENTENCE_START: Final = re.compile(r"[\"')]*(?:$|\s+[\"'(]*[A-Z\u00c0-\u00de])")


def _sentence_ends_at(text: str, end: int) -> bool:
    """Whether a sentence ends at *end* (end of text, or a capital after the space)."""
    return bool(_SENTENCE_START.match(text, end))


_UNIT_LETTER: Final = re.compile(r"\bdegrees ([CF])\b")
_SPACES: Final = re.compile(r"\s+")
_SPACE_BEFORE: Final = re.compile(r"\s+([.,!?;:)])")
_SPACE_AFTER_OPEN: Final = re.compile(r"\(\s+")
_DOUBLE_CLAUSE: Final = re.compile(r"([,;:])(?:\s*[,;:])+")


def _tidy(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _UNIT_LETTER.sub(lambda m: "degrees " + ("Celsius" if m[1] == "C" else "Fahrenheit"),
                            text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub("(", text)
    text = _DOUBLE_CLAUSE.sub(r"\1", text)
    return text.strip().lstrip(",;: ")
