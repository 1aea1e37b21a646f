"""Export for deployment: only the chosen outputs, a float32 model from a float64 graph, the
.onnx suffix, marks that bring graphexec's own gates back, and the CLI's --json summaries."""

import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402
from test_onnx import mixed_graph, op_graph, ort_run  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.cli.main import main  # noqa: E402
from graphexec.onnx_io import OnnxExportError, OnnxImportError, export_onnx, import_onnx  # noqa: E402
from graphexec.onnx_io.recognize import MARK  # noqa: E402

from conftest import MODELS  # noqa: E402

DIGITS = MODELS / "digits_mlp.gx"


def digits_feed(n=7, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0, 16, size=(n, 64)), "y": rng.integers(0, 10, n)}


def relative_error(got, want):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / max(np.max(np.abs(want)), 1e-30))


# ---------------------------------------------------------------------------- outputs=
def test_scores_alone_need_no_labels_and_no_loss_nodes():
    g = gx.load(DIGITS)
    model = export_onnx(g, outputs=["scores"])
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["scores"]
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add", "Relu", "MatMul", "Add",
                                                     "Identity"]
    assert sorted(t.name for t in model.graph.initializer) == ["W1", "W2", "b1", "b2"]
    feed = digits_feed()
    got = ort_run(model, {"x": feed["x"]})  # no y fed: the model does not read it
    np.testing.assert_allclose(got["scores"], gx.run(g, feed)["scores"], rtol=1e-12, atol=1e-12)
    assert g.outputs == ["loss", "scores"] and len(g.nodes) == 8  # the source graph is untouched


def test_an_intermediate_value_can_be_an_output():
    g = gx.load(DIGITS)
    model = export_onnx(g, outputs=["a1", "scores"])
    assert [o.name for o in model.graph.output] == ["a1", "scores"]
    x = digits_feed()["x"]
    want = np.maximum(x @ g.params["W1"] + g.params["b1"], 0)
    np.testing.assert_allclose(ort_run(model, {"x": x})["a1"], want, rtol=1e-12)
    back = import_onnx(model)
    assert back.outputs == ["a1", "scores"] and [n.op for n in back.nodes] == [
        "affine", "relu", "affine"]


def test_an_unknown_output_lists_what_there_is():
    g = gx.load(DIGITS)
    with pytest.raises(OnnxExportError) as e:
        export_onnx(g, outputs=["score"])
    assert str(e.value) == (
        "cannot export output 'score': expected a graph output (loss, scores) or the name of a "
        "node's value (h1, a1, h2, data_loss, l2_W1, l2_W2, l2_sum1, loss), found 'score', which "
        "is not a value of the graph; choose outputs from those names")
    with pytest.raises(OnnxExportError, match=r"found 'y', which is an input;"):
        export_onnx(g, outputs=["scores", "y"])
    with pytest.raises(OnnxExportError, match=r"found 'W1', which is a parameter;"):
        export_onnx(g, outputs=["W1"])
    with pytest.raises(OnnxExportError, match=r"outputs=\[\] selects nothing"):
        export_onnx(g, outputs=[])


def test_a_long_list_of_names_is_cut():
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(3,))
    for i in range(50):
        v = b.op("relu", v, name=f"n{i}")
    b.output(v, "out")
    with pytest.raises(OnnxExportError) as e:
        export_onnx(b.build(), outputs=["nope"])
    assert "(n0, n1, n2, n3, n4, n5, n6, n7 and 42 more)" in str(e.value)
    assert len(str(e.value)) < 400


# ---------------------------------------------------------------------------- dtype=
def test_float32_export_of_a_float64_graph_agrees_within_float32_tolerance():
    g = gx.load(DIGITS)
    model = export_onnx(g, dtype="float32")
    ins = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert ins == {"x": onnx.TensorProto.FLOAT, "y": onnx.TensorProto.INT64}  # labels untouched
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert {a.dtype for a in inits.values()} == {np.dtype("float32")}  # the l2 halves too
    assert len(inits) > len(g.params)
    for seed in range(3):
        feed = digits_feed(seed=seed)
        got = ort_run(model, {"x": feed["x"].astype("float32"), "y": feed["y"]})
        want = gx.run(g, feed)
        for k in ("loss", "scores"):
            assert got[k].dtype == np.float32
            assert relative_error(got[k], want[k]) < 1e-5, k
    assert all(v.dtype == np.float64 for v in g.params.values())  # the graph is not converted


