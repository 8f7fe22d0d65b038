"""voxproof.decode_worker and the bounded decode behind verify: the worker holds no secret,
its crashes and limits are clean 422s followed by a working next request, what it returns is
bit for bit the in-process decode, and hostile uploads cost the verify process little memory."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fakes import StaticKeys
from voxproof import audio
from voxproof.decode_worker import DecoderFailed, DecodeWorker
from voxproof.errors import AudioTooLarge, CorruptAudio, UnsupportedAudio, VoxproofError
from voxproof.keyring import KeyRing
from voxproof.provenance import SQLiteRegistry
from voxproof.service import Caller, Service
from voxproof.watermark import analysis as an
from voxproof.watermark import embed
from voxproof.watermark.keys import WatermarkKey
from watermark_hosts import speechlike

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the inputs")

KEY = WatermarkKey(bytes(range(32)))
CALLER = Caller("test:decode", "cli")
#: The issue's goal: no accepted request raises the verify process's peak RSS by more.
RSS_BUDGET = 300 * 2**20


def ffmpeg(*args: str, seekable: bool = False) -> bytes:
    """ffmpeg's output; ``seekable`` writes a file first, so headers carry the total length
    (FLAC's STREAMINFO, Ogg's last granule), as a file uploaded by a client would."""
    if not seekable:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args, "pipe:1"]
        return subprocess.run(cmd, capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args,
                        str(out)], capture_output=True, check=True)
        return out.read_bytes()


@pytest.fixture(scope="module")
def worker():
    with DecodeWorker() as w:
        yield w


@pytest.fixture(scope="module")
def marked_wav() -> bytes:
    host = speechlike(6.0, 22050, seed=4)
    return audio.encode(embed(host, 22050, KEY, 0x00000000A1), 22050, "wav")


# --- the worker's isolation -------------------------------------------------------------------
def test_the_worker_holds_no_key_and_no_aws_variable(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    monkeypatch.setenv("VOXPROOF_KEY_SECRET_ID", "arn:aws:secretsmanager:eu-west-1:1:secret:k")
    with DecodeWorker() as w:
        pid = w.spare_pid
        assert pid is not None
        # What the kernel says the spare was started with: nothing at all.
        assert Path(f"/proc/{pid}/environ").read_bytes() == b""
        seen = w._probe("environ")
    # Inside, only what Python's locale coercion adds (PEP 538).
    assert set(seen["environ"]) <= {"LC_CTYPE"}
    assert not any(name.startswith(("AWS_", "VOXPROOF_")) for name in seen["environ"])
    assert "voxproof.keyring" not in seen["modules"] and "boto3" not in seen["modules"]
    assert 0 < seen["rlimit_as"] < 2**40 and 0 < seen["rlimit_cpu"] < 3600


def test_a_worker_killed_mid_decode_is_a_clean_422_and_the_next_request_works(worker, marked_wav):
    with pytest.raises(DecoderFailed) as err:
        worker._probe("kill")
    assert err.value.status == 422 and err.value.code == "audio_decoder_failed"
    assert err.value.details == {"reason": "killed"}
    assert worker.decode(marked_wav).source_rate == 22050


@pytest.mark.parametrize(("probe", "reason"), [("allocate", "memory"), ("spin", "cpu")])
def test_worker_limits_end_in_a_clean_422(probe, reason, marked_wav):
    with DecodeWorker(cpu_s=1) as w:
        with pytest.raises(DecoderFailed) as err:
            w._probe(probe)
        assert err.value.status == 422 and err.value.details == {"reason": reason}
        assert len(w.decode(marked_wav).samples) > 0


def test_each_upload_gets_a_fresh_worker(worker, marked_wav):
    first = worker.spare_pid
    worker.decode(marked_wav)
    assert worker.spare_pid not in (None, first)
    assert not Path(f"/proc/{first}").exists() or _is_zombie_free(first)


def _is_zombie_free(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return True


def test_audio_errors_come_back_with_their_own_type_and_code(worker, marked_wav):
    with pytest.raises(CorruptAudio, match="truncated"):
        worker.decode(marked_wav[: len(marked_wav) // 2])
    with pytest.raises(UnsupportedAudio):
        worker.decode(b"not audio at all")


# --- the same samples, bounded -----------------------------------------------------------------
@pytest.mark.parametrize(("rate", "channels", "fmt"), [
    (22050, 1, "wav"), (44100, 2, "flac"), (48000, 2, "opus"), (8000, 1, "wav"),
    (16000, 1, "mp3"), (96000, 6, "flac"),
])
def test_worker_pcm_is_bit_for_bit_what_detection_made_of_the_whole_clip(
        worker, rate, channels, fmt):
    x = np.random.default_rng(rate + channels).standard_normal((int(rate * 3.1), channels))
    data = _encode((0.2 * x).astype(np.float32), rate, fmt)
    whole = audio.decode(data)
    expected = an.to_internal(whole.samples, whole.sample_rate)
    for clip in (audio.decode_mono(data), worker.decode(data)):
        assert clip.sample_rate == an.RATE and clip.source_rate == rate
        assert clip.channels == channels and clip.frames == whole.samples.shape[0]
        assert np.array_equal(clip.samples, expected)


def _encode(x: np.ndarray, rate: int, fmt: str) -> bytes:
    args = {"wav": ["-f", "wav"], "flac": ["-f", "flac"], "mp3": ["-f", "mp3"],
            "opus": ["-c:a", "libopus", "-f", "ogg"]}[fmt]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "f32le", "-ar",
           str(rate), "-ac", str(x.shape[1]), "-i", "pipe:0", *args, "pipe:1"]
    return subprocess.run(cmd, input=x.tobytes(), capture_output=True, check=True).stdout


@pytest.mark.parametrize("rate", [8001, 11025, 22050, 44100, 192000])
def test_the_streaming_resampler_equals_resample_poly(rate):
    """Block by block, the same array as the whole input; and scipy's filter to rounding
    (voxproof's resampler is numpy-only, so ``mark``/``verify`` never import scipy.signal)."""
    from math import gcd

    from scipy.signal import resample_poly as scipy_resample_poly
    from voxproof.resample import resample_poly

    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate * 2 + 17)
    r = audio.PolyResampler(rate, 8000, block=4096)
    parts, pos = [], 0
    while pos < len(x):
        step = int(rng.integers(1, 30_000))
        parts.append(r.feed(x[pos:pos + step]))
        pos += step
    parts.append(r.finish())
    g = gcd(rate, 8000)
    whole = resample_poly(x, 8000 // g, rate // g)
    assert np.array_equal(np.concatenate(parts), whole)
    reference = scipy_resample_poly(x, 8000 // g, rate // g)
    assert whole.shape == reference.shape
    assert np.max(np.abs(whole - reference)) < 1e-12


def test_verify_through_the_worker_finds_the_mark_as_before(worker, marked_wav, tmp_path):
    def service(decoder=None):
        return Service(lambda: None, StaticKeys(KeyRing(KEY)),
                       SQLiteRegistry(tmp_path / "r.sqlite3"), max_chars=10, decoder=decoder)

    before = service().verify_decoded(audio.decode(marked_wav), CALLER)
    through = service(worker).verify(marked_wav, CALLER, declared="audio/wav")
    assert before.found and through.found
    assert through.detection == before.detection
    assert (through.duration_s, through.sample_rate) == (before.duration_s, 22050)


# --- bombs: refused early, or decoded within the memory budget ----------------------------------
def test_the_issue_flac_is_refused_before_decoding(worker):
    # 8 channels at 192 kHz, 135 s of silence: a few tens of kB that once cost 2.75 GB.
    data = ffmpeg("-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1", "-t", "135", "-f", "flac",
                  seekable=True)
    assert len(data) < 200_000
    with pytest.raises(AudioTooLarge) as err:
        worker.decode(data)
    assert err.value.status == 413 and "limit_values" in err.value.details
    # Piped, the same stream declares no length: the expansion cap stops it early.
    piped = ffmpeg("-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1", "-t", "135", "-f", "flac")
    with pytest.raises(AudioTooLarge) as err:
        worker.decode(piped)
    assert err.value.status == 413 and "limit_expansion" in err.value.details


def test_a_flac_hiding_its_length_stops_at_the_expansion_cap(worker):
    # Piped FLAC has no total in its header: only the running counts can stop it.
    data = ffmpeg("-f", "lavfi", "-i", "sine=f=300:r=48000", "-ac", "8", "-t", "200",
                  "-f", "flac")
    with pytest.raises(AudioTooLarge, match="expands|samples") as err:
        worker.decode(data)
    assert err.value.status == 413


def test_a_flac_declaring_less_than_it_holds_is_refused():
    data = bytearray(ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000", "-t", "20",
                            "-f", "flac", seekable=True))
    assert data[:4] == b"fLaC"
    (word,) = struct.unpack_from(">Q", data, 18)
    total = word & ((1 << 36) - 1)
    struct.pack_into(">Q", data, 18, (word & ~((1 << 36) - 1)) | (total // 4))
    with pytest.raises(CorruptAudio, match="declared"):
        audio.decode_mono(bytes(data))


def _hostile() -> dict[str, bytes]:
    wav_8ch = _encode(np.zeros((48000 * 20, 8), np.float32), 48000, "wav")
    lying = bytearray(audio.encode(np.zeros(8000, np.float32), 8000, "wav"))
    lying[22:24] = struct.pack("<H", 65535)  # 65,535 channels
    return {
        "flac 8ch 192k 20 s silence": ffmpeg("-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1",
                                             "-t", "20", "-f", "flac"),
        "opus 2ch 48k 600 s silence": ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo",
                                             "-t", "600", "-c:a", "libopus", "-b:a", "6k",
                                             "-f", "ogg"),
        "mp3 2ch 48k 300 s silence": ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo",
                                            "-t", "300", "-b:a", "32k", "-f", "mp3"),
        "wav 8ch 48k 20 s": wav_8ch,
        "wav 65535 channels": bytes(lying),
        "wav 384 kHz": _encode(np.zeros((38400, 2), np.float32), 384000, "wav"),
    }


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _api_limits() -> audio.AudioLimits:
    """What ``POST /v1/verify`` accepts with API Gateway's 29 s (28 s left to work)."""
    from voxproof.deadline import Deadline
    from voxproof.handlers.routes.verify import _verify_limits

    return _verify_limits(Deadline.after(28.0))


def _peak_rise(run) -> tuple[object, int]:
    """``run()``'s outcome (a verdict or an error code) and how far it raised the peak RSS."""
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS count (VmHWM)
    before = _vm("VmRSS")
    try:
        outcome = run()
    except VoxproofError as err:
        assert 400 <= err.status < 500, err
        outcome = err.code
    return outcome, _vm("VmHWM") - before


needs_proc = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                                reason="needs Linux /proc")


