"""voxproof.layer_build (convert, piper_onnx): every weight accounted for, reproducible builds."""

from __future__ import annotations

import filecmp
import hashlib
import json
import math
import shutil
import zipfile

import numpy as np
import pytest
from voxproof.cli import main
from voxproof.errors import (
    ConversionError,
    LayerBuildError,
    LayerCheckFailed,
    LayerFileMissing,
    SourceDigestMismatch,
)
from voxproof.layer_build import convert
from voxproof.layer_build.convert import (
    build_layer,
    check_source,
    ensure_layer,
    manifest_differences,
    read_voice,
)
from voxproof.layer_build.piper_onnx import (
    PLACEHOLDER_PREFIXES,
    ConvertedWeights,
    convert_graph,
    fill_state,
    weight_norm_g,
)
from voxproof.voice import pins
from voxproof.voice.manifest import read_manifest

# --- the mapping ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper_graph(voice_wheel):
    import onnx

    return onnx.load_from_string(read_voice(voice_wheel).onnx)


def test_every_onnx_initializer_is_mapped_or_explained(piper_graph):
    converted = convert_graph(piper_graph)
    names = [t.name for t in piper_graph.graph.initializer]
    assert set(converted.sources.values()) | set(converted.unused) == set(names)
    assert not set(converted.sources.values()) & set(converted.unused)
    # what is left unused can hold no weight: integer shapes/indices, or float scalars
    by_name = {t.name: t for t in piper_graph.graph.initializer}
    for name, reason in converted.unused.items():
        dims = list(by_name[name].dims)
        assert math.prod(dims) <= 16 and reason, name
        if by_name[name].data_type == 1:  # FLOAT
            assert math.prod(dims) == 1, name
    # every named parameter and every anonymous flow conv found a home
    named = [n for n in names if not n.startswith(("/", "onnx::")) and not n.isdigit()]
    convs = [n for n in names if n.startswith("onnx::Conv_")]
    assert len(convs) == 32
    assert len(converted.weights) == len(named) + len(convs) + 1  # + exp(-logs) constant
    assert converted.sources["text_encoder.emb.weight"] == "sid"
    assert converted.weights["text_encoder.emb.weight"].shape == (256, 192)


def test_flip_folding_and_the_folded_affine(piper_graph):
    converted = convert_graph(piper_graph)
    src = converted.sources
    assert src["duration_predictor.flows.2.pre.weight"] == "dp.flows.3.pre.weight"
    assert src["duration_predictor.flows.4.proj.bias"] == "dp.flows.7.proj.bias"
    assert src["flow.flows.3.post.bias"] == "flow.flows.6.post.bias"
    assert src["duration_predictor.flows.0.translation"] == "dp.flows.0.m"
    exp_const = next(t for t in piper_graph.graph.initializer if t.name == "/dp/flows.0/Exp_output_0")
    from onnx import numpy_helper

    np.testing.assert_allclose(
        np.exp(-converted.weights["duration_predictor.flows.0.log_scale"]),
        numpy_helper.to_array(exp_const), rtol=1e-6,
    )


def test_every_coqui_parameter_is_converted_or_an_unused_placeholder(piper_graph, default_layer):
    import torch

    state = torch.load(default_layer.checkpoint_path, weights_only=True)["model"]
    converted = convert_graph(piper_graph)
    from_onnx = set(converted.weights)
    for key in state:
        plain = key.replace(".parametrizations.weight.original0", ".weight").replace(
            ".parametrizations.weight.original1", ".weight")
        if plain not in from_onnx:
            assert key.startswith(tuple(PLACEHOLDER_PREFIXES)), key
    placeholders = [k for k in state if k.startswith(tuple(PLACEHOLDER_PREFIXES))]
    assert placeholders and all(
        torch.count_nonzero(state[k]) == 0 or k.endswith("original1") for k in placeholders
    )


