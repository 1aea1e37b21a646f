"""The ONNX ops and folds that real PyTorch exports need beyond the network ops (issue 14), built
with onnx.helper (no torch): each imports, agrees with onnxruntime forward, and its backward
passes gradcheck on the imported graph (float64)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402
from test_onnx import model_of, ort_run, tensor  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import OnnxImportError, import_onnx  # noqa: E402

F64, F32 = TensorProto.DOUBLE, TensorProto.FLOAT


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def one_op(nodes, x_shape, y_shape, inits=(), elem=F64, opset=17, outputs=("y",)):
    outs = [vi(o, elem, y_shape if o == "y" else None) for o in outputs]
    return model_of(nodes, [vi("x", elem, x_shape)], outs, list(inits), opset=opset)


def agrees(model, feed, *, grad=True, rtol=1e-12):
    """Import, compare every output with onnxruntime, gradcheck the float leaves; the graph."""
    g = import_onnx(model)
    want, got = ort_run(model, feed), gx.run(g, feed)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=1e-12, err_msg=k)
    if grad:
        wrt = ["x"] + [k for k in g.trainable if g.params[k].dtype.kind == "f"]
        report = gx.gradcheck(g, feed, wrt=wrt, seed=0)
        assert report.ok, str(report)
    return g


RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))
POS = RNG.uniform(0.5, 2.0, (3, 4))


@pytest.mark.parametrize(("op", "x"), [("Sqrt", POS), ("Abs", X), ("Reciprocal", POS),
                                       ("Mish", X)])
def test_unary_ops_agree_with_onnxruntime(op, x):
    model = one_op([helper.make_node(op, ["x"], ["y"])], [3, 4], [3, 4], opset=18)
    g = agrees(model, {"x": x})
    assert [n.op for n in g.nodes] == [op.lower()]


@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, -1.0, 0.0, 1.0])
def test_pow_with_a_constant_exponent(p):
    model = one_op([helper.make_node("Pow", ["x", "p"], ["y"])], [3, 4], [3, 4],
                   [tensor("p", np.array(p))])
    g = agrees(model, {"x": POS})
    assert [(n.op, dict(n.attrs)) for n in g.nodes] == [("pow_scalar", {"exponent": p})]


def test_pow_by_a_computed_or_varying_exponent_is_the_pow_gate():
    """A tensor exponent (a graph input, or constants that differ) is ONNX's
    np.power(x, e).astype(x.dtype); gradients w.r.t. the base and the exponent (z ln x)."""
    e = RNG.uniform(-2.0, 2.0, (3, 4))
    model = model_of([helper.make_node("Pow", ["x", "e"], ["y"])],
                     [vi("x", F64, [3, 4]), vi("e", F64, [3, 4])], [vi("y", F64, [3, 4])], [])
    g = import_onnx(model)
    assert [n.op for n in g.nodes] == ["pow"]
    np.testing.assert_allclose(gx.run(g, {"x": POS, "e": e})["y"],
                               ort_run(model, {"x": POS, "e": e})["y"], rtol=1e-12)
    report = gx.gradcheck(g, {"x": POS, "e": e}, wrt=["x", "e"], seed=0)
    assert report.ok, str(report)
    model = one_op([helper.make_node("Pow", ["x", "p"], ["y"])], [3], [3],
                   [tensor("p", np.array([1.0, 2.0, 3.0]))])
    agrees(model, {"x": POS[0, :3]})


@pytest.mark.parametrize(("xt", "et"), [("int32", "int32"), ("int64", "float32"),
                                        ("float32", "int64")])
def test_pow_keeps_the_base_dtype_as_onnx(xt, et):
    x, e = np.array([1, 2, 3, -2], xt), np.array([4, 5, 2, 3], et)
    g = gx.GraphBuilder("p")
    y = g.op("pow", g.input("x", dtype=xt, shape=(4,)), g.input("e", dtype=et, shape=(4,)))
    g.output(y, "y")
    got = gx.run(g.build(), {"x": x, "e": e})["y"]
    assert got.dtype == np.dtype(xt)
    np.testing.assert_array_equal(got, np.power(x, e).astype(xt))


def test_pow_of_an_integer_to_a_negative_integer_is_refused():
    g = gx.GraphBuilder("p")
    y = g.op("pow", g.input("x", dtype="int32", shape=(2,)), g.input("e", dtype="int32", shape=(2,)))
    g.output(y, "y")
    with pytest.raises(gx.GraphexecError, match="negative int32 exponent"):
        gx.run(g.build(), {"x": np.array([2, 3], "int32"), "e": np.array([1, -1], "int32")})


def test_where_of_a_comparison_is_a_leaky_relu():
    """torch.where(x > 0, x, 0.1 x) — and dynamo's F.softplus is the same shape of graph."""
    nodes = [helper.make_node("Greater", ["x", "zero"], ["m"]),
             helper.make_node("Mul", ["x", "a"], ["ax"]),
             helper.make_node("Where", ["m", "x", "ax"], ["y"])]
    model = one_op(nodes, [3, 4], [3, 4], [tensor("zero", np.array(0.0)),
                                           tensor("a", np.array(0.1))])
    g = agrees(model, {"x": X})
    assert [n.op for n in g.nodes] == ["compare", "mul", "where"]


