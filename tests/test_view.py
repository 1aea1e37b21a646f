"""The viewer's data and page, without a browser (tests/test_view_browser.py drives the page)."""

import html
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
import graphexec.draw as drawmod
from graphexec.cli.main import main
from graphexec.gradcheck import random_inputs
from graphexec.viewer import Page, view
from graphexec.viewer.page import embed_json
from graphexec.viewer.scene import groups, scene
from graphexec.viewer.steps import story, text

from conftest import MODELS

ADD_MUL = {"x": -2.0, "y": 5.0, "z": -4.0}
NEURON = {"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}
HAS_DOT = shutil.which("dot") is not None


def _rules(data):
    return [r["text"] for st in data["steps"] for r in st.get("rules", [])]


def _final_sums(data):
    """The last running sum shown at each value: the gradient the page ends with."""
    out = {}
    for st in data["steps"]:
        for r in st.get("rules", []):
            out[r["acc"]["value"]] = {**r["acc"], "sum": r["acc"]["sum"] or r["grad"]}
    return out


# ---------------------------------------------------------------------------- the lecture's numbers
def test_add_mul_story_reads_like_the_lecture():
    data = story(gx.load(MODELS / "add_mul.gx"), ADD_MUL)
    assert [st["phase"] for st in data["steps"]] == ["start", "forward", "forward", "backward", "backward"]
    assert [st.get("eq") for st in data["steps"][1:3]] == ["q = x + y = −2 + 5 = 3",
                                                         "f = q × z = 3 × (−4) = −12"]
    assert data["steps"][3]["seed"] == "∂f/∂f = 1"
    assert _rules(data) == [
        "∂f/∂q = ∂f/∂f · ∂f/∂q = 1 × (−4) = −4",
        "∂f/∂z = ∂f/∂f · ∂f/∂z = 1 × 3 = 3",
        "∂f/∂x = ∂f/∂q · ∂q/∂x = −4 × 1 = −4",
        "∂f/∂y = ∂f/∂q · ∂q/∂y = −4 × 1 = −4",
    ]
    assert {k: v["sum"]["text"] for k, v in _final_sums(data).items()} == {
        "q": "−4", "z": "3", "x": "−4", "y": "−4"}


def test_sigmoid_neuron_local_gradient_is_the_gates_own():
    data = story(gx.load(MODELS / "sigmoid_neuron.gx"), NEURON)
    back = [st for st in data["steps"] if st["phase"] == "backward"]
    first = back[0]["rules"][0]
    assert first["local"]["text"] == "0.1966"  # σ(1)(1 − σ(1)), from Sigmoid.backward with dout 1
    assert first["text"] == "∂f/∂dot = ∂f/∂f · ∂f/∂dot = 1 × 0.1966 = 0.1966"
    sums = {k: v["sum"]["text"] for k, v in _final_sums(data).items()}
    assert [sums[k] for k in ("x0", "x1", "w0", "w1", "w2")] == [
        "0.3932", "−0.5898", "−0.1966", "−0.3932", "0.1966"]
    assert data["steps"][5]["eq"] == "f = σ(dot) = σ(1) = 0.7311"


@pytest.mark.parametrize("model", sorted(p.name for p in MODELS.glob("*.gx")))
def test_every_number_is_the_executors(model):
    """The page's values and final gradients agree, to the digit shown, with Executor runs."""
    g = gx.load(MODELS / model)
    feed = random_inputs(g, seed=3)
    data = story(g, feed)
    ex = gx.Executor(g)
    outs = ex.forward(feed)
    grads = ex.backward({data["gradOf"]: 1.0})
    for k, v in outs.items():
        assert data["values"][g.output_map[k]]["text"] == text(v)
    sums = _final_sums(data)
    for k, v in grads.items():
        assert sums[k]["sum"]["text"] == text(v), k
        assert sums[k]["n"] == sums[k]["of"]


def test_fan_out_sums_accumulate_in_the_executors_order():
    b = gx.GraphBuilder("fan")
    x = b.input("x", shape=())
    sq = b.op("mul", x, x, name="sq")
    b.output(b.op("add", sq, x, name="f"), "f")
    g = b.build()
    data = story(g, {"x": 3.0})
    steps = [(r["src"], r["acc"]["n"], r["acc"]["of"], r["acc"]["parts"])
             for st in data["steps"] for r in st.get("rules", [])]
    assert steps == [("sq", 1, 1, None), ("x", 1, 3, ["1"]), ("x", 2, 3, ["1", "3"]),
                     ("x", 3, 3, ["1", "3", "3"])]
    assert _final_sums(data)["x"]["sum"]["text"] == "7"  # 2x + 1
    assert data["fanout"] == {"x": 3}


def test_tensor_steps_show_shape_stats_and_a_heat_map():
    g = gx.load(MODELS / "digits_mlp.gx")
    rng = np.random.default_rng(0)
    data = story(g, {"x": rng.standard_normal((5, 64)), "y": np.arange(5)})
    h1 = data["values"]["h1"]
    assert h1["shape"] == [5, 100] and set(h1["stats"]) == {"min", "max", "mean"}
    cells = h1["heat"]["cells"]
    assert len(cells) == 5 and len(cells[0]) == 24
    node = data["nodes"][0]
    assert (node["op"], node["nParams"], node["params"]) == ("affine", 6500, {"W1": 6400, "b1": 100})
    assert node["doc"].startswith("z = x @ W + b") and node["dist"] == "graphexec"
    assert data["gradOf"] == "loss"  # the first float output, not scores


def test_grad_of_picks_the_output():
    g = gx.load(MODELS / "digits_mlp.gx")
    feed = {"x": np.zeros((2, 64)), "y": np.array([1, 2])}
    data = story(g, feed, "scores")
    assert data["steps"][-1]["rules"][0]["text"].startswith("∂scores/∂x")
    with pytest.raises(gx.GraphError, match="not a float output"):
        story(g, feed, "nope")


# ---------------------------------------------------------------------------- the page
def test_page_is_self_contained_with_a_strict_csp(tmp_path):
    page = view(gx.load(MODELS / "add_mul.gx"), ADD_MUL, tmp_path / "p.html")
    text_ = (tmp_path / "p.html").read_text("utf-8")
    assert text_ == page.html and page.path == str(tmp_path / "p.html")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text_).group(1)
    assert "default-src 'none'" in csp and "unsafe" not in csp
    import base64
    import hashlib
    for body in re.findall(r"<script>(.*?)</script>", text_, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    style = re.search(r"<style>(.*?)</style>", text_, re.DOTALL).group(1)
    assert base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() in csp
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text_)  # nothing to load
    data = json.loads(re.search(r'<script type="application/json" id="gx-data">(.*?)</script>',
                                text_, re.DOTALL).group(1))
    assert data["title"] == "add_mul" and data["views"][0]["nodes"]


