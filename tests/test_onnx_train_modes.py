"""ONNX training-mode settings that graphexec computes exactly: BatchNormalization with
training_mode=1 (batch statistics, running-statistic outputs), checked against onnxruntime and
differentiated through the batch statistics; Dropout in training mode with the ratio 0 (the
identity, mask all True). A nonzero training ratio (a random mask) stays refused."""

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.errors import OnnxNeedsConstantsError  # noqa: E402
from graphexec.onnx_io import OnnxImportError, import_onnx  # noqa: E402

OUTS = ("y", "running_mean", "running_var")


def _bn_model(shape, *, eps, momentum, outputs=OUTS, opset=15, consts=True, seed=0):
    """One BatchNormalization with training_mode=1 and its three outputs (onnxruntime wants
    all three named), of which ``outputs`` are the graph's outputs (the others unused)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    vals = {"s": rng.uniform(0.5, 2, c), "b": rng.standard_normal(c),
            "m": rng.standard_normal(c), "v": rng.uniform(0.5, 2, c)}
    vals = {k: v.astype(np.float32) for k, v in vals.items()}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], list(OUTS),
                            training_mode=1, epsilon=eps, momentum=momentum)
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    if not consts:
        ins += [helper.make_tensor_value_info(k, TensorProto.FLOAT, [c]) for k in vals]
    inits = [numpy_helper.from_array(v, k) for k, v in vals.items()] if consts else []
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o]
    graph = helper.make_graph([node], "bn", ins, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), vals


def _ort(model, feed):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in model.graph.output], s.run(None, feed)))


def _reference(x, vals, eps, momentum):
    """ONNX's _batchnorm_training_mode, in float64."""
    x = x.astype(np.float64)
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    y = (vals["s"].reshape(shape) * (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
         + vals["b"].reshape(shape))
    return {"y": y, "running_mean": vals["m"] * momentum + mu * (1 - momentum),
            "running_var": vals["v"] * momentum + var * (1 - momentum)}


SHAPES = [(4, 3), (2, 3, 5), (2, 3, 4, 5), (3, 2, 2, 3, 2)]
CONFIGS = list(itertools.product(SHAPES, [1e-5, 1e-2], [0.9, 0.3], [OUTS, ("y",)]))


@pytest.mark.parametrize("shape,eps,momentum,outputs", CONFIGS)
def test_training_batchnorm_agrees_with_onnxruntime(shape, eps, momentum, outputs):
    model, vals = _bn_model(shape, eps=eps, momentum=momentum, outputs=outputs)
    x = (np.random.default_rng(1).standard_normal(shape) * 3 + 1).astype(np.float32)
    g = import_onnx(model)
    got = gx.run(g, {g.inputs[0]: x})
    want = _ort(model, {"x": x})
    ref = _reference(x, vals, eps, momentum)
    assert sorted(got) == sorted(want) == sorted(outputs)
    for k in outputs:
        assert got[k].dtype == np.float32 and got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_only_the_used_outputs_are_built():
    y_only, _ = _bn_model((2, 3, 4), eps=1e-5, momentum=0.9, outputs=("y",))
    ops = [n.op for n in import_onnx(y_only).nodes]
    assert "layernorm" in ops and "reduce_mean" not in ops and "square" not in ops
    mean_only, _ = _bn_model((2, 3, 4), eps=1e-5, momentum=0.9, outputs=("running_mean",))
    ops = [n.op for n in import_onnx(mean_only).nodes]
    assert "layernorm" not in ops and "square" not in ops and ops.count("reduce_mean") == 1


def test_running_statistics_are_buffers_and_the_made_up_constants_frozen():
    model, vals = _bn_model((2, 3, 4, 4), eps=1e-5, momentum=0.9)
    g = import_onnx(model)
    assert set(g.buffers) == {"m", "v"}
    assert {"s", "b"} <= set(g.params) and not {"s", "b"} & set(g.frozen)
    made_up = set(g.params) - {"s", "b"}
    assert made_up and made_up <= set(g.frozen)


def _analytic_grads(x, s, dy):
    """dL/dx, dL/dscale, dL/dB of Y = s·x̂ + B with batch statistics (eps 1e-5), in float64."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    xhat = (x - mu) * inv
    dxhat = dy * s.reshape(shape)
    dx = inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_training_batchnorm_backward_goes_through_the_batch_statistics(shape):
    model, vals = _bn_model(shape, eps=1e-5, momentum=0.9, outputs=("y",), consts=False)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    g = import_onnx(model)
    feed = {"x": x.astype(np.float32), **vals}
    dy = rng.standard_normal(shape)
    ex = gx.Executor(g)
    ex.forward(feed)
    grads = ex.backward({"y": dy.astype(np.float32)})
    dx, ds, db = _analytic_grads(x.astype(np.float32).astype(np.float64), vals["s"], dy)
    np.testing.assert_allclose(grads["x"], dx, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads["s"], ds, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads["b"], db, rtol=1e-3, atol=1e-4)
    assert "m" not in grads or not np.any(grads["m"])  # Y does not depend on the input stats
    rep = gx.gradcheck(g, feed, max_coords=12)
    assert rep.ok, str(rep)


def test_gradcheck_with_all_three_outputs():
    model, vals = _bn_model((3, 2, 3), eps=1e-3, momentum=0.7)
    g = import_onnx(model)
    x = np.random.default_rng(4).standard_normal((3, 2, 3)).astype(np.float32)
    assert gx.gradcheck(g, {g.inputs[0]: x}, max_coords=12).ok


def test_training_batchnorm_settings_it_cannot_compose_are_refused():
    model, _ = _bn_model((2, 3, 4), eps=1e-5, momentum=0.9)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(OnnxImportError, match=r"every dimension known"):
        import_onnx(model)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                            training_mode=1)
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])] + [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, [3]) for k in "sbmv"]
    graph = helper.make_graph([node], "bn", ins,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(OnnxImportError, match=r"rank 1.*rank >= 2"):
        import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]))


def test_mixed_dtypes_are_refused_naming_them():
    model, _ = _bn_model((2, 3), eps=1e-5, momentum=0.9)
    init = model.graph.initializer[0]
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(init).astype(np.float64), init.name))
    with pytest.raises(OnnxImportError, match=r"scale float64.*one dtype"):
        import_onnx(model)


def test_opset_9_training_outputs_stay_refused():
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                            ["y", "mean", "var"])
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])] + [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, [3]) for k in "sbmv"]
    outs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in ("y", "mean", "var")]
    graph = helper.make_graph([node], "bn", ins, outs)
    with pytest.raises(OnnxImportError, match=r"opset 9.*before opset 14"):
        import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]))


# ---------------------------------------------------------------------------- Dropout
def _dropout_model(ratio, mode, *, mask=True, opset=13, as_inputs=()):
    """Dropout(x, ratio, training_mode): each of ratio/mode a constant, or a graph input when
    named in ``as_inputs``; None leaves it out."""
    names, inits, ins = ["x"], [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])]
    for name, value, elem in (("r", ratio, TensorProto.FLOAT), ("t", mode, TensorProto.BOOL)):
        if value is None:
            names.append("")
            continue
        names.append(name)
        if name in as_inputs:
            ins.append(helper.make_tensor_value_info(name, elem, []))
        else:
            dt = np.float32 if elem == TensorProto.FLOAT else np.bool_
            inits.append(numpy_helper.from_array(np.array(value, dt), name))
    while names and not names[-1]:
        names.pop()
    outs = ["y", "z"] if mask else ["y"]
    node = helper.make_node("Dropout", names, outs, seed=0)
    vis = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if mask:
        vis.append(helper.make_tensor_value_info("z", TensorProto.BOOL, None))
    graph = helper.make_graph([node], "d", ins, vis, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


X = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5


@pytest.mark.parametrize("opset", [12, 13, 22])
@pytest.mark.parametrize("mask", [True, False])
def test_training_dropout_with_ratio_zero_is_the_identity(opset, mask):
    model = _dropout_model(0.0, True, mask=mask, opset=opset)
    g = import_onnx(model)
    assert "dropout" not in {n.op for n in g.nodes}
    got = gx.run(g, {"x": X})
    want = _ort(model, {"x": X})
    np.testing.assert_array_equal(got["y"], X)
    np.testing.assert_array_equal(got["y"], want["y"])
    if mask:
        assert got["z"].dtype == bool and got["z"].all() and got["z"].shape == X.shape
        np.testing.assert_array_equal(got["z"], want["z"])
    assert gx.gradcheck(g, {"x": X}, max_coords=8).ok


def test_ratio_and_mode_given_as_graph_inputs_are_bound_at_import():
    model = _dropout_model(0.0, True, as_inputs=("r", "t"))
    with pytest.raises(OnnxNeedsConstantsError, match=r"training_mode 't' is a graph input"):
        import_onnx(model)
    with pytest.raises(OnnxNeedsConstantsError, match=r"ratio 'r' is a graph input"):
        import_onnx(model, constants={"t": True})
    g = import_onnx(model, constants={"t": True, "r": 0.0})
    np.testing.assert_array_equal(gx.run(g, {"x": X})["y"], X)
    g = import_onnx(model, constants={"t": False})  # eval mode: the ratio is never read
    assert gx.run(g, {"x": X})["z"].all()


@pytest.mark.parametrize("ratio", [0.5, 0.1, 1e-7])
def test_a_nonzero_training_ratio_stays_refused_naming_the_rng(ratio):
    with pytest.raises(OnnxImportError, match=r"training_mode is True with ratio .*random mask"):
        import_onnx(_dropout_model(ratio, True))
    with pytest.raises(OnnxImportError, match=r"training_mode is True with ratio 0.5"):
        import_onnx(_dropout_model(None, True))  # ONNX's default ratio


def test_a_computed_training_mode_is_refused():
    node0 = helper.make_node("Cast", ["u"], ["t"], to=TensorProto.BOOL)
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"])
    graph = helper.make_graph(
        [node0, node], "d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("u", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array(0.0, np.float32), "r")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError, match=r"training_mode 't' is computed by another node"):
        import_onnx(model)


def _old_dropout(opset, **attrs):
    node = helper.make_node("Dropout", ["x"], ["y", "z"], **attrs)
    mt = TensorProto.FLOAT if opset < 10 else TensorProto.BOOL
    graph = helper.make_graph([node], "d", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("z", mt, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [7, 9, 10, 11])
def test_the_mask_before_opset_12_is_refused_as_undefined(opset):
    with pytest.raises(OnnxImportError, match=rf"mask output 'z' at opset {opset}"):
        import_onnx(_old_dropout(opset, ratio=0.3))


def test_opset_6_follows_is_test_default_0_training():
    model = _old_dropout(6)
    del model.graph.output[1]
    with pytest.raises(OnnxImportError, match=r"training_mode is True with ratio 0.5"):
        import_onnx(model)
    model = _old_dropout(6, is_test=1)
    del model.graph.output[1]
    np.testing.assert_array_equal(gx.run(import_onnx(model), {"x": X})["y"], X)
    model = _old_dropout(6, ratio=0.0)
    del model.graph.output[1]
    np.testing.assert_array_equal(gx.run(import_onnx(model), {"x": X})["y"], X)


@pytest.mark.parametrize("opset", [14, 15])
def test_both_training_mode_opsets(opset):
    model, vals = _bn_model((2, 3, 2, 2), eps=1e-4, momentum=0.6, opset=opset)
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 2)).astype(np.float32)
    g = import_onnx(model)
    got, want = gx.run(g, {g.inputs[0]: x}), _ort(model, {"x": x})
    for k in OUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)