def test_weight_norm_split_reproduces_the_weight():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 5)).astype(np.float32)
    g = weight_norm_g(w)
    assert g.shape == (6, 1, 1) and g.dtype == np.float32
    rebuilt = g * w / np.linalg.norm(w.reshape(6, -1), axis=1).reshape(6, 1, 1)
    np.testing.assert_allclose(rebuilt, w, rtol=1e-6)
    # exactly rounded: independent of summation order
    assert np.array_equal(weight_norm_g(w[:, ::-1, ::-1].copy()), g)


def test_fill_state_refuses_leftovers_and_gaps():
    c = ConvertedWeights()
    c.put("a.weight", "x", np.zeros((2, 2), np.float32))
    with pytest.raises(ConversionError, match="not in Coqui"):
        fill_state(c, {"b.weight": (2, 2)})
    with pytest.raises(ConversionError, match="no ONNX weight"):
        fill_state(c, {"a.weight": (2, 2), "text_encoder.other": (1,)})
    with pytest.raises(ConversionError, match="shape"):
        fill_state(c, {"a.weight": (2, 3)})
    with pytest.raises(ConversionError, match="two ONNX weights"):
        c.put("a.weight", "y", np.zeros((2, 2), np.float32))
    filled = fill_state(c, {"a.weight": (2, 2), "posterior_encoder.x": (3,)})
    assert filled["posterior_encoder.x"].tolist() == [0, 0, 0]


def test_phoneme_map_must_be_one_symbol_one_id():
    base = {"num_symbols": 8, "phoneme_id_map": {"_": [0], "^": [1], "$": [2]}}
    assert convert._symbols_by_id(base) == ["_", "^", "$"]
    for broken in ({"_": [0], "^": [2]}, {"_": [0, 1]}, {"ab": [0]}, {"_": [0], "^": [0]}):
        with pytest.raises(ConversionError):
            convert._symbols_by_id({**base, "phoneme_id_map": broken})


def test_coqui_tokenizer_agrees_with_piper_ids(torch_engine, default_layer):
    id_map = default_layer.phoneme_id_map()
    assert id_map == json.loads(default_layer.phoneme_id_map_path.read_text())
    characters = torch_engine._model.tokenizer.characters
    assert characters.num_chars == 256
    assert all(characters.char_to_id(s) == ids[0] for s, ids in id_map.items())


# --- the source ----------------------------------------------------------------------------------


def test_wrong_wheel_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    fake = tmp_path / pins.VOICE_WHEEL
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(pins.VOICE_ONNX, b"not a model")

    def opened(*args, **kwargs):
        raise AssertionError("the wheel was opened before its digest was checked")

    monkeypatch.setattr(zipfile, "ZipFile", opened)
    with pytest.raises(SourceDigestMismatch):
        check_source(fake)
    with pytest.raises(SourceDigestMismatch):
        build_layer(tmp_path / "out", cache_dir=tmp_path / "cache", wheel=fake)
    assert not (tmp_path / "out").exists()


# --- building ------------------------------------------------------------------------------------


