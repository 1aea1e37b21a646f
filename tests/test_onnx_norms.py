"""ONNX ReduceL2 / ReduceSumSquare (F.normalize's norm) and InstanceNormalization (nn.InstanceNorm,
nn.GroupNorm's export), composed from existing gates: checked against onnxruntime for several
shapes and attributes, and backward against numerical gradients."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.errors import OnnxImportError  # noqa: E402
from graphexec.onnx_io import import_onnx  # noqa: E402


def _model(node, x_shape, inits=(), opset=18, elem=TensorProto.FLOAT):
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", elem, x_shape)],
                              [helper.make_tensor_value_info("y", elem, None)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _agrees(model, x):
    g = import_onnx(model)
    got, want = gx.run(g, {"x": x})["y"], _ort(model, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return g


@pytest.mark.parametrize("op", ["ReduceL2", "ReduceSumSquare"])
@pytest.mark.parametrize("axes", [None, [1], [-1, 0], [0, 1, 2]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_l2_and_sum_square_agree_with_onnxruntime(op, axes, keepdims):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    ins, inits = ["x"], []
    if axes is not None:
        ins.append("axes")
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    model = _model(helper.make_node(op, ins, ["y"], keepdims=keepdims), [3, 4, 5], inits)
    g = _agrees(model, x)
    report = gx.gradcheck(g, {"x": x}, wrt=["x"], seed=0)
    assert report.ok, str(report)


def test_reduce_l2_of_integers_is_refused_by_name():
    model = _model(helper.make_node("ReduceL2", ["x"], ["y"]), [3], elem=TensorProto.INT32)
    with pytest.raises(OnnxImportError, match="ReduceL2 of floats"):
        import_onnx(model)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 2)])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_instance_normalization_agrees_with_onnxruntime_and_runs_backward(shape, eps):
    rng = np.random.default_rng(len(shape))
    c = shape[1]
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), "s"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b")]
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=eps)
    model = _model(node, ["N", *shape[1:]], inits)
    x = rng.standard_normal(shape).astype(np.float32)
    g = _agrees(model, x)
    report = gx.gradcheck(g, {"x": x}, wrt=["x", *g.trainable], seed=0)
    assert report.ok, str(report)


def test_instance_normalization_with_unknown_spatial_sizes_is_refused_by_name():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])
    inits = [numpy_helper.from_array(np.ones(3, np.float32), n) for n in ("s", "b")]
    with pytest.raises(OnnxImportError, match="every size but the batch known"):
        import_onnx(_model(node, ["N", 3, "H", 4], inits))
