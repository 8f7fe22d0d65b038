"""voxproof.voice.layer: a layer is refused, with its own error, unless every byte matches."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from voice_layers import relist, rewrite_manifest
from voxproof.errors import (
    CheckpointInvalid,
    LayerDigestMismatch,
    LayerError,
    LayerFileMissing,
    LayerNotFound,
    LayerPathEscape,
    LayerSizeMismatch,
    LayerSymlink,
    LayerUnlistedFile,
    ManifestDigestMismatch,
    ManifestInvalid,
)
from voxproof.voice.layer import file_sha256, verify_layer
from voxproof.voice.manifest import LayerFile, read_manifest


def _refused(folder, pin, error: type[LayerError]) -> LayerError:
    with pytest.raises(error) as caught:
        verify_layer(folder, manifest_sha256=pin)
    assert type(caught.value) is error, f"expected exactly {error.__name__}"
    # messages name files relative to the layer, never the folder's absolute path
    assert str(folder) not in caught.value.message
    assert str(folder.parent) not in caught.value.message
    return caught.value


def test_intact_layer_verifies_and_records_manifest_digest(tiny_layer):
    folder, pin = tiny_layer
    layer = verify_layer(folder, manifest_sha256=pin)
    assert layer.manifest_sha256 == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert layer.checkpoint_path == folder / "model.pth"
    assert [f.path for f in layer.manifest.files] == [
        "MODEL_CARD", "config.json", "data/notes.txt", "model.pth", "phoneme_id_map.json"
    ]


def test_flipped_byte_is_a_digest_mismatch(tiny_layer):
    folder, pin = tiny_layer
    data = bytearray((folder / "model.pth").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.pth").write_bytes(bytes(data))
    err = _refused(folder, pin, LayerDigestMismatch)
    assert err.details["file"] == "model.pth"


def test_truncated_file_is_a_size_mismatch(tiny_layer):
    folder, pin = tiny_layer
    data = (folder / "config.json").read_bytes()
    (folder / "config.json").write_bytes(data[:-10])
    err = _refused(folder, pin, LayerSizeMismatch)
    assert "config.json" in err.message and "truncated" in err.message


def test_grown_file_is_a_size_mismatch(tiny_layer):
    folder, pin = tiny_layer
    with open(folder / "data" / "notes.txt", "ab") as handle:
        handle.write(b"x")
    assert _refused(folder, pin, LayerSizeMismatch).details["file"] == "data/notes.txt"


def test_extra_file_is_refused(tiny_layer):
    folder, pin = tiny_layer
    (folder / "data" / "payload.py").write_bytes(b"print('hi')\n")
    assert "data/payload.py" in _refused(folder, pin, LayerUnlistedFile).message


def test_extra_empty_folder_is_refused(tiny_layer):
    folder, pin = tiny_layer
    (folder / "cache").mkdir()
    assert "cache/" in _refused(folder, pin, LayerUnlistedFile).message


def test_special_file_is_refused(tiny_layer):
    folder, pin = tiny_layer
    os.mkfifo(folder / "pipe")
    _refused(folder, pin, LayerUnlistedFile)


def test_missing_file_is_refused(tiny_layer):
    folder, pin = tiny_layer
    (folder / "phoneme_id_map.json").unlink()
    assert _refused(folder, pin, LayerFileMissing).details["file"] == "phoneme_id_map.json"


def test_symlink_to_identical_content_is_refused(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((folder / "config.json").read_bytes())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    assert _refused(folder, pin, LayerSymlink).details["file"] == "config.json"


def test_symlinked_subfolder_is_refused(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    (folder / "data").rename(tmp_path / "data-elsewhere")
    (folder / "data").symlink_to(tmp_path / "data-elsewhere")
    _refused(folder, pin, LayerSymlink)


def test_symlinked_manifest_is_refused(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    (folder / "manifest.json").rename(tmp_path / "manifest.json")
    (folder / "manifest.json").symlink_to(tmp_path / "manifest.json")
    _refused(folder, pin, LayerSymlink)


def test_symlinked_layer_folder_is_refused(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    link = tmp_path / "link"
    link.symlink_to(folder)
    _refused(link, pin, LayerSymlink)


def test_symlink_swapped_in_after_the_walk_is_refused_when_hashing(tiny_layer, tmp_path):
    # the hashing step opens component by component with O_NOFOLLOW (no check-then-use gap)
    folder, _ = tiny_layer
    (folder / "data").rename(tmp_path / "moved")
    (folder / "data").symlink_to(tmp_path / "moved")
    with pytest.raises(LayerSymlink):
        file_sha256(folder, "data/notes.txt")


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "data/../../outside.txt", "/etc/passwd", "data\\notes.txt", "", "a//b",
     "./config.json", "data/", "bad\x00name", "tab\there"],
)
def test_path_leaving_the_folder_is_refused(tiny_layer, path):
    folder, _ = tiny_layer
    manifest = read_manifest(folder / "manifest.json")
    files = sorted([*manifest.files, LayerFile(path=path, size=1, sha256="0" * 64)],
                   key=lambda f: f.path)
    pin = rewrite_manifest(folder, manifest.model_copy(update={"files": files}))
    _refused(folder, pin, LayerPathEscape)


def test_edited_manifest_is_refused_by_the_pin(tiny_layer):
    # a canonical, schema-valid edit that re-pins a changed file: only the pin catches it
    folder, pin = tiny_layer
    relist(folder, "MODEL_CARD", b"# a different card\n")
    err = _refused(folder, pin, ManifestDigestMismatch)
    assert err.details["pinned"] == pin and err.details["sha256"] != pin


def test_reformatted_manifest_is_not_canonical(tiny_layer):
    folder, _ = tiny_layer
    raw = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(raw.replace(b"\n  ", b"\n    "))
    new_pin = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert "canonical" in _refused(folder, new_pin, ManifestInvalid).message


@pytest.mark.parametrize(
    "text, where",
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"schema_version": 2}', "schema_version"),
    ],
)
def test_broken_manifest_is_invalid(tiny_layer, text, where):
    folder, _ = tiny_layer
    (folder / "manifest.json").write_bytes(text)
    err = _refused(folder, hashlib.sha256(text).hexdigest(), ManifestInvalid)
    if where:
        assert err.details["field"] == where


def test_oversized_manifest_is_refused_unread(tiny_layer):
    folder, _ = tiny_layer
    with open(folder / "manifest.json", "wb") as handle:
        handle.truncate(2 << 20)
    _refused(folder, "0" * 64, ManifestInvalid)


def test_missing_manifest_or_folder_is_not_found(tiny_layer, tmp_path):
    folder, pin = tiny_layer
    _refused(tmp_path / "nowhere", pin, LayerNotFound)
    (folder / "manifest.json").unlink()
    _refused(folder, pin, LayerNotFound)


def test_phoneme_id_map_is_read_from_the_verified_layer(tiny_layer):
    folder, pin = tiny_layer
    id_map = verify_layer(folder, manifest_sha256=pin).phoneme_id_map()
    assert id_map["_"] == [0] and id_map["^"] == [1] and id_map["$"] == [2]


@pytest.mark.parametrize("text", [b"[1, 2]", b'{"_": [0], "^": [1], "$": [99]}', b'{"a": [1]}',
                                  b'{"_": [0], "^": [1], "$": ["2"]}', b"{oops"])
def test_broken_phoneme_id_map_is_refused(tiny_layer, text):
    folder, _ = tiny_layer
    pin = relist(folder, "phoneme_id_map.json", text)
    with pytest.raises(CheckpointInvalid):
        verify_layer(folder, manifest_sha256=pin).phoneme_id_map()


def test_unbuilt_layer_is_refused_naming_the_build_command(tiny_layer, tmp_path):
    """Only manifest.json (a fresh checkout): refused, and nothing is built at run time."""
    from voxproof.settings import Settings
    from voxproof.voice import load_voice

    folder, pin = tiny_layer
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "manifest.json":
            path.unlink()
    err = _refused(folder, pin, LayerFileMissing)
    assert "not built" in err.message and "`voxproof layer build`" in err.message
    assert "pip install 'voxproof[build]'" in err.message
    with pytest.raises(LayerFileMissing, match="voxproof layer build"):
        load_voice(Settings(model_dir=folder, model_manifest_sha256=pin,
                            state_dir=tmp_path / "state"))
    assert [p.name for p in folder.iterdir()] == ["manifest.json"]
    assert "voxproof layer build" in _refused(tmp_path / "nowhere", pin, LayerNotFound).message


def test_an_unread_file_is_sized_not_hashed_and_its_path_is_refused(tiny_layer):
    """What the ONNX engine's start does with the torch checkpoint: a changed byte in an
    ``unread`` file passes (it is never opened), a wrong size or a missing file does not, and
    the verified layer refuses to hand out its path."""
    folder, pin = tiny_layer
    data = bytearray((folder / "model.pth").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.pth").write_bytes(bytes(data))
    layer = verify_layer(folder, manifest_sha256=pin, unread=lambda manifest: ["model.pth"])
    assert layer.unread == {"model.pth"}
    with pytest.raises(LayerError, match="not hashed"):
        layer.checkpoint_path  # noqa: B018 (the property is what is tested)
    assert layer.config_path == folder / "config.json"
    with pytest.raises(LayerDigestMismatch):  # hashed when it is not declared unread
        verify_layer(folder, manifest_sha256=pin, unread=lambda manifest: ["config.json"])
    (folder / "model.pth").write_bytes(bytes(data[:-1]))
    with pytest.raises(LayerSizeMismatch):
        verify_layer(folder, manifest_sha256=pin, unread=lambda manifest: ["model.pth"])
    (folder / "model.pth").unlink()
    with pytest.raises(LayerFileMissing):
        verify_layer(folder, manifest_sha256=pin, unread=lambda manifest: ["model.pth"])


def test_each_engine_leaves_the_other_engines_weights_unread(default_layer):
    from voxproof.voice.synthesis import unread_by

    manifest = default_layer.manifest
    assert unread_by("onnx", manifest) == (manifest.engine.settings.checkpoint,) == ("model.pth",)
    assert unread_by("torch", manifest) == (manifest.engine.onnx.file,) == ("model.onnx",)
    no_export = manifest.model_copy(update={"engine": manifest.engine.model_copy(
        update={"onnx": None})})
    assert unread_by("onnx", no_export) == ()  # then nothing is skipped (and onnx is refused)
