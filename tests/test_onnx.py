"""ONNX: export agrees with onnxruntime on every mapped op and the shipped models; models written
with onnx.helper import, run like onnxruntime runs them and backpropagate; unsupported ops named."""

import json
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec import registry as regmod  # noqa: E402
from graphexec.cli.main import main  # noqa: E402
from graphexec.onnx_io import (  # noqa: E402
    OnnxExportError,
    OnnxImportError,
    OnnxUnavailableError,
    export_onnx,
    import_onnx,
)
from graphexec.onnx_io.export import EMITTERS  # noqa: E402

from conftest import MODELS, ROOT  # noqa: E402

# float64 exports are exact up to summation order. Imports of float64 models agree to ~1e-8 only:
# ONNX stores float attributes (alpha) as float32, and the importer reads alpha=0.2 as the 0.2 the
# author meant, not float32(0.2) = 0.20000000298...
TOL = {"float32": 1e-5, "float64": 1e-7, "exact64": 1e-12}


def ort_run(model, feed):
    so = ort.SessionOptions()
    so.log_severity_level = 3  # no constant-folding chatter
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feed)))


def assert_close(got, want, dtype):
    """Relative agreement, measured against the size of the whole tensor (near-zero entries ok)."""
    want = np.asarray(want)
    assert np.asarray(got).shape == want.shape
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def sample_feed(g, rng, n=3):
    feed = {}
    for d in g.input_decls:
        shape = tuple(n if s is None else s for s in d.shape)
        if d.dtype.kind == "f":
            feed[d.name] = rng.normal(size=shape).astype(d.dtype)
        else:
            feed[d.name] = rng.integers(0, 2, size=shape).astype(d.dtype)
    return feed


#: Gates whose ONNX op onnxruntime (1.32) runs in float32 only.
NO_ORT_FLOAT64 = {"conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "erf", "onnx_gelu",
                  "onnx_softplus"}
#: Gates whose float attribute (eps) ONNX stores as float32: float64 agrees to ~1e-8, not 1e-15.
EPS_AS_FLOAT32 = {"batchnorm", "layernorm"}


def check_export(g, feed, dtype, opset=17):
    model = export_onnx(g, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op for n in g.nodes}
    if dtype == "float64" and ops & NO_ORT_FLOAT64:
        return model
    exact = "float64" if ops & EPS_AS_FLOAT32 else "exact64"
    got, want = ort_run(model, feed), gx.run(g, feed)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype
        assert_close(got[k], want[k], exact if dtype == "float64" else dtype)
    return model


def as_dtype(g, dtype="float32"):
    """The same graph with float inputs and parameters of ``dtype``, written with GraphBuilder."""
    b = gx.GraphBuilder(g.name + "_" + dtype)
    for d in g.input_decls:
        b.input(d.name, shape=d.shape, dtype=dtype if d.dtype.kind == "f" else d.dtype)
    for k, v in g.params.items():
        b.param(k, v.astype(dtype) if v.dtype.kind == "f" else v, trainable=k not in g.frozen)
    for k, v in g.buffers.items():
        b.buffer(k, v.astype(dtype) if v.dtype.kind == "f" else v)
    for n in g.nodes:
        b.op(n.op, *n.inputs, name=n.name, **n.attrs)
    for k, v in g.output_map.items():
        b.output(v, k)
    return b.build()


def plain(attrs):
    """Attributes as JSON reads them back (a tuple and a list of the same ints are one value)."""
    return json.loads(json.dumps(dict(attrs)))


def same_graph(back, g):
    """``back`` is ``g``: the same gates (op, version, attributes, wiring), inputs, outputs and
    parameters (no constants made up by the import)."""
    assert [(n.name, n.op, n.version, plain(n.attrs), n.inputs) for n in back.nodes] == [
        (n.name, n.op, n.version, plain(n.attrs), n.inputs) for n in g.nodes]
    assert back.input_decls == g.input_decls and back.output_map == g.output_map
    assert sorted(back.params) == sorted(g.params) and sorted(back.buffers) == sorted(g.buffers)
    for k, v in g.params.items():
        assert back.params[k].dtype == v.dtype
        np.testing.assert_array_equal(back.params[k], v)