def test_embedded_json_cannot_close_its_script():
    hostile = {"s": "</script><script>alert(1)</script><!-- & \u2028"}
    out = embed_json(hostile)
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == hostile


def test_hostile_description_stays_data():
    b = gx.GraphBuilder("evil", metadata={"description": "</script><script>alert(1)</script>"})
    b.output(b.op("neg", b.input("x", shape=())), "y")
    page = view(b.build(), {"x": 1.0})
    assert page.html.count("</script>") == page.html.count("<script")  # only the page's own


def test_repr_html_is_an_iframe_holding_the_page():
    page = view(gx.load(MODELS / "add_mul.gx"), ADD_MUL)
    frame = page._repr_html_()
    assert frame.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in frame
    inner = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert html.unescape(inner) == page.html


def test_missing_inputs_are_random_and_the_page_says_so():
    page = view(gx.load(MODELS / "digits_mlp.gx"))
    assert "random values (seed 0) for x, y" in page.html


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz' dot is not installed")
def test_layout_is_graphvizs_when_dot_is_installed():
    page_data = story(gx.load(MODELS / "add_mul.gx"), ADD_MUL)
    views = scene(gx.load(MODELS / "add_mul.gx"), page_data)
    lay = views[0]["layout"]
    assert set(lay["nodes"]) == {n["id"] for n in views[0]["nodes"]}
    assert set(lay["edges"]) == {e["id"] for e in views[0]["edges"]}
    xs = {n["label"]: lay["nodes"][n["id"]][0] for n in views[0]["nodes"]}
    assert xs["x"] == xs["y"] == xs["z"] < xs["+"] < xs["×"] < xs["f"]  # inputs left, rankdir=LR
    assert "var dagre=" not in view(gx.load(MODELS / "add_mul.gx"), ADD_MUL).html


def test_without_dot_the_page_carries_dagre_and_its_licence(monkeypatch):
    monkeypatch.setattr(drawmod.shutil, "which", lambda name: None)
    assert drawmod.dot_layout("digraph { a -> b }") is None
    page = view(gx.load(MODELS / "add_mul.gx"), ADD_MUL)
    assert "var dagre=" in page.html and "Permission is hereby granted" in page.html
    assert "sourceMappingURL" not in page.html
    with pytest.raises(drawmod.DrawError, match="needs Graphviz' 'dot'"):
        view(gx.load(MODELS / "add_mul.gx"), ADD_MUL, layout="dot")
    with pytest.raises(gx.GraphError, match="expected one of auto, dot, dagre"):
        view(gx.load(MODELS / "add_mul.gx"), ADD_MUL, layout="neato")


# ---------------------------------------------------------------------------- large graphs
def deep_graph(n_layers: int, seed: int = 0) -> gx.Graph:
    """A deep residual net of tanh layers, a parameter each: 3 gates a layer (4 every 7th)."""
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder("deep")
    h, s = b.input("x", shape=(2, 3)), b.input("s", shape=())
    for i in range(n_layers):
        w = b.param(f"W{i}", rng.standard_normal((3, 3)) * 0.5)
        h = b.op("tanh", b.op("add", b.op("matmul", h, w, name=f"m{i}"), h, name=f"r{i}"),
                 name=f"t{i}")
        if i % 7 == 0:  # one scalar read by many layers: a wide fan-out
            h = b.op("mul", h, s, name=f"u{i}")
    b.output(b.op("sum", h, name="loss"), "loss")
    return b.build()


