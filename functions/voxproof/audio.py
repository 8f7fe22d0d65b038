"""Decode any upload within bounds; encode outputs.

Uploads are untrusted. ``decode`` never lets ffmpeg guess: it identifies the container from its
magic bytes, refuses anything that is not one of the accepted families, forces that demuxer
(so no playlist, concat or other reference-following demuxer can be reached), accepts only the
codecs listed for the family, and bounds bytes, channels, sample rate, decoded duration (the
guard against decompression bombs) and wall-clock time. A truncated file is an error, not a
silently shorter clip.

Accepted families: WAV (PCM), FLAC, Ogg (Opus, Vorbis, FLAC), MP3, MP4/M4A (AAC, ALAC) and raw
ADTS AAC. A plain PCM WAV (16/24/32-bit integer or 32-bit float, within every limit) is read
with numpy, giving FFmpeg's samples bit for bit; anything else in a WAV goes to FFmpeg, so its
checks and errors stay the reference. PyAV (FFmpeg) is imported on first use (``pyav``).

Example:
    >>> import numpy as np
    >>> wav = encode(np.zeros((800, 1), np.float32), 8000, "wav")
    >>> clip = decode(wav)
    >>> (clip.family, clip.sample_rate, clip.samples.shape)
    ('wav', 8000, (800, 1))
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np

from voxproof.errors import (
    AudioEmpty,
    AudioError,
    AudioTooLarge,
    CorruptAudio,
    MislabelledAudio,
    UnsupportedAudio,
)
from voxproof.resample import PolyResampler


def pyav():
    """PyAV, imported on first use (a plain WAV needs no FFmpeg), its log silenced (FFmpeg's own
    lines would leak internals to stderr)."""
    import av

    av.logging.set_level(None)
    return av


#: Demuxer to force and codecs to accept, per container family.
_FAMILIES: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "wav": ("wav", frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le",
                              "pcm_u8", "pcm_alaw", "pcm_mulaw"})),
    "flac": ("flac", frozenset({"flac"})),
    "ogg": ("ogg", frozenset({"opus", "vorbis", "flac"})),
    "mp3": ("mp3", frozenset({"mp3", "mp3float"})),
    "mp4": ("mov", frozenset({"aac", "alac"})),
    "aac": ("aac", frozenset({"aac"})),
}

#: Families whose header states the duration exactly (FLAC STREAMINFO, MP3 Xing/Info, MP4 moov):
#: decoding less than that means the file was cut or damaged.
_HEADER_DURATION: Final = frozenset({"flac", "mp3", "mp4"})
#: ... of which these state it exactly, so decoding much more than that means a lying header.
_EXACT_DURATION: Final = frozenset({"flac", "mp4"})

#: What a caller may declare (MIME type or file suffix) -> family.
_DECLARED: Final[dict[str, str]] = {
    "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
    ".wav": "wav", ".wave": "wav",
    "audio/flac": "flac", "audio/x-flac": "flac", ".flac": "flac",
    "audio/ogg": "ogg", "audio/opus": "ogg", "audio/vorbis": "ogg", "application/ogg": "ogg",
    ".ogg": "ogg", ".oga": "ogg", ".opus": "ogg",
    "audio/mpeg": "mp3", "audio/mp3": "mp3", ".mp3": "mp3",
    "audio/mp4": "mp4", "audio/m4a": "mp4", "audio/x-m4a": "mp4", ".m4a": "mp4", ".mp4": "mp4",
    "audio/aac": "aac", "audio/x-aac": "aac", "audio/aacp": "aac", ".aac": "aac",
}
#: Declarations that claim nothing about the format.
_GENERIC: Final = frozenset({"", "audio/*", "application/octet-stream", "binary/octet-stream"})

#: Output formats: suffix -> (family, muxer, codec, fixed sample rates or None for any).
_ENCODERS: Final[dict[str, tuple[str, str, str, tuple[int, ...] | None]]] = {
    "flac": ("flac", "flac", "flac", None),
    "ogg": ("ogg", "ogg", "libopus", (8000, 12000, 16000, 24000, 48000)),
    "opus": ("ogg", "ogg", "libopus", (8000, 12000, 16000, 24000, 48000)),
    "mp3": ("mp3", "mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000,
                                          44100, 48000)),
    "m4a": ("mp4", "ipod", "aac", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100,
                                   48000)),
}


@dataclass(frozen=True)
class AudioLimits:
    """Bounds on one upload. The defaults suit the verify API (10 MB API Gateway payloads)."""

    max_bytes: int = 10 * 1024 * 1024
    """Largest encoded input accepted."""

    max_duration_s: float = 600.0
    """Longest decoded audio accepted (bounds memory: about 26 M samples per channel at 44.1 kHz)."""

    max_channels: int = 8
    """Most channels accepted."""

    min_sample_rate: int = 8_000
    """Lowest sample rate accepted (the watermark works from 8 kHz up)."""

    max_sample_rate: int = 192_000
    """Highest sample rate accepted."""

    max_decode_s: float = 30.0
    """Wall-clock budget for decoding one upload."""

    max_decoded_values: int = 64_000_000
    """Most decoded samples x channels (about 11 min of 48 kHz stereo): bounds the work a small
    file can demand, checked against the header before decoding and while decoding."""

    max_expansion: float = 1000.0
    """Most decoded samples x channels per encoded byte, checked once ``expansion_floor`` values
    are decoded (speech codecs give 0.5-130; long silence in FLAC or Opus thousands)."""

    expansion_floor: int = 4_000_000
    """Decoded values before ``max_expansion`` applies (short clips may expand a lot)."""


DEFAULT_LIMITS: Final = AudioLimits()


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded audio: float32 samples in [-1, 1], shape (frames, channels)."""

    samples: np.ndarray
    """float32, shape (n, channels)."""

    sample_rate: int
    """Samples per second per channel."""

    family: str
    """Container family: wav, flac, ogg, mp3, mp4 or aac."""

    codec: str
    """ffmpeg's name of the audio codec."""

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    @property
    def source_rate(self) -> int:
        """The upload's own rate (the same as ``sample_rate`` here)."""
        return self.sample_rate

    def mono(self) -> np.ndarray:
        """The channels averaged into one float32 vector."""
        return self.samples.mean(axis=1, dtype=np.float32)


