"""voxproof.audio: every accepted family decodes; every bad upload class gets its own error,
within bounded memory."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tracemalloc

import numpy as np
import pytest
from voxproof import audio
from voxproof.errors import (
    AudioEmpty,
    AudioError,
    AudioTooLarge,
    CorruptAudio,
    MislabelledAudio,
    UnsupportedAudio,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the inputs")

RATE = 22050


def ffmpeg(*args: str, stdin: bytes | None = None) -> bytes:
    """Run the real ffmpeg CLI (an encoder independent of ours) and return its stdout."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, check=True).stdout


def tone(seconds: float = 2.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32)


@pytest.fixture(scope="module")
def wav_bytes() -> bytes:
    return audio.encode(tone(), RATE, "wav")


ENCODINGS = {
    "wav": ["-f", "wav"],
    "flac": ["-f", "flac"],
    "ogg-opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "m4a": ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-f", "ipod"],
    "adts": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
}
FAMILY = {"wav": "wav", "flac": "flac", "ogg-opus": "ogg", "mp3": "mp3", "m4a": "mp4",
          "adts": "aac"}


@pytest.fixture(scope="module")
def encoded(wav_bytes, tmp_path_factory) -> dict[str, bytes]:
    out = {}
    for name, args in ENCODINGS.items():
        path = tmp_path_factory.mktemp("enc") / f"x.{name}"
        ffmpeg("-i", "pipe:0", *args, "-y", str(path), stdin=wav_bytes)
        out[name] = path.read_bytes()
    return out


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_each_family_decodes_to_the_same_sound(encoded, name):
    clip = audio.decode(encoded[name])
    assert clip.family == FAMILY[name]
    assert clip.samples.dtype == np.float32 and clip.samples.shape[1] == 1
    assert abs(clip.duration_s - 2.0) < 0.1
    # The content survives: the strongest frequency is still 440 Hz.
    mono = clip.mono()
    spectrum = np.abs(np.fft.rfft(mono[: clip.sample_rate]))  # one second: bins are 1 Hz apart
    assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_our_encoders_round_trip():
    x = tone(1.0, 16000)
    for fmt in ("wav", "flac", "ogg", "mp3", "m4a"):
        clip = audio.decode(audio.encode(x, 16000, fmt), declared=f".{fmt}")
        assert clip.duration_s >= 0.99, fmt
        n = min(len(x), 16000)
        if fmt in ("wav", "flac"):  # lossless: sample-exact to 16-bit precision
            assert np.max(np.abs(clip.mono()[:n] - x[:n])) < 1e-4


def test_output_format_keeps_the_family_when_the_rate_fits_else_wav():
    assert audio.output_format_for(".mp3", 22050) == "mp3"
    assert audio.output_format_for(".opus", 22050) == "wav"  # Opus holds 8/12/16/24/48 kHz only
    assert audio.output_format_for(".opus", 48000) == "opus"
    assert audio.output_format_for(".xyz", 22050) == "wav"


def test_empty_upload():
    with pytest.raises(AudioEmpty):
        audio.decode(b"")


def test_too_many_bytes_refused_before_reading_them(wav_bytes):
    with pytest.raises(AudioTooLarge) as err:
        audio.decode(wav_bytes, limits=audio.AudioLimits(max_bytes=1000))
    assert err.value.details == {"limit_bytes": 1000}


@pytest.mark.parametrize("blob", [
    b"\x89PNG\r\n\x1a\n" + bytes(200),
    b"%PDF-1.7\n" + bytes(200),
    b"hello, this is text and not audio at all\n" * 10,
    bytes(range(256)) * 4,
    b"PK\x03\x04" + bytes(200),
])
def test_non_audio_is_unsupported(blob):
    with pytest.raises(UnsupportedAudio) as err:
        audio.decode(blob)
    assert err.value.code == "unsupported_audio"


def test_video_only_mp4_has_no_audio_stream(tmp_path):
    path = tmp_path / "v.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5", "-c:v", "mpeg4", "-f", "mp4",
           "-y", str(path))
    with pytest.raises(UnsupportedAudio, match="no audio stream"):
        audio.decode(path.read_bytes())


def test_mislabelled_upload(encoded):
    with pytest.raises(MislabelledAudio) as err:
        audio.decode(encoded["mp3"], declared="audio/wav")
    assert err.value.details == {"declared": "wav", "detected": "mp3"}
    assert err.value.status == 415
    # A generic declaration claims nothing and passes.
    assert audio.decode(encoded["mp3"], declared="application/octet-stream").family == "mp3"


