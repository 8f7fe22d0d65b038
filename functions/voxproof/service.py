"""The use cases, as the product sees them. Every entry point (CLI, local server, Lambda
handlers) calls these and nothing else.

- ``speak``: validate -> synthesize -> mark -> encode -> sign -> record. The audio comes back
  encoded (wav, mp3, m4a or flac) with an embedded, signed C2PA manifest naming its record
  (``voxproof.credentials``); the record and that manifest store are written together before the
  audio is returned; if the time runs out, signing fails or the record cannot be written, there
  is neither audio nor record.
- ``verify``: decode (and read the file's manifest, both in the decoder: untrusted bytes are
  parsed away from the keys) -> detect -> look up -> assess credentials -> report. A registry that cannot
  be reached does not hide what the mark says: the report lists it under ``unchecked``. The
  file's own manifest is validated, and when it is gone or broken the one stored with the
  record the mark names is returned (``CredentialsReport``).

No AWS type appears here: the voice, key source and registry come in through the constructor
(``voxproof.runtime.build_service`` wires them, local or AWS, for every entry point). So does
``step``: every step of both use cases (keys, synthesize, mark, store; decode,
detect, lookup) runs inside ``step(name)``, a context manager the caller chooses (the Lambda
adapters open an X-Ray subsegment; by default nothing happens).

Example:
    >>> from voxproof.runtime import build_service
    >>> from voxproof.settings import Settings
    >>> service = build_service(Settings())                            # doctest: +SKIP
    >>> result = service.speak("Hello.", Caller("cli:me", "cli"),       # doctest: +SKIP
    ...                        Deadline.after(60))
    >>> service.verify(result.wav(), Caller("cli:me", "cli")).found    # doctest: +SKIP
    True
"""

from __future__ import annotations

import getpass
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from voxproof import audio
from voxproof.credentials.core import Credentials, CredentialsReport
from voxproof.credentials.manifest import FORMATS, MIME_TYPES
from voxproof.credentials.reader import CredentialsCheck
from voxproof.deadline import Deadline
from voxproof.decode_worker import Decoder, InProcessDecoder, ManifestQuery
from voxproof.errors import DeadlineExceeded, Unavailable, VoxproofError
from voxproof.keyring import KeyRing, KeySource
from voxproof.watermark import TAG_BITS, Detection, detect, embed
from voxproof.watermark.detect import MAX_ATTEMPTS

if TYPE_CHECKING:  # the voice stack is imported by whoever loads a voice, never by verify;
    # provenance (its records are pydantic models) by speak, and by a verify that finds a mark
    from voxproof.provenance import ProvenanceRecord, Registry
    from voxproof.voice import Speech, Voice

RECORD_ID_BITS: Final = 40
_ID_ATTEMPTS: Final = 8  # fresh ids tried when an id is taken (2^-40 odds each, per record held)
#: Time kept back for marking, encoding, signing and recording once the speech is done (marking
#: runs at ~1 % of real time, signing takes milliseconds; a registry write is one request).
MARK_AND_RECORD_MARGIN_S: Final = 0.5
#: Bit rates of the lossy outputs: high enough that the mark survives its own encoding.
OUTPUT_BITRATES: Final = {"mp3": 128_000, "m4a": 128_000}

Step = Callable[[str], AbstractContextManager[object]]
"""Opens a named step around a piece of work (e.g. a tracing span); see ``no_step``."""


def no_step(name: str) -> AbstractContextManager[object]:
    """The default ``Step``: does nothing."""
    return nullcontext()


class UnknownVoice(VoxproofError):
    code = "unknown_voice"
    status = 422


class UnknownFormat(VoxproofError):
    code = "unknown_format"
    status = 422


@dataclass(frozen=True)
class Caller:
    """Who asks, and through which door."""

    identity: str
    """API key id, IAM principal, queue/bucket source or local user (never a secret)."""

    entry_point: str
    """cli, api, batch-sqs, batch-s3 or serve."""

    request_id: str | None = None
    """The Lambda/API request id, when there is one."""

    job_id: str | None = None
    """The batch job id, when the request is a job."""


