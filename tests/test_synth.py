"""``voxproof synth`` (voxproof.synth and its CLI adapter): exact shapes, all-or-nothing output.

Most cases run the CLI in-process on the tiny layer (real Coqui model, milliseconds per call);
one runs the real command in a fresh process on the default voice and listens to the result.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from asr import Recognizer, edit_distance, reference_words, words
from voxproof.cli import main
from voxproof.voice.pins import DEFAULT_MANIFEST_SHA256

REPO = Path(__file__).resolve().parent.parent
SECRET = "The colt reared and threw the tall rider."


@pytest.fixture
def tiny_cli(tiny_layer, tmp_path, monkeypatch):
    """The CLI configured (through its environment) for the tiny layer (torch engine: the tiny
    layer has no ONNX export); returns a runner."""
    folder, pin = tiny_layer
    monkeypatch.setenv("VOXPROOF_MODEL_DIR", str(folder))
    monkeypatch.setenv("VOXPROOF_MODEL_MANIFEST_SHA256", pin)
    monkeypatch.setenv("VOXPROOF_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VOXPROOF_MAX_TEXT_CHARS_SYNC", "200")
    monkeypatch.setenv("VOXPROOF_TORCH_THREADS", "1")
    monkeypatch.setenv("VOXPROOF_ENGINE", "torch")
    return pin


def read_wav(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        return w.getframerate(), w.getsampwidth(), w.getnchannels(), np.frombuffer(frames, "<i2")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_writes_a_16_bit_wav_and_a_summary(tiny_cli, tmp_path, capsys):
    out = tmp_path / "out.wav"
    code, stdout, _ = run(["synth", "A bad cafe, a bad face.", "-o", str(out)], capsys)
    assert code == 0
    rate, width, channels, pcm = read_wav(out)
    assert (rate, width, channels) == (16_000, 2, 1) and len(pcm) > 0
    assert f"{len(pcm) / rate:.2f} s" in stdout and "16000 Hz" in stdout
    assert "voice tiny-test" in stdout and tiny_cli in stdout
    assert "bad cafe" not in stdout


def test_synth_reads_a_text_file(tiny_cli, tmp_path, capsys):
    text_file = tmp_path / "say.txt"
    text_file.write_text("A bad cafe.\nA deaf chef.\n", encoding="utf-8")
    out = tmp_path / "out.wav"
    code, _, _ = run(["synth", "--text-file", str(text_file), "-o", str(out)], capsys)
    assert code == 0 and read_wav(out)[0] == 16_000


def test_synth_reports_removed_invisible_characters(tiny_cli, tmp_path, capsys):
    code, _, err = run(["synth", "A bad\u200b cafe.", "-o", str(tmp_path / "o.wav")], capsys)
    assert code == 0 and "U+200B" in err and "position 5" in err


def _bad_text_file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(("make_args", "code"), [
    (lambda d: [], "invalid_request"),
    (lambda d: [SECRET, "--text-file", _bad_text_file(d, b"hi")], "invalid_request"),
    (lambda d: ["--text-file", str(d / "missing.txt")], "input_unreadable"),
    (lambda d: ["--text-file", str(d)], "input_unreadable"),
    (lambda d: ["--text-file", _bad_text_file(d, b"caf\xe9 noir")], "text_not_utf8"),
    (lambda d: ["--text-file", _bad_text_file(d, b"a" * 801)], "text_too_long"),
    (lambda d: [SECRET * 6], "text_too_long"),
    (lambda d: [SECRET + "\x1b[31m"], "control_character"),
    (lambda d: ["   "], "text_empty"),
    (lambda d: [SECRET, "--deadline-s", "0.000001"], "deadline_too_short"),
])
def test_synth_errors_exit_2_with_their_code_and_leave_no_file(tiny_cli, tmp_path, capsys,
                                                               make_args, code):
    out = tmp_path / "out.wav"
    status, stdout, stderr = run(["synth", *make_args(tmp_path), "-o", str(out)], capsys)
    assert status == 2 and stdout == ""
    assert stderr.splitlines()[-1].startswith(f"voxproof: error [{code}]: ")
    assert SECRET not in stderr and "The colt" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".out.wav*"))


@pytest.mark.parametrize("target", ["out.ogg", "no-such-folder/out.wav", "folder.wav"])
def test_synth_refuses_an_output_it_cannot_write_before_loading(tiny_cli, tmp_path, capsys,
                                                                target):
    (tmp_path / "folder.wav").mkdir()
    status, _, stderr = run(["synth", "A bad cafe.", "-o", str(tmp_path / target)], capsys)
    assert status == 2 and stderr.startswith("voxproof: error [invalid_output]: ")
    assert str(tmp_path) not in stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_synth_deadline_must_be_a_positive_number(tiny_cli, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as caught:
        main(["synth", "A bad cafe.", "-o", str(tmp_path / "o.wav"), "--deadline-s", value])
    assert caught.value.code == 2 and "--deadline-s" in capsys.readouterr().err


def test_synth_replaces_an_existing_file_only_when_done(tiny_cli, tmp_path, capsys):
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous")
    status, _, _ = run(["synth", "A bad cafe.", "-o", str(out), "--deadline-s", "0.000001"],
                       capsys)
    assert status == 2 and out.read_bytes() == b"previous"
    status, _, _ = run(["synth", "A bad cafe.", "-o", str(out)], capsys)
    assert status == 0 and out.read_bytes()[:4] == b"RIFF"


@pytest.mark.slow
def test_the_real_command_speaks_intelligibly(default_layer, tmp_path):
    """``voxproof synth`` in a fresh process on the default voice: a WAV pocketsphinx can read."""
    text = "The boy was there when the sun rose. Rice is often served in round bowls."
    out = tmp_path / "speech.wav"
    env = {**os.environ, "PYTHONPATH": str(REPO / "functions"),
           "VOXPROOF_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "voxproof", "synth", text, "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert DEFAULT_MANIFEST_SHA256 in done.stdout and "22050 Hz" in done.stdout
    rate, width, channels, pcm = read_wav(out)
    assert (rate, width, channels) == (22050, 2, 1)
    heard = words(Recognizer().transcribe(pcm / 32768.0, rate))
    reference = reference_words(text)
    assert edit_distance(reference, heard) / len(reference) <= 0.35, heard
    # Every output is marked and recorded: `voxproof verify` (another fresh process, the same
    # state folder) finds the record that `synth` printed.
    record_id = re.search(r"record ([0-9a-f]{10})", done.stdout).group(1)
    checked = subprocess.run([sys.executable, "-m", "voxproof", "verify", str(out), "--json"],
                             capture_output=True, text=True, env=env, timeout=600, check=False)
    assert checked.returncode == 0, checked.stderr[-2000:]
    report = json.loads(checked.stdout)
    assert report["found"] and report["record_id"] == record_id
    assert report["verdict"] == "recorded" and report["record"]["entry_point"] == "cli"
    assert text not in checked.stdout + done.stdout


def test_synth_engine_flag_overrides_the_setting(tiny_cli, tmp_path, capsys, monkeypatch):
    """``--engine onnx`` on a layer without an export is refused naming the torch engine;
    ``--engine torch`` speaks it."""
    monkeypatch.setenv("VOXPROOF_ENGINE", "onnx")
    code, _, err = run(["synth", "A bad cafe.", "-o", str(tmp_path / "a.wav")], capsys)
    assert code == 2 and "[engine_mismatch]" in err and "VOXPROOF_ENGINE=torch" in err
    code, _, _ = run(["synth", "A bad cafe.", "-o", str(tmp_path / "b.wav"), "--engine", "torch"],
                     capsys)
    assert code == 0 and (tmp_path / "b.wav").is_file()


@pytest.mark.parametrize(("name", "extra", "mime"), [
    ("out.mp3", [], "audio/mpeg"), ("out.audio", ["--format", "flac"], "audio/flac"),
    ("out.wav", [], "audio/wav"), ("out.m4a", [], "audio/mp4")])
def test_synth_writes_signed_audio_in_the_format_asked(tiny_cli, tmp_path, capsys, name, extra,
                                                       mime):
    import io

    import c2pa
    from voxproof import audio

    out = tmp_path / name
    code, stdout, _ = run(["synth", "A bad cafe, a bad face.", "-o", str(out), *extra], capsys)
    assert code == 0 and "signed: C2PA manifest" in stdout
    said = float(stdout.split(": ")[1].split(" s,")[0])
    assert abs(audio.decode(out.read_bytes()).duration_s - said) < 0.08  # codec padding at most
    code, shown, _ = run(["credentials", "--export-ca", str(tmp_path / "ca.pem"), "--json"],
                         capsys)
    info = json.loads(shown)
    assert code == 0 and info["signer"]["key_mode"] == "0600"
    settings = c2pa.Settings.from_dict({"verify": {"verify_trust": True}, "trust": {
        "trust_anchors": (tmp_path / "ca.pem").read_text()}})
    reader = c2pa.Reader(mime, io.BytesIO(out.read_bytes()), context=c2pa.Context(settings))
    assert reader.get_validation_state() == "Trusted"
    default = c2pa.Reader(mime, io.BytesIO(out.read_bytes()))  # without the local CA
    assert default.get_validation_state() == "Valid"
    code, text, _ = run(["verify", str(out)], capsys)  # the tiny voice is too short to mark
    assert code == 0 and "manifest in the file valid, trusted signer" in text


def test_credentials_shows_the_local_ca_and_signer(tiny_cli, capsys):
    code, text, _ = run(["credentials"], capsys)
    assert code == 0 and "CN=voxproof local CA" in text and "(mode 0600)" in text
    code, again, _ = run(["credentials"], capsys)
    assert again == text  # created once, then shown