@dataclass(frozen=True)
class MonoAudio:
    """An upload decoded for detection: mono at the detector's rate, whatever it was sent as."""

    samples: np.ndarray
    """float64 mono (n,) at ``sample_rate``; bit for bit what ``watermark.analysis.to_internal``
    makes of the whole decoded clip."""

    sample_rate: int
    """The rate of ``samples`` (the detector's: 8,000 Hz)."""

    source_rate: int
    """The upload's own sample rate."""

    channels: int
    """The upload's channel count."""

    frames: int
    """Samples per channel decoded from the upload."""

    family: str
    """Container family: wav, flac, ogg, mp3, mp4 or aac."""

    codec: str
    """ffmpeg's name of the audio codec."""

    @property
    def duration_s(self) -> float:
        """The upload's duration."""
        return self.frames / self.source_rate


def family_of(declared: str) -> str | None:
    """The family a MIME type (parameters ignored) or a file suffix names; None if generic."""
    key = declared.split(";", 1)[0].strip().lower()
    if key in _GENERIC:
        return None
    if key not in _DECLARED:
        raise UnsupportedAudio(
            "the declared type is not an accepted audio format "
            "(accepted: WAV, FLAC, Ogg/Opus/Vorbis, MP3, M4A/AAC)",
            declared=key[:40],
        )
    return _DECLARED[key]


def decode(data: bytes, *, declared: str | None = None,
           limits: AudioLimits = DEFAULT_LIMITS) -> DecodedAudio:
    """Decode an untrusted upload within ``limits``.

    Parameters
    ----------
    data:
        The encoded bytes.
    declared:
        What the caller says it is (a MIME type such as ``audio/mpeg`` or a suffix such as
        ``.mp3``); a claim that contradicts the bytes is refused as mislabelled.
    limits:
        Bounds on bytes, channels, rate, duration and decoding time.
    """
    family = _identify(data, declared, limits)
    sink = _Collect()
    rate, channels, _, codec = _demux_and_decode(data, family, limits, sink)
    return DecodedAudio(samples=sink.result(channels), sample_rate=rate, family=family,
                        codec=codec)


