"""Text in, speech out, within a time budget: the voice as callers use it.

``load_voice(settings)`` verifies the model layer (it never builds one) and loads the chosen
engine (no synthesis at start: the cost starts from a safe prior and learns from requests);
``Voice.synthesize`` prepares, phonemizes and speaks unit by unit. How, and why: docs/voice.md.

The deadline contract: a text whose estimate (times :data:`SAFETY`) exceeds
``deadline.remaining()`` is :class:`~voxproof.errors.DeadlineTooShort` before any synthesis; a
request that runs out mid-way stops between units with
:class:`~voxproof.errors.DeadlineExceeded`; nothing partial is ever returned. One request speaks
at a time (waiting counts against its deadline). The clip's peak is :data:`PEAK_TARGET`
(-1 dBFS), never clipped.

Example:
    >>> voice = load_voice(Settings())  # doctest: +SKIP
    >>> speech = voice.synthesize("Hello there.", deadline=Deadline.after(10), max_chars=1000)  # doctest: +SKIP
    >>> speech.sample_rate, speech.samples.dtype  # doctest: +SKIP
    (22050, dtype('float32'))
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np

from voxproof.deadline import Clock, Deadline
from voxproof.errors import DeadlineExceeded, DeadlineTooShort, TextEmpty
from voxproof.text import Removal, prepare
from voxproof.voice.inputs import MAX_IDS
from voxproof.voice.layer import VerifiedLayer, verify_layer
from voxproof.voice.manifest import Manifest
from voxproof.voice.phonemize import EOS, PAD, Phonemizer

if TYPE_CHECKING:
    from voxproof.settings import Settings

__all__ = [
    "CLAUSE_PAUSE_S",
    "PEAK_TARGET",
    "PRIORS",
    "SAFETY",
    "SENTENCE_PAUSE_S",
    "AdaptiveCost",
    "CostModel",
    "Speech",
    "Voice",
    "calibrate",
    "load_engine",
    "load_voice",
]

_LOG = logging.getLogger(__name__)

SENTENCE_PAUSE_S: Final = 0.2
"""Silence after a unit that ends a sentence (``. ? !``): Piper's ``sentence_silence``."""
CLAUSE_PAUSE_S: Final = 0.1
"""Silence after a unit that ends a clause (``, ; :``) or where a long sentence was cut."""
FADE_S: Final = 0.003
"""Raised-cosine fade at both ends of every unit."""
PEAK_TARGET: Final = 10 ** (-1 / 20)
"""Peak of every output (-1 dBFS)."""
MAX_GAIN: Final = 4.0
"""The peak gain never lifts a clip by more than this (12 dB), so near-silence stays quiet."""
SAFETY: Final = 1.5
"""Estimates are the modelled cost times this."""
CALIBRATION_TEXTS: Final = (
    "Good morning.",
    "The voice measures itself once, when it starts, so that each request can be weighed.",
)
"""The short and the longer calibration sentence."""
CALIBRATION_REPEATS: Final = 2
"""Timed calls per calibration sentence (the fastest counts)."""
_SENTENCE_ENDS: Final = (".", "?", "!")


