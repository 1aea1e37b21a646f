"""Recipes of the shipped models: the lecture's worked examples as graphs, and the nets that
``scripts/make_models.py`` writes to ``models/`` (a script's helper, not part of the library:
``gx.examples.load(name)`` reads the shipped files).

:func:`seed_models` are rebuilt byte for byte by the tests. :func:`trained_models` come out of a
training run, whose last bits may depend on the BLAS library, so they are tested with a tolerance.
"""

from __future__ import annotations

import numpy as np

from graphexec.builder import GraphBuilder
from graphexec.graph import Graph
from graphexec.header import Training
from graphexec.training import nn
from graphexec.training.checkpoint import TrainSpec
from graphexec.training.optim import Adam

__all__ = [
    "add_mul",
    "add_mul_sum",
    "digits_mlp",
    "seed_models",
    "sigmoid_neuron",
    "spiral_mlp",
    "trained_models",
    "wx_norm",
]


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


def _with_spec(g: Graph, spec: TrainSpec) -> Graph:
    g.training = Training(spec=spec.to_attrs())
    return g


def spiral_mlp() -> Graph:
    """The CS231n case study's 2-layer net 2-100-3 (ReLU, softmax, reg 1e-3), untrained.

    Its training spec (Adam lr 1e-2, batch 32, 100 epochs, seed 0) lets
    ``graphexec train models/spiral_mlp.gx --data spiral`` train it with no other flag.
    """
    g = nn.mlp([2, 100, 3], activation="relu", loss="softmax", reg=1e-3, seed=0,
               name="spiral_mlp")
    return _with_spec(g, TrainSpec(optimizer="adam", hyperparams=Adam(lr=1e-2).hyperparams(),
                                   epochs=100, batch_size=32, seed=0,
                                   extra={"reg": 1e-3, "data_seed": 0}))


def digits_mlp(*, train: bool = True) -> Graph:
    """A 64-100-10 ReLU net on the 8x8 digits (reg 1e-4), trained by its own spec.

    Trained as ``graphexec train`` does: Adam lr 1e-3, batch 32, 50 epochs, seed 0, on the
    training part of the seed-0 80/20 split, keeping the epoch with the best validation accuracy.
    Needs scikit-learn (the digits are bundled in it).
    """
    from graphexec.training.data import digits
    from graphexec.training.train import fit

    g = nn.mlp([64, 100, 10], activation="relu", loss="softmax", reg=1e-4, seed=0,
               name="digits_mlp")
    g = _with_spec(g, TrainSpec(optimizer="adam", hyperparams=Adam(lr=1e-3).hyperparams(),
                                epochs=50, batch_size=32, seed=0,
                                extra={"reg": 1e-4, "data_seed": 0, "val_split": 0.2}))
    if train:
        Xtr, ytr, Xval, yval = digits(val_fraction=0.2, seed=0)
        fit(g, Xtr, ytr, val=(Xval, yval))
    return g


def seed_models() -> dict[str, Graph]:
    """File name -> graph, for every model shipped in ``models/`` that is rebuilt bit for bit."""
    return {
        "add_mul.gx": add_mul(),
        "add_mul_sum.gx": add_mul_sum(),
        "sigmoid_neuron.gx": sigmoid_neuron(),
        "wx_norm.gx": wx_norm(),
        "spiral_mlp.gx": spiral_mlp(),
    }


def trained_models() -> dict[str, Graph]:
    """File name -> graph, for the shipped models that are the result of a training run."""
    return {"digits_mlp.gx": digits_mlp()}