def decode_mono(data: bytes, *, declared: str | None = None,
                limits: AudioLimits = DEFAULT_LIMITS, rate: int = 8000) -> MonoAudio:
    """Decode an untrusted upload within ``limits`` to mono at ``rate``, streaming.

    Each decoded block is clipped, averaged over its channels and resampled as it comes, so
    memory stays bounded by the duration cap at ``rate`` whatever the upload's own rate,
    channel count or codec. The samples equal, bit for bit, what
    ``watermark.analysis.to_internal`` makes of ``decode(...)`` (same filter, same arithmetic).
    """
    sink = Resampled(rate, limits)
    info = decode_mono_to(data, sink, declared=declared, limits=limits)
    return sink.result(info)


def decode_mono_to(data: bytes, sink: MonoSink, *, declared: str | None = None,
                   limits: AudioLimits = DEFAULT_LIMITS) -> StreamInfo:
    """Decode an untrusted upload within ``limits``, handing ``sink`` mono float64 blocks at
    the upload's own rate as they are decoded (the decode worker sends them down a pipe)."""
    family = _identify(data, declared, limits)
    rate, channels, frames, codec = _demux_and_decode(data, family, limits, _Downmix(sink))
    return StreamInfo(source_rate=rate, channels=channels, frames=frames, family=family,
                      codec=codec)


@dataclass(frozen=True)
class StreamInfo:
    """What ``decode_mono_to`` learnt about the upload."""

    source_rate: int
    channels: int
    frames: int
    family: str
    codec: str


class MonoSink(Protocol):
    """Receives a decoded upload as mono float64 blocks at its own rate."""

    def start(self, rate: int) -> None:
        """The stream's sample rate, before any block."""

    def add(self, mono: np.ndarray) -> None:
        """The next block of samples (float64, in [-1, 1])."""

    def finish(self) -> None:
        """No more blocks."""


class Resampled:
    """A ``MonoSink`` that resamples to ``rate`` as blocks arrive and keeps only the output;
    it refuses more than ``limits`` allow even from a sender that ignores them."""

    def __init__(self, rate: int, limits: AudioLimits = DEFAULT_LIMITS) -> None:
        self.rate = rate
        self.limits = limits
        self._resampler: PolyResampler | None = None
        self._chunks: list[np.ndarray] = []
        self._frames = 0
        self._max_frames = 0

    def start(self, rate: int) -> None:
        if not self.limits.min_sample_rate <= rate <= self.limits.max_sample_rate:
            raise UnsupportedAudio(f"the sample rate {rate} Hz is outside the accepted "
                                   f"{self.limits.min_sample_rate}-"
                                   f"{self.limits.max_sample_rate} Hz")
        self._resampler = PolyResampler(rate, self.rate)
        self._max_frames = int(self.limits.max_duration_s * rate)

    def add(self, mono: np.ndarray) -> None:
        if self._resampler is None:
            raise CorruptAudio("audio samples came before the stream's rate")
        self._frames += len(mono)
        if self._frames > self._max_frames:
            raise AudioTooLarge(f"the decoded audio is longer than "
                                f"{self.limits.max_duration_s:.0f} s",
                                limit_s=self.limits.max_duration_s)
        out = self._resampler.feed(mono)
        if len(out):
            self._chunks.append(out)

    def finish(self) -> None:
        if self._resampler is not None:
            out = self._resampler.finish()
            if len(out):
                self._chunks.append(out)

    def result(self, info: StreamInfo) -> MonoAudio:
        """The audio, once ``finish`` has been called."""
        if self._resampler is None or info.frames != self._frames:
            raise CorruptAudio("the decoded stream is incomplete")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0)
        return MonoAudio(samples=samples, sample_rate=self.rate, source_rate=info.source_rate,
                         channels=info.channels, frames=info.frames, family=info.family,
                         codec=info.codec)


def _identify(data: bytes, declared: str | None, limits: AudioLimits) -> str:
    """Size, family, declaration and completeness checks before any decoding."""
    if not data:
        raise AudioEmpty("the upload is empty")
    if len(data) > limits.max_bytes:
        raise AudioTooLarge(
            f"the upload is {len(data)} bytes; the limit is {limits.max_bytes}",
            limit_bytes=limits.max_bytes,
        )
    family = sniff(data)
    if declared is not None:
        claimed = family_of(declared)
        if claimed is not None and claimed != family:
            raise MislabelledAudio(
                f"the upload is declared as {claimed.upper()} but its content is {family.upper()}",
                declared=claimed, detected=family,
            )
    _check_complete(data, family)
    return family


