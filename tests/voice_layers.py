"""Build model layers for tests: a tiny real Coqui Vits layer, and helpers to tamper with one.

The tiny layer is made by the same code as the real one (Coqui ``VitsConfig``/``Vits``, the
converter's JSON and checkpoint writers, the ``Manifest`` model), only with a few hundred
parameters, so integrity and loading tests run in milliseconds.
"""

from __future__ import annotations

import hashlib
import io
from importlib import metadata
from pathlib import Path

import torch
from voxproof.layer_build.convert import config_bytes
from voxproof.voice.manifest import (
    MANIFEST_NAME,
    Engine,
    EngineSettings,
    InferenceScales,
    LayerFile,
    Licence,
    Manifest,
    ModelInfo,
    TextFrontend,
    UrlSource,
    read_manifest,
    write_manifest,
)

TINY_SYMBOLS = "_^$ abcdefghijk"  # ids 0..14; 15 is Coqui's blank
TINY_RATE = 16_000
TINY_HOP = 16


def tiny_config():
    """A real Coqui ``VitsConfig``, scaled down (16 symbols, 8 hidden channels, hop 16)."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    args = VitsArgs(
        num_chars=16, hidden_channels=8, hidden_channels_ffn_text_encoder=16,
        num_heads_text_encoder=2, num_layers_text_encoder=1, kernel_size_text_encoder=3,
        out_channels=65, num_layers_posterior_encoder=1, kernel_size_flow=3, num_layers_flow=1,
        resblock_type_decoder="2", resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 2]], upsample_rates_decoder=[4, 4],
        upsample_kernel_sizes_decoder=[8, 8], upsample_initial_channel_decoder=16,
        use_sdp=True, init_discriminator=False,
    )
    audio = BaseAudioConfig(
        sample_rate=TINY_RATE, hop_length=TINY_HOP, win_length=128, fft_size=128, num_mels=10,
        do_trim_silence=False,
    )
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos=None, bos=None,
        blank="<BLNK>", characters=TINY_SYMBOLS[1:], punctuations="", phonemes=None,
        is_unique=False, is_sorted=True,
    )
    return VitsConfig(
        model_args=args, audio=audio, use_phonemes=False, add_blank=False,
        phoneme_language="en-us", characters=characters, text_cleaner=None,
    )


def tiny_checkpoint_bytes(config) -> bytes:
    """``torch.save({"model": state})`` of a freshly initialised tiny ``Vits`` (seeded)."""
    from TTS.tts.models.vits import Vits

    torch.manual_seed(0)
    state = Vits(config).state_dict()
    buffer = io.BytesIO()
    torch.save({"model": {k: v.clone() for k, v in state.items()}}, buffer)
    return buffer.getvalue()


def make_tiny_layer(folder: Path) -> str:
    """Write a complete tiny layer into ``folder``; returns its manifest's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config()
    id_map = "".join(f'"{s}": [{i}], ' for i, s in enumerate(TINY_SYMBOLS))
    files = {
        "config.json": config_bytes(config),
        "model.pth": tiny_checkpoint_bytes(config),
        "phoneme_id_map.json": ("{" + id_map.rstrip(", ") + "}\n").encode(),
        "MODEL_CARD": b"# tiny test voice\n",
        "data/notes.txt": b"a nested file, to test folders\n",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return write_tiny_manifest(folder, files)


def write_tiny_manifest(folder: Path, files: dict[str, bytes]) -> str:
    entries = [
        LayerFile(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        for name, data in sorted(files.items())
    ]
    manifest = Manifest(
        schema_version=1,
        model=ModelInfo(name="tiny-test", version="0.0.1", language="en_US"),
        engine=Engine(
            name="coqui-vits",
            coqui_tts_version=metadata.version("coqui-tts"),
            torch_version=metadata.version("torch").split("+")[0],
            settings=EngineSettings(
                config="config.json", checkpoint="model.pth", sample_rate=TINY_RATE,
                hop_length=TINY_HOP, num_symbols=16,
                frontend=TextFrontend(
                    phoneme_type="espeak", espeak_voice="en-us",
                    phoneme_id_map="phoneme_id_map.json", pad="_", bos="^", eos="$",
                ),
                inference=InferenceScales(noise_scale=0.667, length_scale=1.0, noise_scale_dp=0.8),
            ),
        ),
        licences=[Licence(subject="test data", spdx="CC0-1.0", stated_in="MODEL_CARD")],
        licence_notes="made by the test suite",
        sources=[UrlSource(kind="url", url="https://example.invalid/tiny", sha256="0" * 64)],
        files=entries,
    )
    return rewrite_manifest(folder, manifest)


def rewrite_manifest(folder: Path, manifest: Manifest) -> str:
    """Write ``manifest`` canonically into ``folder``; returns its new sha256 (the new pin)."""
    write_manifest(folder / MANIFEST_NAME, manifest)
    return manifest.sha256()


def relist(folder: Path, name: str, data: bytes | None = None) -> str:
    """Replace (or, with ``data=None``, re-hash) file ``name`` and re-pin the manifest.

    Simulates an operator who rebuilt the manifest honestly: integrity passes, so whatever is
    in the file reaches the loader.
    """
    if data is not None:
        (folder / name).write_bytes(data)
    raw = (folder / name).read_bytes()
    manifest = read_manifest(folder / MANIFEST_NAME)
    files = [
        LayerFile(path=f.path, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        if f.path == name else f
        for f in manifest.files
    ]
    return rewrite_manifest(folder, manifest.model_copy(update={"files": files}))