class Engine(Protocol):
    """What the voice needs from an engine (``voxproof.voice.onnx_engine.OnnxEngine``, the
    default, or ``voxproof.voice.engine.VitsEngine``, the torch reference)."""

    @property
    def sample_rate(self) -> int: ...
    @property
    def voice(self) -> str: ...
    @property
    def manifest_sha256(self) -> str: ...
    @property
    def threads(self) -> int: ...

    name: str

    def infer(self, ids: Sequence[int], *, seed: int | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class CostModel:
    """Seconds one engine call is expected to take: ``safety * (per_call_s + per_id_s * ids)``."""

    per_call_s: float
    """Fixed cost of one call, whatever its length."""
    per_id_s: float
    """Cost of each phoneme id."""
    safety: float = SAFETY
    """Multiplier on every estimate (>= 1)."""

    def __post_init__(self) -> None:
        values = (self.per_call_s, self.per_id_s, self.safety)
        if not all(math.isfinite(v) for v in values) or self.per_call_s < 0 \
                or self.per_id_s <= 0 or self.safety < 1:
            raise ValueError("a cost model needs per_call_s >= 0, per_id_s > 0, safety >= 1")

    def estimate(self, n_ids: int) -> float:
        """Expected seconds for one call on ``n_ids`` ids."""
        return self.safety * (self.per_call_s + self.per_id_s * n_ids)

    def current(self) -> CostModel:
        """The model a request is judged by: this one (it never changes)."""
        return self

    def observe(self, n_ids: int, seconds: float) -> None:
        """A fixed model learns nothing from a call."""


PRIORS: Final = {
    ("onnx", 1): (0.05, 0.004),
    ("onnx", 2): (0.05, 0.003),
    ("torch", 1): (0.10, 0.008),
    ("torch", 2): (0.10, 0.006),
}
"""Seconds (per call, per phoneme id) by (engine, threads; more than 2 count as 2): about 3x
what the default voice takes on a quiet 2-core x86 machine (docs/voice.md), so the first
requests are judged pessimistically, never optimistically."""


class AdaptiveCost:
    """A safe prior per (engine, threads), refined by what the engine's calls really took.

    The scale applied to the prior is a high quantile (:attr:`quantile`) of the last
    :attr:`window` observed/prior ratios. Until :attr:`min_observations` calls have been seen it
    can only rise (thin evidence never makes requests look cheaper); after that it follows the
    quantile, but never below :attr:`floor` of the prior. Each request is judged by one
    snapshot (:meth:`current`), taken before its first unit, as the deadline contract needs.
    """

    window: Final = 32
    min_observations: Final = 5
    quantile: Final = 0.9
    floor: Final = 0.25

    def __init__(self, prior: CostModel) -> None:
        self.prior = prior
        """The starting model (scale 1)."""
        self._ratios: deque[float] = deque(maxlen=self.window)
        self._scale = 1.0
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: str, threads: int) -> AdaptiveCost:
        """The prior of :data:`PRIORS` for this engine and thread count."""
        per_call, per_id = PRIORS[engine, 1 if threads <= 1 else 2]
        return cls(CostModel(per_call_s=per_call, per_id_s=per_id))

    @property
    def per_call_s(self) -> float:
        """The current fixed cost of one call."""
        return self.current().per_call_s

    @property
    def per_id_s(self) -> float:
        """The current cost of each phoneme id."""
        return self.current().per_id_s

    def current(self) -> CostModel:
        """The model as it stands now (a fixed snapshot)."""
        with self._lock:
            scale = self._scale
        return CostModel(per_call_s=self.prior.per_call_s * scale,
                         per_id_s=self.prior.per_id_s * scale, safety=self.prior.safety)

    def estimate(self, n_ids: int) -> float:
        """Expected seconds for one call on ``n_ids`` ids, by the current model."""
        return self.current().estimate(n_ids)

    def observe(self, n_ids: int, seconds: float) -> None:
        """Fold in one engine call that took ``seconds`` on ``n_ids`` ids."""
        raw = self.prior.per_call_s + self.prior.per_id_s * n_ids
        if not math.isfinite(seconds) or seconds < 0:
            return
        with self._lock:
            self._ratios.append(seconds / raw)
            ratios = sorted(self._ratios)
            high = ratios[min(len(ratios) - 1, int(self.quantile * len(ratios)))]
            if len(ratios) < self.min_observations:
                self._scale = max(self._scale, high)
            else:
                self._scale = max(high, self.floor)


@dataclass(frozen=True, eq=False)
class Speech:
    """One synthesized text: the audio and what provenance needs to know about it."""

    samples: np.ndarray
    """float32 mono, peak at most ``PEAK_TARGET``."""
    sample_rate: int
    """Hz."""
    voice: str
    """The voice's name (the manifest's model name)."""
    manifest_sha256: str
    """The model layer's identity."""
    units: int
    """Engine calls it took (sentences, clauses and cuts)."""
    removed: tuple[Removal, ...] = ()
    """Harmless invisible characters dropped from the text (see ``voxproof.text``)."""

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class _Unit:
    ids: tuple[int, ...]
    pause_s: float  # silence after it (unless it is the last)