def read_file(path: str | Path, *, limits: AudioLimits = DEFAULT_LIMITS) -> DecodedAudio:
    """Read and decode a local file; its suffix is the declared type."""
    data, declared = read_upload(path, limits=limits)
    return decode(data, declared=declared, limits=limits)


def read_upload(path: str | Path, *,
                limits: AudioLimits = DEFAULT_LIMITS) -> tuple[bytes, str | None]:
    """A local file's bytes (within ``max_bytes``) and its suffix as the declared type."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise AudioTooLarge(f"the file is {size} bytes; the limit is {limits.max_bytes}",
                            limit_bytes=limits.max_bytes)
    with path.open("rb") as fh:
        data = fh.read(limits.max_bytes + 1)
    suffix = path.suffix.lower()
    return data, suffix if suffix in _DECLARED else None


# --- identification -------------------------------------------------------------------------
def sniff(data: bytes) -> str:
    """The container family from magic bytes, or ``UnsupportedAudio``."""
    head = data[:64]
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "mp4"
    offset = _skip_id3(data)
    if offset:
        if data[offset:offset + 4] == b"fLaC":
            return "flac"
        head = data[offset:offset + 4]
    if len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0x3
        if layer == 0 and (head[1] & 0xF6) == 0xF0:
            return "aac"  # ADTS: MPEG-4/2 sync word with layer bits 00
        if layer != 0 and (head[2] >> 4) != 0xF and ((head[2] >> 2) & 0x3) != 0x3:
            return "mp3"  # MPEG audio frame: valid layer, bitrate index and sample rate index
    if offset:
        return "mp3"  # an ID3 tag is MP3's; a bad first frame then shows up as corrupt
    raise UnsupportedAudio(
        "the upload is not in an accepted audio format "
        "(accepted: WAV, FLAC, Ogg/Opus/Vorbis, MP3, M4A/AAC)"
    )


def _skip_id3(data: bytes) -> int:
    """Byte offset after a leading ID3v2 tag (0 if there is none)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = 0
    for b in data[6:10]:
        if b & 0x80:
            return 0
        size = (size << 7) | b
    footer = 10 if data[5] & 0x10 else 0
    return min(len(data), 10 + size + footer)


def _check_complete(data: bytes, family: str) -> None:
    """Refuse truncation that ffmpeg would decode silently as a shorter clip."""
    if family == "wav":
        _check_wav_complete(data)
    elif family == "ogg":
        _check_ogg_complete(data)


def _check_wav_complete(data: bytes) -> None:
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                return
            if pos + 8 + size > len(data):
                raise CorruptAudio(
                    "the WAV file is truncated: its data chunk is shorter than its header says"
                )
            return
        pos += 8 + size + (size & 1)
    raise CorruptAudio("the WAV file has no data chunk (truncated or damaged)")


def _check_ogg_complete(data: bytes) -> None:
    last = data.rfind(b"OggS")
    if last < 0 or last + 27 > len(data):
        raise CorruptAudio("the Ogg file is truncated: its last page is incomplete")
    header_type, n_segments = data[last + 5], data[last + 26]
    table_end = last + 27 + n_segments
    if table_end > len(data) or table_end + sum(data[last + 27:table_end]) > len(data):
        raise CorruptAudio("the Ogg file is truncated: its last page is incomplete")
    if not header_type & 0x04:
        raise CorruptAudio("the Ogg file is truncated: it has no end-of-stream page")