def standard(path):
    g = gx.load(path)
    return all(n.op in EMITTERS and n.info.dist == "graphexec" for n in g.nodes)


SHIPPED = sorted(p.name for p in MODELS.glob("*.gx") if standard(p))


# ---------------------------------------------------------------------------- export
def test_every_shipped_model_is_covered():
    assert set(SHIPPED) == {p.name for p in MODELS.glob("*.gx")}
    assert {"add_mul.gx", "digits_mlp.gx", "spiral_mlp.gx", "wx_norm.gx"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shipped_models_agree_with_onnxruntime_and_import_back(name, dtype):
    g = gx.load(MODELS / name)
    if dtype == "float32":
        g = as_dtype(g)
    for seed in range(2):
        model = check_export(g, sample_feed(g, np.random.default_rng(seed)), dtype)
    same_graph(import_onnx(model), g)


def test_add_mul_exports_the_lecture_circuit():
    model = export_onnx(gx.load(MODELS / "add_mul.gx"))
    assert [(n.op_type, list(n.input), list(n.output)) for n in model.graph.node] == [
        ("Add", ["x", "y"], ["q"]), ("Mul", ["q", "z"], ["f"])]
    feed = {k: np.array(v) for k, v in {"x": -2.0, "y": 5.0, "z": -4.0}.items()}
    assert ort_run(model, feed)["f"] == -12.0
    assert model.opset_import[0].version == 17 and model.producer_name == "graphexec"


def test_inputs_params_and_shapes_are_declared():
    b = gx.GraphBuilder("decl")
    x = b.input("x", shape=(None, 2), dtype="float32")
    y = b.input("y", shape=(None,), dtype="int64")
    W = b.param("W", np.arange(6, dtype="float32").reshape(2, 3))
    s = b.op("matmul", x, W, name="s")
    b.output(b.op("softmax_cross_entropy", s, y, name="loss"), "loss")
    b.output(s, "scores")
    model = export_onnx(b.build())
    ins = {i.name: i.type.tensor_type for i in model.graph.input}
    assert ins["x"].elem_type == TensorProto.FLOAT and ins["y"].elem_type == TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in ins["x"].shape.dim] == ["x_dim0", 2]
    assert [d.dim_param for d in ins["y"].shape.dim] == ["y_dim0"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(inits["W"], np.arange(6, dtype="float32").reshape(2, 3))
    outs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert len(outs["loss"].shape.dim) == 0 and len(outs["scores"].shape.dim) == 2
    assert [n.op_type for n in model.graph.node] == [
        "MatMul", "SoftmaxCrossEntropyLoss", "Identity"]


def op_graph(dtype, op, args, **attrs):
    """Gate ``op`` on ``args``: ("x", array) graph inputs (fed the array; the batch dimension of a
    matrix or of labels declared None), ("=W", array) parameters or ("~m", array) buffers; float
    arrays in ``dtype``."""
    b = gx.GraphBuilder(op)
    feed, vals = {}, []
    for name, a in args:
        a = np.asarray(a)
        a = a.astype(dtype) if a.dtype.kind == "f" else a
        if name.startswith("="):
            vals.append(b.param(name[1:], a))
        elif name.startswith("~"):
            vals.append(b.buffer(name[1:], a))
        else:
            batch = a.ndim > 1 or a.dtype.kind in "iu"
            shape = (None,) + a.shape[1:] if batch else a.shape
            vals.append(b.input(name, shape=shape, dtype=a.dtype))
            feed[name] = a
    b.output(b.op(op, *vals, **attrs), "out")
    return b.build(), feed


def mixed_graph(dtype, rng):
    """Values flowing through several mapped ops in a row, two losses and two outputs."""
    b = gx.GraphBuilder("mixed")

    def par(name, shape):
        return b.param(name, rng.normal(size=shape).astype(dtype))

    x, y = b.input("x", shape=(None, 3), dtype=dtype), b.input("y", shape=(None,), dtype="int64")
    h = b.op("affine", x, par("W1", (3, 6)), par("b1", 6))
    h = b.op("elu", b.op("leaky_relu", h, alpha=0.1), alpha=1.3)
    h = b.op("maxout", h, par("W2", (2, 6, 3)), par("b2", (2, 3)))
    one = b.param("one", np.ones((), dtype))
    h = b.op("div", b.op("exp", b.op("tanh", h)), b.op("add", b.op("square", h), one))
    scores = b.op("sub", b.op("log", h), b.op("reshape", b.op("mean", h), shape=[1]))
    loss = b.op("add", b.op("svm_loss", scores, y), b.op("softmax_cross_entropy", scores, y))
    b.output(b.op("add", loss, b.op("l2", par("W3", (2, 2)))), "loss")
    b.output(scores, "scores")
    return b.build()


def op_graphs(dtype):
    """name -> (graph, feed): one small graph per mapped op, broadcasting where the op allows."""
    rng = np.random.default_rng(7)
    X, V, labels = rng.normal(size=(4, 3)), rng.normal(size=3), np.array([0, 2, 1, 2])
    cases = {op: ([("x", X), ("v", V)], {}) for op in ("add", "sub", "mul", "max")}
    for op in ("neg", "exp", "square", "sum", "mean", "sigmoid", "tanh", "relu", "l2"):
        cases[op] = ([("x", X)], {})
    cases.update({
        "div": ([("x", X), ("=c", np.abs(V) + 0.5)], {}),
        "log": ([("x", np.abs(X) + 0.1)], {}),
        "leaky_relu": ([("x", X)], {"alpha": 0.2}),
        "elu": ([("x", X)], {"alpha": 0.7}),
        "prelu": ([("x", X), ("=a", [0.1, 0.2, 0.3])], {}),
        "prelu_scalar": ([("x", X), ("=a", 0.25)], {}),
        "matmul": ([("x", X), ("=W", rng.normal(size=(3, 5)))], {}),
        "matmul_vec": ([("=W", rng.normal(size=(2, 3))), ("v", V)], {}),
        "affine": ([("x", X), ("=W", rng.normal(size=(3, 5))), ("=b", rng.normal(size=5))], {}),
        "reshape": ([("x", rng.normal(size=(3, 4)))], {"shape": [-1, 2, 2]}),
        "maxout": ([("x", X), ("=W", rng.normal(size=(3, 3, 4))), ("=b", rng.normal(size=(3, 4)))],
                   {}),
    })
    img = rng.normal(size=(2, 2, 5, 5))
    cases.update({
        "conv2d": ([("x", img), ("=W", rng.normal(size=(4, 1, 3, 3))), ("=b", V[:1].repeat(4))],
                   {"padding": 1, "groups": 2, "stride": [1, 2]}),
        "max_pool2d": ([("x", img)], {"kernel": 2}),
        "avg_pool2d": ([("x", img)], {"kernel": 3, "stride": 1, "padding": 1,
                                      "count_include_pad": False}),
        "global_avg_pool": ([("x", img)], {}),
        "batchnorm": ([("x", X), ("=g", V), ("=b", V[::-1]), ("~m", V / 2), ("~v", V * V + 0.5)],
                      {"eps": 1e-3}),
        "layernorm": ([("x", X), ("=g", V), ("=b", V[::-1])], {}),
        "dropout": ([("x", X)], {"p": 0.25}),
        "dropout_mask": ([("x", img)], {}),
        "flatten": ([("x", img)], {"axis": 2}),
        "transpose": ([("x", img)], {"perm": [0, 2, 3, 1]}),
        "concat": ([("x", X), ("w", X * 2)], {"axis": 1}),
        "pad": ([("x", X)], {"pads": [[1, 0], [0, 2]], "value": 0.5}),
        "clip": ([("x", X)], {"min": -0.5, "max": 0.75}),
        "softmax": ([("x", img)], {"axis": 1}),
        "log_softmax": ([("x", X)], {"axis": -1}),
        "reduce_sum": ([("x", img)], {"axes": [1, -1], "keepdims": False}),
        "reduce_mean": ([("x", img)], {"axes": [0], "keepdims": True}),
        "reduce_max": ([("x", X)], {"axes": None, "keepdims": False}),
        "slice": ([("x", img)], {"starts": [-1, 1], "ends": [-2**62, 4], "axes": [2, 3],
                                 "steps": [-2, 1]}),
        "gather": ([("x", X), ("=i", np.array([[2, 0], [-1, 2]]))], {"axis": 1}),
        "cast": ([("x", X)], {"to": "float64"}),
        "argmax": ([("x", img)], {"axis": -2, "keepdims": False, "select_last_index": True}),
        # the ops of PyTorch exports
        "sqrt": ([("x", np.abs(X) + 0.1)], {}),
        "abs": ([("x", X)], {}),
        "reciprocal": ([("x", np.abs(X) + 0.5)], {}),
        "pow": ([("x", np.abs(X) + 0.5), ("v", V)], {}),
        "pow_scalar": ([("x", X)], {"exponent": 3.0}),
        "mish": ([("x", X * 4)], {}),
        "compare": ([("x", X), ("v", V)], {"kind": "less_equal"}),
        "where": ([("c", X > 0), ("x", X), ("v", V)], {}),
        "full_like": ([("x", X)], {"value": -1.5}),

        "layernorm_stat": ([("x", img)], {"normalized_ndim": 2}),
        "layernorm_stat_inv": ([("x", img)], {"normalized_ndim": 3, "stat": "inv_std_dev",
                                              "eps": 1e-3}),
        "erf": ([("x", X)], {}),
        "onnx_gelu": ([("x", X)], {}),
        "onnx_gelu_tanh": ([("x", X)], {"approximate": "tanh"}),
        "onnx_softplus": ([("x", X * 20)], {}),
        "hard_sigmoid": ([("x", X * 3)], {"alpha": 0.3, "beta": 0.4}),
        "hard_swish": ([("x", X * 4)], {}),
        "nll_loss": ([("x", X), ("y", labels), ("=w", np.abs(V) + 0.5)],
                     {"reduction": "sum", "ignore_index": 2}),
        "nll_loss_none": ([("x", img[:, 0, :3]), ("y", np.array([[0, 2, 1, 2, 0], [1, 1, 0, 2, 2]]))],
                          {"reduction": "none"}),
    })
    base = {"layernorm_stat_inv": "layernorm_stat", "onnx_gelu_tanh": "onnx_gelu",
            "nll_loss_none": "nll_loss", "pow_scalar": "pow_scalar"}
    out = {name: op_graph(dtype, base.get(name, name.split("_scalar")[0].split("_vec")[0]), args,
                          **attrs)
           for name, (args, attrs) in cases.items()}
    for op in ("softmax_cross_entropy", "svm_loss"):
        for ldt in ("int64", "int32"):
            out[f"{op}_{ldt}"] = op_graph(dtype, op, [("s", X * 3), ("y", labels.astype(ldt))])
    out["mixed"] = (mixed_graph(dtype, rng), {"x": X.astype(dtype), "y": labels})
    return out


@pytest.mark.parametrize("opset", [17, 18])  # 18: ReduceMean/ReduceMax take axes as an input
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_mapped_op_agrees_with_onnxruntime(dtype, opset):
    cases = op_graphs(dtype)
    covered = {n.op for g, _ in cases.values() for n in g.nodes}
    assert covered == set(EMITTERS)
    for name, (g, feed) in cases.items():
        try:
            check_export(g, feed, dtype, opset)
        except AssertionError as e:
            raise AssertionError(f"op graph {name!r}: {e}") from None


def test_ties_route_like_graphexec():
    b = gx.GraphBuilder("ties")
    x = b.input("x", shape=(4,), dtype="float32")
    b.output(b.op("max", b.op("relu", x), b.param("z", np.zeros(4, "float32"))), "out")
    check_export(b.build(), {"x": np.array([-1, 0, 0.5, 2], "float32")}, "float32")


class Cube(gx.Gate):
    """y = scale · x³ (a third-party gate: ONNX has no such op)."""

    name, version = "cube", 2

    class Attrs(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        scale: float = 1.0
        tags: list[str] = []
        table: dict[str, int] = {}

    def forward(self, ctx, x):
        ctx.x = x
        return self.attrs.scale * x ** 3

    def backward(self, ctx, dy):
        return (3 * self.attrs.scale * ctx.x ** 2 * dy,)


@pytest.fixture
def cube_plugin(restore_registry):
    regmod.registry().add(regmod.GateInfo("cube", 2, Cube, 1, "Cube-Gates", "0.3", __name__))


def test_third_party_gate_goes_to_its_own_domain(cube_plugin):
    b = gx.GraphBuilder("plugin")
    x = b.input("x", shape=(None, 2))
    cube = b.op("cube", x, name="c", scale=0.5, tags=["a", "b"], table={"k": 1})
    b.output(b.op("relu", cube), "out")
    g = b.build()
    model = export_onnx(g)
    onnx.checker.check_model(model)
    node = model.graph.node[0]
    assert (node.domain, node.op_type) == ("graphexec.cube_gates", "cube")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"graphexec_version": 2, "graphexec_distribution": b"Cube-Gates",
                     "graphexec_dist_version": b"0.3", "scale": 0.5, "tags": [b"a", b"b"],
                     "table__json": b'{"k": 1}'}
    opsets = {(o.domain, o.version) for o in model.opset_import}
    assert opsets == {("", 17), ("graphexec.cube_gates", 2)}
    assert len(model.graph.output[0].type.tensor_type.shape.dim) == 2  # rank from a sample run
    back = import_onnx(model)  # and back, through the custom domain
    assert [(n.op, n.version, dict(n.attrs)) for n in back.nodes][0] == (
        "cube", 2, {"scale": 0.5, "tags": ["a", "b"], "table": {"k": 1}})
    feed = {"x": np.array([[1.0, -2.0], [0.5, 3.0]])}
    np.testing.assert_allclose(gx.run(back, feed)["out"], gx.run(g, feed)["out"])


def test_an_input_without_shape_needs_its_rank():
    b = gx.GraphBuilder("anyshape")
    b.output(b.op("relu", b.input("x")), "out")
    g = b.build()
    with pytest.raises(OnnxExportError, match=r"input 'x' declares no shape, and ONNX needs at "):
        export_onnx(g)
    model = export_onnx(g, input_shapes={"x": (None, 4)})
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["x_dim0", ""]
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 4


def test_export_writes_the_file_and_the_cli_agrees(tmp_path, capsys):
    out = tmp_path / "wx.onnx"
    assert main(["export", str(MODELS / "wx_norm.gx"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 3 ONNX nodes, opset 17")
    model = onnx.load(out)
    assert ort_run(model, {"x": np.array([0.2, 0.4])})["f"] == pytest.approx(0.116, rel=1e-12)


def test_missing_onnx_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(OnnxUnavailableError, match=r"pip install 'graphexec\[onnx\]'"):
        export_onnx(gx.load(MODELS / "add_mul.gx"))
    assert main(["export", str(MODELS / "add_mul.gx"), "-o", "never.onnx"]) == 2
    assert "pip install 'graphexec[onnx]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- import
def tensor(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def model_of(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "hand_written", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="onnx.helper")
    m.ir_version = helper.find_min_ir_version_for(m.opset_import)
    onnx.checker.check_model(m)
    return m


def mlp_model(dtype, rng):
    """x (N, 4) -> Gemm(transB=1) -> Relu -> Gemm(transB=1, alpha, beta) -> y (N, 3), the way
    PyTorch writes an MLP."""
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w1, b1 = rng.normal(size=(5, 4)).astype(dtype), rng.normal(size=5).astype(dtype)
    w2, b2 = rng.normal(size=(3, 5)).astype(dtype), rng.normal(size=3).astype(dtype)
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["y"], name="fc2", transB=1,
                              alpha=0.5, beta=2.0)]
    return model_of(nodes, [helper.make_tensor_value_info("x", et, ["batch", 4])],
                    [helper.make_tensor_value_info("y", et, ["batch", 3])],
                    [tensor("fc1.weight", w1), tensor("fc1.bias", b1), tensor("fc2.weight", w2),
                     tensor("fc2.bias", b2)])


def check_import(model, feed, dtype):
    g = import_onnx(model)
    want, got = ort_run(model, feed), gx.run(g, feed)
    assert set(got) == set(want)
    for k in want:
        assert_close(got[k], want[k], dtype)
    return g


def directional_check(g, feed, rng):
    """Backward agrees with a central difference along a random direction of every float leaf."""
    ex = gx.Executor(g)
    ex.forward(feed)
    grads = ex.backward()
    leaves = {**{k: v for k, v in feed.items() if v.dtype.kind == "f"}, **g.params}
    dirs = {k: rng.normal(size=np.shape(v)) for k, v in leaves.items()}

    def total(eps):
        f2 = {k: (v + eps * dirs[k] if k in dirs else v) for k, v in feed.items()}
        saved = {k: g.params[k].copy() for k in g.params}
        for k in g.params:
            g.params[k] += eps * dirs[k]
        try:
            return sum(float(np.sum(v)) for v in gx.run(g, f2).values())
        finally:
            for k in g.params:
                g.params[k][...] = saved[k]

    h = 1e-6
    numeric = (total(h) - total(-h)) / (2 * h)
    analytic = sum(float(np.sum(grads[k] * dirs[k])) for k in dirs)
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_written_mlp_imports_runs_and_backpropagates(dtype):
    rng = np.random.default_rng(1)
    model = mlp_model(dtype, rng)
    feed = {"x": rng.normal(size=(6, 4)).astype(dtype)}
    g = check_import(model, feed, dtype)
    assert [(n.op, n.inputs) for n in g.nodes] == [
        ("affine", ("x", "fc1.weight", "fc1.bias")), ("relu", ("h",)),
        ("affine", ("a", "fc2.weight", "fc2.bias"))]
    assert g.params["fc1.weight"].shape == (4, 5)  # transB folded into the constant
    assert g.input_decls[0].shape == (None, 4) and g.input_decls[0].dtype == np.dtype(dtype)
    if dtype == "float64":
        directional_check(g, feed, rng)


def sigmoid_net(dtype, rng):
    """MatMul + Add (fused into affine), LeakyRelu, MatMul with a computed operand, Sigmoid."""
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["h"]),
             helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.2),
             helper.make_node("MatMul", ["a", "a_t"], ["g"]),
             helper.make_node("Add", ["g", "shift"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["p"])]
    return model_of(nodes, [helper.make_tensor_value_info("x", et, [None, 3]),
                            helper.make_tensor_value_info("a_t", et, [4, 2])],
                    [helper.make_tensor_value_info("p", et, [None, 2])],
                    [tensor("W", rng.normal(size=(3, 4)).astype(dtype)),
                     tensor("b", rng.normal(size=4).astype(dtype)),
                     tensor("shift", rng.normal(size=(1, 2)).astype(dtype))])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_add_sigmoid_leaky_relu(dtype):
    rng = np.random.default_rng(2)
    model = sigmoid_net(dtype, rng)
    feed = {"x": rng.normal(size=(5, 3)), "a_t": rng.normal(size=(4, 2))}
    feed = {k: v.astype(dtype) for k, v in feed.items()}
    g = check_import(model, feed, dtype)
    assert [n.op for n in g.nodes] == ["affine", "leaky_relu", "matmul", "add", "sigmoid"]
    assert g.nodes[1].attrs == {"alpha": 0.2}
    if dtype == "float64":
        directional_check(g, feed, rng)


@pytest.mark.parametrize("opset", [11, 17])  # before 13, Softmax's default axis is 1
def test_softmax_at_the_end_is_composed_and_stable(opset):
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["s"]),
             helper.make_node("Softmax", ["s"], ["prob"])]
    model = model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                     [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 4])],
                     [tensor("W", rng.normal(size=(3, 4)).astype("float32")),
                      tensor("b", rng.normal(size=4).astype("float32"))], opset=opset)
    feed = {"x": rng.normal(size=(6, 3)).astype("float32")}
    g = check_import(model, feed, "float32")
    big = {"x": feed["x"] * 500}  # logits in the hundreds: shifted by the row max, no overflow
    p = gx.run(g, big)["prob"]
    assert np.isfinite(p).all()
    assert_close(p, ort_run(model, big)["prob"], "float32")
    assert [n.op for n in g.nodes] == ["affine", "softmax"] and "onnx_constants" not in g.metadata


