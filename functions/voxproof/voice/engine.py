"""Load a verified layer with Coqui's own classes and turn phoneme ids into audio, on CPU.

Guarantees: loading takes only a ``VerifiedLayer`` (nothing is read before ``verify_layer``
passed); the checkpoint's pickle is scanned for anything but tensors and read with
``torch.load(weights_only=True)``; nothing touches the network or a model zoo. Steps:
docs/voice.md.

Example:
    >>> layer = verify_layer(Path("layers/model"), manifest_sha256=DEFAULT_MANIFEST_SHA256)  # doctest: +SKIP
    >>> engine = load_engine(layer, threads=2)  # doctest: +SKIP
    >>> audio = engine.infer([1, 0, 20, 0, 59, 0, 2])  # doctest: +SKIP
    >>> audio.dtype, engine.sample_rate  # doctest: +SKIP
    (dtype('float32'), 22050)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickletools
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np

from voxproof.errors import CheckpointInvalid, EngineMismatch, ExtraNotInstalled, UnsafeCheckpoint
from voxproof.voice.inputs import MAX_IDS, LayerEngine, check_ids, resolve_scales
from voxproof.voice.layer import VerifiedLayer
from voxproof.voice.manifest import Manifest

__all__ = ["MAX_IDS", "VitsEngine", "load_engine", "load_weights", "require_torch_extra",
           "scan_checkpoint"]
MAX_PICKLE_BYTES: Final = 16 << 20
"""Largest checkpoint pickle scanned (ours is about 80 kB; tensors live outside it)."""

# What a tensors-only torch checkpoint's pickle may name (torch.save of a dict of tensors).
_SAFE_GLOBALS: Final = frozenset({
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    "torch._utils _rebuild_parameter",
    "torch FloatStorage",
    "torch DoubleStorage",
    "torch HalfStorage",
    "torch BFloat16Storage",
    "torch LongStorage",
    "torch IntStorage",
    "torch BoolStorage",
})
# What a damaged archive or a state dict that does not fit the model raises while loading.
_LOAD_ERRORS: Final = (
    RuntimeError, KeyError, ValueError, TypeError, AttributeError, EOFError, OSError,
    zipfile.BadZipFile,
)
# Opcodes that build objects from names this scan cannot see statically.
_UNSAFE_OPCODES: Final = frozenset({
    "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4",
})


class VitsEngine(LayerEngine):
    """The torch engine (the reference): a loaded Coqui ``Vits`` voice: phoneme ids in, float32 mono audio out.

    Not for concurrent use from several threads at once (calls are serialised by a lock);
    one engine per process, as in a Lambda instance.
    """

    def __init__(self, model: Any, layer: VerifiedLayer, *, threads: int, load_seconds: float):
        self._model = model
        self._layer = layer
        self._lock = threading.Lock()
        self.threads = threads
        """Torch intra-op threads in use."""
        self.load_seconds = load_seconds
        """Wall time ``load_engine`` took (config, scan, model build, weights)."""

    name = "torch"
    """The engine's name (``Settings.engine``)."""

    def infer(
        self,
        ids: Sequence[int],
        *,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        noise_scale_dp: float | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Synthesize one utterance from Piper-compatible phoneme ids.

        Parameters
        ----------
        ids:
            Phoneme ids (``bos``, then each phoneme followed by ``pad``, then ``eos``), each in
            ``[0, num_symbols)``; at most ``MAX_IDS``.
        noise_scale, length_scale, noise_scale_dp:
            Override the voice's default scales for this call (0 noise = deterministic).
        seed:
            Seed the sampling noise for a reproducible result (the global RNG is restored).

        Returns float32 mono samples at ``sample_rate`` (not clipped).
        """
        x = self._ids_tensor(ids)
        scales = self._scales(noise_scale, length_scale, noise_scale_dp)
        import torch

        with self._lock, torch.inference_mode(), _seeded(seed):
            model = self._model
            model.inference_noise_scale = scales.noise_scale
            model.length_scale = scales.length_scale
            model.inference_noise_scale_dp = scales.noise_scale_dp
            audio = model.inference(x)["model_outputs"]
        return audio.reshape(-1).numpy().astype(np.float32, copy=False)

    def _ids_tensor(self, ids: Sequence[int]):
        import torch

        return torch.from_numpy(check_ids(ids, self.num_symbols)).unsqueeze(0)

    def _scales(self, noise: float | None, length: float | None, noise_dp: float | None):
        return resolve_scales(self.defaults, noise, length, noise_dp)


def load_engine(layer: VerifiedLayer, *, threads: int = 0) -> VitsEngine:
    """Load the verified layer's model with Coqui's classes (CPU, eval mode, tensors only).

    Parameters
    ----------
    layer:
        The result of ``verify_layer``: nothing here reads an unverified file.
    threads:
        Torch intra-op threads; 0 means one per CPU this process may use.
    """
    require_torch_extra()
    start = time.perf_counter()
    check_engine(layer.manifest)
    n_threads = _set_threads(threads)
    config = _load_config(layer)
    scan_checkpoint(layer.checkpoint_path)
    model = _build_model(config)
    load_weights(model, config, layer.checkpoint_path)
    return VitsEngine(model, layer, threads=n_threads, load_seconds=time.perf_counter() - start)


# --- steps ---------------------------------------------------------------------------------------


def require_torch_extra() -> None:
    """Refuse, before any import, when torch or coqui-tts is missing (the image has neither).

    Raises ``ExtraNotInstalled`` naming the ``[torch]`` extra; the ONNX engine needs neither.
    """
    missing = [name for name in ("torch", "TTS") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExtraNotInstalled(
            f"the torch engine (VOXPROOF_ENGINE=torch, --engine torch) needs the [torch] extra "
            f"({' and '.join(missing)} not installed): pip install 'voxproof[torch]'; the default "
            f"engine (onnx) needs neither", extra="torch")


def check_engine(manifest: Manifest) -> None:
    """Refuse a layer built for another engine or another coqui-tts version."""
    installed = metadata.version("coqui-tts")
    if manifest.engine.coqui_tts_version != installed:
        raise EngineMismatch(
            f"the layer was built for coqui-tts {manifest.engine.coqui_tts_version}; "
            f"{installed} is installed",
        )


def _set_threads(threads: int) -> int:
    import torch

    n = threads if threads > 0 else len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def _load_config(layer: VerifiedLayer):
    from TTS.tts.configs.vits_config import VitsConfig

    settings = layer.manifest.engine.settings
    config = VitsConfig()
    try:
        config.load_json(str(layer.config_path))
    except (ValueError, TypeError, KeyError, AttributeError, OSError):  # malformed config
        raise CheckpointInvalid(f"{settings.config} does not load as a Coqui VitsConfig") from None
    facts = (
        (config.audio.sample_rate, settings.sample_rate, "sample rate"),
        (config.audio.hop_length, settings.hop_length, "hop length"),
        (config.model_args.num_chars, settings.num_symbols, "symbol count"),
    )
    for found, listed, what in facts:
        if found != listed:
            raise CheckpointInvalid(f"{settings.config}: {what} {found} is not the manifest's {listed}")
    return config


def _build_model(config):
    from TTS.tts.models.vits import Vits

    # Vits.init_from_config(config) is deprecated in coqui-tts 0.28 and only calls Vits(config).
    return Vits(config)


def scan_checkpoint(path: Path) -> None:
    """Refuse a checkpoint whose pickle could build anything but tensors, without running it.

    A second line of defence before torch's ``weights_only`` unpickler: the pickle inside the
    zip may only name the globals ``torch.save`` uses for a dict of tensors.
    """
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
                raise UnsafeCheckpoint(f"{name} is not a tensors-only torch checkpoint")
            data = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError):
        raise UnsafeCheckpoint(f"{name} is not a torch zip checkpoint (a bare pickle is refused)") from None
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _UNSAFE_OPCODES or (
                opcode.name == "GLOBAL" and arg not in _SAFE_GLOBALS
            ):
                raise UnsafeCheckpoint(f"{name}: its pickle names code, not only tensors")
    except ValueError:
        raise UnsafeCheckpoint(f"{name}: its pickle is malformed") from None


def load_weights(model: Any, config: Any, path: Path) -> None:
    """``Vits.load_checkpoint`` (torch ``weights_only=True``), strict, then eval mode."""
    import pickle

    from trainer import io as trainer_io

    if trainer_io._WEIGHTS_ONLY is not True:  # set from the torch version; never load without it
        raise UnsafeCheckpoint("this torch cannot load checkpoints with weights_only=True")
    try:
        model.load_checkpoint(config, str(path), eval=True, strict=True)
    except pickle.UnpicklingError:
        raise UnsafeCheckpoint(f"{path.name}: torch refused its pickle (not only tensors)") from None
    except _LOAD_ERRORS:  # a damaged archive, missing or misshapen weights: unusable
        raise CheckpointInvalid(f"{path.name} does not load into the configured model") from None
    model.requires_grad_(False)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