def test_declared_type_outside_the_list(encoded):
    with pytest.raises(UnsupportedAudio):
        audio.decode(encoded["wav"], declared="video/x-msvideo")


@pytest.mark.parametrize("name", ["wav", "flac", "ogg-opus", "mp3", "m4a"])
def test_truncated_upload_is_an_error_not_a_shorter_clip(encoded, name):
    data = encoded[name]
    with pytest.raises(CorruptAudio, match="truncated|damaged"):
        audio.decode(data[: len(data) * 6 // 10])


def test_damaged_payload(encoded):
    data = bytearray(encoded["flac"])
    rng = np.random.default_rng(1)
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptAudio):
        audio.decode(bytes(data))


def test_codec_outside_the_family_list(tmp_path, wav_bytes):
    path = tmp_path / "adpcm.wav"
    ffmpeg("-i", "pipe:0", "-c:a", "adpcm_ms", "-f", "wav", "-y", str(path), stdin=wav_bytes)
    with pytest.raises(UnsupportedAudio, match="codec 'adpcm_ms'"):
        audio.decode(path.read_bytes())


def test_too_many_channels(tmp_path):
    path = tmp_path / "many.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=hexadecagonal", "-t", "0.2", "-f", "wav",
           "-y", str(path))
    with pytest.raises(AudioTooLarge, match="16 channels"):
        audio.decode(path.read_bytes())


def test_sample_rate_below_the_watermark_range():
    with pytest.raises(UnsupportedAudio, match="4000 Hz"):
        audio.decode(audio.encode(tone(0.5, 4000), 4000, "wav"))


def test_wav_header_lying_about_its_size():
    data = bytearray(audio.encode(tone(0.5), RATE, "wav"))
    pos = data.find(b"data")
    struct.pack_into("<I", data, pos + 4, 10**9)
    with pytest.raises(CorruptAudio, match="truncated"):
        audio.decode(bytes(data))


def test_decompression_bomb_with_declared_duration_is_refused_up_front(tmp_path):
    # Two hours of silence compress to a few hundred kilobytes of FLAC.
    path = tmp_path / "bomb.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "7200", "-f", "flac",
           "-y", str(path))
    data = path.read_bytes()
    assert len(data) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLarge, match="7200 s"):
            audio.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_decompression_bomb_without_declared_duration_stops_at_the_limit(tmp_path):
    # Written to a pipe, FLAC's header cannot say how long the stream is: only the running
    # count of decoded samples can stop it.
    data = ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1200", "-f", "flac",
                  "pipe:1")
    limits = audio.AudioLimits(max_duration_s=60)
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLarge, match="longer than 60 s"):
            audio.decode(data, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 60 s of float32 at 8 kHz is 1.9 MB; decoding all 1200 s would need 38 MB.
    assert peak < 8 * 2**20


def test_read_file_uses_the_suffix_as_the_declaration(tmp_path, encoded):
    path = tmp_path / "song.wav"
    path.write_bytes(encoded["mp3"])
    with pytest.raises(MislabelledAudio):
        audio.read_file(path)
    path2 = tmp_path / "song.mp3"
    path2.write_bytes(encoded["mp3"])
    assert audio.read_file(path2).family == "mp3"


def test_messages_leak_no_internals(encoded):
    for blob in (encoded["flac"][:300], b"OggS" + bytes(100), b"RIFF\x00\x00\x00\x00WAVEjunk"):
        with pytest.raises(Exception) as err:
            audio.decode(blob)
        text = str(err.value)
        assert "avcodec" not in text and "/" not in text and "Errno" not in text


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_mutated_uploads_raise_only_audio_errors(encoded, name):
    """Random byte flips, cuts and splices of valid files: decoded or refused, never a crash."""
    rng = np.random.default_rng(sum(map(ord, name)))
    good = encoded[name]
    for _ in range(60):
        data = bytearray(good)
        kind = rng.integers(3)
        if kind == 0:
            for pos in rng.integers(0, len(data), size=rng.integers(1, 20)):
                data[pos] = rng.integers(256)
        elif kind == 1:
            data = data[: rng.integers(1, len(data))]
        else:
            cut = rng.integers(1, len(data))
            data = data[:cut] + rng.integers(0, 256, rng.integers(1, 500), dtype=np.uint8).tobytes()
        try:
            clip = audio.decode(bytes(data), limits=audio.AudioLimits(max_duration_s=30))
        except AudioError:
            continue
        assert clip.samples.dtype == np.float32 and np.all(np.abs(clip.samples) <= 1.0)


def test_write_file_leaves_nothing_behind_when_it_fails(tmp_path):
    target = tmp_path / "x.wav"
    target.mkdir()  # a non-empty folder: the final rename must fail
    (target / "keep").write_text("k")
    with pytest.raises(OSError):
        audio.write_file(target, tone(0.1), RATE)
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]
    assert (target / "keep").read_text() == "k"


