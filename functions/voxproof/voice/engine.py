"""Load a verified layer with Coqui's own classes and turn phoneme ids into audio, on CPU.

Guarantees: loading takes only a ``VerifiedLayer`` (nothing is read before ``verify_layer``
passed); the checkpoint's pickle is scanned for anything but tensors and read with
``torch.load(weights_only=True)``; nothing touches the network or a model zoo. A seed draws
the ONNX engine's noise (``inputs.seeded_noise``), so the same ids and seed give the same audio
on both engines. Steps: docs/voice.md.

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
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np

from voxproof.errors import CheckpointInvalid, EngineMismatch, ExtraNotInstalled, UnsafeCheckpoint
from voxproof.voice.inputs import (
    MAX_IDS,
    NOISE_DP_STREAM,
    NOISE_Z_STREAM,
    LayerEngine,
    check_ids,
    resolve_scales,
    seeded_noise,
)
from voxproof.voice.layer import VerifiedLayer
from voxproof.voice.manifest import Manifest

__all__ = ["MAX_IDS", "VitsEngine", "fed_noise", "load_engine", "load_weights",
           "require_torch_extra", "scan_checkpoint"]
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
        noise: tuple[np.ndarray, np.ndarray] | None = None,
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
            Seed the sampling noise for a reproducible result: the noise of
            ``inputs.seeded_noise``, the ONNX engine's for the same seed (torch's global RNG is
            neither used nor advanced). ``None`` draws from torch's RNG.
        noise:
            The standard-normal draws themselves, ``(noise_dp [>= ids, 2], noise_z [>= frames,
            channels])``, as the ONNX engine takes them. Overrides ``seed``.

        Returns float32 mono samples at ``sample_rate`` (not clipped).
        """
        x = self._ids_tensor(ids)
        scales = self._scales(noise_scale, length_scale, noise_scale_dp)
        import torch

        if noise is not None:
            fed = fed_noise(*noise)
        elif seed is not None:
            fed = _noise_from(lambda stream, rows, columns: seeded_noise(seed, stream, rows, columns))
        else:
            fed = contextlib.nullcontext()
        with self._lock, torch.inference_mode(), fed:
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


def fed_noise(noise_dp: np.ndarray, noise_z: np.ndarray) -> contextlib.AbstractContextManager:
    """Make Coqui's ``Vits.inference`` draw the first rows of the given ``[rows, columns]``
    arrays instead of torch's RNG, exactly as the ONNX graph slices its noise inputs."""
    given = {NOISE_DP_STREAM: np.asarray(noise_dp, dtype=np.float32),
             NOISE_Z_STREAM: np.asarray(noise_z, dtype=np.float32)}

    def draw(stream: int, rows: int, columns: int) -> np.ndarray:
        array = given[stream]
        if array.ndim != 2 or array.shape[0] < rows or array.shape[1] != columns:
            raise ValueError(f"fed noise {array.shape} does not cover [{rows}, {columns}]")
        return array[:rows]

    return _noise_from(draw)


@contextlib.contextmanager
def _noise_from(draw: Callable[[int, int, int], np.ndarray]) -> Iterator[None]:
    """Coqui's two noise draws come from ``draw(stream, rows, columns)`` while this is open.

    Its stochastic duration predictor draws ``torch.randn(1, 2, ids)`` (``NOISE_DP_STREAM``,
    ``[ids, 2]`` transposed) and its prior ``torch.randn_like(m_p)`` (``[1, channels,
    frames]``: ``NOISE_Z_STREAM``, ``[frames, channels]`` transposed). Both are module globals
    of torch, replaced for the call: callers hold the engine's lock, and nothing else in a
    voxproof process draws from torch.
    """
    import torch

    real_randn, real_like = torch.randn, torch.randn_like

    def randn(*size, **kwargs):
        size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        if len(size) != 3 or size[0] != 1 or size[1] != 2:  # not the duration predictor's draw
            return real_randn(*size, **kwargs)
        return torch.from_numpy(draw(NOISE_DP_STREAM, int(size[2]), 2).T.copy())[None]

    def randn_like(tensor, **kwargs):
        if tensor.dim() != 3 or tensor.shape[0] != 1:
            return real_like(tensor, **kwargs)
        _, channels, frames = tensor.shape
        noise = draw(NOISE_Z_STREAM, int(frames), int(channels))
        return torch.from_numpy(noise.T.copy())[None].to(tensor.dtype)

    torch.randn, torch.randn_like = randn, randn_like
    try:
        yield
    finally:
        torch.randn, torch.randn_like = real_randn, real_like
