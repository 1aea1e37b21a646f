"""Shapes, axes and bounds as ONNX graph inputs (``import_onnx(constants=...)``), the ONNX
backend (``graphexec.onnx_io.backend``), and the gates behind ReduceSum/Mean/Max, Slice, Gather
and Cast: their exact semantics, their gradients, and their export."""

import io
import unittest
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx.backend.test")
from onnx import TensorProto, helper  # noqa: E402
from onnx.backend.test import BackendTest  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.errors import OnnxNeedsConstantsError  # noqa: E402
from graphexec.onnx_io import OnnxImportError, backend, export_onnx, import_onnx  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def one_node(node, inputs, outputs, opset=18, inits=()):
    g = helper.make_graph([node], "m", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def reshape_model():
    return one_node(helper.make_node("Reshape", ["x", "shape"], ["y"]),
                    [("x", F, [2, 3, 4]), ("shape", I64, [2])], [("y", F, None)])


# ---------------------------------------------------------------------------- constants=
def test_an_unbound_shape_input_is_refused_naming_constants():
    with pytest.raises(OnnxNeedsConstantsError) as e:
        import_onnx(reshape_model())
    assert e.value.names == ("shape",)
    assert "constants={'shape': value}" in str(e.value) and "\n" not in str(e.value)


def test_a_bound_shape_becomes_a_fixed_reshape_and_stops_being_an_input():
    g = import_onnx(reshape_model(), constants={"shape": [4, -1]})
    assert g.inputs == ["x"] and [n.op for n in g.nodes] == ["reshape"]
    assert g.nodes[0].attrs["shape"] == [4, -1]
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(gx.run(g, {"x": x})["y"], x.reshape(4, 6))


@pytest.mark.parametrize("constants, message", [
    ({"nope": [1]}, "constants= names ['nope'], which are not graph inputs; the model's inputs "
                    "are ['x', 'shape']"),
    ({"shape": [4, -1, 1]}, "constants['shape']: expected shape (2,) (the input's declared "
                            "shape), found (3,)"),
    ({"shape": [4.5, -1]}, "constants['shape']: expected values of the input's type int64, "
                           "found float64 values that int64 does not hold exactly"),
])
def test_bad_constants_are_refused_saying_what_was_expected(constants, message):
    with pytest.raises(OnnxImportError) as e:
        import_onnx(reshape_model(), constants=constants)
    assert message in str(e.value)


def test_every_input_that_needs_a_value_is_named_at_once():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"]),
             helper.make_node("Clip", ["s", "lo"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, [2, 3]),
                                       helper.make_tensor_value_info("axes", I64, [1]),
                                       helper.make_tensor_value_info("lo", F, [])],
                          [helper.make_tensor_value_info("y", F, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(OnnxNeedsConstantsError) as e:
        import_onnx(model)
    assert e.value.names == ("axes", "lo")
    with pytest.raises(OnnxNeedsConstantsError) as e:
        import_onnx(model, constants={"axes": [1]})
    assert e.value.names == ("lo",)
    g2 = import_onnx(model, constants={"axes": [1], "lo": np.float32(0.5)})
    x = np.array([[1, -2, 0.5], [0.1, 0.1, 0.1]], np.float32)
    np.testing.assert_allclose(gx.run(g2, {"x": x})["y"], [[0.5], [0.5]])
    np.testing.assert_allclose(gx.run(g2, {"x": 3 * x})["y"], [[0.5], [0.9]], rtol=1e-6)


# ---------------------------------------------------------------------------- the backend
def test_the_backend_specialises_per_value_and_keeps_a_bounded_cache(monkeypatch):
    rep = backend.prepare(reshape_model())
    assert rep.value_inputs == ("shape",) and rep.imports == 1
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for shape in ([4, -1], [0, -1], [4, -1], [-1, 8]):
        (y,) = rep.run([x, np.array(shape)])
        np.testing.assert_array_equal(y, x.reshape([2 if s == 0 else s for s in shape]))
    assert rep.imports == 1 + 3  # one import per distinct shape value, not per run
    monkeypatch.setattr(backend, "CACHE_SIZE", 3)
    for d in (1, 2, 3, 4, 6, 8, 12, 24):
        (y,) = rep.run({"x": x, "shape": np.array([d, -1])})
        assert y.shape == (d, 24 // d) and rep.cached <= 3
    assert rep.imports == 1 + 3 + 8 and rep.cached == 3  # least recently used ones go first
    rep.run([x, np.array([24, -1])])
    assert rep.imports == 12  # still cached


def test_a_model_without_value_inputs_is_imported_once():
    model = one_node(helper.make_node("Relu", ["x"], ["y"]), [("x", F, [2])], [("y", F, [2])])
    rep = backend.prepare(model)
    for v in ([-1.0, 2.0], [3.0, -4.0]):
        out = rep.run([np.array(v, np.float32)])
        np.testing.assert_array_equal(out[0], np.maximum(v, 0).astype(np.float32))
        np.testing.assert_array_equal(out["y"], out[0])  # by position and by name
    assert rep.imports == 1 and rep.value_inputs == ()


def test_outputs_come_in_the_models_output_order():
    nodes = [helper.make_node("Neg", ["x"], ["b"]), helper.make_node("Exp", ["x"], ["a"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, [2])],
                          [helper.make_tensor_value_info("a", F, [2]),
                           helper.make_tensor_value_info("b", F, [2])])
    rep = backend.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
    x = np.array([0.0, 1.0], np.float32)
    a, b = rep.run([x])
    np.testing.assert_allclose(a, np.exp(x)) and np.testing.assert_array_equal(b, -x)


def test_the_backend_refuses_with_the_import_message_never_a_wrong_answer():
    model = one_node(helper.make_node("Cos", ["x"], ["y"]), [("x", F, [2])], [("y", F, [2])])
    with pytest.raises(OnnxImportError, match="unsupported ONNX ops: Cos"):
        backend.prepare(model)
    rep = backend.prepare(reshape_model())
    with pytest.raises(OnnxImportError, match="expected 2 inputs"):
        rep.run([np.zeros((2, 3, 4), np.float32)])
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    with pytest.raises(OnnxImportError, match="device 'CUDA'"):
        backend.prepare(model, "CUDA")


def test_run_node_runs_one_node():
    node = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    args = [x, np.array([-1]), np.array([-100]), np.array([1]), np.array([-2])]
    (y,) = backend.run_node(node, args)
    np.testing.assert_array_equal(y, x[:, -1:-100:-2])


def test_onnx_backend_test_runs_a_handful_of_node_tests_through_the_module():
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # onnx's own generators warn
        warnings.simplefilter("ignore")
        bt = BackendTest(backend, __name__)
    bt.include(r"^test_(reshape_reduced_dims|reduce_sum_keepdims_example|reduce_max_bool_inputs"
               r"|slice_neg_steps|gather_negative_indices|unsqueeze_two_axes|clip_splitbounds"
               r"|cast_FLOAT_to_DOUBLE)_cpu$")
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c)
                               for c in bt.test_cases.values())
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    assert result.testsRun - len(result.skipped) == 8  # the others: "no matched include pattern"
    assert result.wasSuccessful(), [str(e[1])[-400:] for e in result.failures + result.errors]


# ---------------------------------------------------------------------------- the gates
def op(name, *inputs, **attrs):
    b = gx.GraphBuilder("t")
    ins = [b.input(f"in{i}", shape=np.shape(v), dtype=np.asarray(v).dtype.name)
           for i, v in enumerate(inputs)]
    b.output(b.op(name, *ins, name="n", **attrs), "out")
    return b.build(), {f"in{i}": np.asarray(v) for i, v in enumerate(inputs)}


def test_reduce_max_shares_the_gradient_among_ties():
    g, feed = op("reduce_max", np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), axes=[1],
                 keepdims=False)
    ex = gx.Executor(g)
    np.testing.assert_array_equal(ex.forward(feed)["out"], [3.0, 2.0])
    np.testing.assert_array_equal(ex.backward({"out": np.array([1.0, 4.0])})["in0"],
                                  [[0, 0.5, 0.5], [4, 0, 0]])


def test_reduce_mean_of_ints_truncates_toward_zero_and_sum_keeps_the_dtype():
    x = np.array([[-7, 2], [7, 2]], np.int32)
    g, feed = op("reduce_mean", x, axes=[1], keepdims=True)
    got = gx.run(g, feed)["out"]
    assert got.dtype == np.int32 and got.tolist() == [[-2], [4]]
    g, feed = op("reduce_sum", x, axes=None, keepdims=False)
    got = gx.run(g, feed)["out"]
    assert got.dtype == np.int32 and got.tolist() == 4
    g, feed = op("reduce_max", np.zeros((2, 0)), axes=[1], keepdims=False)
    assert gx.run(g, feed)["out"].tolist() == [-np.inf, -np.inf]


def test_gather_scatter_adds_the_gradient_of_a_repeated_index():
    g, feed = op("gather", np.arange(6.0).reshape(3, 2), np.array([[2, -1], [0, 2]]), axis=0)
    ex = gx.Executor(g)
    np.testing.assert_array_equal(ex.forward(feed)["out"],
                                  [[[4, 5], [4, 5]], [[0, 1], [4, 5]]])
    grads = ex.backward({"out": np.ones((2, 2, 2))})
    np.testing.assert_array_equal(grads["in0"], [[1, 1], [0, 0], [3, 3]])
    g, feed = op("gather", np.arange(3.0), np.array([3]))
    with pytest.raises(gx.GraphError, match=r"indices 3\.\.3 are out of range for axis 0 of "
                                            r"size 3; expected -3\.\.2"):
        gx.run(g, feed)


@pytest.mark.parametrize("starts, ends, axes, steps", [
    ([0], [2**62], None, None), ([-1], [-2**62], [0], [-1]), ([1, -100], [100, 3], [1, 0], [2, 1]),
    ([5], [0], [1], [-2]), ([3], [1], None, None)])
def test_slice_is_pythons_slicing_with_onnx_clamping(starts, ends, axes, steps):
    x = np.arange(24.0).reshape(4, 6)
    g, feed = op("slice", x, starts=starts, ends=ends, axes=axes, steps=steps)
    index = [slice(None)] * 2
    for k, a in enumerate(axes or range(len(starts))):
        index[a] = slice(starts[k], ends[k], (steps or [1] * len(starts))[k])
    np.testing.assert_array_equal(gx.run(g, feed)["out"], x[tuple(index)])
    assert g.nodes[0].gate.infer(gx.gate.Spec((4, 6), x.dtype)).shape == x[tuple(index)].shape


def test_cast_truncates_floats_toward_zero_and_refuses_unknown_targets():
    g, feed = op("cast", np.array([-1.7, -0.2, 0.9, 2.5]), to="int32")
    got = gx.run(g, feed)["out"]
    assert got.dtype == np.int32 and got.tolist() == [-1, 0, 0, 2]
    with pytest.raises(gx.GraphError, match="to='complex64': expected one of"):
        op("cast", np.zeros(2), to="complex64")
    model = one_node(helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING),
                     [("x", F, [2])], [("y", TensorProto.STRING, [2])])
    with pytest.raises(OnnxImportError, match=r"target type STRING \(8\) is not a graphexec dtype"):
        import_onnx(model)


