"""The lecture's worked examples, from the shipped files, to 1e-12 (seed README sections 2-5)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.cli.main import main
from graphexec.graph import NodeDef, make_graph

from conftest import MODELS, ROOT


def _recipes():
    """scripts/model_recipes.py, loaded by path (it is a script's helper, not in the package)."""
    spec = importlib.util.spec_from_file_location("model_recipes", ROOT / "scripts" / "model_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed_models = _recipes().seed_models

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(seed_models()))
def test_shipped_models_are_reproduced_byte_for_byte(name):
    assert gx.dumps(seed_models()[name]) == (MODELS / name).read_bytes()


def test_add_mul_forward_backward():
    ex = gx.Executor(gx.load(MODELS / "add_mul.gx"))
    out = ex.forward(x=-2.0, y=5.0, z=-4.0)
    assert out["f"] == -12.0
    g = ex.backward()
    assert (g["x"], g["y"], g["z"]) == (-4.0, -4.0, 3.0)


def test_add_mul_intermediate_q_and_its_gradient():
    """q = x + y = 3 on the way forward; dq = z = -4 on the way back, copied by the add gate to
    x and y. q is read from the shipped graph itself, given an output on its node."""
    g = gx.load(MODELS / "add_mul.gx")
    assert [(n.name, n.op, list(n.inputs)) for n in g.nodes][0] == ("q", "add", ["x", "y"])
    defs = [NodeDef(n.name, n.op, n.inputs, dict(n.attrs), n.version) for n in g.nodes]
    ex = gx.Executor(make_graph(g.name, g.input_decls, g.params, defs, {**g.output_map, "q": "q"}))
    out = ex.forward(x=-2.0, y=5.0, z=-4.0)
    assert (out["q"], out["f"]) == (3.0, -12.0)
    dq = ex.backward({"f": 1.0, "q": 0.0})  # seed only f: what flows into q is z
    assert (dq["x"], dq["y"], dq["z"]) == (-4.0, -4.0, 3.0)
    ex.forward(x=-2.0, y=5.0, z=-4.0)
    only_q = ex.backward({"f": 0.0, "q": 1.0})  # dq/dx = dq/dy = 1, and z does not touch q
    assert (only_q["x"], only_q["y"], only_q["z"]) == (1.0, 1.0, 0.0)


def test_add_mul_sum_dl_da_is_one():
    ex = gx.Executor(gx.load(MODELS / "add_mul_sum.gx"))
    out = ex.forward(a=1.0, b=2.0, c=3.0, d=4.0)
    assert out["L"] == 15.0
    g = ex.backward()
    assert g["a"] == 1.0 and g["b"] == 1.0 and g["c"] == 4.0 and g["d"] == 3.0


def test_sigmoid_neuron():
    ex = gx.Executor(gx.load(MODELS / "sigmoid_neuron.gx"))
    f = ex.forward(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0)["f"]
    np.testing.assert_allclose(f, 1 / (1 + np.exp(-1.0)), **TOL)
    g = ex.backward()
    ddot = f * (1 - f)  # 0.196612
    np.testing.assert_allclose(ddot, 0.19661193324148185, **TOL)
    np.testing.assert_allclose([g["x0"], g["x1"]], [2 * ddot, -3 * ddot], **TOL)
    np.testing.assert_allclose([g["w0"], g["w1"], g["w2"]], [-ddot, -2 * ddot, ddot], **TOL)
    np.testing.assert_allclose([g["x0"], g["x1"]], [0.393224, -0.589836], atol=1e-6)


def test_wx_norm():
    graph = gx.load(MODELS / "wx_norm.gx")
    ex = gx.Executor(graph)
    out = ex.forward(x=[0.2, 0.4])
    np.testing.assert_allclose(out["f"], 0.116, **TOL)
    g = ex.backward()
    np.testing.assert_allclose(g["W"], [[0.088, 0.176], [0.104, 0.208]], **TOL)
    np.testing.assert_allclose(g["x"], [-0.112, 0.636], **TOL)
    assert g["W"].shape == graph.params["W"].shape  # a gradient is shaped like its variable


def test_numerical_gradient_as_in_the_review():
    # (f(x+h) - f(x)) / h approximates the analytic gradient (seed README section 1)
    graph = gx.load(MODELS / "wx_norm.gx")
    x = np.array([0.2, 0.4])
    h = 1e-5
    f0 = gx.run(graph, x=x)["f"]
    num = (gx.run(graph, x=x + [0, h])["f"] - f0) / h
    ex = gx.Executor(graph)
    ex.forward(x=x)
    assert abs(num - ex.backward()["x"][1]) < 1e-4


def test_cli_json_in_process(capsys):
    code = main(["run", str(MODELS / "add_mul.gx"), "-i", "x=-2", "-i", "y=5", "-i", "z=-4",
                 "--grad", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "outputs": {"f": -12.0}, "grads": {"x": -4.0, "y": -4.0, "z": 3.0}}


def test_cli_wx_norm_in_process(capsys):
    assert main(["run", str(MODELS / "wx_norm.gx"), "-i", "x=[0.2, 0.4]", "--grad", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(res["outputs"]["f"], 0.116, **TOL)
    np.testing.assert_allclose(res["grads"]["W"], [[0.088, 0.176], [0.104, 0.208]], **TOL)
    np.testing.assert_allclose(res["grads"]["x"], [-0.112, 0.636], **TOL)


def test_cli_sigmoid_neuron_subprocess():
    cmd = [sys.executable, "-m", "graphexec", "run", str(MODELS / "sigmoid_neuron.gx"),
           "-i", "w0=2", "-i", "w1=-3", "-i", "w2=-3", "-i", "x0=-1", "-i", "x1=-2", "--grad", "--json"]
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    np.testing.assert_allclose(res["outputs"]["f"], 0.7310585786300049, **TOL)
    np.testing.assert_allclose(res["grads"]["w0"], -0.19661193324148185, **TOL)


def test_shipped_models_load_from_anywhere(tmp_path, monkeypatch):
    """Before: gx.load("models/add_mul.gx") worked only from the repository's root."""
    monkeypatch.chdir(tmp_path)
    assert gx.examples.names() == sorted(p.stem for p in MODELS.glob("*.gx"))
    g = gx.examples.load("add_mul")
    assert gx.run(g, x=-2.0, y=5.0, z=-4.0)["f"] == -12.0
    for name in gx.examples.names():  # one copy of the bytes: the package's are the repo's
        assert gx.examples.read_bytes(name) == (MODELS / f"{name}.gx").read_bytes()
    assert gx.examples.read_bytes("wx_norm.gx") == (MODELS / "wx_norm.gx").read_bytes()
    with pytest.raises(gx.GraphexecError, match=r"no shipped model 'nope'; expected one of \['add_mul'"):
        gx.examples.load("nope")


def test_the_library_does_not_import_the_recipes():
    code = "import sys, graphexec as gx; gx.examples.load('add_mul'); print('model_recipes' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