def test_remaining_supported_ops_run_like_onnxruntime():
    rng = np.random.default_rng(4)
    f = TensorProto.FLOAT  # onnxruntime has no float64 Elu
    nodes = [helper.make_node("Constant", [], ["two"], value=tensor("c", np.array(2.0, "float32"))),
             helper.make_node("Flatten", ["img"], ["flat"], axis=1),
             helper.make_node("Identity", ["flat"], ["flat2"]),
             helper.make_node("Dropout", ["flat2"], ["d"]),
             helper.make_node("Div", ["d", "two"], ["h1"]),
             helper.make_node("Sub", ["h1", "v"], ["h2"]),
             helper.make_node("Neg", ["h2"], ["h3"]),
             helper.make_node("Tanh", ["h3"], ["h4"]),
             helper.make_node("Elu", ["h4"], ["h5"], alpha=0.5),
             helper.make_node("PRelu", ["h5", "slope"], ["h6"]),
             helper.make_node("Exp", ["h6"], ["h7"]),
             helper.make_node("Log", ["h7"], ["h8"]),
             helper.make_node("Max", ["h8", "h4", "h3"], ["h9"]),
             helper.make_node("Sum", ["h9", "h1", "v"], ["h10"]),
             helper.make_node("Reshape", ["h10", "shape"], ["r"]),
             helper.make_node("Mul", ["r", "r"], ["sq"]),
             helper.make_node("ReduceSum", ["sq"], ["total"], keepdims=0),
             helper.make_node("ReduceMean", ["r"], ["avg"], keepdims=0)]
    model = model_of(nodes, [helper.make_tensor_value_info("img", f, [4, 2, 3]),
                             helper.make_tensor_value_info("v", f, [6])],
                     [helper.make_tensor_value_info("total", f, []),
                      helper.make_tensor_value_info("avg", f, []),
                      helper.make_tensor_value_info("r", f, [None, 3, 2])],
                     [tensor("slope", rng.uniform(0.1, 0.3, size=6).astype("float32")),
                      tensor("shape", np.array([0, 3, -1], dtype=np.int64))])
    feed = {"img": rng.normal(size=(4, 2, 3)), "v": rng.normal(size=6)}
    feed = {k: v.astype("float32") for k, v in feed.items()}
    g = check_import(model, feed, "float32")
    assert g.params["two"].shape == () and "shape" not in g.params  # a shape is an attribute
    assert {n.op for n in g.nodes} >= {"reshape", "max", "add", "elu", "prelu", "sum", "mean"}
    g64 = as_dtype(g, "float64")  # backward, checked in float64 on the same imported graph
    directional_check(g64, {k: v.astype("float64") for k, v in feed.items()}, rng)