# --- plain WAVs: read with numpy, FFmpeg's samples bit for bit ---------------------------------
PLAIN_WAVS = {  # ffmpeg arguments -> the codec FFmpeg names
    "s16-mono": (["-ac", "1", "-c:a", "pcm_s16le"], "pcm_s16le"),
    "s16-stereo-44k": (["-ac", "2", "-ar", "44100", "-c:a", "pcm_s16le"], "pcm_s16le"),
    "s24-mono": (["-ac", "1", "-c:a", "pcm_s24le"], "pcm_s24le"),
    "s24-stereo-extensible": (["-ac", "2", "-c:a", "pcm_s24le", "-rf64", "never"], "pcm_s24le"),
    "s32-6ch": (["-ac", "6", "-c:a", "pcm_s32le"], "pcm_s32le"),
    "f32-mono-48k": (["-ac", "1", "-ar", "48000", "-c:a", "pcm_f32le"], "pcm_f32le"),
}


def _through_ffmpeg(monkeypatch, fn, *args, **kwargs):
    """``fn`` with the numpy path switched off: what FFmpeg (PyAV) decodes."""
    with monkeypatch.context() as m:
        m.setattr(audio, "_plain_wav", lambda data, limits: None)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("name", list(PLAIN_WAVS))
def test_plain_wav_without_ffmpeg_gives_ffmpegs_samples_bit_for_bit(tmp_path, monkeypatch,
                                                                     name):
    args, codec = PLAIN_WAVS[name]
    loud = np.clip(1.3 * tone(1.37), -1, 1)  # full scale, clipped: the extremes are converted too
    path = tmp_path / f"{name}.wav"  # ffmpeg writes a LIST chunk before the data
    ffmpeg("-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0", *args, "-f", "wav",
           "-y", str(path), stdin=loud.astype("<f4").tobytes())
    data = path.read_bytes()
    assert audio._plain_wav(data, audio.DEFAULT_LIMITS) is not None  # the numpy path is taken
    ours, ref = audio.decode(data), _through_ffmpeg(monkeypatch, audio.decode, data)
    assert (ours.codec, ours.sample_rate, ours.samples.dtype) == (codec, ref.sample_rate,
                                                                  np.float32)
    assert ref.codec == codec and np.array_equal(ours.samples, ref.samples)
    mono, mono_ref = audio.decode_mono(data), _through_ffmpeg(monkeypatch, audio.decode_mono,
                                                              data)
    assert np.array_equal(mono.samples, mono_ref.samples)
    assert (mono.frames, mono.channels, mono.codec) == (mono_ref.frames, mono_ref.channels,
                                                        mono_ref.codec)


@pytest.mark.parametrize("args", [["-c:a", "pcm_u8"], ["-c:a", "pcm_alaw"],
                                  ["-c:a", "pcm_s16le", "-rf64", "always"]],
                         ids=["u8", "alaw", "rf64"])
def test_other_wavs_still_go_to_ffmpeg(tmp_path, wav_bytes, args):
    path = tmp_path / "other.wav"
    ffmpeg("-i", "pipe:0", *args, "-f", "wav", "-y", str(path), stdin=wav_bytes)
    data = path.read_bytes()
    assert audio._plain_wav(data, audio.DEFAULT_LIMITS) is None
    assert audio.decode(data).samples.shape[0] == len(tone())


def test_a_plain_wav_beyond_a_limit_gets_ffmpegs_error(wav_bytes):
    limits = audio.AudioLimits(max_duration_s=1.0)  # the clip is 2 s
    assert audio._plain_wav(wav_bytes, limits) is None
    with pytest.raises(AudioTooLarge, match="longer than 1 s|lasts 2 s"):
        audio.decode(wav_bytes, limits=limits)
    data = bytearray(wav_bytes)
    pos = data.find(b"data")
    struct.pack_into("<I", data, pos + 4, struct.unpack_from("<I", data, pos + 4)[0] - 1)
    assert audio._plain_wav(bytes(data), audio.DEFAULT_LIMITS) is None  # not whole frames