@needs_proc
def test_hostile_uploads_get_a_4xx_or_a_verdict_within_the_memory_budget(worker, tmp_path):
    svc = Service(lambda: None, StaticKeys(KeyRing(KEY)), SQLiteRegistry(tmp_path / "r.sqlite3"),
                  max_chars=10, decoder=worker)
    limits = _api_limits()
    for name, data in _hostile().items():
        outcome, rise = _peak_rise(
            lambda data=data: svc.verify(data, CALLER, limits=limits).verdict)
        assert rise < RSS_BUDGET, (name, outcome, rise)


@needs_proc
def test_decoding_memory_does_not_grow_with_rate_or_channels(worker):
    # 130 s of 8 channels at 48 kHz (a small FLAC): 200 MB as float32, 400 MB as float64;
    # decoded to mono 8 kHz it is 8 MB.
    data = ffmpeg("-f", "lavfi", "-i", "sine=f=300:r=48000", "-ac", "8", "-t", "130",
                  "-f", "flac", seekable=True)
    limits = _api_limits()
    for decode in (worker.decode, audio.decode_mono):
        clip, rise = _peak_rise(lambda decode=decode: decode(data, limits=limits))
        assert isinstance(clip, audio.MonoAudio) and clip.channels == 8
        assert rise < 60 * 2**20, (decode, rise)


