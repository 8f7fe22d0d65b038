"""Map a Piper VITS ONNX graph's weights onto Coqui's ``Vits`` parameter names.

Both models descend from the original VITS code, so most weights only change their prefix.
The differences, all checked against the graph rather than assumed:

- ``enc_p.*`` -> ``text_encoder.*``; the phoneme embedding is the initializer ``sid``, found as
  the table input of the ``/enc_p/emb/Gather`` node.
- ``dp.*`` -> ``duration_predictor.*``. Piper keeps ``Flip`` modules in the flow lists, Coqui
  folds them into its loop: Piper's ``dp.flows.{1,3,5,7}`` are Coqui's ``flows.{1,2,3,4}``.
  ``dp.flows.1`` is not in the graph because VITS drops it at inference. ``dp.flows.0`` is an
  element-wise affine whose ``logs`` the exporter folded into the constant
  ``/dp/flows.0/Exp_output_0`` = exp(-logs), so ``log_scale`` = -log(constant).
- ``flow.flows.{0,2,4,6}`` -> ``flow.flows.{0,1,2,3}`` (same Flip folding). The WaveNet conv
  weights inside these flows lost their names in export (``onnx::Conv_<n>``): each is found by
  the node that consumes it.
- ``dec.*`` -> ``waveform_decoder.*``.
- Piper's export removed weight norm; Coqui keeps it as ``parametrizations.weight.original0/1``
  (g and v). g is the norm of W over every dimension but the first (for a transposed conv the
  first is the input channel), v = W; Coqui then computes exactly g * v / |v| = W (to rounding).

Every initializer ends up either mapped or in ``ConvertedWeights.unused`` with the reason; every
Coqui parameter is either filled or is a placeholder whose module does not run at inference.
Anything else stops the conversion with ``ConversionError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import onnx
from onnx import numpy_helper

from voxproof.errors import ConversionError

_EMBEDDING: Final = ("sid", "/enc_p/emb/Gather", "text_encoder.emb.weight")
_DP_AFFINE_EXP: Final = ("/dp/flows.0/Exp_output_0", "/dp/flows.0/Mul")
_WN_CONV_NODE: Final = re.compile(r"/flow/flows\.(\d+)/enc/(in_layers|res_skip_layers)\.(\d+)/Conv")

# (pattern on the ONNX name, function of the match giving the Coqui name)
_RENAMES: Final = (
    (re.compile(r"enc_p\.(.+)"), lambda m: f"text_encoder.{m[1]}"),
    (re.compile(r"dp\.flows\.0\.m"), lambda m: "duration_predictor.flows.0.translation"),
    (re.compile(r"dp\.flows\.([1357])\.(.+)"),
     lambda m: f"duration_predictor.flows.{(int(m[1]) + 1) // 2}.{m[2]}"),
    (re.compile(r"dp\.((?:pre|convs|proj)\..+)"), lambda m: f"duration_predictor.{m[1]}"),
    (re.compile(r"flow\.flows\.([0246])\.(.+)"), lambda m: f"flow.flows.{int(m[1]) // 2}.{m[2]}"),
    (re.compile(r"dec\.(.+)"), lambda m: f"waveform_decoder.{m[1]}"),
)

PLACEHOLDER_PREFIXES: Final[Mapping[str, str]] = {
    "posterior_encoder.": "training only (encodes spectrograms); not in the ONNX; a 1-layer "
    "placeholder",
    "duration_predictor.post_": "training only (posterior of the durations); not in the ONNX",
    "duration_predictor.flows.1.": "VITS drops this flow at inference ('useless vflow'); not in "
    "the ONNX",
}
"""Coqui parameters that no ONNX weight fills, and why synthesis never reads them."""

_WN_G: Final = ".parametrizations.weight.original0"
_WN_V: Final = ".parametrizations.weight.original1"
_MAX_CONSTANT_INTS: Final = 16


@dataclass
class ConvertedWeights:
    """The result of mapping: Coqui name -> float32 array, and the unused initializers."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    """Coqui parameter name (weight-norm not yet split) -> array."""
    unused: dict[str, str] = field(default_factory=dict)
    """ONNX initializer name -> why it carries no weight."""
    sources: dict[str, str] = field(default_factory=dict)
    """Coqui parameter name -> the ONNX initializer it came from."""

    def put(self, coqui: str, onnx_name: str, value: np.ndarray) -> None:
        if coqui in self.weights:
            raise ConversionError(f"two ONNX weights map onto {coqui}")
        self.weights[coqui] = np.ascontiguousarray(value, dtype=np.float32)
        self.sources[coqui] = onnx_name


def convert_graph(model: onnx.ModelProto) -> ConvertedWeights:
    """Map every initializer of a Piper VITS graph onto Coqui names (or explain why not)."""
    graph = model.graph
    consumers = _consumers(graph)
    out = ConvertedWeights()
    for tensor in graph.initializer:
        name = tensor.name
        value = numpy_helper.to_array(tensor)
        _map_one(name, value, consumers.get(name, []), out)
    return out


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[str, int]]]:
    """initializer name -> [(consuming node name, input index)]."""
    names = {t.name for t in graph.initializer}
    found: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in names:
                found.setdefault(name, []).append((node.name, index))
    return found


def _map_one(
    name: str, value: np.ndarray, consumers: list[tuple[str, int]], out: ConvertedWeights
) -> None:
    if not consumers:
        raise ConversionError(f"ONNX initializer {name} is consumed by no node")
    if name == _EMBEDDING[0]:
        _expect_consumer(name, consumers, _EMBEDDING[1], 0)
        out.put(_EMBEDDING[2], name, value)
        return
    if name == _DP_AFFINE_EXP[0]:
        _expect_consumer(name, consumers, _DP_AFFINE_EXP[1], None)
        logs = np.array([[-math.log(float(v))] for v in value.ravel()], dtype=np.float64)
        out.put("duration_predictor.flows.0.log_scale", name, logs.reshape(value.shape))
        return
    if name.startswith("onnx::Conv_"):
        out.put(_wn_conv_target(name, consumers), name, value)
        return
    for pattern, target in _RENAMES:
        match = pattern.fullmatch(name)
        if match:
            out.put(target(match), name, value)
            return
    out.unused[name] = _why_unused(name, value)


def _expect_consumer(
    name: str, consumers: list[tuple[str, int]], node: str, index: int | None
) -> None:
    if len(consumers) != 1 or consumers[0][0] != node or index not in (None, consumers[0][1]):
        raise ConversionError(f"ONNX initializer {name} is not consumed by {node} as expected")


def _wn_conv_target(name: str, consumers: list[tuple[str, int]]) -> str:
    """The Coqui name of a flow WaveNet conv weight, from the node that consumes it."""
    if len(consumers) == 1 and consumers[0][1] == 1:
        match = _WN_CONV_NODE.fullmatch(consumers[0][0])
        if match and int(match[1]) % 2 == 0:
            return f"flow.flows.{int(match[1]) // 2}.enc.{match[2]}.{match[3]}.weight"
    raise ConversionError(f"ONNX initializer {name} is not a flow WaveNet conv weight")


def _why_unused(name: str, value: np.ndarray) -> str:
    """Accept only what cannot be a weight: exporter constants that are integers or scalars."""
    exporter_name = name.startswith(("/", "onnx::")) or name.isdigit()
    if exporter_name and value.dtype.kind in "iu" and value.size <= _MAX_CONSTANT_INTS:
        return "integer graph constant (shape, axis or index) folded by the exporter"
    if exporter_name and value.dtype.kind == "f" and value.size == 1:
        return "scalar graph constant (scale, epsilon, bound) folded from code Coqui also has"
    raise ConversionError(f"ONNX initializer {name} is neither mapped nor a known constant")


# --- filling Coqui's state dict --------------------------------------------------------------


def fill_state(
    converted: ConvertedWeights, expected: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """Build the complete state dict Coqui's ``Vits`` expects (name -> shape in ``expected``).

    Weight-norm parameters are split into g and v; parameters in ``PLACEHOLDER_PREFIXES`` get
    inert values (zeros, and v = ones so the weight is exactly 0 rather than 0/0).
    """
    state: dict[str, np.ndarray] = {}
    for coqui, value in converted.weights.items():
        if coqui in expected:
            state[coqui] = value
        elif coqui.endswith(".weight") and coqui[: -len(".weight")] + _WN_G in expected:
            module = coqui[: -len(".weight")]
            state[module + _WN_G] = weight_norm_g(value)
            state[module + _WN_V] = value
        else:
            raise ConversionError(f"{coqui} (from {converted.sources[coqui]}) is not in Coqui's Vits")
    for key, shape in expected.items():
        if key in state:
            if tuple(state[key].shape) != tuple(shape):
                raise ConversionError(f"{key}: shape {state[key].shape} is not Coqui's {shape}")
        elif any(key.startswith(p) for p in PLACEHOLDER_PREFIXES):
            fill = np.ones if key.endswith(_WN_V) else np.zeros
            state[key] = fill(shape, dtype=np.float32)
        else:
            raise ConversionError(f"{key} is in Coqui's Vits but no ONNX weight fills it")
    return state


def weight_norm_g(weight: np.ndarray) -> np.ndarray:
    """Per-slice L2 norm over all dims but the first, shaped ``[n, 1, ...]``, as float32.

    Computed with ``math.fsum`` (exactly rounded) so the bytes do not depend on the CPU's
    summation order: two machines build the same checkpoint.
    """
    rows = weight.astype(np.float64).reshape(weight.shape[0], -1)
    norms = [math.sqrt(math.fsum((row * row).tolist())) for row in rows]
    return np.array(norms, dtype=np.float32).reshape((weight.shape[0],) + (1,) * (weight.ndim - 1))
