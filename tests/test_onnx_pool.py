"""MaxPool / AveragePool import with ceil_mode=1, asymmetric pads and count_include_pad either
way, checked against onnxruntime (PyTorch's semantics: windows start at i·s - pad_begin; the
average counts the window's real pixels, or with count_include_pad=1 its pixels inside the
declared pads, never the extra end padding that ceil_mode adds)."""

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import import_onnx  # noqa: E402


def _model(op, n, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, n, n + 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


CONFIGS = [(op, k, s, p, cip, n) for op, k, s, p, cip, n in itertools.product(
    ["AveragePool", "MaxPool"], [2, 3], [1, 2, 3], [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 0, 1)],
    [0, 1], [4, 5, 7]) if not (op == "MaxPool" and cip)]


@pytest.mark.parametrize("ceil", [0, 1])
def test_every_config_agrees_with_onnxruntime(ceil):
    rng = np.random.default_rng(ceil)
    checked = 0
    for op, k, s, p, cip, n in CONFIGS:
        attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": list(p), "ceil_mode": ceil}
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
        model = _model(op, n, **attrs)
        x = rng.standard_normal((1, 2, n, n + 1)).astype(np.float32)
        g = import_onnx(model)
        (got,) = gx.run(g, {g.inputs[0]: x}).values()
        want = _ort(model, x)
        assert got.shape == want.shape, (op, attrs, n)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{op} {attrs} {n}")
        checked += 1
    assert checked == len(CONFIGS)


def test_a_ceil_mode_average_runs_backward_through_the_count_map():
    model = _model("AveragePool", 5, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                   ceil_mode=1, count_include_pad=1)
    g = import_onnx(model)
    assert [n.op for n in g.nodes] == ["pad", "avg_pool2d", "mul"]
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 6)).astype(np.float32)
    assert gx.gradcheck(g, {g.inputs[0]: x}, max_coords=8).ok
