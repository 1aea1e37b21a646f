"""ONNX Conv on 1-D signals (N, C, L), PyTorch's nn.Conv1d: imported as conv2d on (N, C, 1, L)
between two reshapes; checked against onnxruntime over strides, dilations, pads, auto_pad,
groups and bias, with a run-time batch, and backward against numerical gradients."""

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.errors import OnnxImportError  # noqa: E402
from graphexec.onnx_io import import_onnx  # noqa: E402

C, F, L = 4, 6, 7


def _model(w, b, x_shape, **attrs):
    ins = ["x", "W"] + (["B"] if b is not None else [])
    inits = [numpy_helper.from_array(w, "W")] + ([numpy_helper.from_array(b, "B")] if b is not None else [])
    graph = helper.make_graph([helper.make_node("Conv", ins, ["y"], **attrs)], "conv1d",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


CONFIGS = [c for c in itertools.product([1, 3], [1, 2], [1, 2], [(0, 0), (1, 1), (2, 0)], [1, 2],
                                        ["NOTSET", "SAME_UPPER", "VALID"], [False, True])
           if (c[5] == "NOTSET" or c[3] == (0, 0)) and not (c[5] == "SAME_UPPER" and c[2] > 1)]


def test_every_config_agrees_with_onnxruntime():
    rng = np.random.default_rng(0)
    for k, s, d, pads, g, auto, bias in CONFIGS:
        w = rng.standard_normal((F, C // g, k)).astype(np.float32)
        b = rng.standard_normal(F).astype(np.float32) if bias else None
        attrs = dict(kernel_shape=[k], strides=[s], dilations=[d], group=g, auto_pad=auto)
        if auto == "NOTSET":
            attrs["pads"] = list(pads)
        model = _model(w, b, ["N", C, L], **attrs)
        x = rng.standard_normal((3, C, L)).astype(np.float32)
        got = gx.run(import_onnx(model), {"x": x})["y"]
        want = _ort(model, x)
        assert got.shape == want.shape, attrs
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(attrs))


def test_a_1d_convolution_runs_backward():
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((F, C, 3)), rng.standard_normal(F)
    model = _model(w.astype(np.float32), b.astype(np.float32), [2, C, L], kernel_shape=[3],
                   strides=[2], pads=[1, 0], dilations=[2])
    g = import_onnx(model)
    x = rng.standard_normal((2, C, L)).astype(np.float32)
    assert [n.op for n in g.nodes] == ["reshape", "reshape", "pad", "conv2d", "reshape"]
    report = gx.gradcheck(g, {"x": x}, wrt=["x", *g.trainable], seed=0)
    assert report.ok, str(report)


def test_a_1d_convolution_with_an_unknown_length_is_refused_by_name():
    w = np.ones((F, C, 3), np.float32)
    with pytest.raises(OnnxImportError, match="a 1-D convolution needs every dimension but the "
                                              "batch known"):
        import_onnx(_model(w, None, ["N", C, "L"], kernel_shape=[3]))
