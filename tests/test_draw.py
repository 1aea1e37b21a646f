"""Circuit drawings: the numbers on the wires (DOT text), folding, limits, escaping, rendering."""

import html
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec import draw
from graphexec.cli.main import main
from graphexec.draw import DrawError, format_value, render, to_dot

from conftest import MODELS, ROOT

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz' dot is not installed (apt-get install graphviz)")
ADD_MUL = {"x": -2.0, "y": 5.0, "z": -4.0}
NEURON = {"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}


def _text(label: str) -> list[str]:
    """The lines of an HTML-like DOT label, tags stripped, entities decoded."""
    return [html.unescape(re.sub(r"<[^>]+>", "", part)) for part in label.split("<BR/>")]


def names(dot: str) -> dict[str, str]:
    """DOT node id -> what it shows: a gate's node name, a leaf's name, 'out:NAME' for outputs."""
    out = {}
    for ident, label in re.findall(r"^  (\w+) \[.*?label=<(.*)>\];$", dot, re.M):
        lines = _text(label)
        out[ident] = lines[-1] if ident.startswith("n") else lines[0]
        if ident.startswith("o"):
            out[ident] = "out:" + lines[0]
    return out


def wires(dot: str) -> dict[tuple[str, str], list[str]]:
    """(source, destination) -> [value, gradient] as printed on the wire (green, red)."""
    ids = names(dot)
    out = {}
    for src, dst, label in re.findall(r'^  (\w+) -> (\w+) \[label=(<.*>|"")\];$', dot, re.M):
        out[(ids[src], ids[dst])] = _text(label[1:-1]) if label != '""' else []
    return out


def test_add_mul_shows_the_lecture_numbers():
    dot = to_dot(gx.load(MODELS / "add_mul.gx"), ADD_MUL, grad=True)
    assert wires(dot) == {
        ("x", "q"): ["-2", "-4"], ("y", "q"): ["5", "-4"],  # the add gate distributes -4
        ("q", "f"): ["3", "-4"], ("z", "f"): ["-4", "3"],  # the mul gate swaps: dq = z, dz = q
        ("f", "out:f"): ["-12", "1"],
    }
    assert "rankdir=LR" in dot and "{ rank=source; i0 i1 i2 }" in dot
    assert 'COLOR="#1a7f37">3<' in dot and 'COLOR="#c62828">-4<' in dot  # green value, red gradient


def test_sigmoid_neuron_numbers_to_four_digits():
    w = wires(to_dot(gx.load(MODELS / "sigmoid_neuron.gx"), NEURON, grad=True))
    assert w[("f", "out:f")] == ["0.7311", "1"]
    assert w[("dot", "f")] == ["1", "0.1966"]
    assert w[("x0", "w0x0")] == ["-1", "0.3932"] and w[("x1", "w1x1")] == ["-2", "-0.5898"]
    assert w[("w0", "w0x0")] == ["2", "-0.1966"] and w[("w1", "w1x1")] == ["-3", "-0.3932"]
    assert w[("w2", "dot")] == ["-3", "0.1966"]


def test_small_vectors_are_written_out():
    w = wires(to_dot(gx.load(MODELS / "wx_norm.gx"), {"x": [0.2, 0.4]}, grad=True))
    assert w[("q", "q2")] == ["[0.22, 0.26]", "[0.44, 0.52]"]
    assert w[("W", "q")] == ["[[0.1, 0.5], [-0.3, 0.8]]", "[[0.088, 0.176], [0.104, 0.208]]"]
    assert w[("x", "q")] == ["[0.2, 0.4]", "[-0.112, 0.636]"]
    assert w[("f", "out:f")] == ["0.116", "1"]


def test_fan_out_wires_carry_their_own_gradient_and_they_sum_to_the_executors():
    b = gx.GraphBuilder("fanout")
    x, y = b.input("x", shape=()), b.input("y", shape=())
    q = b.op("mul", x, y, name="q")
    b.output(b.op("add", b.op("max", q, x, name="m"), b.op("tanh", x, name="t"), name="f"), "f")
    g = b.build()
    feed = {"x": 0.7, "y": 1.5}
    tr = draw.trace(g, feed, grad=True)
    ex = gx.Executor(g)
    ex.forward(feed)
    want = ex.backward()
    for name in ("x", "y"):
        branches = [v for (node, i), v in tr.edge_grads.items()
                    if dict((n.name, n.inputs) for n in g.nodes)[node][i] == name]
        np.testing.assert_allclose(sum(branches), want[name], rtol=1e-12)
    assert len([k for k in tr.edge_grads if k[0] in ("q", "m", "t")]) == 5
    np.testing.assert_allclose(tr.edge_grads[("t", 0)], 1 - np.tanh(0.7) ** 2, rtol=1e-12)
    assert tr.edge_grads[("m", 1)] == 0.0  # the max gate routes everything to the larger input


@pytest.mark.parametrize("value, text", [
    (-12.0, "-12"), (0.7310585786, "0.7311"), (3, "3"), (-0.0, "0"), (1e-5, "1e-05"),
    (123456.0, "1.235e+05"), (np.float32(0.5), "0.5"), ([1.0, 2.5], "[1, 2.5]"),
    (np.arange(6.0).reshape(2, 3), "(2, 3): 0 … 5"), (np.full(7, 0.25), "(7,): all 0.25"),
    (np.zeros((0, 3)), "(0, 3)"), (np.array([True, False]), "[True, False]"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_tensors_by_shape_labels_without_gradient():
    b = gx.GraphBuilder("tensors")
    x = b.input("x", shape=(None, 3))
    labels = b.input("labels", shape=(None,), dtype="int64")
    W = b.param("W", np.linspace(-1, 1, 15).reshape(3, 5))
    scores = b.op("matmul", x, W, name="s")
    b.output(b.op("softmax_cross_entropy", scores, labels, name="loss"), "loss")
    x_val = np.linspace(-1, 1, 30).reshape(10, 3)
    w = wires(to_dot(b.build(), {"x": x_val, "labels": np.arange(10) % 5}, grad=True))
    assert w[("x", "s")][0] == "(10, 3): -1 … 1"
    assert re.fullmatch(r"-?[\d.e-]+ … -?[\d.e-]+", w[("x", "s")][1])  # the gradient: range only
    assert w[("labels", "loss")] == ["(10,): 0 … 4"]  # integer labels take no gradient


def test_structure_only_without_inputs():
    dot = to_dot(gx.load(MODELS / "wx_norm.gx"))
    assert "#1a7f37" not in dot and "give input values (-i NAME=VALUE)" in dot
    assert set(wires(dot)) == {("W", "q"), ("x", "q"), ("q", "q2"), ("q2", "f"), ("f", "out:f")}
    assert "parameter (2, 2)" in dot and "input (2,)" in dot and 'fillcolor="#fff4c2"' in dot


def test_grad_of_one_output_and_the_legend_says_which():
    b = gx.GraphBuilder("two")
    x = b.input("x", shape=(2,))
    s = b.op("mul", x, x, name="s")
    b.output(b.op("sum", s, name="loss"), "loss")
    b.output(s, "scores")
    g = b.build()
    assert "gradient of loss + Σscores" in to_dot(g, {"x": [1.0, 2.0]}, grad=True)
    dot = to_dot(g, {"x": [1.0, 2.0]}, grad=True, grad_of=["loss"])
    assert "gradient of loss (backward)" in dot
    assert wires(dot)[("x", "s")][1] == "[1, 2]"  # each of the two wires into x·x carries x
    with pytest.raises(gx.GraphError, match="cannot draw the gradient of 'nope'"):
        to_dot(g, {"x": [1.0, 2.0]}, grad=True, grad_of=["nope"])


def chain_graph(n_unary=9):
    b = gx.GraphBuilder("chain")
    h = b.input("x", shape=(None, 3))
    for i in range(n_unary):
        h = b.op(["tanh", "sigmoid", "exp"][i % 3], h, name=f"c{i}")
    b.output(b.op("mul", h, b.param("w", np.ones(3)), name="scaled"), "y")
    return b.build()


def test_long_chains_fold_into_one_box():
    dot = to_dot(chain_graph(9), {"x": np.ones((2, 3))}, grad=True)
    boxes = re.findall(r"^  n\d+ \[label=<(.*)>\];$", dot, re.M)
    assert len(boxes) == 2
    assert _text(boxes[0]) == ["9 gates", "tanh → sigmoid → … → exp", "c0 … c8"]
    assert wires(dot)[("c0 … c8", "scaled")][0] == "(2, 3): all 2.064"  # the chain's output
    short = to_dot(chain_graph(3))
    assert len(re.findall(r"^  n\d+ \[", short, re.M)) == 4  # a chain of 3 stays unfolded
    assert len(re.findall(r"^  n\d+ \[", to_dot(chain_graph(3), min_chain=2), re.M)) == 2


def test_node_limit_cuts_with_a_note():
    b = gx.GraphBuilder("big")
    x = b.input("x", shape=())
    h = x
    for i in range(150):
        h = b.op("add", h, x, name=f"a{i}")
    b.output(h, "out")
    dot = to_dot(b.build(), {"x": 1.0}, grad=True, max_nodes=30)
    assert len(re.findall(r"^  n\d+ \[", dot, re.M)) == 30
    assert "… 120 more gates not drawn" in dot and "the graph has 150 gates" in dot
    assert "n29 -> more [style=dashed];" in dot
    assert wires(dot)[("… 120 more gates not drawn", "out:out")] == ["151", "1"]


def test_every_label_is_escaped():
    b = gx.GraphBuilder('we<ird> & "name"', metadata={"description": "f = a < b & c > \"d\""})
    x = b.input("x&y", shape=())
    b.output(b.op("neg", x, name='n<1>"'), "o>ut")
    dot = to_dot(b.build(), {"x&y": 2.0}, grad=True)
    for raw in ('we<ird>', 'a < b', 'n<1>"', "x&y", "o>ut"):
        assert raw not in dot
    assert "we&lt;ird&gt; &amp; &quot;name&quot;" in dot and "n&lt;1&gt;&quot;" in dot
    assert wires(dot)[("x&y", 'n<1>"')] == ["2", "-1"]


@needs_dot
def test_dot_accepts_hostile_labels(tmp_path):
    b = gx.GraphBuilder('a"b{c}', metadata={"description": "]; digraph { x -> y } <>&"})
    b.output(b.op("exp", b.input("x", shape=()), name="e"), "out")
    render(b.build(), tmp_path / "h.svg", {"x": 0.0}, grad=True)
    svg = (tmp_path / "h.svg").read_text()
    assert "]; digraph { x &#45;&gt; y } &lt;&gt;&amp;" in svg and "a&quot;b{c}" in svg


@needs_dot
@pytest.mark.parametrize("model, feed", [("add_mul.gx", ADD_MUL), ("sigmoid_neuron.gx", NEURON)])
def test_png_and_svg_render(tmp_path, model, feed):
    g = gx.load(MODELS / model)
    render(g, tmp_path / "c.png", feed, grad=True)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    render(g, tmp_path / "c.svg", feed, grad=True)
    svg = (tmp_path / "c.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert ">&#45;12<" in svg or ">0.7311<" in svg  # Graphviz writes "-" as &#45;


def test_missing_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(DrawError) as e:
        render(gx.load(MODELS / "add_mul.gx"), tmp_path / "c.png", ADD_MUL)
    msg = str(e.value)
    assert "Graphviz' 'dot' program is not installed" in msg
    assert "apt-get install graphviz" in msg and "brew install graphviz" in msg
    assert not (tmp_path / "c.png").exists()
    render(gx.load(MODELS / "add_mul.gx"), tmp_path / "c.dot", ADD_MUL)  # DOT needs no Graphviz
    assert (tmp_path / "c.dot").read_text().startswith("digraph graphexec {")


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(DrawError, match=r"expected a \.dot, \.svg or \.png file, got \.jpg"):
        render(gx.load(MODELS / "add_mul.gx"), tmp_path / "c.jpg")


def test_cli_draw_dot(tmp_path, capsys):
    out = tmp_path / "am.dot"
    argv = ["draw", str(MODELS / "add_mul.gx"), "-o", str(out), "-i", "x=-2", "-i", "y=5",
            "-i", "z=-4", "--grad"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    w = wires(out.read_text())
    assert w[("f", "out:f")] == ["-12", "1"] and w[("q", "f")] == ["3", "-4"]


@pytest.mark.parametrize("extra, message", [
    (["--grad"], "error: missing input 'x'"),
    (["-i", "x=1", "-i", "y=2", "-i", "z=[1]"], "error: input 'z' expects shape ()"),
    (["-i", "x"], "error: -i expects NAME=VALUE"),
])
def test_cli_draw_mistakes_exit_2(tmp_path, capsys, extra, message):
    assert main(["draw", str(MODELS / "add_mul.gx"), "-o", str(tmp_path / "a.dot")] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


@needs_dot
def test_cli_draw_png_for_real(tmp_path):
    out = tmp_path / "neuron.png"
    args = [f"{k}={v}" for k, v in NEURON.items()]
    cmd = [sys.executable, "-m", "graphexec", "draw", str(MODELS / "sigmoid_neuron.gx"),
           "-o", str(out), "--grad"] + [a for kv in args for a in ("-i", kv)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