def test_float32_export_converts_every_constant_a_decomposition_writes():
    rng = np.random.default_rng(3)
    g = mixed_graph("float64", rng)  # elu, leaky_relu, maxout, svm_loss, l2: constants of dt
    model = export_onnx(g, dtype="float32")
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    doubles = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    assert doubles == [] and floats
    x, y = rng.normal(size=(5, 3)), np.array([0, 2, 1, 2, 0])
    got, want = ort_run(model, {"x": x.astype("float32"), "y": y}), gx.run(g, {"x": x, "y": y})
    for k in want:
        assert relative_error(got[k], want[k]) < 1e-5, k
    back = import_onnx(model)  # and it comes back as a float32 graph of the same gates
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes]
    assert {v.dtype for v in back.params.values()} == {np.dtype("float32")}


def test_float64_export_of_a_float32_graph_and_bad_dtypes():
    g, feed = op_graph("float32", "leaky_relu", [("x", np.linspace(-2, 2, 6).reshape(2, 3))],
                       alpha=0.25)
    model = export_onnx(g, dtype="float64")
    out = ort_run(model, {"x": feed["x"].astype("float64")})["out"]
    assert out.dtype == np.float64
    for bad in ("int32", "float16", "nonsense"):
        with pytest.raises(OnnxExportError, match=rf"dtype='{bad}': expected one of float32, "
                                                  rf"float64, found '{bad}'"):
            export_onnx(g, dtype=bad)


def test_a_parameter_beyond_float32_range_is_refused():
    b = gx.GraphBuilder("big")
    b.output(b.op("mul", b.input("x", shape=(2,)), b.param("w", np.array([1.0, 1e300]))), "out")
    with pytest.raises(OnnxExportError, match=r"cannot convert parameter 'w' to float32: "
                                              r"expected values within ±3\.403e\+38, found 1e\+300"):
        export_onnx(b.build(), dtype="float32")


# ---------------------------------------------------------------------------- path
@pytest.mark.parametrize("name, found", [("m.gx", "'.gx'"), ("model", "no suffix"),
                                         ("m.onnx.tmp", "'.tmp'")])
def test_an_output_suffix_other_than_onnx_is_refused(tmp_path, name, found):
    g = gx.load(MODELS / "add_mul.gx")
    with pytest.raises(OnnxExportError) as e:
        export_onnx(g, tmp_path / name)
    assert str(e.value) == (f"cannot write {str(tmp_path / name)!r}: expected a file name ending "
                            f"in .onnx, found {found}; name it like model.onnx (graphexec files "
                            "are written by gx.save)")
    assert list(tmp_path.iterdir()) == []
    export_onnx(g, tmp_path / "M.ONNX")
    assert [p.name for p in tmp_path.iterdir()] == ["M.ONNX"]


def test_a_missing_folder_is_named(tmp_path):
    target = tmp_path / "no" / "m.onnx"
    with pytest.raises(OnnxExportError) as e:
        export_onnx(gx.load(MODELS / "add_mul.gx"), target)
    assert str(e.value) == (f"cannot write {str(target)!r}: the folder {str(target.parent)!r} "
                            "does not exist; create it first")


# ---------------------------------------------------------------------------- marks
def leaky64():
    g, feed = op_graph("float64", "leaky_relu", [("x", np.linspace(-2, 2, 6).reshape(2, 3))],
                       alpha=0.1)
    return g, feed, export_onnx(g)


def test_float64_leaky_relu_is_a_marked_decomposition_that_comes_back():
    _, _, model = leaky64()
    assert [n.op_type for n in model.graph.node] == ["Mul", "Greater", "Where", "Identity"]
    assert model.graph.node[2].doc_string == (
        MARK + '{"attrs":{"alpha":0.1},"dtype":"float64","inputs":["x"],"op":"leaky_relu",'
        '"version":1}')
    back = import_onnx(model)
    assert [(n.op, dict(n.attrs)) for n in back.nodes] == [("leaky_relu", {"alpha": 0.1})]
    assert back.params == {}  # the decomposition's constants are not made into parameters


def test_an_edited_group_is_not_taken_for_the_gate():
    _, feed, model = leaky64()
    slope = next(t for t in model.graph.initializer if t.name.endswith("_alpha"))
    slope.CopyFrom(numpy_helper.from_array(np.array(0.3), slope.name))  # no longer alpha=0.1
    g = import_onnx(model)  # its plain ops (Mul, Greater, Where), not the gate
    assert "leaky_relu" not in {n.op for n in g.nodes} and {"compare", "where"} <= {
        n.op for n in g.nodes}
    x = feed["x"]
    (out,) = g.output_map
    np.testing.assert_allclose(gx.run(g, feed)[out], np.where(x > 0, x, 0.3 * x), rtol=1e-12)


