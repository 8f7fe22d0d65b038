"""The fast engine's graph: Coqui's own ONNX export of the built checkpoint, checked against torch.

Steps: load the checkpoint as the runtime's torch engine does -> ``Vits.export_onnx(verbose=
False)`` (Coqui's exporter, TorchScript, opset 18; ``verbose=True`` would embed absolute
paths) with torch's RNG seeded for its random dummy ids -> rewrite its two ``RandomNormalLike``
draws into the inputs ``noise_dp`` and ``noise_z`` (so a call can be seeded, and fed the same
noise as torch) -> run onnxruntime's graph optimizer once at ``ORT_ENABLE_EXTENDED`` and write
its result (the runtime then skips the ~1 s of optimization a session start would cost; the
optimized graph gives the same samples, checked below) -> after the layer is written, check that onnxruntime on the export gives the
torch engine's audio within :data:`MAX_ABS_DIFF` and :data:`MIN_SNR_DB` (the build fails
otherwise). The bytes are a pure function of the checkpoint and the torch, coqui-tts, onnx
and onnxruntime versions (the manifest records them; all four are pinned in the locks). Why this tolerance: docs/voice.md.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np

from voxproof.errors import ConversionError
from voxproof.voice.engine import fed_noise  # noqa: F401 (the tests feed noise through it)
from voxproof.voice.manifest import NoiseInput, OnnxExport, OrtOptimized

ONNX_FILE: Final = "model.onnx"
OPSET: Final = 18
"""The opset Coqui 0.28's exporter writes."""
EXPORTER: Final = "TTS.tts.models.vits.Vits.export_onnx(verbose=False)"
EXPORT_SEED: Final = 0
"""torch's seed while exporting: the exporter traces on random dummy ids (``torch.randint``)."""
MAX_ABS_DIFF: Final = 1e-3
"""Largest sample difference allowed between the engines (-60 dBFS)."""
MIN_SNR_DB: Final = 60.0
"""Smallest ratio of the torch audio's energy to the difference's."""
CHECK_TEXTS: Final = (
    "Good morning.",
    "The quick brown fox jumps over the lazy dog, twice, before breakfast at seven.",
)
"""What the build speaks with both engines."""
# The exporter's two noise draws: node name -> (input name, its columns or None = read them)
_NOISE_NODES: Final = {
    "/duration_predictor/RandomNormalLike": ("noise_dp", 2),
    "/RandomNormalLike": ("noise_z", None),
}


@dataclass(frozen=True)
class Export:
    """The export, ready to write into the layer."""

    data: bytes
    """The edited graph (noise draws as inputs)."""
    entry: OnnxExport
    """Its manifest section."""


