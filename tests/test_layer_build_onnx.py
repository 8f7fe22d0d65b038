"""voxproof.layer_build.onnx_export: Coqui's export, its noise inputs, the build-time check."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from voxproof.errors import ConversionError
from voxproof.layer_build import onnx_export


def test_the_layer_lists_an_export_whose_noise_draws_are_inputs(default_layer):
    import onnx

    entry = default_layer.manifest.engine.onnx
    path = default_layer.path(entry.file)
    graph = onnx.load(str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == default_layer.manifest.file(
        entry.file).sha256
    assert [i.name for i in graph.graph.input] == [
        "input", "input_lengths", "scales", "noise_dp", "noise_z"]
    assert not [n for n in graph.graph.node if n.op_type.startswith("Random")]
    assert graph.opset_import[0].version == entry.opset == onnx_export.OPSET
    assert str(path) not in path.read_bytes().decode("latin-1")  # no absolute paths inside


def test_compare_accepts_rounding_and_refuses_a_length_or_level_change():
    reference = np.sin(np.linspace(0, 200, 22050)).astype(np.float32) * 0.5
    assert onnx_export.compare(reference, reference + np.float32(1e-5)) > 80
    with pytest.raises(ConversionError, match="samples"):
        onnx_export.compare(reference, reference[:-256])
    with pytest.raises(ConversionError, match="max"):
        onnx_export.compare(reference, reference * np.float32(1.01))


def test_add_noise_inputs_refuses_a_graph_without_the_expected_draws():
    from onnx import TensorProto, helper

    graph = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    with pytest.raises(ConversionError, match="noise draws"):
        onnx_export.add_noise_inputs(graph, channels=192)


def test_optimize_is_deterministic_keeps_the_graphs_answers_and_records_its_input():
    """onnxruntime's offline optimizer on a small graph with a fusable pattern (MatMul + Add ->
    Gemm-like fusion at the extended level): the same bytes twice, the same outputs as the
    input graph, and the manifest section names this onnxruntime and the input's sha256."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
         helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 4])], [weight, bias]),
        opset_imports=[helper.make_opsetid("", onnx_export.OPSET)])
    data = graph.SerializeToString(deterministic=True)
    optimized, entry = onnx_export.optimize(data)
    assert onnx_export.optimize(data)[0] == optimized
    assert entry.onnxruntime_version == onnxruntime.__version__ and entry.level == "extended"
    assert entry.input_sha256 == hashlib.sha256(data).hexdigest()
    assert len(onnx.load_from_string(optimized).graph.node) < 3  # something was fused
    x = rng.standard_normal((3, 8)).astype(np.float32)
    run = [onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for blob in (data, optimized)]
    assert np.allclose(run[0], run[1], atol=1e-6) and run[0].any()