def test_build_refuses_to_overwrite_a_folder_that_is_not_a_layer(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(LayerBuildError, match="no layer manifest"):
        build_layer(tmp_path / "home", cache_dir=tmp_path / "cache")
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"


def test_build_refuses_a_hostile_manifest_in_the_output(tmp_path, default_layer):
    out = tmp_path / "layer"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = default_layer.manifest
    files = [f.model_copy(update={"path": "../victim.txt"}) if f.path == "MODEL_CARD" else f
             for f in manifest.files]
    (out / "manifest.json").write_text(manifest.model_copy(update={"files": sorted(
        files, key=lambda f: f.path)}).to_json())
    with pytest.raises(LayerBuildError, match="unsafe"):
        build_layer(out, cache_dir=tmp_path / "cache")
    assert victim.read_text() == "keep me"


def test_partly_missing_layer_is_refused_not_rebuilt(tmp_path, default_layer, monkeypatch):
    layer = tmp_path / "layer"
    layer.mkdir()
    shutil.copy(default_layer.root / "manifest.json", layer)
    shutil.copy(default_layer.root / "MODEL_CARD", layer)
    monkeypatch.setattr(convert, "build_layer", lambda *a, **k: pytest.fail("rebuilt"))
    with pytest.raises(LayerFileMissing):
        ensure_layer(layer, manifest_sha256=pins.DEFAULT_MANIFEST_SHA256, cache_dir=tmp_path)


@pytest.mark.slow
def test_ensure_layer_builds_a_fresh_checkout_byte_identical(tmp_path, default_layer, voice_wheel):
    """A checkout with only manifest.json is built by ``ensure_layer``: same bytes as layers/model."""
    layer = tmp_path / "layer"
    layer.mkdir()
    shutil.copy(default_layer.root / "manifest.json", layer)
    built = ensure_layer(layer, manifest_sha256=pins.DEFAULT_MANIFEST_SHA256,
                         cache_dir=voice_wheel.parent)
    assert built.manifest_sha256 == pins.DEFAULT_MANIFEST_SHA256
    names = sorted(p.name for p in layer.iterdir())
    assert names == sorted(p.name for p in default_layer.root.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(layer, default_layer.root, names, shallow=False)
    assert (mismatch, errors) == ([], [])


@pytest.mark.slow
def test_check_mode_rebuilds_and_matches_the_committed_manifest(default_layer, voice_wheel,
                                                                 capsys):
    status = main(["layer", "build", "--check", "--out", str(default_layer.root),
                   "--wheel", str(voice_wheel)])
    assert status == 0
    assert pins.DEFAULT_MANIFEST_SHA256 in capsys.readouterr().out


def test_check_mode_names_what_differs(default_layer):
    m = read_manifest(default_layer.root / "manifest.json")
    files = [f.model_copy(update={"sha256": "0" * 64}) if f.path == "model.pth" else f
             for f in m.files]
    other = m.model_copy(update={"files": files, "licence_notes": "changed"})
    assert manifest_differences(m, other) == ["model.pth", "manifest field licence_notes"]
    assert manifest_differences(m, m) == []


def test_check_without_a_manifest_is_not_found(tmp_path, capsys):
    assert main(["layer", "build", "--check", "--out", str(tmp_path)]) == 2
    assert "[layer_not_found]" in capsys.readouterr().err


def test_check_failure_is_reported(monkeypatch, default_layer, tmp_path, capsys):
    layer = tmp_path / "layer"
    layer.mkdir()
    m = read_manifest(default_layer.root / "manifest.json")
    (layer / "manifest.json").write_text(m.model_copy(update={"licence_notes": "x"}).to_json())
    built = m
    monkeypatch.setattr(convert, "build_into", lambda *a, **k: built)  # skip the 6 s build
    with pytest.raises(LayerCheckFailed, match="licence_notes"):
        convert.check_layer(layer, cache_dir=tmp_path)
    status = main(["layer", "build", "--check", "--out", str(layer)])
    assert status == 2
    assert "layer_check_failed" in capsys.readouterr().err


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_verify_prints_digest_and_count(default_layer, capsys):
    assert main(["layer", "verify", str(default_layer.root)]) == 0
    out = capsys.readouterr().out
    assert pins.DEFAULT_MANIFEST_SHA256 in out and "5 files" in out


def test_cli_verify_exits_2_with_the_specific_error(tiny_layer, capsys):
    folder, pin = tiny_layer
    (folder / "extra.bin").write_bytes(b"x")
    assert main(["layer", "verify", str(folder), "--manifest-sha256", pin]) == 2
    err = capsys.readouterr().err
    assert "[layer_unlisted_file]" in err and "extra.bin" in err and str(folder) not in err
    (folder / "extra.bin").unlink()
    assert main(["layer", "verify", str(folder)]) == 2  # the default pin is not this layer's
    assert "[manifest_digest_mismatch]" in capsys.readouterr().err


def test_manifest_digest_is_the_file_digest(default_layer):
    raw = (default_layer.root / "manifest.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == default_layer.manifest_sha256
    assert default_layer.manifest.sha256() == default_layer.manifest_sha256