def test_a_value_read_outside_the_group_is_not_taken_for_the_gate():
    _, feed, model = leaky64()
    inner = model.graph.node[0].output[0]  # x * alpha, which the gate does not expose
    model.graph.output.append(onnx.helper.make_tensor_value_info(inner, 11, [None, 3]))
    g = import_onnx(model)
    assert "leaky_relu" not in {n.op for n in g.nodes}
    got = gx.run(g, feed)
    x = feed["x"]
    assert sorted(v.shape for v in got.values()) == [(2, 3), (2, 3)]
    for v in got.values():  # the leaky relu, and x * alpha read from inside the group
        assert np.allclose(v, np.where(x > 0, x, 0.1 * x)) or np.allclose(v, 0.1 * x)


def test_a_forged_mark_does_not_change_what_a_node_computes():
    g, feed = op_graph("float32", "relu", [("x", np.linspace(-2, 2, 6).reshape(2, 3))])
    model = export_onnx(g)
    node = model.graph.node[0]
    assert node.op_type == "Relu" and node.doc_string.startswith(MARK)
    for forged in (MARK + '{"attrs":{"alpha":0.5},"dtype":"float32","inputs":["x"],'
                          '"op":"leaky_relu","version":1}',
                   MARK + '{"attrs":{"alpha":"0.5"},"dtype":"float32","inputs":["x"],'
                          '"op":"leaky_relu","version":1}',  # a str for a float
                   MARK + '{"attrs":{},"dtype":"float32","inputs":["x"],"op":"relu","version":9}',
                   MARK + "{not json", MARK + '{"op":"exec","inputs":["x"]}'):
        node.doc_string = forged
        back = import_onnx(model)
        assert [n.op for n in back.nodes] == ["relu"]
        np.testing.assert_array_equal(gx.run(back, feed)["out"], gx.run(g, feed)["out"])


def test_a_mark_the_installed_gate_cannot_serve_falls_back_to_the_onnx_op():
    g, feed = op_graph("float32", "leaky_relu", [("x", np.linspace(-2, 2, 6).reshape(2, 3))],
                       alpha=0.5)
    model = export_onnx(g)
    node = model.graph.node[0]
    assert node.op_type == "LeakyRelu"
    for attrs, version in (('{"alpha":"0.5"}', 1), ('{"alpha":0.5,"beta":1}', 1),
                           ('{"alpha":0.5}', 2)):
        node.doc_string = (MARK + f'{{"attrs":{attrs},"dtype":"float32","inputs":["x"],'
                                  f'"op":"leaky_relu","version":{version}}}')
        back = import_onnx(model)  # read as the ONNX LeakyRelu it is
        assert [(n.op, n.version, dict(n.attrs)) for n in back.nodes] == [
            ("leaky_relu", 1, {"alpha": 0.5})]
        np.testing.assert_array_equal(gx.run(back, feed)["out"], gx.run(g, feed)["out"])


