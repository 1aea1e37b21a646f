"""Bad input at the API and the CLI: each a clear error naming what and where; NaN and Inf are
allowed (and reported by ``graphexec check``); untrusted text is never printed raw."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import graphexec as gx
from graphexec.cli.main import main


def net(w: np.ndarray | None = None) -> gx.Graph:
    """scores = x @ W + b for x (N, 3), W (3, 2); loss = softmax_cross_entropy(scores, y)."""
    b = gx.GraphBuilder("net", metadata={"note": "two lines\nand a\ttab"})
    x, y = b.input("x", shape=(None, 3)), b.input("y", shape=(None,), dtype="int64")
    W = b.param("W", np.arange(6.0).reshape(3, 2) / 10 if w is None else w)
    scores = b.op("affine", x, W, b.param("b", np.zeros(2)), name="scores")
    b.output(scores, "scores")
    b.output(b.op("softmax_cross_entropy", scores, y, name="ce"), "loss")
    return b.build()


X = np.ones((4, 3))
Y = np.array([0, 1, 1, 0])


def forward_error(**feed) -> str:
    with pytest.raises(gx.GraphError) as info:
        gx.Executor(net()).forward(**feed)
    return str(info.value)


# ---------------------------------------------------------------------------- API: inputs
@pytest.mark.parametrize("feed, message", [
    ({"x": X}, r"missing input 'y'; pass it as y=\.\.\. \(the graph's inputs are \['x', 'y'\]\)"),
    ({}, r"missing input 'x'"),
    ({"x": X, "y": Y, "z": 1.0}, r"unknown input 'z'; the graph's inputs are \['x', 'y'\]"),
    ({"x": np.ones((4, 2)), "y": Y}, (r"input 'x' expects shape \(None, 3\) \(None = any size\), "
                                    r"got \(4, 2\)")),
    ({"x": np.ones(3), "y": Y}, r"input 'x' expects shape \(None, 3\).*got \(3,\)"),
    ({"x": X, "y": np.zeros((4, 1), int)}, r"input 'y' expects shape \(None,\).*got \(4, 1\)"),
    ({"x": X.astype(np.float32), "y": Y}, (r"input 'x' expects float64, got a float32 array; "
                                          r"convert it with \.astype\('float64'\)")),
    ({"x": X, "y": Y.astype(float)}, r"input 'y' expects integers \(int64\), got float64"),
    ({"x": "abc", "y": Y}, r"input 'x' must be numeric \(float64\), got <U3 data"),
    ({"x": [[1, "a", 2]], "y": Y}, r"input 'x' must be numeric"),
    ({"x": {"a": 1}, "y": Y}, r"input 'x' must be numeric"),
    ({"x": None, "y": Y}, r"input 'x' must be numeric"),
    ({"x": [[1, 2, 3], [4, 5]], "y": Y}, r"input 'x': cannot read list as an array"),
    ({"x": np.array([[1, 2, 3]], dtype=object), "y": Y}, r"input 'x' must be numeric"),
    ({"x": X, "y": np.array(["a", "b", "c", "d"])}, r"input 'y' must be numeric"),
])
def test_bad_inputs_name_the_input_and_the_problem(feed, message):
    assert re.search(message, forward_error(**feed)), forward_error(**feed)


def test_python_numbers_and_lists_are_converted():
    out = gx.Executor(net()).forward(x=[[1, 2, 3]], y=[1])
    assert out["scores"].dtype == np.float64 and out["scores"].shape == (1, 2)


def test_nan_and_inf_in_inputs_are_allowed_and_propagate():
    x = X.copy()
    x[0, 0], x[1, 1] = np.nan, np.inf
    with np.errstate(all="ignore"):
        out = gx.run(net(), x=x, y=Y)
    assert np.isnan(out["scores"][0]).all() and not np.isfinite(out["scores"][1]).all()
    assert np.isfinite(out["scores"][2:]).all()


def test_nan_in_weights_loads_and_runs(tmp_path):
    w = np.arange(6.0).reshape(3, 2)
    w[0, 0], w[1, 1] = np.nan, -np.inf
    path = tmp_path / "nan.gx"
    gx.save(net(w), path)
    g = gx.load(path)
    assert np.isnan(g.params["W"][0, 0]) and g.params["W"][1, 1] == -np.inf
    with np.errstate(all="ignore"):
        assert np.isnan(gx.run(g, x=X, y=Y)["scores"][:, 0]).all()


@pytest.mark.parametrize("call, message", [
    (lambda ex: ex.backward(), r"backward\(\) needs a forward\(\) first"),
    (lambda ex: (ex.forward(x=X, y=Y), ex.backward(), ex.backward()), r"needs a forward\(\) first"),
    (lambda ex: (ex.forward(x=X, y=Y), ex.backward({"nope": 1.0})),
     r"cannot seed 'nope': it is not an output computed by the last forward\(\)"),
    (lambda ex: (ex.forward(x=X, y=Y), ex.backward({"scores": np.ones((2, 2))})),
     r"seed for 'scores' has shape \(2, 2\); expected \(4, 2\)"),
    (lambda ex: (ex.forward(x=X, y=Y), ex.backward(wrt=["y"])),
     r"cannot take a gradient with respect to 'y': it is not a float input or parameter"),
    (lambda ex: ex.forward(x=X, y=Y, outputs=["nope"]),
     r"graph 'net' has no output 'nope'; its outputs are \['scores', 'loss'\]"),
])
def test_executor_misuse_is_a_graph_error(call, message):
    with pytest.raises(gx.GraphError, match=message):
        call(gx.Executor(net()))


def test_labels_out_of_range_name_the_node():
    with pytest.raises(gx.GraphError, match=r"node 'ce' \(softmax_cross_entropy\) failed in forward"):
        gx.run(net(), x=X, y=np.array([0, 1, 7, 0]))


# ---------------------------------------------------------------------------- API: building, saving
def test_builder_errors_name_the_node():
    b = gx.GraphBuilder("g")
    x = b.input("x")
    with pytest.raises(gx.GraphError, match=r"node 'leaky_relu_0' \(leaky_relu\): bad attribute "
                                            r"'alpha'"):
        b.op("leaky_relu", x, alpha="steep")
    with pytest.raises(gx.UnknownOpError, match=r"op 'frobnicate' version 1 is not provided"):
        b.op("frobnicate", x)
    with pytest.raises(gx.GraphError, match=r"dtype 'complex64' is not supported"):
        b.input("h", dtype="complex64")


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g.params.__setitem__("W", np.zeros((3, 2), np.complex64)),
     r"cannot save parameter 'W': its dtype is complex64"),
    (lambda g: g.params.__setitem__("W", np.array([[object()]])),
     r"cannot save parameter 'W': its dtype is object"),
    (lambda g: g.metadata.__setitem__("note", "\x1b[31mred"),
     r"cannot save graph 'net': metadata\.note: String should match pattern"),
    (lambda g: g.metadata.__setitem__("bad key", "v"),
     r"cannot save graph 'net': metadata\.'bad key'\.\[key\]: String should match pattern"),
    (lambda g: setattr(g, "name", "a/b"), r"cannot save graph 'a/b': name: String should match"),
])
def test_unsavable_graphs_raise_graph_error_naming_the_value(mutate, message, tmp_path):
    g = net()
    mutate(g)
    with pytest.raises(gx.GraphError, match=message) as info:
        gx.dumps(g)
    assert str(info.value).isprintable()
    with pytest.raises(gx.GraphError):
        gx.save(g, tmp_path / "g.gx")
    assert list(tmp_path.iterdir()) == []


def test_big_endian_parameters_are_saved_little_endian():
    g = net()
    w = np.arange(6.0).reshape(3, 2).astype(">f8")
    g.params["W"] = w
    h = gx.loads(gx.dumps(g))
    assert h.params["W"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(h.params["W"], w)
    assert gx.dumps(h) == gx.dumps(g)


def test_loads_of_non_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        gx.loads("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- training hyperparameters
def optimizers():
    import graphexec.optim as optim

    return optim


@pytest.mark.parametrize("make, message", [
    (lambda o: o.SGD(lr=0), r"lr=0 is out of range: must be in \(0, inf\)"),
    (lambda o: o.SGD(lr=-0.1), r"lr=-0\.1 is out of range"),
    (lambda o: o.SGD(lr=float("nan")), r"lr=nan is out of range"),
    (lambda o: o.SGD(lr=float("inf")), r"lr=inf is out of range"),
    (lambda o: o.SGD(lr="fast"), r"lr must be a number"),
    (lambda o: o.SGD(lr=0.1, momentum=1.5), r"momentum=1\.5 is out of range"),
    (lambda o: o.Adam(lr=0), r"lr=0 is out of range"),
    (lambda o: o.RMSProp(lr=-1), r"lr=-1 is out of range"),
])
def test_bad_optimizer_hyperparameters(make, message):
    optim = optimizers()
    with pytest.raises(optim.OptimError, match=message) as info:
        make(optim)
    assert isinstance(info.value, gx.GraphexecError)


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
    ({"epochs": -3}, r"epochs must be an integer >= 1, got -3"),
    ({"epochs": 1.5}, r"epochs must be an integer >= 1, got 1\.5"),
    ({"epochs": 1, "batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
])
def test_bad_fit_settings(kw, message):
    optim = optimizers()
    import graphexec.train as train

    g = gx.nn.mlp([2, 4, 3], seed=0)
    X2, y2 = np.zeros((8, 2)), np.zeros(8, dtype=np.int64)
    with pytest.raises(train.TrainingError, match=message) as info:
        gx.fit(g, X2, y2, optimizer=optim.SGD(lr=0.1), **{"batch_size": 4, **kw})
    assert isinstance(info.value, gx.GraphexecError)


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.gx"
    gx.save(net(), path)
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_line(err: str, pattern: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert err[:-1].isprintable(), repr(err)
    assert re.search(pattern, err), err


@pytest.mark.parametrize("args, pattern", [
    (["-i", "x=[[1,2,3]]"], r"missing input 'y'"),
    (["-i", "x=[[1,2,3]]", "-i", "y=[0]", "-i", "z=1"], r"unknown input 'z'"),
    (["-i", "x=[[1,2]]", "-i", "y=[0]"], r"input 'x' expects shape \(None, 3\)"),
    (["-i", "x=abc", "-i", "y=[0]"], r"-i x: 'abc' is not a JSON number or list"),
    (["-i", 'x="str"', "-i", "y=[0]"], r"-i x: .* is not a JSON number or list"),
    (["-i", "x"], r"-i expects NAME=VALUE, got 'x'"),
    (["-i", "x=@missing.npy", "-i", "y=[0]"], r"-i x: cannot read 'missing\.npy' as \.npy"),
    (["-i", "x=[[1,2,3]]", "-i", "y=[0.5]"], r"input 'y' expects integers"),
    (["-i", "x=[[1,\"a\",3]]", "-i", "y=[0]"], r"input 'x' must be numeric"),
])
def test_cli_run_bad_input_is_one_line_exit_2(args, pattern, model, capsys):
    code, out, err = cli(capsys, "run", model, *args)
    assert code == 2 and out == ""
    assert_one_clean_line(err, pattern)


def test_cli_rejects_pickled_npy(model, tmp_path, capsys):
    bad = tmp_path / "obj.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = cli(capsys, "run", model, "-i", f"x=@{bad}", "-i", "y=[0]")
    assert code == 2
    assert_one_clean_line(err, r"cannot read .* as \.npy: .*allow_pickle")


def test_cli_run_with_nan_input_prints_nan(model, capsys):
    code, out, _ = cli(capsys, "run", model, "-i", "x=[[NaN, 1, 2]]", "-i", "y=[0]", "--json")
    assert code == 0
    assert json.loads(out)["outputs"]["scores"] == [["nan", "nan"]]


def test_cli_check_reports_nonfinite_weights(tmp_path, capsys):
    w = np.arange(6.0).reshape(3, 2)
    w[2, 1] = np.inf
    path = tmp_path / "inf.gx"
    gx.save(net(w), path)
    code, out, err = cli(capsys, "check", path)
    assert code == 0 and err == ""
    assert "warning: parameters with NaN or Inf: W" in out
    code, out, _ = cli(capsys, "check", path, "--json")
    assert code == 0 and json.loads(out)["nonfinite_params"] == ["W"]
    gx.save(net(), path)
    code, out, _ = cli(capsys, "check", path)
    assert code == 0 and "warning" not in out


@pytest.mark.parametrize("case", ["escape in metadata key", "escape in attribute key",
                                  "terminal escape in name", "cycle", "unknown op from markup dist",
                                  "deep nesting", "invalid utf-8"])
@pytest.mark.parametrize("command", ["info", "run", "check"])
def test_cli_hostile_file_is_one_clean_line(case, command, tmp_path, capsys):
    from test_hostile_corpus import CASES

    path = tmp_path / "bad.gx"
    path.write_bytes(CASES[case][0]())
    code, out, err = cli(capsys, command, path)
    if command == "info" and case in ("cycle", "unknown op from markup dist"):
        assert code == 0  # info reads the header only; graph rules are not its business
        assert all(line.isprintable() for line in out.splitlines()), out
        return
    assert code == 2 and out == ""
    # file errors name the file; an UnknownOpError names the op, its version and distribution
    assert_one_clean_line(err, r"bad\.gx" if "unknown op" not in case else r"op 'zz' version 1")


def test_cli_info_never_prints_raw_control_characters(model, capsys):
    code, out, _ = cli(capsys, "info", model)
    assert code == 0
    assert all(line.isprintable() for line in out.splitlines()), out
    code, out, _ = cli(capsys, "info", model, "--json")
    assert code == 0 and all(line.isprintable() for line in out.splitlines())
    assert json.loads(out)["metadata"] == {"note": "two lines\nand a\ttab"}


def test_cli_missing_file_and_directory(tmp_path, capsys):
    for target in (tmp_path / "missing.gx", tmp_path):
        for command in ("info", "run", "check"):
            code, out, err = cli(capsys, command, target)
            assert code == 2 and out == ""
            assert_one_clean_line(err, r"cannot open|is a directory, not a regular file")


@pytest.mark.parametrize("args, pattern", [
    (["--epochs", "0"], r"epochs must be an integer >= 1, got 0"),
    (["--epochs", "2", "--lr", "0"], r"lr=0(\.0)? is out of range"),
    (["--epochs", "2", "--lr", "-1"], r"lr=-1(\.0)? is out of range"),
])
def test_cli_train_bad_hyperparameters(args, pattern, tmp_path, capsys):
    path = tmp_path / "m.gx"
    gx.save(gx.nn.mlp([2, 4, 3], seed=0), path)
    code, _out, err = cli(capsys, "train", path, "--data", "spiral", "--no-progress",
                         "-o", tmp_path / "out.gx", *args)
    assert code == 2
    assert_one_clean_line(err, pattern)
    assert not (tmp_path / "out.gx").exists()


# ---------------------------------------------------------------------------- one definition of text
def test_onnx_text_with_c1_controls_imports_into_something_a_file_can_hold(tmp_path):
    """The importer's cleaner let U+0080-U+009F through and the schema refused them: the import
    succeeded and its save failed. Both now use ``schema.clean_text``."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from graphexec.onnx_io import import_onnx

    x = helper.make_tensor_value_info("x\x9b[2J", TensorProto.DOUBLE, [2])
    y = helper.make_tensor_value_info("y\x85", TensorProto.DOUBLE, [2])
    graph = helper.make_graph([helper.make_node("Neg", ["x\x9b[2J"], ["y\x85"])], "g\x9b", [x], [y],
                              doc_string="evil \x9b2J and \x1b]0;t\x07 text\tok\nok")
    model = helper.make_model(graph, producer_name="p\x90", opset_imports=[helper.make_opsetid("", 17)])
    g = import_onnx(model)
    assert g.metadata["description"] == "evil  2J and  ]0;t  text\tok\nok"
    assert g.metadata["onnx_producer"].startswith("p ")
    gx.save(g, tmp_path / "m.gx")  # used to raise: "String should match pattern"
    back = gx.load(tmp_path / "m.gx")
    assert back.metadata == g.metadata
    np.testing.assert_array_equal(gx.Executor(back).forward(**{back.inputs[0]: np.ones(2)})[
        back.outputs[0]], -np.ones(2))


def test_clean_text_output_is_always_valid_text():
    from pydantic import TypeAdapter

    from graphexec.fileformat.schema import Text, clean_text

    every = "".join(map(chr, range(0x200))) + "\N{GRINNING FACE}"
    assert TypeAdapter(Text).validate_python(clean_text(every)) == clean_text(every)
    assert clean_text("a\tb\nc") == "a\tb\nc"


def test_a_checkpoint_field_holding_a_huge_list_gives_one_short_line():
    """It gave a 600 KB line: the message quoted the whole list."""
    from graphexec.checkpoint import read_spec
    from graphexec.header import Training

    with pytest.raises(gx.GraphFileError) as info:
        read_spec(Training(spec={"epochs": list(range(200_000))}))
    message = str(info.value)
    assert message.startswith("training section: spec 'epochs' must be")
    assert len(message) <= 1000 and message.endswith("characters in all]")
