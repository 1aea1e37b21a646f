"""The lecture's worked examples as graphs; ``scripts/make_models.py`` writes them to ``models/``."""

from __future__ import annotations

import numpy as np

from graphexec.builder import GraphBuilder
from graphexec.graph import Graph

__all__ = ["add_mul", "add_mul_sum", "sigmoid_neuron", "wx_norm", "seed_models"]


def add_mul() -> Graph:
    """f(x, y, z) = (x + y) · z  (lecture: x=-2, y=5, z=-4 gives f=-12)."""
    b = GraphBuilder("add_mul", metadata={"description": "f = (x + y) * z"})
    x, y, z = (b.input(n, shape=()) for n in "xyz")
    b.output(b.op("mul", b.op("add", x, y, name="q"), z, name="f"), "f")
    return b.build()


def add_mul_sum() -> Graph:
    """L = (a + b) + (c · d)  (lecture: dL/da = 1)."""
    b = GraphBuilder("add_mul_sum", metadata={"description": "L = (a + b) + (c * d)"})
    a, bb, c, d = (b.input(n, shape=()) for n in "abcd")
    b.output(b.op("add", b.op("add", a, bb, name="ab"), b.op("mul", c, d, name="cd"), name="L"), "L")
    return b.build()


def sigmoid_neuron() -> Graph:
    """f = σ(w0·x0 + w1·x1 + w2)  (lecture: w=[2,-3,-3], x=[-1,-2] gives f=0.731059)."""
    b = GraphBuilder("sigmoid_neuron", metadata={"description": "f = sigmoid(w0*x0 + w1*x1 + w2)"})
    w0, w1, w2, x0, x1 = (b.input(n, shape=()) for n in ("w0", "w1", "w2", "x0", "x1"))
    dot = b.op("add", b.op("add", b.op("mul", w0, x0, name="w0x0"), b.op("mul", w1, x1, name="w1x1"),
                           name="s"), w2, name="dot")
    b.output(b.op("sigmoid", dot, name="f"), "f")
    return b.build()


def wx_norm() -> Graph:
    """f(x, W) = ‖W·x‖² = Σ (W·x)ᵢ²  (lecture: f=0.116 at W=[[.1,.5],[-.3,.8]], x=[.2,.4])."""
    b = GraphBuilder("wx_norm", metadata={"description": "f = ||W x||^2"})
    W = b.param("W", np.array([[0.1, 0.5], [-0.3, 0.8]]))
    x = b.input("x", shape=(2,))
    q = b.op("matmul", W, x, name="q")
    b.output(b.op("sum", b.op("square", q, name="q2"), name="f"), "f")
    return b.build()


def seed_models() -> dict[str, Graph]:
    """File name -> graph, for every model shipped in ``models/``."""
    return {
        "add_mul.gx": add_mul(),
        "add_mul_sum.gx": add_mul_sum(),
        "sigmoid_neuron.gx": sigmoid_neuron(),
        "wx_norm.gx": wx_norm(),
    }
