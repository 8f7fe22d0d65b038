"""The command line: keygen, mark and verify (exit codes, key files, formats, the state folder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from voxproof.cli import main as cli_main
from voxproof.watermark import WatermarkKey
from voxproof.watermark.detect import MAX_ATTEMPTS
from watermark_hosts import speechlike

KEY = WatermarkKey.from_hex("3c" * 32)


@pytest.fixture(scope="module")
def host() -> np.ndarray:
    return speechlike(6.0, 16000, seed=3)


def test_cli_keygen_mark_verify(tmp_path, capsys, host: np.ndarray) -> None:
    key_file = tmp_path / "wm.key"
    assert cli_main(["keygen", "--key-file", str(key_file)]) == 0
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert cli_main(["keygen", "--key-file", str(key_file)]) == 2  # refuses to overwrite
    sf.write(tmp_path / "in.wav", host, 16000, subtype="PCM_16")
    assert cli_main(["mark", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                     "--key-file", str(key_file), "--record-id", "00000000a1"]) == 0
    capsys.readouterr()
    assert cli_main(["verify", str(tmp_path / "out.wav"), "--key-file", str(key_file), "--json",
                     "--plot", str(tmp_path / "t.png")]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["found"] and body["record_id"] == "00000000a1"
    assert body["key_id"] == WatermarkKey.read_key_file(key_file).key_id
    assert body["segments"] and 0 < body["p_false"] <= MAX_ATTEMPTS * 2.0**-24  # one key
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["verify", str(tmp_path / "in.wav"), "--key-file", str(key_file)]) == 0
    assert "none found" in capsys.readouterr().out
    assert cli_main(["mark", str(tmp_path / "in.wav"), str(tmp_path / "x.wav"),
                     "--key-file", str(key_file), "--record-id", "xyz"]) == 2
    assert "invalid_record_id" in capsys.readouterr().err


def test_cli_mark_keeps_a_lossy_format_and_the_mark_survives_it(tmp_path, capsys) -> None:
    from voxproof import audio

    key_file = tmp_path / "wm.key"
    KEY.write_key_file(key_file)
    audio.write_file(tmp_path / "in.mp3", speechlike(5.0, 16000, seed=21), 16000)
    assert cli_main(["mark", str(tmp_path / "in.mp3"), str(tmp_path / "out.mp3"),
                     "--key-file", str(key_file), "--record-id", "00deadbeef"]) == 0
    assert audio.read_file(tmp_path / "out.mp3").family == "mp3"
    capsys.readouterr()
    assert cli_main(["verify", str(tmp_path / "out.mp3"), "--key-file", str(key_file),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["record_id"] == "00deadbeef"


def test_cli_default_key_lives_in_the_state_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VOXPROOF_STATE_DIR", str(tmp_path / "state"))
    assert cli_main(["keygen"]) == 0
    state = tmp_path / "state"
    assert (state.stat().st_mode & 0o777) == 0o700
    assert ((state / "watermark.key").stat().st_mode & 0o777) == 0o600