# --- decoding -------------------------------------------------------------------------------
def _demux_and_decode(data: bytes, family: str, limits: AudioLimits,
                      sink: _Collect | _Downmix) -> tuple[int, int, int, str]:
    """Decode into ``sink``; returns (rate, channels, frames per channel, codec)."""
    plain = _plain_wav(data, limits) if family == "wav" else None
    if plain is not None:
        block, rate, codec = plain
        sink.start(rate)
        sink.add(block)
        sink.finish()
        return rate, block.shape[1], block.shape[0], codec
    av = pyav()
    demuxer, codecs = _FAMILIES[family]
    started = time.monotonic()
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer,
                     options={"probesize": "1000000", "analyzeduration": "1000000"}) as container:
            stream = _pick_stream(container, codecs, limits)
            rate = stream.codec_context.sample_rate
            channels = stream.codec_context.channels
            sink.start(rate)
            frames = _decode_frames(container, stream, rate, limits, started, len(data), sink)
            declared_s = _declared_duration(stream, container)
            codec = stream.codec_context.name
            sink.finish()
    except AudioError:
        raise
    except (av.error.FFmpegError, EOFError, ValueError, IndexError, OverflowError,
            MemoryError) as exc:  # ffmpeg's own words stay inside
        raise CorruptAudio(f"the {family.upper()} upload could not be decoded "
                           "(damaged or truncated)") from exc
    if frames == 0:
        if declared_s:
            raise CorruptAudio(f"the {family.upper()} upload holds no decodable audio (damaged)")
        raise AudioEmpty("the upload contains no audio samples")
    decoded_s = frames / rate
    if family in _HEADER_DURATION and declared_s is not None:
        if decoded_s < declared_s - max(0.1, 0.02 * declared_s):
            raise CorruptAudio(f"the {family.upper()} upload is truncated or damaged: "
                               f"{decoded_s:.2f} s decoded of {declared_s:.2f} s declared")
        if family in _EXACT_DURATION and declared_s and decoded_s > declared_s + max(1.0, 0.05 * declared_s):
            raise CorruptAudio(f"the {family.upper()} upload is damaged: {decoded_s:.2f} s "
                               f"decoded, {declared_s:.2f} s declared")
    return rate, channels, frames, codec