def export(model: Any) -> Export:
    """Export a loaded Coqui ``Vits`` (eval mode) with Coqui's exporter and make its noise inputs."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory(prefix="voxproof-onnx-") as tmp:
        path = Path(tmp) / "export.onnx"
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Coqui's Python branches
            torch.manual_seed(EXPORT_SEED)
            model.export_onnx(output_path=str(path), verbose=False)
        raw = path.read_bytes()
    graph = onnx.load_from_string(raw)
    if graph.opset_import[0].version != OPSET:
        raise ConversionError(f"the exporter wrote opset {graph.opset_import[0].version}, not {OPSET}")
    inputs = add_noise_inputs(graph, channels=int(model.args.hidden_channels))
    data, optimized = optimize(graph.SerializeToString(deterministic=True))
    return Export(data=data, entry=OnnxExport(
        file=ONNX_FILE, exporter=EXPORTER, opset=OPSET,
        torch_version=metadata.version("torch").split("+")[0],
        coqui_tts_version=metadata.version("coqui-tts"),
        onnx_version=metadata.version("onnx"),
        export_sha256=hashlib.sha256(raw).hexdigest(), noise_inputs=inputs, optimized=optimized,
    ))


def optimize(data: bytes) -> tuple[bytes, OrtOptimized]:
    """Run onnxruntime's offline graph optimizer on ``data`` at ``ORT_ENABLE_EXTENDED`` (one
    thread, CPU provider) and return the optimized graph with its manifest section.

    Deterministic for one onnxruntime version (two runs give the same bytes; the layer build's
    pin checks it). ``ORT_ENABLE_ALL`` is not used: its layout transforms depend on the CPU.
    """
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="voxproof-ort-") as tmp:
        source, target = Path(tmp) / "export.onnx", Path(tmp) / "optimized.onnx"
        source.write_bytes(data)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        onnxruntime.InferenceSession(str(source), sess_options=options,
                                     providers=["CPUExecutionProvider"])
        optimized = target.read_bytes()
    if tmp.encode() in optimized:
        raise ConversionError("onnxruntime wrote a build path into the optimized graph")
    return optimized, OrtOptimized(
        onnxruntime_version=onnxruntime.__version__, level="extended",
        input_sha256=hashlib.sha256(data).hexdigest(),
    )


def add_noise_inputs(graph: Any, *, channels: int) -> list[NoiseInput]:
    """Replace each ``RandomNormalLike`` with a slice of a new ``[rows, columns]`` input.

    The node becomes ``Slice(Unsqueeze(Transpose(input)), 0, Shape(like))``: the first rows
    of the input, shaped like the draw. A buffer shorter than the draw fails the run (a
    broadcast error), never silently.
    """
    import onnx
    from onnx import TensorProto, helper

    nodes, made = [], []
    wanted = dict(_NOISE_NODES)
    for node in graph.graph.node:
        if node.op_type != "RandomNormalLike" or node.name not in wanted:
            nodes.append(node)
            continue
        name, columns = wanted.pop(node.name)
        columns = channels if columns is None else columns
        like, out, p = node.input[0], node.output[0], name
        graph.graph.input.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_rows", columns]))
        nodes += [
            helper.make_node("Transpose", [name], [f"{p}_t"], perm=[1, 0], name=f"{p}_T"),
            helper.make_node("Constant", [], [f"{p}_axis"], name=f"{p}_C0",
                             value=helper.make_tensor(f"{p}_axis_v", TensorProto.INT64, [1], [0])),
            helper.make_node("Unsqueeze", [f"{p}_t", f"{p}_axis"], [f"{p}_u"], name=f"{p}_U"),
            helper.make_node("Shape", [like], [f"{p}_shape"], name=f"{p}_S"),
            helper.make_node("Constant", [], [f"{p}_zeros"], name=f"{p}_C1",
                             value=helper.make_tensor(f"{p}_zeros_v", TensorProto.INT64, [3],
                                                      [0, 0, 0])),
            helper.make_node("Slice", [f"{p}_u", f"{p}_zeros", f"{p}_shape"], [out],
                             name=f"{p}_Slice"),
        ]
        made.append(NoiseInput(name=name, replaces=node.name, columns=columns))
    if wanted or any(n.op_type.startswith("Random") for n in nodes):
        raise ConversionError("the export's noise draws are not the two this build knows")
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.checker.check_model(graph)
    return sorted(made, key=lambda n: n.name)


# --- the equivalence check ------------------------------------------------------------------------


def check_equivalence(torch_engine: Any, onnx_engine: Any, sentences: Sequence[Sequence[int]]) -> float:
    """Both engines on each id sequence: without noise, with the same fed noise, and with the
    same seed (which means the same noise on both).

    Raises ``ConversionError`` if any pair differs in length, by more than
    :data:`MAX_ABS_DIFF` in a sample, or with an SNR below :data:`MIN_SNR_DB`; returns the
    worst SNR in dB.
    """
    worst = np.inf
    rng = np.random.default_rng(0)
    for ids in sentences:
        quiet = {"noise_scale": 0.0, "noise_scale_dp": 0.0}
        worst = min(worst, compare(torch_engine.infer(ids, **quiet),
                                   onnx_engine.infer(ids, **quiet, seed=0)))
        noise = (rng.standard_normal((len(ids), 2), dtype=np.float32),
                 rng.standard_normal((16 * len(ids), onnx_engine._channels), dtype=np.float32))
        worst = min(worst, compare(torch_engine.infer(ids, noise=noise),
                                   onnx_engine.infer(ids, noise=noise)))
        worst = min(worst, compare(torch_engine.infer(ids, seed=len(ids)),
                                   onnx_engine.infer(ids, seed=len(ids))))
    return float(worst)


def compare(reference: np.ndarray, audio: np.ndarray) -> float:
    """The SNR in dB of ``audio`` against ``reference``; ``ConversionError`` outside tolerance."""
    if len(reference) != len(audio):
        raise ConversionError(
            f"the ONNX export gives {len(audio)} samples where torch gives {len(reference)}")
    diff = reference.astype(np.float64) - audio
    worst = float(np.max(np.abs(diff)))
    snr = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(np.sum(diff ** 2), 1e-30))
    if worst > MAX_ABS_DIFF or snr < MIN_SNR_DB:
        raise ConversionError(
            f"the ONNX export differs from torch: max |diff| {worst:.2e} (at most "
            f"{MAX_ABS_DIFF:g}), SNR {snr:.1f} dB (at least {MIN_SNR_DB:g})")
    return float(snr)
