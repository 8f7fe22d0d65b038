"""Optional extras: the runtime imports none of them; a command that needs one names it.

The image installs the runtime and [aws] only (functions/Dockerfile): no [torch], [build] or
[plot]; these tests are what keeps that image working.
"""

from __future__ import annotations

import subprocess
import sys
import wave

from voxproof.cli import main

# What the Lambda functions and `voxproof synth` import (voice, service, handlers' cores).
RUNTIME_MODULES = (
    "voxproof.voice", "voxproof.voice.synthesis", "voxproof.voice.engine", "voxproof.voice.layer",
    "voxproof.voice.onnx_engine",
    "voxproof.service", "voxproof.watermark", "voxproof.audio", "voxproof.cli",
    "voxproof.handlers.http", "voxproof.handlers.common",
)
#: Never loaded at run time: the layer builder ([build]), plotting ([plot]), the torch engine's
#: libraries ([torch], not in the image) and scipy (tests and benchmarks only: [dev]).
BUILD_AND_PLOT = ("voxproof.layer_build", "onnx", "matplotlib", "torch", "torchaudio", "TTS",
                  "scipy")


def test_the_runtime_imports_no_build_plot_or_torch_code():
    code = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {BUILD_AND_PLOT!r}"
        f" or m.startswith({BUILD_AND_PLOT[0]!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300)
    assert done.stdout.strip() == "[]"


def test_layer_build_without_the_build_extra_exits_2_naming_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    out = tmp_path / "layer"
    assert main(["layer", "build", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "[extra_not_installed]" in err and "pip install 'voxproof[build]'" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["layer", "build", "--check", "--out", str(out)]) == 2
    assert "voxproof[build]" in capsys.readouterr().err


def test_verify_plot_without_the_plot_extra_exits_2_naming_it(monkeypatch, tmp_path, capsys):
    key_file = tmp_path / "wm.key"
    assert main(["keygen", "--key-file", str(key_file)]) == 0
    clip = tmp_path / "silence.wav"
    with wave.open(str(clip), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(b"\0\0" * 16_000)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    png = tmp_path / "t.png"
    assert main(["verify", str(clip), "--key-file", str(key_file), "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert "[extra_not_installed]" in err and "pip install 'voxproof[plot]'" in err
    assert not png.exists()


def test_torch_engine_without_the_torch_extra_exits_2_naming_it(tiny_layer, tmp_path, monkeypatch,
                                                                capsys):
    """The image has no torch: VOXPROOF_ENGINE=torch (or --engine torch) says which extra."""
    folder, pin = tiny_layer
    monkeypatch.setenv("VOXPROOF_MODEL_DIR", str(folder))
    monkeypatch.setenv("VOXPROOF_MODEL_MANIFEST_SHA256", pin)
    monkeypatch.setenv("VOXPROOF_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VOXPROOF_ENGINE", "torch")
    for name in ("torch", "TTS"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the [torch] extra were not installed
    out = tmp_path / "a.wav"
    for argv in (["synth", "A bad cafe.", "-o", str(out)],
                 ["synth", "A bad cafe.", "-o", str(out), "--engine", "torch"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "[extra_not_installed]" in err and "pip install 'voxproof[torch]'" in err, err
        assert "VOXPROOF_ENGINE=torch" in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