# ---------------------------------------------------------------------------- export
@pytest.mark.parametrize("opset", [17, 18])
def test_the_new_gates_export_as_standard_ops_run_in_onnxruntime_and_come_back(opset):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(3)
    b = gx.GraphBuilder("shapes")
    x = b.input("x", shape=(None, 4, 5), dtype="float32")
    s = b.op("slice", x, name="sl", starts=[-1, 0], ends=[-2**62, 5], axes=[1, 2], steps=[-1, 2])
    gth = b.op("gather", s, b.param("idx", np.array([2, 0, 2])), name="ga", axis=-1)
    r1 = b.op("reduce_sum", gth, name="rs", axes=[1], keepdims=True)
    r2 = b.op("reduce_mean", r1, name="rm", axes=[-1, 0], keepdims=False)
    r3 = b.op("reduce_max", gth, name="rx", axes=None, keepdims=False)
    c = b.op("cast", b.op("add", r2, r3, name="ad"), name="ca", to="float64")
    b.output(c, "y")
    g = b.build()
    model = export_onnx(g, opset=opset)
    assert {n.op_type for n in model.graph.node} >= {"Slice", "Gather", "ReduceSum", "ReduceMean",
                                                     "ReduceMax", "Cast"}
    onnx.checker.check_model(model, full_check=True)
    feed = {"x": rng.normal(size=(3, 4, 5)).astype("float32")}
    want = gx.run(g, feed)["y"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-6)
    back = import_onnx(model)
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes]
    np.testing.assert_array_equal(gx.run(back, feed)["y"], want)


