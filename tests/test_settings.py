
import pytest
from voxproof.errors import TextTooLong, VoxproofError
from voxproof.settings import Settings


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("VOXPROOF_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VOXPROOF_MAX_TEXT_CHARS_SYNC", "123")
    s = Settings()
    assert s.state_dir == tmp_path / "state"
    assert s.key_file == tmp_path / "state" / "watermark.key"
    assert s.max_text_chars_sync == 123


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError):
        Settings(no_such_setting=1)


def test_state_dir_is_private(tmp_path):
    s = Settings(state_dir=tmp_path / "a" / "b")
    made = s.ensure_state_dir()
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700


def test_error_public_form_has_code_and_message_only():
    err = TextTooLong("too long", limit=10)
    assert isinstance(err, VoxproofError)
    assert err.to_dict() == {"code": "text_too_long", "message": "too long", "details": {"limit": 10}}
    assert err.status == 413


def test_settings_import_no_part_of_the_voice_stack():
    import os
    import subprocess
    import sys
    from pathlib import Path

    functions = Path(__file__).resolve().parent.parent / "functions"
    code = ("import sys, voxproof.settings; "
            "print(sorted(m for m in sys.modules if m.startswith(('voxproof', 'torch', 'TTS', "
            "'num2words'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(functions)})
    assert done.stdout.strip() == str(["voxproof", "voxproof.local_settings",
                                       "voxproof.settings", "voxproof.voice",
                                       "voxproof.voice.pins"])


def test_local_settings_are_the_settings_defaults(monkeypatch, tmp_path):
    """What a CLI mark or verify reads without pydantic equals ``Settings()`` field by field,
    when no VOXPROOF_* variable is set; with one set, ``Settings`` must be read instead."""
    import dataclasses
    import os

    from voxproof.local_settings import LocalSettings

    for name in list(os.environ):
        if name.upper().startswith("VOXPROOF_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    local, settings = LocalSettings.from_env(), Settings()
    assert local is not None
    for field in dataclasses.fields(LocalSettings):
        assert getattr(local, field.name) == getattr(settings, field.name), field.name
    for name in ("key_file", "credentials_dir"):
        assert getattr(local, name) == getattr(settings, name)
    assert local.state_dir == tmp_path / "xdg" / "voxproof"
    monkeypatch.setenv("voxproof_decode_in_worker", "0")  # the variables' case is not theirs
    assert LocalSettings.from_env() is None


def test_auditors_and_the_bucket_owner_from_the_environment(monkeypatch):
    monkeypatch.setenv("VOXPROOF_AUDITOR_PRINCIPALS",
                       " arn:aws:iam::123456789012:user/a ,arn:aws:sts::123456789012:assumed-role/B/*,")
    monkeypatch.setenv("VOXPROOF_BUCKET_OWNER", "123456789012")
    s = Settings()
    assert s.auditor_principals == ("arn:aws:iam::123456789012:user/a",
                                    "arn:aws:sts::123456789012:assumed-role/B/*")
    assert s.bucket_owner == "123456789012"
    monkeypatch.setenv("VOXPROOF_AUDITOR_PRINCIPALS", "")  # the template's default: nobody
    assert Settings().auditor_principals == ()
    with pytest.raises(ValueError):
        Settings(bucket_owner="my-account")
