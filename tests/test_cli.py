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
    presence = body["presence"]  # beside the existing fields: a record implies presence
    assert presence["found"] is True and presence["key_id"] == body["key_id"]
    assert presence["z"] >= presence["threshold"] and presence["p_false"] == 1e-6
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["verify", str(tmp_path / "out.wav"), "--key-file", str(key_file)]) == 0
    assert "presence: FOUND, key " in capsys.readouterr().out
    assert cli_main(["verify", str(tmp_path / "in.wav"), "--key-file", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert "none found" in out and "presence: not found (z " in out
    assert cli_main(["verify", str(tmp_path / "in.wav"), "--key-file", str(key_file),
                     "--json"]) == 0  # exit 0 whether found or not, as before
    body = json.loads(capsys.readouterr().out)
    assert body["found"] is False and body["verdict"] == "not_found"
    assert body["presence"]["found"] is False and body["presence"]["key_id"] is None
    assert body["presence"]["z"] < body["presence"]["threshold"]
    assert body["presence"]["hypotheses"] == 46 * 256  # the full search
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


# --- verify in bulk: many files, standard input, one JSON line each, --jobs ---------------------
@pytest.fixture(scope="module")
def bulk(tmp_path_factory, host: np.ndarray):
    """A key, two marked files (WAV and FLAC), an unmarked twin and a file that is not audio."""
    from voxproof.watermark import embed

    root = tmp_path_factory.mktemp("bulk")
    KEY.write_key_file(root / "wm.key")
    sf.write(root / "a.wav", embed(host, 16000, KEY, 0xA1), 16000, subtype="PCM_16")
    sf.write(root / "b.flac", embed(host, 16000, KEY, 0xB2), 16000)
    sf.write(root / "plain.wav", host, 16000, subtype="PCM_16")
    (root / "notes.txt").write_text("not audio\n")
    return root


def _run_cli(args: list[str], *, cwd, stdin: bytes | None = None):
    """``voxproof`` as a whole process (fork pools and stdin are the process's own)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "VOXPROOF_STATE_DIR": str(cwd / "state")}
    return subprocess.run([sys.executable, "-m", "voxproof", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, timeout=300, check=False)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_cli_verify_many_files_prints_one_json_line_each_in_order(bulk, jobs: str) -> None:
    names = ["a.wav", "notes.txt", "plain.wav", "missing.wav", "b.flac"]
    done = _run_cli(["verify", *names, "--key-file", "wm.key", "--json", "--jobs", jobs],
                    cwd=bulk)
    assert done.returncode == 2, done.stderr  # two files could not be checked
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [line["file"] for line in lines] == names
    a, notes, plain, missing, b = lines
    assert (a["found"], a["record_id"]) == (True, "00000000a1")
    assert (b["found"], b["record_id"]) == (True, "00000000b2")
    assert plain["found"] is False and plain["record_id"] is None
    assert a["presence"]["found"] and b["presence"]["found"] and not plain["presence"]["found"]
    assert notes["error"]["code"] == "unsupported_audio" and "found" not in notes
    assert missing["error"]["code"] == "unreadable_file"
    assert "Traceback" not in done.stderr.decode()


def test_cli_verify_reads_standard_input_beside_files(bulk) -> None:
    done = _run_cli(["verify", "-", "plain.wav", "--key-file", "wm.key"], cwd=bulk,
                    stdin=(bulk / "b.flac").read_bytes())
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "file:    (standard input)" in out and "record 00000000b2" in out
    assert out.count("file:    ") == 2 and "none found" in out


def test_cli_verify_refuses_arguments_that_do_not_fit(bulk, capsys) -> None:
    key = str(bulk / "wm.key")
    assert cli_main(["verify", "-", "-", "--key-file", key]) == 2
    assert "[usage]" in capsys.readouterr().err
    assert cli_main(["verify", str(bulk / "a.wav"), str(bulk / "plain.wav"), "--key-file", key,
                     "--plot", str(bulk / "t.png")]) == 2
    assert "one FILE" in capsys.readouterr().err
    for bad in ("0", "65", "two"):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["verify", str(bulk / "a.wav"), "--jobs", bad])
        assert exit_.value.code == 2
    capsys.readouterr()
    # one file keeps the single-file contract: its error is the command's, exit 2
    assert cli_main(["verify", str(bulk / "notes.txt"), "--key-file", key, "--json"]) == 2
    assert "voxproof: error [unsupported_audio]" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["mark", "verify"])
def test_cli_mark_and_verify_import_no_voice_and_no_scipy_signal(bulk, command: str) -> None:
    """What a mark does not use is not paid for at start: no voice stack, no scipy.signal."""
    argv = (["mark", "plain.wav", "out.wav", "--record-id", "00000000c3"] if command == "mark"
            else ["verify", "a.wav"])
    probe = ("import json, sys\nfrom voxproof.cli import main\n"
             f"code = main({argv + ['--key-file', 'wm.key']!r})\n"
             "print(json.dumps([code, sorted(sys.modules)]))")
    import os
    import subprocess
    import sys

    env = {**os.environ, "VOXPROOF_STATE_DIR": str(bulk / "state")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=bulk, env=env, capture_output=True,
                          timeout=300, check=True)
    code, modules = json.loads(done.stdout.decode().splitlines()[-1])
    assert code == 0
    heavy = {"scipy.signal", "torch", "TTS", "onnxruntime", "num2words", "voxproof.text",
             "voxproof.voice.synthesis", "voxproof.voice.onnx_engine", "boto3", "matplotlib"}
    assert not heavy & set(modules)
    assert "voxproof.watermark" in modules  # the probe did run the command


def test_cli_verify_reads_an_existing_registry_and_creates_none(bulk, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    """Without a local registry a found mark is reported as genuine with no record, and the
    look-up creates no registry; once one holds the record, verify reports it."""
    from voxproof.provenance import ProvenanceRecord, SQLiteRegistry

    state = tmp_path / "state"
    monkeypatch.setenv("VOXPROOF_STATE_DIR", str(state))
    argv = ["verify", str(bulk / "a.wav"), "--key-file", str(bulk / "wm.key"), "--json"]
    assert cli_main(argv) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["record_id"] == "00000000a1" and body["record"] is None
    assert body["verdict"] == "marked" and "no record" in body["unchecked"][0]
    assert not (state / "records.sqlite3").exists()
    registry = SQLiteRegistry(state / "records.sqlite3")
    registry.put_new(ProvenanceRecord.new(
        record_id=0xA1, key_id=KEY.key_id, text_hash="00" * 32, model_manifest_sha256="11" * 32,
        voice="joe", sample_rate=16000, duration_s=6.0, caller="cli:test", entry_point="cli"))
    registry.close()
    assert cli_main(argv) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["verdict"] == "recorded" and body["record"]["record_id"] == "00000000a1"
    assert body["record"]["caller"] == "cli:test" and body["unchecked"] == []


@pytest.mark.parametrize("argv", [["mark", "plain.wav", "out.wav", "--record-id", "00000000c3"],
                                  ["verify", "a.wav", "--json"], ["verify", "plain.wav"]],
                         ids=["mark", "verify-marked", "verify-unmarked"])
def test_cli_mark_and_verify_of_a_wav_import_only_what_they_use(bulk, tmp_path,
                                                                argv: list[str]) -> None:
    """Issue 10's CLI: with no VOXPROOF_* variable, a WAV is marked or verified without
    pydantic-settings (LocalSettings), PyAV (the numpy WAV reader), c2pa or cryptography's
    X.509 (no manifest to read), besides the voice and scipy; mark needs no pydantic,
    registry or service at all; verify never reads a key secret's JSON (``key_secret``), and
    opens no registry (pydantic's records, sqlite3) for a file without a mark, nor for a mark
    when no local registry exists (the next test reads one that does)."""
    import os
    import subprocess
    import sys

    probe = ("import json, sys\nfrom voxproof.cli import main\n"
             f"code = main({argv + ['--key-file', 'wm.key']!r})\n"
             "print(json.dumps([code, sorted(sys.modules)]))")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VOXPROOF_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run([sys.executable, "-c", probe], cwd=bulk, env=env, capture_output=True,
                          timeout=300, check=True)
    code, modules = json.loads(done.stdout.decode().splitlines()[-1])
    assert code == 0
    found = set(modules)
    never = {"pydantic_settings", "voxproof.settings", "av", "c2pa", "cryptography.x509",
             "voxproof.credentials.identity", "voxproof.credentials.signer", "scipy",
             "voxproof.voice", "torch", "onnxruntime", "boto3", "botocore", "matplotlib",
             "numpy.ma"}  # np.percentile's import (analysis.percentile instead)
    assert not never & found, never & found
    if argv[0] == "mark":
        assert not {"pydantic", "sqlite3", "voxproof.service", "voxproof.runtime",
                    "voxproof.local_settings"} & found
        assert "voxproof.watermark.embed" in found
    else:
        assert "voxproof.decode_worker" in found and "voxproof.service" in found
        assert not {"voxproof.key_secret", "pydantic", "sqlite3", "voxproof.provenance"} & found
        assert "numpy.ma" not in found  # np.percentile imports it: analysis.percentile does not
        assert not (tmp_path / "xdg" / "voxproof" / "records.sqlite3").exists()
    if argv[0] == "verify" and "--json" in argv:
        assert '"record_id": "00000000a1"' in done.stdout.decode()