@pytest.mark.parametrize("op", ["Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal"])
def test_comparisons_agree_with_onnxruntime(op):
    x = np.array([[0.0, 1.0, -1.0, 2.0]])
    model = model_of([helper.make_node(op, ["x", "t"], ["y"])], [vi("x", F64, [1, 4])],
                     [vi("y", TensorProto.BOOL, [1, 4])], [tensor("t", np.array([1.0]))])
    agrees(model, {"x": x}, grad=False)


def test_where_with_a_constant_condition():
    nodes = [helper.make_node("Neg", ["x"], ["n"]),
             helper.make_node("Where", ["c", "x", "n"], ["y"])]
    model = one_op(nodes, [3, 4], [3, 4], [tensor("c", np.array([True, False, True, False]))])
    agrees(model, {"x": X})


@pytest.mark.parametrize(("opset", "how"), [(13, "sizes"), (13, "equal"), (18, "num_outputs")])
def test_split_is_one_slice_per_output(opset, how):
    inits, attrs = [], {}
    ins = ["x"]
    if how == "sizes":
        inits, ins = [tensor("s", np.array([1, 3]))], ["x", "s"]
    if how == "num_outputs":
        attrs = {"num_outputs": 2}
    nodes = [helper.make_node("Split", ins, ["a", "b"], axis=1, **attrs),
             helper.make_node("Mul", ["a", "b"] if how != "sizes" else ["a", "a"], ["y"])]
    shape = [3, 2] if how != "sizes" else [3, 1]
    model = one_op(nodes, [3, 4], shape, inits, opset=opset)
    g = agrees(model, {"x": X})
    assert [n.op for n in g.nodes].count("slice") == 2


def test_split_into_uneven_parts_by_num_outputs():
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             helper.make_node("Concat", ["c", "b", "a"], ["y"], axis=1)]
    model = one_op(nodes, [3, 5], [3, 5], opset=18)
    agrees(model, {"x": RNG.standard_normal((3, 5))})