# ---------------------------------------------------------------------------- CLI
def test_cli_export_for_deployment_with_json(tmp_path, capsys):
    out = tmp_path / "digits.onnx"
    code = main(["export", str(DIGITS), "-o", str(out), "--outputs", "scores",
                 "--dtype", "float32", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "wrote": str(out), "format": "onnx", "opset": 17, "ir_version": 8, "nodes": 6,
        "ops": {"Add": 2, "Identity": 1, "MatMul": 2, "Relu": 1},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 64]}],
        "outputs": [{"name": "scores", "dtype": "float32", "shape": [None, 10]}],
        "parameters": 64 * 100 + 100 + 100 * 10 + 10}
    x = digits_feed()["x"]
    got = ort_run(onnx.load(out), {"x": x.astype("float32")})["scores"]
    assert relative_error(got, gx.run(gx.load(DIGITS), digits_feed())["scores"]) < 1e-5
    assert main(["export", str(DIGITS), "-o", str(out), "--outputs", "a1,scores"]) == 0
    assert capsys.readouterr().out == (f"wrote {out}: 6 ONNX nodes, opset 17; inputs x; "
                                       "outputs a1, scores\n")


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    for extra, message in [(["--outputs", "nope"], "error: cannot export output 'nope': "),
                           (["--outputs", ","], "error: --outputs expects NAME[,NAME...], "),
                           (["--dtype", "int8"], "error: cannot export with dtype='int8'")]:
        assert main(["export", str(DIGITS), "-o", str(tmp_path / "m.onnx"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
    assert main(["export", str(DIGITS), "-o", str(tmp_path / "m.gx")]) == 2
    assert "expected a file name ending in .onnx, found '.gx'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_import_with_json(tmp_path, capsys):
    src = tmp_path / "digits.onnx"
    export_onnx(gx.load(DIGITS), src)
    out = tmp_path / "back.gx"
    assert main(["import", str(src), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "wrote": str(out), "format": "graphexec", "graph": "digits_mlp", "nodes": 8,
        "ops": {"add": 2, "affine": 2, "l2": 2, "relu": 1, "softmax_cross_entropy": 1},
        "inputs": [{"name": "x", "dtype": "float64", "shape": [None, 64]},
                   {"name": "y", "dtype": "int64", "shape": [None]}],
        "outputs": ["loss", "scores"], "parameters": 7510}
    feed = digits_feed()
    for k, v in gx.run(gx.load(DIGITS), feed).items():
        np.testing.assert_array_equal(gx.run(gx.load(out), feed)[k], v)


def test_cli_import_of_a_graphexec_file_says_what_it_is(tmp_path, capsys):
    out = tmp_path / "x.gx"
    src = str(MODELS / "add_mul.gx")
    assert main(["import", src, "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {src!r} is a graphexec graph file (.gx), not an ONNX model: it needs no "
        f"import; run it as it is, or inspect it with: graphexec info {src}\n")
    renamed = tmp_path / "looks.onnx"  # the bytes decide, not the name
    renamed.write_bytes((MODELS / "add_mul.gx").read_bytes())
    assert main(["import", str(renamed), "-o", str(out)]) == 2
    assert "is a graphexec graph file (.gx), not an ONNX model" in capsys.readouterr().err
    with pytest.raises(OnnxImportError, match=r"these bytes are a graphexec graph \(\.gx\)"):
        import_onnx(renamed.read_bytes())
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "expected a ModelProto with an IR version and a graph, found no IR version"),
    (b"\x08\x07", "expected a ModelProto with an IR version and a graph, found no graph"),
    (b"hello, world\n", ("expected a serialized ONNX ModelProto (protobuf), found bytes that "
                         "do not parse as one")),
])
def test_cli_import_of_a_file_that_is_not_onnx_says_so(tmp_path, capsys, content, message):
    src = tmp_path / "in.onnx"
    src.write_bytes(content)
    assert main(["import", str(src), "-o", str(tmp_path / "x.gx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read {str(src)!r} as an ONNX model: {message}")
    assert err.count("\n") == 1


def test_cli_import_of_a_folder_or_a_fifo_does_not_wait(tmp_path, capsys):
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "x.gx")]) == 2
    assert capsys.readouterr().err == (f"error: cannot import {str(tmp_path)!r}: expected an "
                                       "ONNX model file, found a folder\n")
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    with pytest.raises(OnnxImportError, match=r"expected an ONNX model file, found a FIFO"):
        import_onnx(fifo)


# ---------------------------------------------------------------------------- the image gates
def _cnn(dtype):
    """Every new built-in gate in one graph: conv (padding, stride, groups), pools, batchnorm
    with running statistics as buffers, layernorm, dropout, flatten, transpose, concat, pad,
    softmax/log_softmax on an inner axis, clip."""
    rng = np.random.default_rng(7)
    r = lambda *s: rng.normal(size=s).astype(dtype)  # noqa: E731
    b = gx.GraphBuilder("cnn_" + dtype)
    x = b.input("x", shape=(None, 2, 8, 8), dtype=dtype)
    c = b.op("conv2d", x, b.param("W", r(4, 1, 3, 3)), b.param("cb", r(4)), name="c", padding=1,
             groups=2)
    bn = b.op("batchnorm", c, b.param("g", r(4)), b.param("be", r(4)),
              b.buffer("rm", r(4)), b.buffer("rv", np.abs(r(4)) + 0.5), name="bn", eps=1e-3)
    m = b.op("max_pool2d", b.op("relu", bn, name="a"), name="mp", kernel=2)
    av = b.op("avg_pool2d", m, name="ap", kernel=3, stride=1, padding=1, count_include_pad=False)
    p = b.op("pad", av, name="pd", pads=[[0, 0], [0, 0], [1, 0], [0, 1]], value=0.5)
    cl = b.op("clip", p, name="cl", min=-1.0, max=1.5)
    sm = b.op("softmax", cl, name="sm", axis=1)
    ls = b.op("log_softmax", cl, name="ls", axis=2)
    t = b.op("transpose", b.op("concat", sm, ls, name="cat", axis=1), name="tr", perm=[0, 1, 3, 2])
    ln = b.op("layernorm", t, b.param("lg", r(5, 5)), b.param("lb", r(5, 5)), name="ln",
              normalized_ndim=2)
    gp = b.op("global_avg_pool", b.op("dropout", ln, name="dr", p=0.3), name="gap")
    b.output(b.op("flatten", gp, name="fl"), "y")
    return b.build()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", [17, 18])
def test_image_gates_export_as_standard_ops_and_import_back(dtype, opset):
    ort = pytest.importorskip("onnxruntime")
    g = _cnn(dtype)
    model = export_onnx(g, opset=opset)
    assert {n.domain for n in model.graph.node} == {""}
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "MaxPool", "AveragePool", "BatchNormalization", "GlobalAveragePool", "Pad",
            "Clip", "Softmax", "LogSoftmax", "Concat", "Transpose", "LayerNormalization",
            "Flatten"} <= ops
    feed = {"x": np.random.default_rng(1).normal(size=(3, 2, 8, 8)).astype(dtype)}
    want = gx.run(g, feed)["y"]
    onnx.checker.check_model(model, full_check=True)
    if dtype == "float32":  # onnxruntime 1.32 has no float64 Conv kernel
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(s.run(None, feed)[0], want, rtol=1e-5, atol=1e-6)
    back = import_onnx(model)
    plain = lambda a: json.loads(json.dumps(dict(a)))  # noqa: E731  (tuples read back as lists)
    assert [(n.name, n.op, plain(n.attrs), n.inputs) for n in back.nodes] == [
        (n.name, n.op, plain(n.attrs), n.inputs) for n in g.nodes]
    assert sorted(back.buffers) == ["rm", "rv"] and sorted(back.params) == sorted(g.params)
    np.testing.assert_array_equal(gx.run(back, feed)["y"], want)


