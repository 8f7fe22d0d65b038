"""Attacks through the real ffmpeg for the watermark tests (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is installed by .ci/run")


def ffmpeg_round_trip(x: np.ndarray, sr: int, args: list[str], ext: str, tmp_path) -> np.ndarray:
    """Through ffmpeg (``args`` on the way out, container ``ext``) and back to float at sr."""
    sf.write(tmp_path / "in.wav", x, sr, subtype="PCM_16")
    for cmd in (["-i", str(tmp_path / "in.wav"), *args, str(tmp_path / f"mid.{ext}")],
                ["-i", str(tmp_path / f"mid.{ext}"), "-ar", str(sr), "-ac", "1",
                 str(tmp_path / "back.wav")]):
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *cmd], check=True)
    back, rate = sf.read(tmp_path / "back.wav", dtype="float32")
    assert rate == sr
    return back