def _pick_stream(container, codecs: frozenset[str], limits: AudioLimits):
    streams = list(container.streams.audio)
    if not streams:
        raise UnsupportedAudio("the upload contains no audio stream")
    stream = streams[0]
    ctx = stream.codec_context
    if ctx is None:  # a codec id FFmpeg cannot decode (seen in fuzzing)
        raise UnsupportedAudio("the audio codec is not accepted in this container")
    if ctx.name not in codecs:
        raise UnsupportedAudio(f"the audio codec '{ctx.name}' is not accepted in this container")
    channels = ctx.channels or 0
    if not 1 <= channels <= limits.max_channels:
        raise AudioTooLarge(f"the audio has {channels} channels; at most "
                            f"{limits.max_channels} are accepted", limit_channels=limits.max_channels)
    rate = ctx.sample_rate or 0
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise UnsupportedAudio(f"the sample rate {rate} Hz is outside the accepted "
                               f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz")
    declared = _declared_duration(stream, container)
    if declared is not None and declared > limits.max_duration_s * 1.01 + 1:
        raise AudioTooLarge(f"the audio lasts {declared:.0f} s; the limit is "
                            f"{limits.max_duration_s:.0f} s", limit_s=limits.max_duration_s)
    if declared is not None and declared * rate * channels > limits.max_decoded_values * 1.01:
        raise AudioTooLarge(_too_many_values(limits), limit_values=limits.max_decoded_values)
    return stream


def _too_many_values(limits: AudioLimits) -> str:
    return (f"the audio holds more than {limits.max_decoded_values:,} samples across its "
            "channels; send fewer channels, a lower rate or a shorter clip")


def _decode_frames(container, stream, rate: int, limits: AudioLimits, started: float,
                   encoded_bytes: int, sink: _Collect | _Downmix) -> int:
    """Stream every frame into ``sink`` (float32, clipped), enforcing the caps; frames decoded."""
    max_frames = int(limits.max_duration_s * rate)
    channels = stream.codec_context.channels
    max_values = min(limits.max_decoded_values,
                     max(limits.expansion_floor, int(limits.max_expansion * encoded_bytes)))
    resampler = pyav().AudioResampler(format="flt", layout=stream.codec_context.layout, rate=rate)
    total = 0

    def take(out) -> None:
        nonlocal total
        block = out.to_ndarray().reshape(-1, channels)
        total += block.shape[0]
        if total > max_frames:
            raise AudioTooLarge(f"the decoded audio is longer than {limits.max_duration_s:.0f} s",
                                limit_s=limits.max_duration_s)
        if total * channels > max_values:
            if max_values == limits.max_decoded_values:
                raise AudioTooLarge(_too_many_values(limits),
                                    limit_values=limits.max_decoded_values)
            raise AudioTooLarge(f"the upload expands more than {limits.max_expansion:.0f}-fold "
                                "when decoded (a decompression bomb?)",
                                limit_expansion=limits.max_expansion)
        np.clip(block, -1.0, 1.0, out=block)
        sink.add(block)

    for packet in container.demux(stream):
        if time.monotonic() - started > limits.max_decode_s:
            raise AudioTooLarge("the upload takes too long to decode", limit_s=limits.max_decode_s)
        for frame in packet.decode():
            if frame.sample_rate != rate or len(frame.layout.channels) != channels:
                raise CorruptAudio("the audio changes its sample rate or channels mid-stream")
            for out in resampler.resample(frame):
                take(out)
    for out in resampler.resample(None):
        take(out)
    return total


#: WAVE format tags (and WAVE_FORMAT_EXTENSIBLE sub-format GUIDs) of the plain-WAV path.
_WAV_PCM: Final = 1
_WAV_FLOAT: Final = 3
_WAV_EXTENSIBLE: Final = 0xFFFE
_WAV_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
#: (format tag, bits) -> FFmpeg's codec name.
_WAV_CODECS: Final = {(_WAV_PCM, 16): "pcm_s16le", (_WAV_PCM, 24): "pcm_s24le",
                      (_WAV_PCM, 32): "pcm_s32le", (_WAV_FLOAT, 32): "pcm_f32le"}


def is_plain_wav(data: bytes, limits: AudioLimits = DEFAULT_LIMITS) -> bool:
    """Whether ``decode`` reads ``data`` with numpy alone (a plain PCM WAV within ``limits``):
    no FFmpeg, no native parser touches it."""
    return _plain_wav(data, limits, samples=False) is not None


def _plain_wav(data: bytes, limits: AudioLimits, *,
               samples: bool = True) -> tuple[np.ndarray, int, str] | None:
    """A plain PCM WAV's samples (float32, clipped, (frames, channels)), its rate and codec,
    exactly as FFmpeg decodes them (swresample's conversions: int / 2^(bits-1), 24-bit as
    32-bit); None for anything else: RF64, other codecs or sizes, a data chunk that is open,
    short, empty or not whole frames, or audio at or beyond a limit (FFmpeg then decides).
    Without ``samples``, only whether it is one (an empty block)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if fmt is not None or size < 16 or body + size > len(data):
                return None
            tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data,
                                                                              body)
            if tag == _WAV_EXTENSIBLE:
                if size < 40 or data[body + 26:body + 40] != _WAV_GUID_TAIL:
                    return None
                valid_bits, mask, sub_tag = struct.unpack_from("<HIH", data, body + 18)
                if valid_bits != bits or mask and mask.bit_count() != channels:
                    return None
                tag = sub_tag
            if (tag, bits) not in _WAV_CODECS or align != channels * bits // 8 \
                    or byte_rate != rate * align:
                return None
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                return None
            return _plain_wav_samples(data, body, size, fmt, limits, samples)
        pos = body + size + (size & 1)
    return None


def _plain_wav_samples(data: bytes, start: int, size: int, fmt: tuple[int, int, int, int],
                       limits: AudioLimits, convert: bool) -> tuple[np.ndarray, int, str] | None:
    tag, channels, rate, bits = fmt
    width = bits // 8
    if not (1 <= channels <= limits.max_channels
            and limits.min_sample_rate <= rate <= limits.max_sample_rate):
        return None
    if size in (0, 0xFFFFFFFF) or start + size > len(data) or size % (channels * width):
        return None
    frames = size // (channels * width)
    max_values = min(limits.max_decoded_values,
                     max(limits.expansion_floor, int(limits.max_expansion * len(data))))
    if frames > int(limits.max_duration_s * rate) or frames * channels > max_values:
        return None
    if not convert:
        return np.zeros((0, channels), np.float32), rate, _WAV_CODECS[(tag, bits)]
    raw = memoryview(data)[start:start + size]
    if bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.uint32)
        ints = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).view(np.int32)
        samples = ints.astype(np.float32) * np.float32(2.0**-31)
    elif tag == _WAV_FLOAT:
        samples = np.frombuffer(raw, "<f4").astype(np.float32)
    else:
        ints = np.frombuffer(raw, "<i2" if bits == 16 else "<i4")
        samples = ints.astype(np.float32) * np.float32(2.0 ** (1 - bits))
    block = samples.reshape(frames, channels)
    np.clip(block, -1.0, 1.0, out=block)
    return block, rate, _WAV_CODECS[(tag, bits)]


class _Collect:
    """Keeps every block as it is (``decode``: all channels at the upload's rate)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def start(self, rate: int) -> None:
        pass

    def add(self, block: np.ndarray) -> None:
        self.chunks.append(block)

    def finish(self) -> None:
        pass

    def result(self, channels: int) -> np.ndarray:
        if not self.chunks:
            return np.zeros((0, channels), np.float32)
        return np.concatenate(self.chunks, axis=0)


class _Downmix:
    """Averages each block's channels in float64 (as ``to_internal`` does) for a ``MonoSink``."""

    def __init__(self, sink: MonoSink) -> None:
        self.sink = sink

    def start(self, rate: int) -> None:
        self.sink.start(rate)

    def add(self, block: np.ndarray) -> None:
        self.sink.add(block[:, 0].astype(np.float64) if block.shape[1] == 1
                      else block.mean(axis=1, dtype=np.float64))

    def finish(self) -> None:
        self.sink.finish()


def _declared_duration(stream, container) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


# --- encoding -------------------------------------------------------------------------------
def output_format_for(suffix: str, sample_rate: int) -> str:
    """The output format for a file suffix: the same family when it can hold this rate, else wav."""
    fmt = suffix.lower().lstrip(".")
    if fmt == "wav":
        return "wav"
    spec = _ENCODERS.get(fmt)
    if spec is None or (spec[3] is not None and sample_rate not in spec[3]):
        return "wav"
    return fmt


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "wav", *,
           bitrate: int | None = None) -> bytes:
    """Encode float samples (n,) or (n, channels) in [-1, 1] as ``fmt`` (wav, flac, ogg/opus,
    mp3, m4a). WAV is 16-bit PCM."""
    block = np.asarray(samples, dtype=np.float32)
    if block.ndim == 1:
        block = block[:, None]
    block = np.clip(block, -1.0, 1.0)
    if fmt == "wav":
        return _encode_wav(block, sample_rate)
    if fmt not in _ENCODERS:
        raise UnsupportedAudio(f"cannot write '{fmt}' (writable: wav, {', '.join(_ENCODERS)})")
    _, muxer, codec, rates = _ENCODERS[fmt]
    if rates is not None and sample_rate not in rates:
        raise UnsupportedAudio(f"{fmt} cannot hold {sample_rate} Hz audio")
    return _encode_av(block, sample_rate, muxer, codec, bitrate)


def _encode_wav(block: np.ndarray, sample_rate: int) -> bytes:
    pcm = np.round(block * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(block.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def _encode_av(block: np.ndarray, sample_rate: int, muxer: str, codec: str,
               bitrate: int | None) -> bytes:
    layout = {1: "mono", 2: "stereo"}.get(block.shape[1])
    if layout is None:
        raise UnsupportedAudio("only mono and stereo audio can be written in compressed formats")
    av = pyav()
    out = io.BytesIO()
    with av.open(out, mode="w", format=muxer) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        if bitrate:
            stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.reshape(1, -1)),
                                           format="flt", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def write_file(path: str | Path, samples: np.ndarray, sample_rate: int, fmt: str | None = None,
               *, bitrate: int | None = None) -> str:
    """Write ``samples`` to ``path`` atomically (``write_bytes``); returns the format written."""
    path = Path(path)
    fmt = fmt or output_format_for(path.suffix, sample_rate)
    write_bytes(path, encode(samples, sample_rate, fmt, bitrate=bitrate))
    return fmt


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a fresh temporary file beside ``path`` that is renamed over it once
    complete; on any error the temporary file is removed, so ``path`` is either untouched or
    whole. ``OSError`` (missing folder, no permission, disk full) is the caller's to report.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