@dataclass(frozen=True, eq=False)
class SpeechResult:
    """Marked audio and the record that vouches for it."""

    samples: np.ndarray
    """float32 mono, marked."""

    sample_rate: int
    """Hz."""

    record: ProvenanceRecord
    """Already stored in the registry."""

    speech: Speech = field(repr=False)
    """The unmarked synthesis' metadata (voice, units, removed characters)."""

    audio: bytes = field(default=b"", repr=False)
    """The output file: ``format``-encoded, with its signed manifest store embedded."""

    format: str = "wav"
    """wav, mp3, m4a or flac."""

    manifest_store: bytes | None = field(default=None, repr=False)
    """The C2PA manifest store embedded in ``audio`` (also stored with the record); None from a
    service built without credentials (tests of other parts)."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def media_type(self) -> str:
        return MIME_TYPES[self.format]

    def wav(self) -> bytes:
        """The output file when it is a WAV (16-bit PCM, signed)."""
        if self.format != "wav":
            raise ValueError(f"this result is {self.format}, not wav: use .audio")
        return self.audio


#: The record's fields the public verify answer shows: when, which voice and model.
PUBLIC_RECORD_FIELDS: Final = ("schema_version", "record_id", "created_at", "voice",
                               "model_manifest_sha256", "sample_rate", "duration_s")


@dataclass(frozen=True, eq=False)
class VerifyReport:
    """What verify says about one piece of audio."""

    detection: Detection
    """The mark search's result (record id only when its keyed tag verified)."""

    record: ProvenanceRecord | None
    """The provenance record the mark names, when the registry has it."""

    duration_s: float
    """Length of the decoded audio."""

    sample_rate: int
    """Its sample rate."""

    unchecked: tuple[str, ...] = ()
    """What could not be checked, in words (e.g. the registry was unreachable)."""

    credentials: CredentialsReport | None = None
    """The file's C2PA manifest and what it proves beside the mark (None: not checked)."""

    @property
    def found(self) -> bool:
        return self.detection.found

    @property
    def presence_found(self) -> bool:
        """A mark of a key in force is present: a record verified, or the presence tier's
        keyed statistic reached its threshold (P(false) <= 1e-6 per key; no record id)."""
        return self.found or self.detection.presence.found

    @property
    def ai_generated(self) -> bool | None:
        """True when a mark is present (everything this service marks is synthesized
        speech); None otherwise (no mark is no evidence either way)."""
        return True if self.presence_found else None

    @property
    def verdict(self) -> str:
        """``recorded`` (mark and record agree), ``marked`` (mark verified, no record here)
        or ``not_found`` (no record id; ``presence_found`` may still say a mark is there)."""
        if not self.detection.found:
            return "not_found"
        return "recorded" if self.record is not None else "marked"

    @property
    def confidence_level(self) -> str:
        """The coarse verdict the public view gives instead of scores: ``high`` when a mark's
        keyed tag verified (P(false positive) <= 23 x k x 2^-24 for k keys), else ``none``."""
        return "high" if self.found else "none"

    def public_dict(self) -> dict[str, Any]:
        """The public verify answer: a verdict, never an oracle. Found or not, the record id,
        when and with which voice and model it was made, whether a mark is present (presence
        tier), that it is AI-generated, and a coarse confidence; no score, p_false, segments,
        speed, key id, presence statistic, or the record's caller, request, job or text hash
        (those are ``detailed_dict``, for auditors)."""
        record = None
        if self.record is not None:
            full = self.record.public_dict()
            record = {name: full[name] for name in PUBLIC_RECORD_FIELDS}
        return {
            "found": self.found,
            "verdict": self.verdict,
            "record_id": self.detection.to_dict()["record_id"],
            "presence_found": self.presence_found,
            "ai_generated": self.ai_generated,
            "confidence_level": self.confidence_level,
            "duration_s": round(self.duration_s, 3),
            "sample_rate": self.sample_rate,
            "record": record,
            "unchecked": list(self.unchecked),
            "credentials": None if self.credentials is None
            else self.credentials.to_dict(public=True),
        }

    def detailed_dict(self) -> dict[str, Any]:
        """The auditor's answer: everything ``to_dict`` says (scores, segments, the presence
        statistic, the full record with its caller) plus the public view's ``presence_found``,
        ``ai_generated`` and ``confidence_level``, so every public field is in it with the same
        meaning."""
        return {**self.to_dict(), "presence_found": self.presence_found,
                "ai_generated": self.ai_generated, "confidence_level": self.confidence_level}

    def to_dict(self) -> dict[str, Any]:
        """The full report, as ``voxproof verify --json`` prints it (the local user is the
        auditor)."""
        body = self.detection.to_dict()
        body.pop("windows", None)
        body.update(
            verdict=self.verdict,
            confidence=round(1.0 - self.detection.p_false, 12) if self.found else 0.0,
            duration_s=round(self.duration_s, 3),
            sample_rate=self.sample_rate,
            record=None if self.record is None else self.record.public_dict(),
            unchecked=list(self.unchecked),
            credentials=None if self.credentials is None else self.credentials.to_dict(),
        )
        return body


