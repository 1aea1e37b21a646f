"""Building networks with the graph builder: layers, activations, losses, and ``mlp``.

The lecture's networks are stacks of fully connected layers with a non-linearity between them::

    linear      f = W1 x                       mlp([D, C])
    2-layer     f = W2 max(0, W1 x)            mlp([D, H, C])
    3-layer     f = W3 max(0, W2 max(0, W1 x)) mlp([D, H1, H2, C])

The helpers here add parameters and nodes to a :class:`~graphexec.builder.GraphBuilder`, so other
architectures can be assembled without hand-wiring every parameter::

    b = GraphBuilder("net")
    x, y = b.input("x", shape=(None, 4)), b.input("y", shape=(None,), dtype="int64")
    rng = np.random.default_rng(0)
    h = hidden_layer(b, x, 4, 8, "tanh", index=1, rng=rng)
    scores = dense(b, h, 8, 3, index=2, rng=rng, init="xavier")
    loss = classifier_loss(b, scores, y, "softmax", weights=["W1", "W2"], reg=1e-3)

Weights are drawn from an explicit ``np.random.Generator`` (in float64, then cast, so a float32
and a float64 network built with the same seed start from the same values, up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphexec.builder import GraphBuilder, Value
from graphexec.errors import GraphError
from graphexec.graph import Graph, NodeDef, make_graph
from graphexec.training.checks import NonNegative, checked

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "activation",
    "check_activation",
    "classifier_loss",
    "dense",
    "get_reg",
    "hidden_layer",
    "init_weights",
    "l2_penalty",
    "mlp",
    "set_reg",
]

#: Activation name -> weight initialisation scheme of the layer that feeds it.
ACTIVATIONS: dict[str, str] = {
    "relu": "he",
    "leaky_relu": "he",
    "prelu": "he",
    "elu": "he",
    "maxout": "he",
    "tanh": "xavier",
    "sigmoid": "xavier",
}
#: Loss name -> the gate that computes it from scores (N, C) and labels (N,).
LOSSES: dict[str, str] = {"softmax": "softmax_cross_entropy", "svm": "svm_loss"}

LEAKY_ALPHA = 0.1  # the lecture's max(0.1 x, x)
PRELU_ALPHA0 = 0.25  # He et al. (2015): the learned slopes start at 0.25
MAXOUT_PIECES = 2  # max(w1ᵀx + b1, w2ᵀx + b2), as in the lecture


def check_activation(kind: str) -> None:
    """Refuse an activation name that is not in :data:`ACTIVATIONS` (the one place that says so)."""
    if kind not in ACTIVATIONS:
        raise GraphError(f"unknown activation {kind!r}; use one of {sorted(ACTIVATIONS)}")


# ---------------------------------------------------------------------------- initialisation
def init_weights(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, scheme: str,
                 dtype: Any = "float64") -> np.ndarray:
    """Gaussian weights scaled for the non-linearity that follows them.

    ``"he"``: std sqrt(2 / fan_in), for the ReLU family (half of the units are off, so the
    variance is doubled to keep it constant from layer to layer). ``"xavier"``: std
    sqrt(1 / fan_in), for tanh and sigmoid (CS231n's "calibrated" initialisation).

    Args:
        rng: The generator that draws the weights.
        shape: Shape of the weight tensor.
        fan_in: Number of inputs of each unit.
        scheme: ``"he"`` or ``"xavier"``.
        dtype: The dtype of the returned array (drawn in float64, then cast).

    Returns:
        A new array of ``shape`` and ``dtype``.
    """
    gains = {"he": 2.0, "xavier": 1.0}
    if scheme not in gains:
        raise GraphError(f"unknown initialisation {scheme!r}; use one of {sorted(gains)}")
    std = math.sqrt(gains[scheme] / fan_in)
    return (rng.standard_normal(shape) * std).astype(dtype)


# ---------------------------------------------------------------------------- layers
def dense(b: GraphBuilder, x: Value, fan_in: int, fan_out: int, *, index: int,
          rng: np.random.Generator, init: str = "he", dtype: Any = "float64") -> Value:
    """A fully connected layer ``h{index} = x @ W{index} + b{index}``.

    Args:
        b: The builder to add the parameters ``W{index}`` (fan_in, fan_out), ``b{index}``
            (fan_out,) (zeros) and the ``affine`` node ``h{index}`` to.
        x: Input value of shape (N, fan_in).
        fan_in: Input width D.
        fan_out: Output width M.
        index: Layer number, used in the names.
        rng: Generator for the weights.
        init: ``"he"`` or ``"xavier"`` (see :func:`init_weights`).
        dtype: Parameter dtype.

    Returns:
        The layer's output, shape (N, fan_out).
    """
    W = b.param(f"W{index}", init_weights(rng, (fan_in, fan_out), fan_in, init, dtype))
    bias = b.param(f"b{index}", np.zeros(fan_out, dtype=dtype))
    return b.op("affine", x, W, bias, name=f"h{index}")


def activation(b: GraphBuilder, h: Value, kind: str, *, index: int, width: int | None = None,
               dtype: Any = "float64") -> Value:
    """An elementwise non-linearity ``a{index} = kind(h)``.

    Args:
        b: The builder.
        h: Pre-activation of shape (N, width).
        kind: ``relu``, ``leaky_relu`` (slope 0.1, as in the lecture), ``prelu`` (adds the
            learned per-unit slopes ``alpha{index}`` of shape (width,), starting at 0.25),
            ``elu`` (alpha 1), ``tanh`` or ``sigmoid``. Maxout is a layer of its own:
            see :func:`hidden_layer`.
        index: Layer number, used in the names.
        width: Number of units (needed by ``prelu`` only).
        dtype: Dtype of prelu's slopes.

    Returns:
        The activation, same shape as ``h``.
    """
    check_activation(kind)
    name = f"a{index}"
    if kind in ("relu", "tanh", "sigmoid"):
        return b.op(kind, h, name=name)
    if kind == "leaky_relu":
        return b.op("leaky_relu", h, alpha=LEAKY_ALPHA, name=name)
    if kind == "elu":
        return b.op("elu", h, alpha=1.0, name=name)
    if kind == "prelu":
        if width is None:
            raise GraphError("activation('prelu') needs width= (one learned slope per unit)")
        alpha = b.param(f"alpha{index}", np.full(width, PRELU_ALPHA0, dtype=dtype))
        return b.op("prelu", h, alpha, name=name)
    raise GraphError(f"activation {kind!r} is a layer of its own (it has its own weights); "
                     "add it with hidden_layer")


def hidden_layer(b: GraphBuilder, x: Value, fan_in: int, fan_out: int, kind: str, *, index: int,
                 rng: np.random.Generator, dtype: Any = "float64") -> Value:
    """A hidden layer: :func:`dense` then :func:`activation`, or one ``maxout`` node.

    Maxout (k = 2 pieces) has the learned ``W{index}`` (2, fan_in, fan_out) and ``b{index}``
    (2, fan_out): ``a = max(x @ W[0] + b[0], x @ W[1] + b[1])`` — twice the parameters of a
    dense layer, and no unit can die.

    Returns:
        The layer's output, shape (N, fan_out).
    """
    check_activation(kind)
    if kind == "maxout":
        shape = (MAXOUT_PIECES, fan_in, fan_out)
        W = b.param(f"W{index}", init_weights(rng, shape, fan_in, "he", dtype))
        bias = b.param(f"b{index}", np.zeros((MAXOUT_PIECES, fan_out), dtype=dtype))
        return b.op("maxout", x, W, bias, name=f"a{index}")
    h = dense(b, x, fan_in, fan_out, index=index, rng=rng, init=ACTIVATIONS[kind], dtype=dtype)
    return activation(b, h, kind, index=index, width=fan_out, dtype=dtype)


# ---------------------------------------------------------------------------- losses
def l2_penalty(b: GraphBuilder, weights: Sequence[Value | str], reg: float) -> Value:
    """``reg * Σ_W ½ ΣW²`` over ``weights``: the L2 regularisation of CS231n (biases excluded).

    Each term is an ``l2`` node whose ``scale`` attribute holds ``reg`` (see :func:`set_reg`).

    Returns:
        A scalar value: the sum of the terms.
    """
    if not weights:
        raise GraphError("l2_penalty needs at least one weight")
    reg = _check_reg(reg)
    terms = [b.op("l2", w, scale=reg, name=f"l2_{w.name if isinstance(w, Value) else w}")
             for w in weights]
    total = terms[0]
    for i, t in enumerate(terms[1:]):
        total = b.op("add", total, t, name=f"l2_sum{i + 1}")
    return total


def classifier_loss(b: GraphBuilder, scores: Value, labels: Value, loss: str, *,
                    weights: Sequence[Value | str], reg: float) -> Value:
    """``loss = data_loss(scores, labels) + reg * Σ ½‖W‖²`` as the node ``loss``.

    Args:
        b: The builder.
        scores: Class scores (N, C).
        labels: Integer labels (N,).
        loss: ``"softmax"`` (cross-entropy) or ``"svm"`` (multiclass hinge, margin 1).
        weights: The weight parameters to regularise.
        reg: Regularisation strength, >= 0 (0 keeps the nodes, with a zero factor, so
            :func:`set_reg` can change it later).

    Returns:
        The scalar ``loss`` value.
    """
    if loss not in LOSSES:
        raise GraphError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)}")
    data = b.op(LOSSES[loss], scores, labels, name="data_loss")
    return b.op("add", data, l2_penalty(b, weights, reg), name="loss")


# ---------------------------------------------------------------------------- the network
def mlp(sizes: Sequence[int], activation: str = "relu", loss: str = "softmax", reg: float = 0.0,
        seed: int = 0, dtype: Any = "float64", name: str | None = None) -> Graph:
    """A fully connected classifier: ``len(sizes) - 1`` layers with weights.

    Args:
        sizes: ``[D, H1, ..., C]``: input width, hidden widths, number of classes.
            ``[D, C]`` is a linear classifier.
        activation: One of :data:`ACTIVATIONS` (relu, leaky_relu, prelu, elu, tanh, sigmoid,
            maxout); it sets the initialisation (He for the ReLU family and maxout, Xavier for
            tanh and sigmoid).
        loss: ``"softmax"`` or ``"svm"``.
        reg: L2 strength; ``loss = data_loss + reg * Σ ½‖W‖²`` over every weight (not the
            biases, not prelu's slopes) is computed inside the graph, so the file is the whole
            objective.
        seed: Seed of the ``np.random.default_rng`` that draws the weights.
        dtype: ``"float64"`` or ``"float32"``: parameters, input ``x`` and every value.
        name: Graph name (default ``mlp_D_H1_..._C``).

    Returns:
        A graph with inputs ``x`` (N, D) of ``dtype`` and ``y`` (N,) int64, outputs ``loss``
        (scalar) and ``scores`` (N, C), parameters ``W1, b1, ...`` (plus ``alpha1, ...``
        for prelu).
    """
    sizes = _check_sizes(sizes)
    check_activation(activation)
    if np.dtype(dtype).kind != "f":
        raise GraphError(f"mlp needs a float dtype ('float32' or 'float64'), got {dtype!r}")
    rng = np.random.default_rng(seed)
    label = "_".join(map(str, sizes))
    b = GraphBuilder(name or f"mlp_{label}", metadata={
        "description": f"{len(sizes) - 1}-layer net {'-'.join(map(str, sizes))}, {activation}, "
                       f"{loss} loss, L2 on the weights",
        "nn.sizes": ",".join(map(str, sizes)), "nn.activation": activation, "nn.loss": loss})
    x = b.input("x", shape=(None, sizes[0]), dtype=dtype)
    y = b.input("y", shape=(None,), dtype="int64")
    h, n_layers = x, len(sizes) - 1
    for i in range(1, n_layers):
        h = hidden_layer(b, h, sizes[i - 1], sizes[i], activation, index=i, rng=rng, dtype=dtype)
    scores = dense(b, h, sizes[-2], sizes[-1], index=n_layers, rng=rng,
                   init=ACTIVATIONS[activation], dtype=dtype)
    total = classifier_loss(b, scores, y, loss, weights=[f"W{i}" for i in range(1, n_layers + 1)],
                            reg=reg)
    b.output(total, "loss")
    b.output(scores, "scores")
    return b.build()


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    out = list(sizes)
    if len(out) < 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                           for n in out):
        raise GraphError(f"sizes must be [D, ..., C]: at least two positive integers, got {sizes!r}")
    return [int(n) for n in out]


def _check_reg(reg: float) -> float:
    return checked("reg", reg, NonNegative, GraphError)


# ---------------------------------------------------------------------------- reading back
def get_reg(g: Graph) -> float | None:
    """The regularisation strength of a graph built by :func:`l2_penalty` (the ``scale`` of its
    ``l2`` nodes), else None."""
    for n in g.nodes:
        if n.op == "l2":
            return float(n.attrs.get("scale", 1.0))
    return None


def set_reg(g: Graph, reg: float) -> Graph:
    """A copy of ``g`` (parameters copied, training section kept) whose ``l2`` nodes have
    strength ``reg``.

    Raises:
        GraphError: If ``g`` has no ``l2`` node (it was not built by :func:`mlp` or
            :func:`l2_penalty`).
    """
    reg = _check_reg(reg)
    if get_reg(g) is None:
        raise GraphError(f"graph {g.name!r} has no l2 node to set the regularisation strength "
                         "on; build it with graphexec.nn.mlp or nn.l2_penalty")
    defs = [NodeDef(n.name, n.op, n.inputs, {**n.attrs, "scale": reg} if n.op == "l2"
                    else dict(n.attrs), n.version) for n in g.nodes]
    params = {k: v.copy() for k, v in g.params.items()}
    return make_graph(g.name, g.input_decls, params, defs, g.output_map, metadata=g.metadata,
                      training=g.training, buffers={k: v.copy() for k, v in g.buffers.items()},
                      frozen=g.frozen)
