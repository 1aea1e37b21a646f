"""Second outputs that ONNX ops give and graphexec now computes: Dropout's mask in inference,
LayerNormalization's Mean and InvStdDev; the settings that stay refused name their cause."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import OnnxImportError, export_onnx, import_onnx  # noqa: E402


def _model(node, inputs, outputs, inits=()):
    graph = helper.make_graph([node], "m", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def test_inference_dropout_mask_is_all_true_and_exports_back():
    node = helper.make_node("Dropout", ["x"], ["y", "mask"])
    m = _model(node, [_vi("x", TensorProto.FLOAT, [2, 3])],
               [_vi("y", TensorProto.FLOAT, [2, 3]), _vi("mask", TensorProto.BOOL, [2, 3])])
    g = import_onnx(m)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = gx.run(g, {"x": x})
    assert out["mask"].dtype == bool and out["mask"].all() and out["mask"].shape == (2, 3)
    np.testing.assert_array_equal(out["y"], x)
    back = export_onnx(g)
    assert {o.name: o.type.tensor_type.elem_type for o in back.graph.output}["mask"] == \
        TensorProto.BOOL


def _layernorm(dtype, stash=None):
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[dtype]
    extra = {} if stash is None else {"stash_type": stash}
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv"], axis=1,
                            epsilon=1e-3, **extra)
    scale = onnx.numpy_helper.from_array(np.full((3, 4), 1.5, dtype), "s")
    return _model(node, [_vi("x", elem, [2, 3, 4])],
                  [_vi("y", elem, [2, 3, 4]), _vi("mean", elem, [2, 1, 1]),
                   _vi("inv", elem, [2, 1, 1])], [scale])


def test_layernorm_mean_and_inv_std_dev_outputs():
    g = import_onnx(_layernorm("float32"))
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    out = gx.run(g, {"x": x})
    mean = x.mean(axis=(1, 2), keepdims=True)
    inv = 1 / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-3)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(out["inv"], inv, rtol=1e-5)
    np.testing.assert_allclose(out["y"], 1.5 * (x - mean) * inv, rtol=1e-5, atol=1e-6)
    assert gx.gradcheck(g, {"x": x}, max_coords=8).ok


def test_layernorm_statistics_in_another_stash_type_are_refused():
    with pytest.raises(OnnxImportError, match=r"stash_type 1 for X of dtype float64"):
        import_onnx(_layernorm("float64"))
    with pytest.raises(OnnxImportError, match=r"stash_type 11"):
        import_onnx(_layernorm("float32", stash=11))
