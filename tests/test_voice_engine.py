"""voxproof.voice.engine: safe loading with Coqui's classes, and synthesis that matches Piper."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from voice_layers import TINY_HOP, relist, rewrite_manifest
from voxproof.errors import (
    CheckpointInvalid,
    EngineMismatch,
    InvalidPhonemeIds,
    InvalidScales,
    UnsafeCheckpoint,
)
from voxproof.voice.engine import MAX_IDS, load_engine, load_weights
from voxproof.voice.layer import verify_layer
from voxproof.voice.manifest import read_manifest
from voxproof.voice.pins import DEFAULT_MANIFEST_SHA256


class _Payload:
    """Unpickling this runs code: it creates ``marker`` (the attack the loader must refuse)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _evil_checkpoint(marker) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": {"text_encoder.emb.weight": torch.zeros(2, 2)}, "x": _Payload(marker)},
               buffer)
    return buffer.getvalue()


def _load(folder, pin):
    return load_engine(verify_layer(folder, manifest_sha256=pin), threads=1)


# --- loading -------------------------------------------------------------------------------------


def test_tiny_layer_loads_and_speaks(tiny_layer):
    engine = _load(*tiny_layer)
    audio = engine.infer([1, 0, 5, 0, 6, 0, 7, 0, 2])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) > 0 and len(audio) % TINY_HOP == 0 and np.isfinite(audio).all()
    assert engine.voice == "tiny-test" and engine.sample_rate == 16_000
    assert engine.manifest_sha256 == tiny_layer[1]
    assert not engine._model.training


def test_pickle_carrying_code_is_refused_before_torch_sees_it(tiny_layer, tmp_path):
    folder, _ = tiny_layer
    marker = tmp_path / "pwned"
    pin = relist(folder, "model.pth", _evil_checkpoint(marker))  # integrity passes
    with pytest.raises(UnsafeCheckpoint):
        _load(folder, pin)
    assert not marker.exists()


def test_torch_weights_only_refuses_code_too(tiny_layer, tmp_path):
    # bypass voxproof's own pickle scan: Coqui's loader (torch weights_only=True) must refuse
    from TTS.tts.models.vits import Vits
    from voice_layers import tiny_config

    folder, _ = tiny_layer
    marker = tmp_path / "pwned"
    (folder / "model.pth").write_bytes(_evil_checkpoint(marker))
    config = tiny_config()
    with pytest.raises(UnsafeCheckpoint):
        load_weights(Vits(config), config, folder / "model.pth")
    assert not marker.exists()


def test_bare_pickle_checkpoint_is_refused(tiny_layer, tmp_path):
    folder, _ = tiny_layer
    marker = tmp_path / "pwned"
    pin = relist(folder, "model.pth", pickle.dumps({"model": _Payload(marker)}))
    with pytest.raises(UnsafeCheckpoint):
        _load(folder, pin)
    assert not marker.exists()


def test_loader_refuses_to_run_without_weights_only(tiny_layer, monkeypatch):
    from trainer import io as trainer_io

    monkeypatch.setattr(trainer_io, "_WEIGHTS_ONLY", False)
    with pytest.raises(UnsafeCheckpoint):
        _load(*tiny_layer)


def test_checkpoint_missing_a_weight_is_invalid(tiny_layer):
    folder, _ = tiny_layer
    state = torch.load(folder / "model.pth", weights_only=True)
    del state["model"]["text_encoder.proj.bias"]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    pin = relist(folder, "model.pth", buffer.getvalue())
    with pytest.raises(CheckpointInvalid) as caught:
        _load(folder, pin)
    assert type(caught.value) is CheckpointInvalid


def test_config_disagreeing_with_manifest_is_invalid(tiny_layer):
    folder, _ = tiny_layer
    text = (folder / "config.json").read_text().replace('"sample_rate": 16000', '"sample_rate": 8000')
    pin = relist(folder, "config.json", text.encode())
    with pytest.raises(CheckpointInvalid, match="sample rate"):
        _load(folder, pin)