# ---------------------------------------------------------------------------- folding, Clip on ints
def test_a_shape_sliced_by_an_exporter_folds_into_a_fixed_reshape():
    # x.reshape(-1, *x.shape[2:]) as torch writes it: Shape -> Slice -> Concat -> Reshape
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "two", "end"], ["tail"]),
             helper.make_node("Concat", ["minus1", "tail"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [helper.make_tensor("two", I64, [1], [2]), helper.make_tensor("end", I64, [1], [2**62]),
             helper.make_tensor("minus1", I64, [1], [-1])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, ["n", 3, 4])],
                          [helper.make_tensor_value_info("y", F, None)], inits)
    back = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
    assert [(n.op, n.attrs["shape"]) for n in back.nodes] == [("reshape", [-1, 4])]
    x = np.arange(48, dtype=np.float32).reshape(4, 3, 4)
    np.testing.assert_array_equal(gx.run(back, {"x": x})["y"], x.reshape(-1, 4))


@pytest.mark.parametrize("dtype, ok", [(TensorProto.INT32, True), (TensorProto.INT64, False)])
def test_clip_on_integers_up_to_32_bits_is_exact_and_int64_is_refused(dtype, ok):
    inits = [helper.make_tensor("lo", dtype, [], [-2]), helper.make_tensor("hi", dtype, [], [3])]
    model = one_node(helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), [("x", dtype, [5])],
                     [("y", dtype, [5])], inits=inits)
    if not ok:
        with pytest.raises(OnnxImportError, match="input dtype int64; graphexec's clip takes "
                                                  "floats and integers of up to 32 bits"):
            import_onnx(model)
        return
    got = gx.run(import_onnx(model), {"x": np.array([-5, -2, 0, 3, 2**31 - 1], np.int32)})["y"]
    assert got.dtype == np.int32 and got.tolist() == [-2, -2, 0, 3, 3]