@dataclass
class Voice:
    """A loaded voice. Build it with :func:`load_voice`.

    Parameters
    ----------
    engine:
        Phoneme ids -> audio (``VitsEngine``).
    phonemizer:
        Text -> the engine's phoneme ids.
    cost:
        The engine's speed: :class:`AdaptiveCost` (what :func:`load_voice` gives: a prior
        refined by the calls themselves) or a fixed :class:`CostModel`.
    max_ids:
        Longest id sequence per engine call (the engine's ``MAX_IDS``).
    """

    engine: Engine
    phonemizer: Phonemizer
    cost: CostModel | AdaptiveCost
    max_ids: int = MAX_IDS
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""
        return self.engine.sample_rate

    @property
    def name(self) -> str:
        """The voice's name, e.g. ``en_US-joe-medium``."""
        return self.engine.voice

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the model layer's manifest."""
        return self.engine.manifest_sha256

    def synthesize(self, text: str, *, deadline: Deadline, max_chars: int,
                   seed: int | None = None) -> Speech:
        """Speak ``text`` within ``deadline``, all or nothing.

        Parameters
        ----------
        text:
            What to say (validated by ``voxproof.text.prepare``).
        deadline:
            When the answer is due. Refused up front if the estimate does not fit; stopped
            between units if the time runs out.
        max_chars:
            The entry point's length limit.
        seed:
            Seed the sampling noise (unit ``i`` uses ``seed + i``) for a reproducible result.

        Raises ``TextError`` subclasses for bad text, ``DeadlineTooShort`` before any synthesis,
        ``DeadlineExceeded`` when stopped part-way (no audio is returned).
        """
        prepared = prepare(text, max_chars=max_chars)
        units = self._units(prepared.pieces)
        if not self._lock.acquire(timeout=min(deadline.remaining(), threading.TIMEOUT_MAX)):
            raise DeadlineTooShort("the voice was busy until the time ran out; try again")
        try:
            cost = self.cost.current()  # this request is judged by one fixed model
            self._check_budget(units, deadline, cost)
            parts = self._speak(units, deadline, seed, cost)
        finally:
            self._lock.release()
        return Speech(
            samples=self._join(parts, units), sample_rate=self.sample_rate, voice=self.name,
            manifest_sha256=self.manifest_sha256, units=len(units), removed=prepared.removed,
        )

    # --- steps ------------------------------------------------------------------------------

    def _units(self, pieces: Sequence[str]) -> list[_Unit]:
        """Every piece's id sequences, each with the pause that follows it."""
        ends = _sentence_end_ids(self.phonemizer.id_map)
        units = [
            _Unit(ids, SENTENCE_PAUSE_S if any(_ends_with(ids, end) for end in ends)
                  else CLAUSE_PAUSE_S)
            for piece in pieces
            for ids in self.phonemizer.to_ids(piece, max_ids=self.max_ids).sentences
        ]
        if not units:  # prepare() leaves a letter in every piece; espeak-ng made no phoneme
            raise TextEmpty("nothing in this text can be spoken")
        return units

    def _check_budget(self, units: Sequence[_Unit], deadline: Deadline, cost: CostModel) -> None:
        estimate = sum(cost.estimate(len(unit.ids)) for unit in units)
        remaining = deadline.remaining()
        if estimate > remaining:
            raise DeadlineTooShort(
                f"this text takes about {estimate:.2f} s to speak; {remaining:.2f} s are left",
                estimate_s=round(estimate, 2), remaining_s=round(remaining, 2),
            )

    def _speak(self, units: Sequence[_Unit], deadline: Deadline, seed: int | None,
               cost: CostModel) -> list[np.ndarray]:
        parts: list[np.ndarray] = []
        slowdown = 1.0  # how much slower than estimated this request runs (never below 1)
        for index, unit in enumerate(units):
            expected = cost.estimate(len(unit.ids))
            if expected * slowdown > deadline.remaining():
                raise DeadlineExceeded(
                    f"stopped after {index} of {len(units)} sentences: the next one would "
                    "not finish in time; no audio was kept",
                    done=index, total=len(units),
                )
            started = deadline.now()
            parts.append(self.engine.infer(unit.ids, seed=None if seed is None else seed + index))
            took = deadline.now() - started
            self.cost.observe(len(unit.ids), took)
            slowdown = max(slowdown, took / expected)
        if deadline.expired():
            raise DeadlineExceeded(
                "the last sentence ended after the deadline; no audio was kept",
                done=len(units), total=len(units),
            )
        return parts

    def _join(self, parts: Sequence[np.ndarray], units: Sequence[_Unit]) -> np.ndarray:
        rate = self.sample_rate
        pieces: list[np.ndarray] = []
        for index, (part, unit) in enumerate(zip(parts, units, strict=True)):
            pieces.append(_faded(np.asarray(part, dtype=np.float32), int(FADE_S * rate)))
            if index < len(units) - 1:
                pieces.append(np.zeros(round(unit.pause_s * rate), dtype=np.float32))
        audio = np.concatenate(pieces)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio *= min(PEAK_TARGET / peak, MAX_GAIN)
        return audio.astype(np.float32, copy=False)


