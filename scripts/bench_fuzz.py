"""Generated hostile texts through the text front end and the speech API: counts, 500s, peak RSS.

Seeded and bounded (issue 12 item 7, text half). ``--texts N`` texts are generated from the
categories in ``CATEGORIES`` (Unicode edge cases, control and bidi characters, emoji, combining
marks, huge numbers, currencies, dates, URLs, SSML-like markup, very long words, whitespace
only, empty, at and past the length cap, real sentences mutated, and mixes of these), most of
them short. Every text goes through ``voxproof.text.prepare`` with the API's cap; every text it
refuses, and a seeded sample of ``--speak K`` of those it accepts, go through the speech API's
handler in this process (``POST /v1/speech`` as ``voxproof serve`` makes the event: request
validation, synthesis with the real voice, marking, a SQLite record, the WAV), with API
Gateway's 29 s. Only the sample is spoken: speaking every accepted text costs about a CPU-second
each.

Prints counts by status and error code, unexpected exceptions (a 500, or ``prepare`` raising
anything but a ``TextError``: must be 0), refusals whose API code differs from ``prepare``'s,
the slowest ``prepare`` and the slowest request, and the peak RSS (and its rise over the
process once the voice is loaded).

    PYTHONPATH=functions python scripts/bench_fuzz.py [--texts 10000] [--speak 200] [--seed 1]
        [--shard I/N]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # one summary, not a log line per request

from voxproof.errors import TextError
from voxproof.handlers.rest import api_runtime, make_handler
from voxproof.serve import LocalContext, to_event
from voxproof.settings import Settings
from voxproof.text import prepare

ROOT = Path(__file__).resolve().parent.parent
#: Accepted text that cannot be spoken in API Gateway's 29 s: refused up front (503
#: deadline_too_short, from the synthesis estimate) or stopped (504 deadline_exceeded).
DEADLINE_CODES = ("deadline_too_short", "deadline_exceeded")
SENTENCES = [line for line in (ROOT / "tests/data/frontend_sentences.txt").read_text(
    encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]

# --- generators: each makes one text from a seeded random.Random ------------------------------

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
INVISIBLE = "\u200b\u200c\u200d\u2060\u00ad\ufeff\u180e\u2061\u2062\u2063\u2064\ufff9"
WHITESPACE = " \t\n\r\u00a0\u1680\u2000\u2001\u2002\u2007\u2009\u200a\u2028\u2029\u202f" \
             "\u205f\u3000\x0b\x0c\x85"
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "🏳️‍🌈", "❤️", "☺︎", "1️⃣", "🤷‍♀️", "🧑🏿‍🚀", "👁‍🗨",
         "\U0001f600" * 3, "©", "™", "🆗", "#️⃣"]
CURRENCIES = "$€£¥₹₽₩₪₫₴₦₱฿₿¢"
MARKUP = ['<speak>{}</speak>', '<break time="3s"/>{}', '<prosody rate="x-fast">{}</prosody>',
          '<say-as interpret-as="digits">{}</say-as>', '&lt;{}&gt; &amp; &#x41;', '<![CDATA[{}]]>',
          '<script>alert("{}")</script>', '<phoneme alphabet="ipa" ph="təmeɪtoʊ">{}</phoneme>',
          '{{{{{}}}}}', '<audio src="http://x/y.wav">{}</audio>', '<!-- {} -->', '<p><s>{}</s></p>']
WORDS = ["hello", "world", "voxproof", "the", "quick", "fox", "Dr.", "St.", "Mr.", "etc.",
         "e.g.", "A.I.", "NASA", "iPhone", "naïve", "café", "résumé", "co-op", "rock'n'roll"]


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS + SENTENCES[:5])


def unicode_edge(rng: random.Random) -> str:
    """Code points from every plane and category: unassigned, private use, noncharacters,
    lone surrogates, CJK, Arabic, maths letters, fullwidth, ligatures."""
    pools = [(0x0, 0x2FF), (0x300, 0x36F), (0x370, 0x10FF), (0x2000, 0x2BFF), (0x3000, 0x9FFF),
             (0xD800, 0xDFFF), (0xE000, 0xF8FF), (0xFB00, 0xFFFF), (0x1D400, 0x1D7FF),
             (0x1F000, 0x1FAFF), (0xE0000, 0xE007F), (0xF0000, 0x10FFFF)]
    chars = []
    for _ in range(rng.randint(1, 12)):
        low, high = rng.choice(pools)
        chars.append(chr(rng.randint(low, high)))
    return _around(rng, "".join(chars))


def control(rng: random.Random) -> str:
    c0 = [chr(i) for i in range(0x20)] + ["\x7f"] + [chr(i) for i in range(0x80, 0xA0)]
    return _insert(rng, _word(rng), rng.choice(c0), rng.randint(1, 3))


def bidi(rng: random.Random) -> str:
    return _insert(rng, _word(rng), rng.choice(BIDI + INVISIBLE), rng.randint(1, 4))


def emoji(rng: random.Random) -> str:
    return _around(rng, "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))))


def combining(rng: random.Random) -> str:
    base = rng.choice(["a", "e", "o", "Z", "1", " ", "", "ß", "ﬁ"])
    marks = "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 40)))
    return _around(rng, base + marks)


def huge_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 400)))
    forms = [digits, f"-{digits}", f"{digits}.{digits[:20]}", f"1e{digits[:6]}",
             f"{int(digits[:30] or 0):,}", f"{digits}%", f"{digits[:8]}th", f"0x{digits[:40]}",
             f"{digits[:5]}/{digits[5:9] or 0}", f"{digits[:3]}:{digits[3:5]}:{digits[5:7]}",
             "9" * 1000, "1" + "0" * rng.randint(20, 308), f"{digits[:50]}-{digits[50:90]}"]
    return _around(rng, rng.choice(forms))


def currency(rng: random.Random) -> str:
    amount = rng.choice(["0", "1", "4.50", "1,000,000.99", "0.001", "-3", "10^6", "1.2.3",
                         str(rng.randint(0, 10**15)), "99¢", "5k", "2.5M", "$$$"])
    symbol = rng.choice(CURRENCIES)
    return _around(rng, rng.choice([f"{symbol}{amount}", f"{amount}{symbol}",
                                    f"{rng.choice(['USD', 'EUR', 'BTC'])} {amount}"]))


def date(rng: random.Random) -> str:
    y, m, d = rng.randint(0, 99999), rng.randint(0, 13), rng.randint(0, 32)
    return _around(rng, rng.choice([f"{y:04d}-{m:02d}-{d:02d}", f"{m}/{d}/{y}", f"{d}.{m}.{y}",
                                    f"{y}-{m:02d}-{d:02d}T23:59:60Z", f"{d} Jan {y}",
                                    "24:00", "12:00 am", f"{rng.randint(0, 99)}:{rng.randint(0, 99)}",
                                    "1999-12-31 23:59:59.999999+14:00", "Q4 FY2024"]))


def url(rng: random.Random) -> str:
    return _around(rng, rng.choice([
        "https://example.com/a/b?c=d&e=f#g", "http://user:pass@[::1]:8080/%20x",
        "ftp://x.y/z", "mailto:someone@example.org", "someone+tag@sub.example.co.uk",
        "www.example.com/" + "a" * rng.randint(1, 300), "javascript:alert(1)",
        "file:///etc/passwd", "https://xn--bcher-kva.example/ü", "data:text/plain;base64,SGk=",
        "\\\\server\\share\\file.txt", "C:\\Windows\\System32",
    ]))


def markup(rng: random.Random) -> str:
    return rng.choice(MARKUP).format(_word(rng))


def long_word(rng: random.Random) -> str:
    letter = rng.choice(["a", "Z", "ab", "supercalifragilistic", "x1", "é", "-"])
    return _around(rng, (letter * 1000)[:rng.randint(50, 999)])


def whitespace(rng: random.Random) -> str:
    return "".join(rng.choice(WHITESPACE + INVISIBLE[:6]) for _ in range(rng.randint(1, 50)))


def empty(_rng: random.Random) -> str:
    return ""


def at_cap(rng: random.Random, cap: int) -> str:
    size = rng.choice([cap - 1, cap, cap + 1, cap + 2, 2 * cap, 100 * cap])
    unit = rng.choice(["a ", "Hello world. ", "1", ".", "😀", "\u0301", " "])
    return (unit * (size // len(unit) + 1))[:size]


def sentence(rng: random.Random) -> str:
    return rng.choice(SENTENCES)


def mutated(rng: random.Random) -> str:
    """A real sentence with characters replaced, duplicated or swapped."""
    chars = list(rng.choice(SENTENCES))
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars[i] = chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff)]))
        elif op == 1:
            chars.insert(i, chars[i] * rng.randint(1, 20))
        else:
            j = rng.randrange(len(chars))
            chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _around(rng: random.Random, core: str) -> str:
    """``core`` alone, or inside a short sentence."""
    return rng.choice([core, f"{_word(rng)} {core}.", f"{core} {_word(rng)}",
                       f"It is {core}, right?"])


def _insert(rng: random.Random, text: str, char: str, times: int) -> str:
    for _ in range(times):
        i = rng.randint(0, len(text))
        text = text[:i] + char + text[i:]
    return text


CATEGORIES: dict[str, Callable[[random.Random], str]] = {
    "unicode_edge": unicode_edge, "control": control, "bidi_invisible": bidi, "emoji": emoji,
    "combining": combining, "huge_number": huge_number, "currency": currency, "date": date,
    "url": url, "markup": markup, "long_word": long_word, "whitespace": whitespace,
    "empty": empty, "sentence": sentence, "mutated": mutated,
}


def generate(count: int, seed: int, cap: int) -> list[tuple[str, str]]:
    """``count`` (category, text) pairs: each category's share, at-cap texts, and mixes."""
    rng = random.Random(seed)
    names = [*CATEGORIES, "at_cap", "mix"]
    out = []
    for i in range(count):
        name = names[i % len(names)]
        if name == "at_cap":
            text = at_cap(rng, cap)
        elif name == "mix":
            text = " ".join(CATEGORIES[rng.choice(list(CATEGORIES))](rng)
                            for _ in range(rng.randint(2, 4)))
        else:
            text = CATEGORIES[name](rng)
        out.append((name, text))
    return out