def test_unsupported_ops_are_all_named():
    nodes = [helper.make_node("Cos", ["x"], ["c"], name="cos1"),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("Cos", ["r"], ["c2"], name="cos2"),
             helper.make_node("Transpose", ["c2"], ["t1"], name="swap", perm=[0, 1, 3, 2]),
             helper.make_node("Sin", ["t1"], ["t"], name="pick")]
    f = TensorProto.FLOAT
    model = model_of(nodes, [helper.make_tensor_value_info("x", f, [1, 1, 4, 4])],
                     [helper.make_tensor_value_info("t", f, [1, 1, 4, 4])],
                     [tensor("b", np.ones((1, 1, 1, 1), bool))])
    with pytest.raises(OnnxImportError) as e:
        import_onnx(model)
    assert str(e.value).startswith(
        "cannot import the ONNX model: unsupported ONNX ops: Cos (2 nodes: 'cos1', 'cos2'); "
        "Sin (1 node: 'pick'). graphexec imports: Abs, Add, ArgMax, ArgMin, AveragePool, "
        "BatchNormalization, ")


@pytest.mark.parametrize("node, inputs, message", [
    (helper.make_node("Clip", ["x", "w"], ["y"], name="g"), [("w", [])],
     "node 'g' (Clip): its min 'w' is a graph input, known only when the model runs"),
    (helper.make_node("Reshape", ["x", "w"], ["y"], name="r"), [("w", [2])],
     "node 'r' (Reshape): the shape 'w' is a graph input, known only when the model runs"),
    (helper.make_node("Conv", ["x", "x"], ["y"], name="s"), [],
     "node 's' (Conv): input of rank 2; graphexec's image gates take 2-D images (N, C, H, W)"),
    (helper.make_node("Squeeze", ["x", "w"], ["y"], name="k"), [("w", [1])],
     "node 'k' (Squeeze): its axes 'w' is a graph input, known only when the model runs"),
])
def test_unsupported_uses_of_supported_ops_are_explained(node, inputs, message):
    f = TensorProto.FLOAT
    vis = [helper.make_tensor_value_info("x", f, [3, 3])]
    kind = TensorProto.INT64 if node.op_type == "Reshape" else f
    vis += [helper.make_tensor_value_info(n, kind, s) for n, s in inputs]
    model = model_of([node], vis, [helper.make_tensor_value_info("y", f, ["a", "b"])], [])
    with pytest.raises(OnnxImportError) as e:
        import_onnx(model)
    assert message in str(e.value)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_exported_gate_imports_back_as_the_same_gate(dtype, opset):
    cases = op_graphs(dtype)
    assert {n.op for g, _ in cases.values() for n in g.nodes} == set(EMITTERS)
    for name, (g, feed) in cases.items():
        back = import_onnx(export_onnx(g, opset=opset))
        try:
            same_graph(back, g)
        except AssertionError as e:
            raise AssertionError(f"op graph {name!r}: {e}") from None
        want, got = gx.run(g, feed), gx.run(back, feed)
        for k in want:  # the same gates on the same values: bit for bit
            np.testing.assert_array_equal(got[k], want[k], err_msg=name)