def test_expand_to_its_own_shape_is_the_identity():
    """F.mse_loss's TorchScript export expands both operands to their common shape."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Expand", ["x", "s"], ["e"]),
             helper.make_node("Neg", ["e"], ["y"])]
    model = one_op(nodes, ["batch", 4], ["batch", 4])
    g = agrees(model, {"x": X})
    assert [n.op for n in g.nodes] == ["neg"]


def test_expand_to_a_larger_known_shape_is_an_exact_broadcast():
    model = one_op([helper.make_node("Expand", ["x", "big"], ["y"])], [3, 1], [2, 3, 4],
                   [tensor("big", np.array([2, 1, 4]))])
    g = agrees(model, {"x": RNG.standard_normal((3, 1))})
    assert [n.op for n in g.nodes] == ["mul"] and g.frozen == {"y_ones"}


def test_expand_to_a_run_time_size_is_refused_by_name():
    nodes = [helper.make_node("Shape", ["z"], ["s"]), helper.make_node("Expand", ["x", "s"], ["y"])]
    model = model_of(nodes, [vi("x", F64, [1, 4]), vi("z", F64, ["n", 4])],
                     [vi("y", F64, ["n", 4])], [])
    with pytest.raises(OnnxImportError, match=r"\(Expand\): expanding \(1, 4\) to .* known only "
                                              "when the model runs"):
        import_onnx(model)


def test_clip_bounds_written_as_casts_of_constants_fold():
    """TorchScript writes x.clamp(-0.3, 0.4) as Clip(x, Cast(Constant(double)), Cast(...))."""
    nodes = [helper.make_node("Constant", [], ["lo64"], value=tensor("v", np.array(-0.3))),
             helper.make_node("Constant", [], ["hi64"], value=tensor("w", np.array(0.4))),
             helper.make_node("Cast", ["lo64"], ["lo"], to=F32),
             helper.make_node("Cast", ["hi64"], ["hi"], to=F32),
             helper.make_node("Clip", ["x", "lo", "hi"], ["y"])]
    model = one_op(nodes, [3, 4], [3, 4], elem=F32)
    g = agrees(model, {"x": X.astype(np.float32)}, grad=False, rtol=0)
    assert [(n.op, dict(n.attrs)) for n in g.nodes] == [
        ("clip", {"min": float(np.float32(-0.3)), "max": float(np.float32(0.4))})]


def test_chunk_bounds_computed_from_the_shape_fold():
    """TorchScript's x.chunk(2, 1): Slice ends = (Gather(Shape(x), 1) + 1) / 2 * k."""
    c = {n: tensor(n, np.array(v)) for n, v in (("one", [1]), ("two", [2]), ("zero", [0]))}
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
             helper.make_node("Add", ["n", "one"], ["n1"]),
             helper.make_node("Div", ["n1", "two"], ["half"]),
             helper.make_node("Mul", ["half", "two"], ["end"]),
             helper.make_node("Slice", ["x", "zero", "half", "one"], ["a"]),
             helper.make_node("Slice", ["x", "half", "end", "one"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    model = one_op(nodes, ["batch", 4], ["batch", 2], list(c.values()))
    g = agrees(model, {"x": X})
    assert sorted(n.op for n in g.nodes) == ["mul", "slice", "slice"]


def test_batchnorm_statistics_shared_with_its_weights_become_buffers_of_their_own():
    """TorchScript dedups equal initializers: a fresh BatchNorm's running variance (all ones)
    is written as Identity(weight). Read as the weight itself, training would move the
    statistic with the weight and its gradient would count twice (it did: issue 14)."""
    ones, zeros = np.ones(4), np.zeros(4)
    nodes = [helper.make_node("Identity", ["w"], ["var"]),
             helper.make_node("Identity", ["b"], ["mean"]),
             helper.make_node("BatchNormalization", ["x", "w", "b", "mean", "var"], ["y"])]
    for graph_nodes in (nodes, nodes[2:]):  # via Identity, and one initializer read twice
        names = ["x", "w", "b", "mean", "var"] if graph_nodes is nodes else ["x", "w", "b", "b",
                                                                               "w"]
        graph_nodes = graph_nodes[:-1] + [helper.make_node("BatchNormalization", names, ["y"])]
        model = one_op(graph_nodes, [2, 4], [2, 4], [tensor("w", ones), tensor("b", zeros)])
        g = agrees(model, {"x": RNG.standard_normal((2, 4))})
        (bn,) = g.nodes
        assert set(bn.inputs[3:]) == set(g.buffers) and not set(g.buffers) & set(g.trainable)
        ex = gx.Executor(g)
        ex.forward({"x": np.ones((2, 4))})
        dy = np.arange(8.0).reshape(2, 4)
        grads = ex.backward({"y": dy})
        np.testing.assert_allclose(grads[bn.inputs[1]], (dy / np.sqrt(1 + 1e-5)).sum(0))


def test_mse_loss_shape_chain_with_a_run_time_batch():
    """TorchScript's F.mse_loss(p, t) with a dynamic batch: Expand(p, Shape(zeros_like(p) + p
    + t)), where zeros_like is ConstantOfShape(Shape(p)). ONNX's shape inference loses the
    batch name after ConstantOfShape; the import carries it on, so the Expand is the identity."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"],
                              value=tensor("v", np.array([0.0]))),
             helper.make_node("Add", ["z", "x"], ["a"]), helper.make_node("Add", ["a", "t"], ["b"]),
             helper.make_node("Shape", ["b"], ["s2"]), helper.make_node("Expand", ["x", "s2"], ["e"]),
             helper.make_node("Sub", ["e", "t"], ["y"])]
    model = model_of(nodes, [vi("x", F64, ["batch", 4]), vi("t", F64, ["batch", 4])],
                     [vi("y", F64, ["batch", 4])], [])
    g = import_onnx(model)
    assert sorted(n.op for n in g.nodes) == ["add", "add", "full_like", "sub"]
    feed = {"x": X, "t": RNG.standard_normal((3, 4))}
    np.testing.assert_allclose(gx.run(g, feed)["y"], ort_run(model, feed)["y"], rtol=1e-12)
    assert gx.gradcheck(g, feed, wrt=["x", "t"], seed=0).ok


def test_constant_of_a_shape_that_is_no_value_s_shape_is_refused_by_name():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Concat", ["s", "s"], ["ss"], axis=0),
             helper.make_node("ConstantOfShape", ["ss"], ["y"])]
    model = model_of(nodes, [vi("x", F64, ["n"])], [vi("y", F32, ["n", "n"])], [])
    with pytest.raises(OnnxImportError, match=r"\(ConstantOfShape\): its shape 'ss' is neither "
                                              "fixed at import nor the shape of one value"):
        import_onnx(model)


def test_layernorm_over_the_last_axis_with_a_run_time_batch():
    """nn.LayerNorm exported with a dynamic batch: only the normalised sizes need be known."""
    ln = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)
    model = one_op([ln], ["batch", 4], ["batch", 4],
                   [tensor("s", RNG.uniform(0.5, 2, 4)), tensor("b", RNG.standard_normal(4))])
    g = agrees(model, {"x": X}, rtol=1e-10)
    assert [n.op for n in g.nodes] == ["layernorm"]
    model = one_op([ln], [3, "d"], [3, "d"], [tensor("s", np.ones(4)), tensor("b", np.zeros(4))])
    with pytest.raises(OnnxImportError, match=r"the normalised axes \(None,\) must have known"):
        import_onnx(model)


def test_a_constant_of_a_shape_given_as_an_input_needs_it_bound():
    model = model_of([helper.make_node("ConstantOfShape", ["s"], ["y"],
                                       value=tensor("v", np.array([2.5])))],
                     [vi("s", TensorProto.INT64, [2])], [vi("y", F64, ["a", "b"])], [])
    with pytest.raises(OnnxImportError, match=r"constants=\{'s': value\}"):
        import_onnx(model)
    g = import_onnx(model, constants={"s": [2, 3]})
    np.testing.assert_array_equal(gx.run(g, {})["y"], np.full((2, 3), 2.5))


def test_view_by_the_batch_size_of_another_value_with_the_same_symbolic_name():
    """conv(x).view(x.size(0), -1): the shape's run-time entry is x's batch, the reshaped value
    is another one; both batch axes are named 'batch', so the -1 is computed from the rest."""
    c = {n: tensor(n, np.array(v)) for n, v in (("zero", [0]), ("minus1", [-1]))}
    nodes = [helper.make_node("Neg", ["x"], ["h"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["h", "target"], ["y"])]
    model = one_op(nodes, ["batch", 2, 3], ["batch", 6], list(c.values()))
    g = agrees(model, {"x": RNG.standard_normal((4, 2, 3))})
    assert [dict(n.attrs) for n in g.nodes if n.op == "reshape"] == [{"shape": [-1, 6]}]
