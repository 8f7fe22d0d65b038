"""The fast engine: Coqui's own ONNX export of the layer's checkpoint, run by onnxruntime.

Same surface as the torch engine (``voxproof.voice.engine.VitsEngine``): phoneme ids in,
float32 mono audio out, seedable per call. Imports numpy and onnxruntime only (never torch,
TTS or onnx), and reads only a ``VerifiedLayer`` whose manifest lists the export
(``engine.onnx``, made by ``voxproof layer build``). Its audio equals the torch engine's for
the same ids and noise within the tolerance in docs/voice.md (checked at build time and by
the tests).

Example:
    >>> engine = load_onnx_engine(layer, threads=2)  # doctest: +SKIP
    >>> engine.infer([1, 0, 20, 0, 2], seed=0).dtype  # doctest: +SKIP
    dtype('float32')
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Final

import numpy as np

from voxproof.errors import CheckpointInvalid, EngineMismatch
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

__all__ = ["MAX_IDS", "MIN_IDS", "OnnxEngine", "load_onnx_engine"]

MIN_IDS: Final = 5
"""Fewest ids one call takes (``^ _ p _ $``, one phoneme): the export traced the attention's
relative-position padding for this length and up."""
NOISE_DP: Final = "noise_dp"
"""Input: the stochastic duration predictor's noise, ``[rows >= ids, 2]``."""
NOISE_Z: Final = "noise_z"
"""Input: the prior's noise, ``[rows >= frames, channels]``."""
_FRAMES_PER_ID: Final = 4
"""First guess of decoder frames per id and unit of length scale (about 2.3 measured)."""
_MAX_FRAMES_PER_ID: Final = 64
"""The noise buffer never grows beyond this many frames per id."""


class OnnxEngine(LayerEngine):
    """A loaded ONNX export of a Coqui ``Vits`` voice: phoneme ids in, float32 mono audio out.

    Calls are serialised by a lock; one engine per process, as in a Lambda instance.
    """

    name = "onnx"
    """The engine's name (``Settings.engine``)."""

    def __init__(self, session, layer: VerifiedLayer, *, threads: int, load_seconds: float):
        self._session = session
        self._layer = layer
        self._lock = threading.Lock()
        inputs = {i.name: i for i in session.get_inputs()}
        if not {"input", "input_lengths", "scales", NOISE_DP, NOISE_Z} <= inputs.keys():
            raise CheckpointInvalid("the ONNX export lacks the inputs this engine feeds")
        self._channels = int(inputs[NOISE_Z].shape[1]) if isinstance(
            inputs[NOISE_Z].shape[1], int) else _noise_columns(layer.manifest, NOISE_Z)
        self.threads = threads
        """onnxruntime intra-op threads in use."""
        self.load_seconds = load_seconds
        """Wall time ``load_onnx_engine`` took (session creation)."""

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
            Phoneme ids, each in ``[0, num_symbols)``; ``MIN_IDS`` to ``MAX_IDS`` of them.
        noise_scale, length_scale, noise_scale_dp:
            Override the voice's default scales for this call (0 noise = deterministic).
        seed:
            Seed the sampling noise (``seeded_noise``: the same noise, so the same audio, as
            the torch engine with this seed).
        noise:
            The standard-normal draws themselves, ``(noise_dp [>= ids, 2], noise_z [>= frames,
            channels])``: what the equivalence tests feed both engines. Overrides ``seed``.

        Returns float32 mono samples at ``sample_rate`` (not clipped).
        """
        x = check_ids(ids, self.num_symbols, min_ids=MIN_IDS)
        scales = resolve_scales(self.defaults, noise_scale, length_scale, noise_scale_dp)
        feed = {
            "input": x[None, :],
            "input_lengths": np.array([x.size], dtype=np.int64),
            "scales": np.array([scales.noise_scale, scales.length_scale, scales.noise_scale_dp],
                               dtype=np.float32),
        }
        with self._lock:
            if noise is not None:
                feed[NOISE_DP], feed[NOISE_Z] = (np.ascontiguousarray(n, dtype=np.float32)
                                                 for n in noise)
                return self._run(feed)
            feed[NOISE_DP] = seeded_noise(seed, NOISE_DP_STREAM, x.size, 2)
            frames = int(_FRAMES_PER_ID * scales.length_scale * x.size) + 64
            while True:
                feed[NOISE_Z] = seeded_noise(seed, NOISE_Z_STREAM, frames, self._channels)
                try:
                    return self._run(feed)
                except _RunFailed:  # the noise buffer was shorter than the frames: draw more
                    if frames > _MAX_FRAMES_PER_ID * x.size:
                        raise
                    frames *= 2

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail

        try:
            out = self._session.run(["output"], feed)[0]
        except Fail as err:
            raise _RunFailed from err
        return out.reshape(-1).astype(np.float32, copy=False)


class _RunFailed(Exception):
    """onnxruntime refused a run (here: a noise buffer shorter than the graph needs)."""


def load_onnx_engine(layer: VerifiedLayer, *, threads: int = 0) -> OnnxEngine:
    """Open the verified layer's ONNX export in an onnxruntime CPU session.

    Parameters
    ----------
    layer:
        The result of ``verify_layer``; its manifest must list an export (``engine.onnx``).
    threads:
        onnxruntime intra-op threads; 0 means one per CPU this process may use.
    """
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    start = time.perf_counter()
    export = layer.manifest.engine.onnx
    if export is None:
        raise EngineMismatch(
            "this layer has no ONNX export; rebuild it with `voxproof layer build` or run the "
            "torch engine (VOXPROOF_ENGINE=torch)"
        )
    n_threads = threads if threads > 0 else len(os.sched_getaffinity(0))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 4  # a too-short noise buffer is retried, not worth a log line
    if export.optimized is not None and export.optimized.onnxruntime_version == onnxruntime.__version__:
        # optimized at build time by this very onnxruntime: doing it again would cost ~1 s of
        # every cold start for the same graph (another version re-optimizes: slower, correct)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(
            str(layer.path(export.file)), sess_options=options,
            providers=["CPUExecutionProvider"],
        )
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf,
            ort_errors.InvalidArgument, ort_errors.NoSuchFile, ort_errors.RuntimeException):
        raise CheckpointInvalid(f"{export.file} does not load as an ONNX graph") from None
    return OnnxEngine(session, layer, threads=n_threads,
                      load_seconds=time.perf_counter() - start)


def _noise_columns(manifest: Manifest, name: str) -> int:
    assert manifest.engine.onnx is not None
    for entry in manifest.engine.onnx.noise_inputs:
        if entry.name == name:
            return entry.columns
    raise CheckpointInvalid(f"the manifest does not describe the {name} input")