def test_squeeze_of_an_axis_of_unknown_size_next_to_another_is_refused_not_guessed():
    # reshape(x, [-1]) would accept a (2, 3) x and return 6 values where ONNX fails
    model = one_node(helper.make_node("Squeeze", ["x", "axes"], ["y"]), [("x", F, ["a", "b"])],
                     [("y", F, None)], inits=[helper.make_tensor("axes", I64, [1], [0])])
    with pytest.raises(OnnxImportError, match="a squeezed axis and a kept one have sizes known "
                                              "only at run time"):
        import_onnx(model)
    model = one_node(helper.make_node("Squeeze", ["x", "axes"], ["y"]), [("x", F, ["a", 3])],
                     [("y", F, None)], inits=[helper.make_tensor("axes", I64, [1], [0])])
    g = import_onnx(model)
    assert g.nodes[0].attrs["shape"] == [3]


@pytest.mark.parametrize("op", ["Gather", "Slice", "Cast", "ReduceMax", "ReduceSum", "Squeeze",
                                "Unsqueeze", "Clip", "Reshape"])
def test_a_node_missing_its_inputs_is_refused_in_one_line_not_crashed_on(op):
    model = one_node(helper.make_node(op, [], ["y"]), [("x", F, [2])], [("y", F, None)], opset=17)
    with pytest.raises(OnnxImportError, match=rf"node 'y' \({op}\): expected at least"):
        import_onnx(model)


def test_a_non_numeric_constant_is_refused_and_the_bound_names_are_recorded():
    with pytest.raises(OnnxImportError, match=r"constants\['shape'\]: expected values of the "
                                              r"input's type int64, found <U1"):
        import_onnx(reshape_model(), constants={"shape": ["a", "b"]})
    g = import_onnx(reshape_model(), constants={"shape": np.array([6, 4], np.int32)})
    assert g.metadata["onnx_bound"] == "shape" and g.nodes[0].attrs["shape"] == [6, 4]