# --- running ---------------------------------------------------------------------------------

def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def speech_event(text: str) -> dict[str, Any]:
    return to_event("POST", "/v1/speech", [("Content-Type", "application/json"),
                                           ("Host", "127.0.0.1:8080")],
                    json.dumps({"text": text}).encode(), client_ip="127.0.0.1",
                    request_id=str(uuid.uuid4()))


def call(handler: Callable, text: str) -> tuple[int, str, float]:
    """Status, error code ('' for 200) and seconds of one speech request through the handler
    (code ``no_output_bucket`` for the 503 that says the audio is too large to return inline
    and this run has no output bucket: the template always configures one)."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF metrics
        response = handler(speech_event(text), LocalContext(aws_request_id=str(uuid.uuid4())))
    seconds = time.perf_counter() - start
    status = int(response["statusCode"])
    code = ""
    if status != 200:
        error = json.loads(response["body"])["error"]
        code = error["code"]
        if code == "unavailable" and "no output bucket" in error["message"]:
            code = "no_output_bucket"
    return status, code, seconds


def _code(text: str, cap: int) -> str | None:
    """``prepare``'s code for the text the API receives: JSON joins a lone high surrogate and a
    lone low one that follow each other into one character."""
    try:
        prepare(json.loads(json.dumps(text)), max_chars=cap)
    except TextError as err:
        return err.code
    return None


def describe(text: str, limit: int = 60) -> str:
    shown = "".join(c if c.isprintable() and not unicodedata.category(c).startswith("C")
                    else f"\\u{ord(c):04x}" for c in text[:limit])
    return f"{len(text)} chars: {shown}" + ("..." if len(text) > limit else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--speak", type=int, default=200,
                        help="accepted texts spoken through the API (a seeded sample)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="send only the I-th of every N API requests (parallel runs on the "
                             "same seed: their counts add up)")
    args = parser.parse_args()
    shard, shards = (int(part) for part in args.shard.split("/"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vx-fuzz-") as tmp:
        settings = Settings(state_dir=Path(tmp) / "state", torch_threads=1)
        cap = settings.max_text_chars_sync
        texts = generate(args.texts, args.seed, cap)

        # 1. the front end, every text
        prepared: list[tuple[str, str, str | None]] = []  # (category, text, code or None)
        front = collections.Counter()
        unexpected: list[str] = []
        slowest_prepare = (0.0, "")
        for category, text in texts:
            t0 = time.perf_counter()
            try:
                prepare(text, max_chars=cap)
                code = None
            except TextError as err:
                code = err.code
            except Exception:  # noqa: BLE001 - what the API would answer with a 500
                code = "UNEXPECTED"
                unexpected.append(f"prepare {describe(text)}\n{traceback.format_exc(limit=3)}")
            elapsed = time.perf_counter() - t0
            if elapsed > slowest_prepare[0]:
                slowest_prepare = (elapsed, describe(text))
            front[code or "accepted"] += 1
            prepared.append((category, text, code))

        # 2. the API: every refused text, and a sample of the accepted ones spoken
        runtime = api_runtime(settings)
        handler = make_handler(runtime)
        call(handler, "Warm up.")  # loads the voice: the RSS baseline is a warm container
        base_rss, _ = rss_mb()
        accepted = [t for _, t, code in prepared if code is None]
        sample = random.Random(args.seed).sample(accepted, min(args.speak, len(accepted)))
        refused = [(t, _code(t, cap)) for _, t, code in prepared if code not in (None, "UNEXPECTED")]
        api = collections.Counter()
        mismatched: list[str] = []
        deadline: list[str] = []
        slowest = (0.0, "")
        spoken, rss_trace = 0, []  # RSS after every 100th spoken request: a warm container's drift
        requests = [*refused, *((t, None) for t in sample)][shard::shards]
        for text, expected in requests:
            try:
                status, code, seconds = call(handler, text)
            except Exception:  # noqa: BLE001 - the handler must never raise
                unexpected.append(f"handler {describe(text)}\n{traceback.format_exc(limit=3)}")
                continue
            api[(status, code or "spoken")] += 1
            if status == 200:
                spoken += 1
                if spoken % 100 == 0:
                    rss_trace.append((spoken, rss_mb()[0]))
            if status >= 500 and code not in (*DEADLINE_CODES, "no_output_bucket"):
                unexpected.append(f"{status} {code}: {describe(text)}")
            elif code in DEADLINE_CODES:
                deadline.append(f"{status} {code}: {describe(text)}")
            if expected is not None and code != expected and not (
                    expected == "text_too_long" and code == "request_too_large"):  # body cap
                mismatched.append(f"prepare {expected}, API {status} {code}: {describe(text)}")
            if seconds > slowest[0]:
                slowest = (seconds, f"{status} {code or 'spoken'}, {describe(text)}")
        now_rss, peak_rss = rss_mb()

    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load:.2f}: "
          f"{len(texts)} generated texts (seed {args.seed}, text cap {cap}) through prepare; "
          f"{len(refused)} refused ones and {len(sample)} of the {len(accepted)} accepted ones "
          f"through POST /v1/speech (spoken); shard {shard}/{shards}: {len(requests)} requests, "
          f"{time.monotonic() - started:.0f} s\n")
    print("| category | texts | accepted by prepare |\n| --- | ---: | ---: |")
    per_category = collections.Counter(c for c, _ in texts)
    accepted_per = collections.Counter(c for c, _, code in prepared if code is None)
    for name in per_category:
        print(f"| {name} | {per_category[name]} | {accepted_per[name]} |")
    print("\n| prepare: outcome | texts |\n| --- | ---: |")
    for code, n in front.most_common():
        print(f"| {code} | {n} |")
    print("\n| API: status | code | requests |\n| ---: | --- | ---: |")
    for (status, code), n in sorted(api.items()):
        print(f"| {status} | {code} | {n} |")
    print(f"\nunexpected exceptions / 500s: {len(unexpected)}; API code differs from "
          f"prepare's: {len(mismatched)}; accepted texts too long to speak in the time left "
          f"(503/504, documented): {len(deadline)}")
    print(f"slowest prepare: {slowest_prepare[0] * 1000:.1f} ms ({slowest_prepare[1]})")
    print(f"slowest request: {slowest[0]:.2f} s ({slowest[1]})")
    print(f"peak RSS: {peak_rss:.0f} MB (after loading the voice: {base_rss:.0f} MB; "
          f"now {now_rss:.0f} MB)")
    if rss_trace:
        print("RSS after N spoken requests: " + ", ".join(f"{n}: {mb:.0f} MB" for n, mb in rss_trace))
    for line in (unexpected + mismatched + deadline)[:30]:
        print("\n" + line)
    return 1 if unexpected or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