# --- the other parser: c2pa reads the upload's manifest in the worker too -------------------------
def test_the_manifest_is_read_in_the_worker_and_matches_an_in_process_read(tmp_path):
    """A signed file's manifest check comes from the keyless worker, the same as c2pa's own
    read here; a file with none reads ``absent``; the worker never imports a key module."""
    from voxproof import __version__
    from voxproof.credentials.core import Credentials
    from voxproof.credentials.identity import LocalIdentity
    from voxproof.credentials.reader import read_embedded
    from voxproof.credentials.signer import CredentialSigner
    from voxproof.decode_worker import InProcessDecoder, ManifestQuery

    identity = LocalIdentity.load_or_create(tmp_path / "c2pa")
    creds = Credentials(lambda: CredentialSigner.local(identity), lambda: None,
                        version=__version__)
    wav = audio.encode(np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.1, 8000, "wav")
    signed = creds.sign(wav, "wav", record_id=0xA1, key_id="ab" * 8, voice="v",
                        model_manifest_sha256="0" * 64).audio
    anchors = identity.ca_pem.decode()
    with DecodeWorker() as worker:
        seen = worker._probe("environ")
        clip, check = worker.decode_and_read(signed, ManifestQuery("audio/wav", anchors))
        _, plain = worker.decode_and_read(wav, ManifestQuery("audio/wav", anchors))
        _, untrusted = worker.decode_and_read(signed, ManifestQuery("audio/wav", None))
    assert "voxproof.credentials.reader" in seen["modules"]  # preloaded, before the limits
    assert "voxproof.keyring" not in seen["modules"]
    assert (check.state, check.record_id) == ("trusted", 0xA1)
    assert check == read_embedded(signed, "audio/wav", anchors_pem=anchors)
    assert plain.state == "absent" and untrusted.state == "valid_untrusted"
    assert len(clip.samples) == 16000
    in_process = InProcessDecoder().decode_and_read(signed, ManifestQuery("audio/wav", anchors))
    assert in_process[1] == check