class Service:
    """speak and verify over a voice, a key source and a provenance registry.

    Parameters
    ----------
    voice:
        The loaded voice, or a function that loads it on the first ``speak`` (verify never
        needs the model, so a verify-only process never loads it).
    keys:
        Where the keys in force come from (asked on every request; sources cache).
    registry:
        Where provenance records live.
    max_chars:
        The longest text this entry point accepts.
    new_record_id:
        Draws a record id (default: 40 random bits from the OS CSPRNG).
    step:
        Wraps each named step (keys, synthesize, mark, store; decode, detect, lookup), e.g. in
        a tracing span (default: ``no_step``).
    decoder:
        Decodes uploads for ``verify`` (default: in this process; ``build_service`` wires a
        ``DecodeWorker``, which keeps untrusted bytes away from the keys).
    credentials:
        Signs every output's C2PA manifest and checks manifests in verify
        (``build_service`` always wires them; without them, outputs are unsigned and verify
        does not read manifests: for tests of other parts).
    """

    def __init__(self, voice: Voice | Callable[[], Voice], keys: KeySource, registry: Registry,
                 *, max_chars: int, new_record_id: Callable[[], int] | None = None,
                 step: Step = no_step, decoder: Decoder | None = None,
                 credentials: Credentials | None = None) -> None:
        self._voice: Voice | None = None if callable(voice) else voice
        self._load_voice: Callable[[], Voice] | None = voice if callable(voice) else None
        self._voice_lock = threading.Lock()
        self.keys = keys
        self.registry = registry
        self.max_chars = max_chars
        self._new_record_id = new_record_id or (lambda: secrets.randbits(RECORD_ID_BITS))
        self._step = step
        self.decoder: Decoder = decoder or InProcessDecoder()
        self.credentials = credentials

    @property
    def voice(self) -> Voice:
        """The voice, loaded on first use (see ``load``)."""
        return self.load()

    @property
    def loaded_voice(self) -> Voice | None:
        """The voice if it is loaded already; never loads it (health checks)."""
        return self._voice

    def load(self) -> Voice:
        """Load the voice now (a server does this at start-up; verify never needs it)."""
        if self._voice is None:
            with self._voice_lock:
                if self._voice is None:
                    assert self._load_voice is not None
                    self._voice = self._load_voice()
        return self._voice

    # --- speak ------------------------------------------------------------------------------

    def speak(self, text: str, caller: Caller, deadline: Deadline, *,
              voice: str | None = None, fmt: str = "wav",
              seed: int | None = None) -> SpeechResult:
        """Speak ``text``, mark it, encode it as ``fmt``, sign it, record it; all or nothing
        within ``deadline``."""
        if fmt not in FORMATS:
            raise UnknownFormat(f"unknown format '{fmt}'; one of {', '.join(FORMATS)}",
                                formats=list(FORMATS))
        self._check_voice(voice)
        with self._step("keys"):
            keyring = self.keys.keyring()
        voice_ = self.voice
        with self._step("synthesize"):
            speech = voice_.synthesize(text, deadline=deadline, max_chars=self.max_chars,
                                       seed=seed)
        if deadline.remaining() < MARK_AND_RECORD_MARGIN_S:
            raise DeadlineExceeded("the time ran out before the audio could be marked and "
                                   "recorded; nothing was kept")
        return self._mark_and_record(speech, text, caller, keyring, fmt)

    def _check_voice(self, voice: str | None) -> None:
        if voice is not None and voice != self.voice.name:
            raise UnknownVoice(f"unknown voice; this deployment speaks '{self.voice.name}'",
                               voices=[self.voice.name])

    def _mark_and_record(self, speech: Speech, text: str, caller: Caller,
                         keyring: KeyRing, fmt: str) -> SpeechResult:
        from voxproof.provenance import ProvenanceRecord, RecordExists, text_hash

        key = keyring.current
        hashed = text_hash(key, text)
        for _ in range(_ID_ATTEMPTS):
            record = ProvenanceRecord.new(
                record_id=self._new_record_id(), key_id=key.key_id, text_hash=hashed,
                model_manifest_sha256=speech.manifest_sha256, voice=speech.voice,
                sample_rate=speech.sample_rate, duration_s=round(speech.duration_s, 3),
                caller=caller.identity, entry_point=caller.entry_point,
                job_id=caller.job_id, request_id=caller.request_id,
            )
            with self._step("mark"):
                marked = embed(speech.samples, speech.sample_rate, key, record.record_id)
            with self._step("encode"):
                encoded = audio.encode(marked, speech.sample_rate, fmt,
                                       bitrate=OUTPUT_BITRATES.get(fmt))
            store = None
            if self.credentials is not None:
                with self._step("sign"):
                    signed = self.credentials.sign(
                        encoded, fmt, record_id=record.record_id, key_id=record.key_id,
                        voice=record.voice, model_manifest_sha256=record.model_manifest_sha256)
                encoded, store = signed.audio, signed.manifest_store
            try:
                with self._step("store"):
                    self.registry.put_new(record, store)
            except RecordExists:
                continue
            return SpeechResult(marked, speech.sample_rate, record, speech, encoded, fmt, store)
        raise Unavailable("no free record id was found; try again")

    # --- verify -----------------------------------------------------------------------------

    def verify(self, upload: bytes, caller: Caller, *, declared: str | None = None,
               limits: audio.AudioLimits = audio.DEFAULT_LIMITS) -> VerifyReport:
        """Decode ``upload`` (mono at the detector's rate, bounded, in the decoder), look for a
        mark of any accepted key, and look its record up."""
        query = self._manifest_query(upload)
        with self._step("decode"):
            if query is None:
                clip, embedded = self.decoder.decode(upload, declared=declared,
                                                     limits=limits), None
            else:  # the manifest is parsed where the audio is: away from the keys
                clip, embedded = self.decoder.decode_and_read(upload, query, declared=declared,
                                                              limits=limits)
        return self.verify_decoded(clip, caller, upload=upload, declared=declared,
                                   embedded=embedded)

    def _manifest_query(self, upload: bytes) -> ManifestQuery | None:
        """What the decoder should read of the upload's manifest (None: nothing to read)."""
        mime = _c2pa_mime(upload)
        if self.credentials is None or mime is None:
            return None
        return ManifestQuery(mime, self.credentials.anchors_pem)

    def verify_decoded(self, clip: audio.MonoAudio | audio.DecodedAudio,
                       caller: Caller, *, upload: bytes | None = None,
                       declared: str | None = None,
                       embedded: CredentialsCheck | None = None) -> VerifyReport:
        """``verify`` for audio that is already decoded (the report gives its own rate); the
        file's manifest is read when its bytes (``upload``) are given."""
        with self._step("keys"):
            accepted = self.keys.keyring().accepted
        with self._step("detect"):
            found = with_key_bound(detect(clip.samples, clip.sample_rate, accepted),
                                   len(accepted))
        with self._step("lookup"):
            record, unchecked = self._look_up(found)
        credentials = None
        if self.credentials is not None and upload is not None:
            with self._step("credentials"):
                credentials, more = self._read_credentials(upload, declared, found, record,
                                                           embedded)
            unchecked += more
        return VerifyReport(found, record, clip.duration_s, clip.source_rate, unchecked,
                            credentials)

    def _read_credentials(self, upload: bytes, declared: str | None, found: Detection,
                          record: ProvenanceRecord | None,
                          embedded: CredentialsCheck | None = None,
                          ) -> tuple[CredentialsReport, tuple[str, ...]]:
        """The file's manifest, and the one stored with the mark's record when that settles
        what the file's cannot (only a record whose key matched is trusted for it)."""
        assert self.credentials is not None
        credentials = self.credentials
        if embedded is None:  # not read by the decoder (a trusted local caller's audio)
            embedded = credentials.check_embedded(upload, _c2pa_mime(upload))
        mark_record = found.record_id if found.found else None
        unreachable: list[str] = []

        def stored() -> bytes | None:
            if record is None:
                return None
            try:
                return self.registry.get_manifest(record.record_id)
            except Unavailable:
                unreachable.append(_MANIFEST_UNREACHABLE)
                return None

        report = CredentialsReport.assess(embedded, mark_record, stored,
                                          credentials.check_stored)
        return report, tuple(unreachable)

    def _look_up(self, found: Detection) -> tuple[ProvenanceRecord | None, tuple[str, ...]]:
        if not found.found or found.record_id is None:
            return None, ()
        try:
            record = self.registry.get(found.record_id)
        except Unavailable:
            return None, (_UNREACHABLE,)
        if record is None:
            return None, (_NO_RECORD,)
        if record.key_id != found.key_id:
            return None, (_OTHER_KEY,)
        return record, ()