def calibrate(engine: Engine, phonemizer: Phonemizer, *,
              clock: Clock = time.perf_counter) -> CostModel:
    """Measure the engine on the two :data:`CALIBRATION_TEXTS` and fit a :class:`CostModel`
    (five syntheses: for benchmarks and for measuring :data:`PRIORS`; ``load_voice`` does not).

    The per-id cost is the slope between the two sentences' times, but never below half the
    long one's average cost per id (a noisy short call must not make ids look free); the
    per-call cost is what the short sentence took beyond its ids.
    """
    short, long = (phonemizer.to_ids(text).sentences[0] for text in CALIBRATION_TEXTS)
    engine.infer(short, seed=0)  # warm-up: the first call allocates
    t_short, t_long = (min(_timed(engine, ids, clock) for _ in range(CALIBRATION_REPEATS))
                       for ids in (short, long))
    per_id = max((t_long - t_short) / (len(long) - len(short)), 0.5 * t_long / len(long), 1e-6)
    per_call = max(t_short - per_id * len(short), 0.0)
    _LOG.debug("calibrated: %.2f ms per call + %.3f ms per phoneme id", 1e3 * per_call, 1e3 * per_id)
    return CostModel(per_call_s=per_call, per_id_s=per_id)


def load_voice(settings: Settings) -> Voice:
    """Verify the model layer and load it with ``settings.engine``: a ready voice.

    No synthesis at start: the voice's cost starts from the engine's prior
    (:meth:`AdaptiveCost.for_engine`) and learns from the requests themselves.

    Uses ``settings.model_dir`` pinned to ``settings.model_manifest_sha256``; a layer that does
    not match is refused with its ``LayerError``, and one that is not built yet (only its
    manifest) names the command that builds it (``voxproof layer build``). Nothing is built here.
    """
    layer = verify_layer(settings.model_dir, manifest_sha256=settings.model_manifest_sha256,
                         unread=lambda manifest: unread_by(settings.engine, manifest))
    engine = load_engine(layer, engine=settings.engine, threads=settings.torch_threads)
    frontend = layer.manifest.engine.settings.frontend
    phonemizer = Phonemizer(layer.phoneme_id_map(), voice=frontend.espeak_voice)
    return Voice(engine, phonemizer, AdaptiveCost.for_engine(engine.name, engine.threads))


def unread_by(engine: str, manifest: Manifest) -> tuple[str, ...]:
    """The layer files ``engine`` never opens (so ``verify_layer`` need not hash them): the
    torch checkpoint for the ONNX engine, the ONNX export for the torch engine."""
    export = manifest.engine.onnx
    if export is None:
        return ()
    return (export.file,) if engine == "torch" else (manifest.engine.settings.checkpoint,)


def load_engine(layer: VerifiedLayer, *, engine: str, threads: int) -> Engine:
    """The named engine on ``layer``; only that engine's libraries are imported.

    ``onnx`` runs the layer's ONNX export on onnxruntime (never importing torch or TTS);
    ``torch`` runs Coqui's ``Vits`` (the reference).
    """
    if engine == "torch":
        from voxproof.voice.engine import load_engine as load_torch_engine

        return load_torch_engine(layer, threads=threads)
    from voxproof.voice.onnx_engine import load_onnx_engine

    return load_onnx_engine(layer, threads=threads)


# --- helpers ------------------------------------------------------------------------------------


def _timed(engine: Engine, ids: Sequence[int], clock: Clock) -> float:
    started = clock()
    engine.infer(ids, seed=0)
    return clock() - started


def _sentence_end_ids(id_map: Mapping[str, Sequence[int]]) -> list[tuple[int, ...]]:
    """The ids a unit ends with when its last phoneme ends a sentence (``. ? !``)."""
    tail = (*id_map[PAD], *id_map[EOS])
    return [(*id_map[mark], *tail) for mark in _SENTENCE_ENDS if mark in id_map]


def _ends_with(ids: Sequence[int], end: Sequence[int]) -> bool:
    return len(ids) > len(end) and tuple(ids[-len(end):]) == tuple(end)


def _faded(part: np.ndarray, n: int) -> np.ndarray:
    """``part`` with a raised-cosine fade-in and fade-out of ``n`` samples (a copy)."""
    out = part.copy()
    n = min(n, len(out) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out