def test_the_cli_decodes_a_plain_wav_here_with_the_workers_answer_and_the_rest_there(tmp_path):
    """``LocalFiles`` (``voxproof verify``'s decoder): a plain PCM WAV with no chunk that could
    carry a manifest is decoded in this process, with the answer the worker gives (the same
    samples, manifest absent); a signed WAV, a WAV with any other chunk, a mislabelled one and
    other formats go to the worker, as before."""
    from voxproof import __version__
    from voxproof.credentials.core import Credentials
    from voxproof.credentials.identity import LocalIdentity
    from voxproof.credentials.reader import CredentialsCheck
    from voxproof.credentials.signer import CredentialSigner
    from voxproof.decode_worker import LocalFiles, ManifestQuery, _plain

    identity = LocalIdentity.load_or_create(tmp_path / "c2pa")
    creds = Credentials(lambda: CredentialSigner.local(identity), lambda: None,
                        version=__version__)
    wav = audio.encode(speechlike(3.0, 22050, seed=9), 22050, "wav")
    signed = creds.sign(wav, "wav", record_id=0xA1, key_id="ab" * 8, voice="v",
                        model_manifest_sha256="0" * 64).audio
    query = ManifestQuery("audio/wav", identity.ca_pem.decode())
    xmp = wav + b"_PMX" + struct.pack("<I", 4) + b"<x/>"
    riff = bytearray(xmp)
    struct.pack_into("<I", riff, 4, len(xmp) - 8)
    assert _plain(wav, None, audio.DEFAULT_LIMITS) and _plain(wav, ".wav", audio.DEFAULT_LIMITS)
    assert not _plain(signed, None, audio.DEFAULT_LIMITS)  # its C2PA chunk
    assert not _plain(bytes(riff), None, audio.DEFAULT_LIMITS)  # XMP could point at one
    assert not _plain(wav, ".mp3", audio.DEFAULT_LIMITS)  # the worker says it is mislabelled
    assert not _plain(wav[:-2], None, audio.DEFAULT_LIMITS)  # truncated
    with DecodeWorker(spare=False) as worker:
        local = LocalFiles(worker)
        first = worker.spare_pid
        clip, check = local.decode_and_read(wav, query)
        assert worker.spare_pid == first  # decoded here: the worker is still waiting
        ref_clip, ref_check = worker.decode_and_read(wav, query)
        assert worker.spare_pid is None  # used, and no spare after it
        _, signed_check = local.decode_and_read(signed, query)  # a fresh worker, on demand
    assert np.array_equal(clip.samples, ref_clip.samples) and clip.frames == ref_clip.frames
    assert check == ref_check == CredentialsCheck("absent")
    assert (signed_check.state, signed_check.record_id) == ("trusted", 0xA1)
    assert np.array_equal(LocalFiles(worker).decode(wav).samples, clip.samples)


@pytest.mark.parametrize("answer", [
    {"state": "forged"}, {"state": "trusted", "record_id": 2**41}, {"state": "trusted",
                                                                      "assertions": ["x"]}, {},
])
def test_a_malformed_manifest_answer_from_the_worker_is_a_clean_422(answer):
    from voxproof.decode_worker import _check_from_worker

    with pytest.raises(DecoderFailed) as err:
        _check_from_worker(answer)
    assert err.value.status == 422 and err.value.details == {"reason": "protocol"}


@pytest.mark.parametrize(("up", "down"), [(160, 441), (441, 160), (1, 2), (2, 1), (80, 147),
                                          (147, 80), (1, 6), (6, 1)])
def test_resample_poly_matches_scipy_both_ways(up, down):
    """The mark goes to 8 kHz and its residual back to the output's rate (e.g. 441/160 for
    22,050 Hz) through the same per-phase products: scipy's values to rounding, every length."""
    from scipy.signal import resample_poly as scipy_resample_poly
    from voxproof.resample import resample_poly

    rng = np.random.default_rng(up * 1000 + down)
    for n in (1, 7, 441, 10_007):
        x = rng.standard_normal(n)
        ours, theirs = resample_poly(x, up, down), scipy_resample_poly(x, up, down)
        assert ours.shape == theirs.shape
        assert np.max(np.abs(ours - theirs)) <= 1e-12 * max(1.0, np.max(np.abs(theirs)))