_UNREACHABLE: Final = "the provenance registry could not be reached: the record was not looked up"
_NO_RECORD: Final = ("no record with this id in this registry: the mark and its key are genuine, "
                     "but the record lives elsewhere or was lost")
_OTHER_KEY: Final = "the registry's record names another key than the one that matched"
_MANIFEST_UNREACHABLE: Final = "the manifest stored with the record could not be read"


def _c2pa_mime(upload: bytes) -> str | None:
    """The MIME type c2pa reads the upload as (the sniffed family's), or None for a container
    that carries no C2PA manifest (Ogg, raw AAC)."""
    try:
        family = audio.sniff(upload)
    except VoxproofError:
        return None
    return {"wav": "audio/wav", "mp3": "audio/mpeg", "mp4": "audio/mp4",
            "flac": "audio/flac"}.get(family)


def with_key_bound(found: Detection, keys: int) -> Detection:
    """``found`` with the false-positive bound of the whole search over ``keys`` keys: a mark
    is tried under every key in force (the history too, newest first), at most
    ``MAX_ATTEMPTS`` (23) decodes each, so P(false positive) <= 23 x k x 2^-24 per file, whichever
    key matched."""
    if not found.found:
        return found  # detect's bound already counts every attempt made under every key
    return replace(found, p_false=max(found.p_false,
                                      min(1.0, MAX_ATTEMPTS * keys * 2.0**-TAG_BITS)))


def local_caller(entry_point: str = "cli") -> Caller:
    """The local user as a caller."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Caller(identity=f"local:{user}", entry_point=entry_point)