def test_large_graphs_collapse_into_boxes_of_about_sqrt_n():
    g = deep_graph(600)
    n = len(g.nodes)
    assert n > 1800
    parts = groups(g)
    assert sorted(k for p in parts for k in p) == list(range(n))  # each gate in exactly one box
    cap = int(np.ceil(np.sqrt(n)))
    assert max(map(len, parts)) <= cap and len(parts) <= 3 * cap
    assert all(p == list(range(p[0], p[-1] + 1)) for p in parts)  # consecutive in executor order


def test_a_2000_gate_page_draws_boxes_and_every_wire(monkeypatch):
    monkeypatch.setattr(drawmod.shutil, "which", lambda name: None)  # dagre; dot is timed apart
    g = deep_graph(640)
    assert len(g.nodes) >= 2000
    feed = {"x": np.ones((2, 3)), "s": 0.9}
    data = story(g, feed)
    views = scene(g, data, use_dot=False)
    main_view, inner = views[0], views[1:]
    assert len(main_view["nodes"]) < 120
    drawn = [e["key"] for v in inner for e in v["edges"] if e["key"]]
    wires = [f"{k}:{i}" for k, node in enumerate(g.nodes) for i in range(len(node.inputs))]
    assert sorted(drawn) == sorted(wires)  # inside the boxes, every wire once


# ---------------------------------------------------------------------------- --check
@pytest.fixture
def bad_gate():
    class BadDouble(gx.Gate):
        """y = 2x.  Local gradient 2 (this one wrongly returns 3)."""
        name, version = "view_test_bad_double", 1

        def forward(self, ctx, x):
            return 2.0 * x

        def backward(self, ctx, dy):
            return (3.0 * dy,)

    gx.register_gate(BadDouble)  # tests/conftest.py's autouse fixture restores the registry
    yield BadDouble


def test_check_colours_the_failing_node(bad_gate):
    b = gx.GraphBuilder("bad")
    x = b.input("x", shape=(3,))
    d = b.op(bad_gate.name, b.op("tanh", x, name="t"), name="d")
    b.output(b.op("sum", d, name="f"), "f")
    page = view(b.build(), {"x": [0.1, 0.2, 0.3]}, check=True)
    data = json.loads(re.search(r'id="gx-data">(.*?)</script>', page.html, re.DOTALL).group(1))
    result = {n["name"]: n["check"]["result"] for n in data["nodes"]}
    assert result == {"t": "pass", "d": "fail", "f": "pass"}
    assert "FAILED" in data["checkSummary"]


# ---------------------------------------------------------------------------- API and CLI
def test_gx_view_is_the_function_even_after_importing_the_package():
    code = ("import graphexec.viewer.steps, graphexec as gx, graphexec.viewer as v; "
            "assert gx.view is v.view, gx.view; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() == "ok", done.stderr
    assert isinstance(gx.view(gx.load(MODELS / "add_mul.gx"), ADD_MUL), Page)


@pytest.mark.parametrize("model", sorted(p.name for p in MODELS.glob("*.gx")))
def test_cli_view_works_on_every_shipped_model(model, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["view", str(MODELS / model), "-o", str(out)]) == 0
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert capsys.readouterr().out.strip() == f"wrote {out}"


def test_cli_view_inputs_and_errors(tmp_path, capsys):
    out = tmp_path / "p.html"
    args = ["view", str(MODELS / "add_mul.gx"), "-o", str(out), "-i", "x=-2", "-i", "y=5", "-i", "z=-4"]
    assert main(args + ["--check"]) == 0
    assert "∂f/∂x = ∂f/∂q · ∂q/∂x = −4 × 1 = −4" in out.read_text("utf-8")
    capsys.readouterr()
    for bad, msg in ((["-o", str(tmp_path / "p.png")], "expected an .html file"),
                     (["-o", str(out), "--grad-of", "nope"], "not a float output"),
                     (["-o", str(out), "-i", "x=[1,2]"], "input 'x' expects shape ()")):
        assert main(["view", str(MODELS / "add_mul.gx")] + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1
    assert main(["view", str(tmp_path / "missing.gx"), "-o", str(out)]) == 2


def test_node_details_carry_attributes_and_shapes():
    b = gx.GraphBuilder("leaky")
    x = b.input("x", shape=(2, 2))
    b.output(b.op("sum", b.op("leaky_relu", x, alpha=0.1, name="a"), name="f"), "f")
    data = story(b.build(), {"x": [[1.0, -2.0], [3.0, -4.0]]})
    a = data["nodes"][0]
    assert (a["attrs"], a["inShapes"], a["outShape"], a["nParams"]) == ({"alpha": "0.1"}, [[2, 2]], [2, 2], 0)
    assert data["steps"][1]["eq"] == "a = leaky_relu(x)"
    assert data["values"]["a"]["text"] == "[[1, −0.2], [3, −0.4]]"