def test_export_import_round_trip_of_a_training_graph():
    g = gx.nn.mlp([2, 6, 3], activation="relu", loss="softmax", reg=1e-3, seed=0, dtype="float32")
    back = import_onnx(export_onnx(g))
    rng = np.random.default_rng(5)
    feed = {"x": rng.normal(size=(8, 2)).astype("float32"), "y": rng.integers(0, 3, 8)}
    want, got = gx.run(g, feed), gx.run(back, feed)
    for k in want:
        assert_close(got[k], want[k], "float32")
    assert {n.op for n in back.nodes} >= {"affine", "relu", "softmax_cross_entropy"}


def test_cli_import_saves_a_graph_that_runs(tmp_path, capsys):
    src = tmp_path / "mlp.onnx"
    onnx.save(mlp_model("float32", np.random.default_rng(1)), src)
    out = tmp_path / "mlp.gx"
    assert main(["import", str(src), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: graph 'hand_written', inputs ['x']")
    g = gx.load(out)
    x = np.ones((2, 4), "float32")
    assert_close(gx.run(g, {"x": x})["y"], ort_run(onnx.load(src), {"x": x})["y"], "float32")
    assert main(["import", str(tmp_path / "none.onnx"), "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: cannot open")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert main(["import", str(tmp_path / "bad.onnx"), "-o", str(out)]) == 2
    assert "as an ONNX model" in capsys.readouterr().err


def test_cli_export_for_real(tmp_path):
    out = tmp_path / "neuron.onnx"
    cmd = [sys.executable, "-m", "graphexec", "export", str(MODELS / "sigmoid_neuron.gx"),
           "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    values = {"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}
    feed = {k: np.array(v) for k, v in values.items()}
    assert ort_run(onnx.load(out), feed)["f"] == pytest.approx(0.7310585786300049, rel=1e-12)


def test_constant_of_shape_and_shape_chains_fold_at_import():
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [helper.make_node("ConstantOfShape", ["three"], ["twos"],
                              value=tensor("v", np.array([2.0], "float32"))),
             helper.make_node("Add", ["x", "twos"], ["h"]),
             helper.make_node("Shape", ["h"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["c"], axis=0),
             helper.make_node("Unsqueeze", ["c", "zero"], ["c1"]),
             helper.make_node("Concat", ["minus1", "c1"], ["target"], axis=0),
             helper.make_node("Reshape", ["h", "target"], ["y"])]
    model = model_of(nodes, [helper.make_tensor_value_info("x", f, ["N", 3])],
                     [helper.make_tensor_value_info("y", f, ["N", 3])],
                     [tensor("three", np.array([3], "int64")), tensor("one", np.array(1, "int64")),
                      tensor("zero", np.array([0], "int64")),
                      tensor("minus1", np.array([-1], "int64"))])
    g = import_onnx(model)
    assert [n.op for n in g.nodes] == ["add", "reshape"]
    assert dict(g.nodes[1].attrs) == {"shape": [-1, 3]}
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(gx.run(g, {"x": x})["y"], x + 2)
    del model.graph.node[-1]  # the batch size itself as an output: a run-time value, refused
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("s", i64, [2]))
    with pytest.raises(OnnxImportError, match=r"value 's' is a shape that depends on sizes known "
                                              r"only when the model runs"):
        import_onnx(model)
