"""Detection: search hypotheses and unit alignments, decode, verify the tag, localise.

Guarantee: a decode is accepted only if the keyed tag of its record id verifies (probability
2^-24 on audio without the key's mark), and at most ``MAX_ATTEMPTS`` = 23 decodes are made per
key, so P(false positive) <= 23 x 2^-24 ~= 1.4e-6 per key and file. Every hypothesis the
search tries (views: no change, speed, pitch, tempo, weightings; alignments: 256 per search
window or whole input) only chooses which alignments get decoded; each decode is one draw
against the tag and all of them are counted: the first stage (no change, speed +-3 %) makes at
most 2 x (1 + ``CANDIDATES``) + 1 = 13, the second (speed +-4..8 %, pitch +-25..100 cents,
tempo +-4..8 %, onset weighting) at most 2 x ``WIDE_CANDIDATES`` = 10, and it runs only when
the first found nothing. The search: docs/watermark.md.

Presence tier (``Detection.presence``, never a record): the pilots plus the blind statistic of
the payload cells over the whole input, the best of every view and alignment the search tried
(H hypotheses); on audio without the key's mark P(z >= t) <= exp(-t^2 / 2) per hypothesis, so
the threshold ``sqrt(2 ln(H / PRESENCE_P))`` bounds a false presence by ``PRESENCE_P`` = 1e-6
per key and file. docs/watermark.md, "Presence".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from voxproof.watermark import align, ecc
from voxproof.watermark import analysis as an
from voxproof.watermark.align import Candidate
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.pattern import Pattern, pattern_for
from voxproof.watermark.payload import TAG_BITS, format_record_id, read_payload
from voxproof.watermark.views import PHASES, UNIT_HOPS, Hypothesis, View, Views

LOCAL_WINDOW: Final = UNIT_HOPS  # localisation windows (about 1 s, half overlapping)
CANDIDATES: Final = 5  # alignments decoded per key in the first stage (best sync correlations)
WIDE_CANDIDATES: Final = 5  # ... and in the second (wider hypotheses), if the first found nothing
MAX_ATTEMPTS: Final = 2 * (CANDIDATES + 1) + 1 + 2 * WIDE_CANDIDATES  # decodes per key: the
# false-positive budget (2 per candidate, 1 for the followed alignment)
EARLY_EXIT_Z: Final = 8.0  # sync this strong without a speed change: decode before searching
MARKED_Z: Final = 5.0  # a localisation window is marked at or above this correlation
SPEECH_WEIGHT: Final = 8.0  # below this total cell activity a window has too little speech
PRESENCE_P: Final = 1e-6  # the presence tier's false-positive bound per key and file


@dataclass(frozen=True)
class Segment:
    """A time range judged marked or unmarked."""

    start_s: float
    end_s: float
    marked: bool
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "marked": self.marked,
            "score": round(self.score, 2),
        }


def presence_threshold(hypotheses: int, p_false: float = PRESENCE_P) -> float:
    """The presence statistic's threshold over ``hypotheses`` (views x alignments): each
    exceeds t with probability <= exp(-t^2 / 2) on audio without the mark, so
    t = sqrt(2 ln(H / p)) bounds the union by ``p_false``."""
    return math.sqrt(2.0 * math.log(max(hypotheses, 1) / p_false))


@dataclass(frozen=True)
class Presence:
    """The presence tier: a keyed zero-bit statistic on the record's own cells (pilots plus the
    blind statistic of the payload cells, folded over the whole input), never a record id."""

    found: bool = False
    """A mark of a key in ``keys`` is present: ``z`` reached ``threshold``, or a record
    verified (a record implies presence)."""
    z: float = 0.0
    """The statistic's best value over the hypotheses tried (of the reported key)."""
    threshold: float = field(default_factory=lambda: presence_threshold(0))
    """``sqrt(2 ln(hypotheses / PRESENCE_P))``."""
    hypotheses: int = 0
    """Views x alignments the statistic was taken over for that key (256 per view)."""
    p_false: float = 0.0
    """Bound on a false presence for this file: ``PRESENCE_P`` per key searched."""
    key_id: str | None = None
    """The key whose mark is present (None when not found)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "key_id": self.key_id,
            "z": round(self.z, 2),
            "threshold": round(self.threshold, 3),
            "hypotheses": self.hypotheses,
            "p_false": self.p_false,
        }


@dataclass(frozen=True)
class Detection:
    """What ``detect`` found. ``record_id`` is set only when its keyed tag verified."""

    found: bool
    record_id: int | None = None
    key_id: str | None = None
    tag_verified: bool = False
    score: float = 0.0
    p_false: float = 0.0
    windows: list[tuple[float, float, float]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    speed: float | None = None
    mode: str | None = None
    presence: Presence = field(default_factory=Presence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "record_id": None if self.record_id is None else format_record_id(self.record_id),
            "key_id": self.key_id,
            "tag_verified": self.tag_verified,
            "score": round(self.score, 2),
            "p_false": self.p_false,
            "speed": self.speed,
            "mode": self.mode,
            "windows": [[round(a, 3), round(b, 3), round(s, 2)] for a, b, s in self.windows],
            "segments": [s.to_dict() for s in self.segments],
            "presence": self.presence.to_dict(),
        }


def detect(samples: np.ndarray, sample_rate: int, keys: Sequence[WatermarkKey]) -> Detection:
    """Look for a mark of any of ``keys`` in ``samples`` (float, (n,) or (n, channels)).

    Example:
        >>> key = WatermarkKey.from_hex("5a" * 32)
        >>> noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        >>> detect(noise, 8000, [key]).found
        False
    """
    return inspect(samples, sample_rate, keys)[0]


def inspect(
    samples: np.ndarray, sample_rate: int, keys: Sequence[WatermarkKey]
) -> tuple[Detection, np.ndarray | None]:
    """``detect`` plus the payload bits of the first decode attempt (for benchmarks only:
    unverified bits must never be reported as a record id)."""
    keys = list(keys)
    views = Views(an.to_internal(samples, sample_rate))
    attempts = 0
    first_bits = None
    stats: list[_PresenceStat] = []
    for key in keys:
        hit, used, bits, stat = _search(views, key)
        attempts += used
        first_bits = bits if first_bits is None else first_bits
        stats.append(stat)
        if hit is not None:
            return _report(hit, key, attempts, _presence(stats, len(keys), key)), hit.bits
    return Detection(found=False, p_false=_p_false(attempts),
                     presence=_presence(stats, len(keys))), first_bits


def _p_false(attempts: int) -> float:
    """Union bound: each decode attempt on unmarked audio verifies with probability 2^-24."""
    return min(1.0, attempts * 2.0**-TAG_BITS)


class _PresenceStat:
    """The presence statistic of one key: the best whole-input pilots + blind z of every view
    synced (each is 256 hypotheses, one per alignment)."""

    def __init__(self, key: WatermarkKey) -> None:
        self.key = key
        self.z = 0.0
        self.hypotheses = 0

    def sync(self, view: View, pattern: Pattern) -> list[Candidate]:
        """``align.sync``, counting the view and keeping its whole-input statistic."""
        cands = align.sync(view, pattern)
        self.hypotheses += UNIT_HOPS
        self.z = max([self.z] + [c.z for c in cands if c.blind and c.whole])
        return cands

    @property
    def threshold(self) -> float:
        return presence_threshold(self.hypotheses)


def _presence(stats: list[_PresenceStat], keys: int,
              record_key: WatermarkKey | None = None) -> Presence:
    """The presence report over the keys searched: the key whose record verified, else the
    first whose statistic reached its threshold, else the closest to it (not found)."""
    if not stats:
        return Presence()
    if record_key is not None:
        stat, found = stats[-1], True
    else:
        passed = [s for s in stats if s.z >= s.threshold]
        stat = passed[0] if passed else max(stats, key=lambda s: s.z - s.threshold)
        found = bool(passed)
    return Presence(found=found, z=stat.z, threshold=stat.threshold,
                    hypotheses=stat.hypotheses, p_false=min(1.0, keys * PRESENCE_P),
                    key_id=stat.key.key_id if found else None)


# --- the search -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Hit:
    """A decode whose tag verified: where, from which fold, what."""

    cand: Candidate
    folded: np.ndarray
    offset: int  # alignment of ``folded`` the bits were read at
    record_id: int
    bits: np.ndarray


class _Attempts:
    """Decodes made for one key: each is one draw against the tag (the false-positive budget)."""

    def __init__(self, key: WatermarkKey) -> None:
        self.key = key
        self.count = 0
        self.first: np.ndarray | None = None

    def verify(self, bits: np.ndarray) -> int | None:
        self.count += 1
        self.first = bits if self.first is None else self.first
        record_id, ok = read_payload(self.key, bits)
        return record_id if ok else None


def _search(views: Views, key: WatermarkKey
            ) -> tuple[_Hit | None, int, np.ndarray | None, _PresenceStat]:
    """Find and verify a mark of ``key``: (hit, decode attempts made, first decoded bits, the
    presence statistic over the views synced).

    First stage: the no-change and +-3 % speed views (early decode of a strong no-change
    alignment, then the ``CANDIDATES`` best), then the followed alignment. Second stage, only if
    nothing verified: the wide views join the pool and its ``WIDE_CANDIDATES`` best alignments
    not yet decoded are decoded."""
    pattern = pattern_for(key)
    attempts = _Attempts(key)
    presence = _PresenceStat(key)
    pool: list[Candidate] = []
    tried: list[Candidate] = []
    hit = (_search_alignments(views, pattern, attempts, presence, pool, tried)
           or _search_followed(views, pattern, attempts)
           or _search_wide(views, pattern, attempts, presence, pool, tried))
    return hit, attempts.count, attempts.first, presence


def _search_alignments(views: Views, pattern: Pattern, attempts: _Attempts,
                       presence: _PresenceStat, pool: list[Candidate],
                       tried: list[Candidate]) -> _Hit | None:
    for i, hyp in enumerate(views.plan):
        view = views.get(hyp)
        if view is None:
            pool.clear()  # too short for this view: the first stage proposes nothing
            return None
        pool.extend(presence.sync(view, pattern))
        if i == len(PHASES) - 1:  # the common case, no change: decode a strong one at once
            first = max(pool, key=lambda c: c.z)
            if first.z >= EARLY_EXIT_Z:
                tried.append(first)
                hit = _decode_candidate(first, pattern, attempts)
                if hit is not None:
                    return hit
    return _decode_best(pool, tried, CANDIDATES, pattern, attempts)


def _search_wide(views: Views, pattern: Pattern, attempts: _Attempts, presence: _PresenceStat,
                 pool: list[Candidate], tried: list[Candidate]) -> _Hit | None:
    for hyp in views.wide_plan:
        view = views.compute(hyp)  # not kept: only the pool's candidates hold their views
        if view is not None:  # a stretch may leave too little for a unit: skip it
            pool.extend(presence.sync(view, pattern))
            # only the best distinct untried candidates can still be decoded: keep just them
            pool[:] = _distinct(sorted(pool, key=lambda c: -c.z), tried)[:WIDE_CANDIDATES]
    return _decode_best(pool, tried, WIDE_CANDIDATES, pattern, attempts)


def _decode_best(pool: list[Candidate], tried: list[Candidate], count: int, pattern: Pattern,
                 attempts: _Attempts) -> _Hit | None:
    """Decode the ``count`` best distinct candidates of ``pool`` not in ``tried``."""
    for cand in _distinct(sorted(pool, key=lambda c: -c.z), tried)[:count]:
        tried.append(cand)
        hit = _decode_candidate(cand, pattern, attempts)
        if hit is not None:
            return hit
    return None


def _search_followed(views: Views, pattern: Pattern, attempts: _Attempts) -> _Hit | None:
    unscaled = [views.get(Hypothesis("none", 0.0, p)) for p in PHASES]
    if any(v is None for v in unscaled):
        return None
    followed = align.followed_fold([v for v in unscaled if v is not None], pattern)
    if followed is None:
        return None
    total, cand = followed
    bits = align.decode_fold(total, pattern)
    record_id = attempts.verify(bits)
    return None if record_id is None else _Hit(cand, total, 0, record_id, bits)


def _distinct(cands: list[Candidate], tried: list[Candidate]) -> list[Candidate]:
    """Drop candidates that repeat an earlier one (same view, same alignment)."""
    out: list[Candidate] = []
    seen = {(id(c.view), c.offset) for c in tried}
    for c in cands:
        if (id(c.view), c.offset) not in seen:
            seen.add((id(c.view), c.offset))
            out.append(c)
    return out


def _decode_candidate(cand: Candidate, pattern: Pattern, attempts: _Attempts) -> _Hit | None:
    """Decode two folds of the candidate (two attempts): a window's candidate, the whole input
    tracked from its alignment, then the window alone; a whole-input candidate, the plain fold of
    the whole input first (its alignment holds everywhere unless the speed is slightly off),
    then the tracked one."""
    if cand.whole:
        folds = [align.fold(cand.view.phasor), align.tracked_fold(cand, pattern)]
    else:
        folds = [align.tracked_fold(cand, pattern),
                 align.fold(cand.view.phasor, cand.start, cand.stop)]
    for folded in folds:
        bits = align.decode_fold(folded, pattern, cand.offset)
        record_id = attempts.verify(bits)
        if record_id is not None:
            return _Hit(cand, folded, cand.offset, record_id, bits)
    return None


# --- the report -------------------------------------------------------------------------------
def _report(hit: _Hit, key: WatermarkKey, attempts: int, presence: Presence) -> Detection:
    coded = ecc.encode(hit.bits)
    pattern = pattern_for(key)
    cells, signs = align.codeword_cells(pattern, coded)
    score = float(align.correlation_z(hit.folded, pattern, cells, signs)[hit.offset])
    windows = _localise(hit.cand.view, pattern, coded)
    return Detection(
        found=True,
        record_id=hit.record_id,
        key_id=key.key_id,
        tag_verified=True,
        score=score,
        p_false=_p_false(attempts),
        windows=[(a, b, z) for a, b, z, _ in windows],
        segments=_segments(windows),
        speed=hit.cand.view.scale,
        mode=hit.cand.view.mode,
        presence=presence,
    )


def _localise(view: View, pattern: Pattern, coded: np.ndarray
              ) -> list[tuple[float, float, float, bool]]:
    """Per window: (start s, end s, codeword correlation z, enough speech to judge)."""
    cells, signs = align.codeword_cells(pattern, coded)
    n = len(view.phasor)
    step = LOCAL_WINDOW // 2
    out = []
    for start in range(0, max(1, n - step), step):
        stop = min(n, start + LOCAL_WINDOW)
        z = align.correlation_z(align.fold(view.phasor, start, stop), pattern, cells, signs)
        speech = float(view.activity[start:stop].sum()) >= SPEECH_WEIGHT
        centre = (start + stop) / 2
        begin = 0 if start == 0 else centre - step / 2
        end = n + an.BLOCK_HOPS if stop >= n else centre + step / 2
        out.append((view.seconds(begin), view.seconds(end), float(z.max()), speech))
    return out


def _segments(windows: list[tuple[float, float, float, bool]]) -> list[Segment]:
    """Merge windows into marked / unmarked ranges; windows without speech join a neighbour."""
    labels: list[bool | None] = [z >= MARKED_Z if speech else None for _, _, z, speech in windows]
    known = [i for i, lab in enumerate(labels) if lab is not None]
    if not known:
        return []
    for i, lab in enumerate(labels):
        if lab is None:
            nearest = min(known, key=lambda k: abs(k - i))
            labels[i] = labels[nearest]
    segs: list[Segment] = []
    for (a, b, z, _), lab in zip(windows, labels):
        if segs and segs[-1].marked == lab:
            last = segs[-1]
            segs[-1] = Segment(last.start_s, b, bool(lab), max(last.score, z) if lab else min(last.score, z))
        else:
            segs.append(Segment(a, b, bool(lab), z))
    return segs