def test_layer_for_another_coqui_version_is_refused(tiny_layer):
    folder, _ = tiny_layer
    m = read_manifest(folder / "manifest.json")
    engine = m.engine.model_copy(update={"coqui_tts_version": "0.0.1"})
    pin = rewrite_manifest(folder, m.model_copy(update={"engine": engine}))
    with pytest.raises(EngineMismatch):
        _load(folder, pin)


def test_loading_never_opens_a_socket(tiny_layer):
    # a fresh interpreter, so that importing TTS and torch is part of what is watched
    folder, pin = tiny_layer
    script = textwrap.dedent(f"""
        import socket
        def refuse(*a, **k):
            raise SystemExit("network use: " + repr(a)[:80])
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.getaddrinfo = socket.create_connection = refuse
        from pathlib import Path
        from voxproof.voice.engine import load_engine
        from voxproof.voice.layer import verify_layer
        e = load_engine(verify_layer(Path({str(folder)!r}), manifest_sha256={pin!r}), threads=1)
        print(len(e.infer([1, 0, 5, 0, 2])))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TTS_"))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[-1]) > 0


# --- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids", [[], [1, 0, 16, 2], [-1, 2], [[1, 2]], [1.5, 2.0], "abc", list(range(8)) * MAX_IDS]
)
def test_bad_phoneme_ids_are_refused(tiny_layer, ids):
    engine = _load(*tiny_layer)
    with pytest.raises(InvalidPhonemeIds):
        engine.infer(ids)


@pytest.mark.parametrize("scales", [{"noise_scale": -0.1}, {"length_scale": 0}, {"noise_scale_dp": 5}])
def test_out_of_range_scales_are_refused(tiny_layer, scales):
    with pytest.raises(InvalidScales):
        _load(*tiny_layer).infer([1, 0, 5, 0, 2], **scales)


def test_seed_makes_sampling_reproducible_and_leaves_global_rng(tiny_layer):
    engine = _load(*tiny_layer)
    ids = [1, 0, 5, 0, 6, 0, 7, 0, 8, 0, 2]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = engine.infer(ids, seed=7)
    b = engine.infer(ids, seed=7)
    assert np.array_equal(a, b)
    assert torch.rand(1) == expected_next  # the caller's RNG stream is untouched


def test_length_scale_stretches_the_audio(tiny_layer):
    engine = _load(*tiny_layer)
    ids = [1, 0, 5, 0, 6, 0, 7, 0, 2]
    short = engine.infer(ids, noise_scale=0, noise_scale_dp=0, length_scale=1.0)
    long = engine.infer(ids, noise_scale=0, noise_scale_dp=0, length_scale=3.0)
    assert len(long) > 2 * len(short)


# --- the real voice --------------------------------------------------------------------------------


def test_default_engine_identity(default_engine):
    assert default_engine.sample_rate == 22050
    assert default_engine.voice == "en_US-joe-medium"
    assert default_engine.manifest_sha256 == DEFAULT_MANIFEST_SHA256
    assert default_engine.num_symbols == 256


@pytest.mark.slow
def test_conversion_matches_piper_onnx(default_engine, voice_wheel):
    """Same ids, noise scales 0: same length and waveform correlation >= 0.99999."""
    import onnxruntime
    from voxproof.layer_build.convert import read_voice

    voice = read_voice(voice_wheel)
    session = onnxruntime.InferenceSession(voice.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input", "input_lengths", "scales"]
    rng = np.random.default_rng(20240601)
    for n_phonemes in (1, 8, 30, 80, 160):
        phonemes = rng.integers(3, 151, n_phonemes)  # ids 3..150 are the voice's phonemes
        ids = [1, 0, *[int(v) for p in phonemes for v in (p, 0)], 2]
        x = np.array([ids], dtype=np.int64)
        (ref,) = session.run(None, {
            "input": x, "input_lengths": np.array([x.shape[1]], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        })
        ours = default_engine.infer(ids, noise_scale=0.0, length_scale=1.0, noise_scale_dp=0.0)
        ref = ref.reshape(-1)
        assert len(ours) == len(ref), n_phonemes
        assert np.corrcoef(ours, ref)[0, 1] >= 0.99999, n_phonemes