# ---------------------------------------------------------------------------- the onnx_export hook
@pytest.fixture
def example_gates(monkeypatch, restore_registry):
    """The example plugin's gates, registered in-process (undone by restore_registry)."""
    from graphexec import registry as regmod

    monkeypatch.syspath_prepend(str(MODELS.parent / "plugins" / "graphexec-example-gates" / "src"))
    gates = pytest.importorskip("graphexec_example_gates.gates")
    for cls in (gates.Softplus, gates.GELU, gates.SiLU):
        regmod.registry().add(regmod.GateInfo(cls.name, cls.version, cls, 1,
                                              "graphexec-example-gates", "0.1.0", __name__))
    return gates


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_plugin_gates_with_the_hook_export_as_standard_ops(example_gates, opset, beta):
    ort = pytest.importorskip("onnxruntime")
    if opset > onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx does not know this opset")
    b = gx.GraphBuilder("plugins")
    x = b.input("x", shape=(None, 3), dtype="float32")
    s = b.op("softplus", x, name="sp", beta=beta)
    ge = b.op("gelu", s, name="ge")
    b.output(b.op("silu", ge, name="si"), "y")
    b.output(ge, "ge")
    g = b.build()
    model = export_onnx(g, opset=opset)
    domains = {n.op_type: n.domain for n in model.graph.node}
    assert domains["Softplus"] == "" and domains["silu"] == "graphexec.graphexec_example_gates"
    assert ("Gelu" in domains) == (opset >= 20)
    # onnxruntime runs the standard part: the model up to the gelu
    part = export_onnx(g, outputs=["ge"], opset=opset)
    assert {n.domain for n in part.graph.node} == {""}
    feed = {"x": np.random.default_rng(0).normal(size=(4, 3)).astype("float32") * 3}
    sess = ort.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, feed)[0], gx.run(g, feed, outputs=["ge"])["ge"],
                               rtol=1e-5, atol=1e-6)


def test_a_hook_that_computes_nothing_is_named(example_gates, monkeypatch):
    monkeypatch.setattr(example_gates.GELU, "onnx_export",
                        staticmethod(lambda em, attrs, ins, out, dt: None))
    b = gx.GraphBuilder("bad_hook")
    b.output(b.op("gelu", b.input("x", shape=(None, 3)), name="ge"), "y")
    with pytest.raises(OnnxExportError, match=r"node 'ge' \(gelu\): expected the onnx_export hook "
                                              r"of 'graphexec-example-gates' to end with a node "
                                              r"computing 'ge', found no node"):
        export_onnx(b.build())
