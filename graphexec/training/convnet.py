"""Convolutional classifiers: ``convnet`` builds conv - [batchnorm] - relu - [pool] blocks, then
fully connected layers, in NCHW like PyTorch and ONNX.

The CS231n three-layer convnet (conv - relu - 2×2 max pool - affine - relu - affine - softmax) is::

    convnet(input_shape=(3, 32, 32), conv=[32], kernel=7, pool=2, hidden=[100], classes=10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphexec.builder import GraphBuilder, Value
from graphexec.errors import GraphError
from graphexec.graph import Graph
from graphexec.training.nn import classifier_loss, dense, init_weights

__all__ = ["conv_block", "convnet"]


def conv_block(b: GraphBuilder, x: Value, c_in: int, c_out: int, *, index: int, kernel: int,
               pool: int, batchnorm: bool, rng: np.random.Generator,
               dtype: Any = "float64") -> Value:
    """``conv{i}`` (``W{i}`` (c_out, c_in, k, k), He-initialised, ``b{i}`` zeros; stride 1,
    "same" padding k // 2), then ``bn{i}`` (``gamma{i}``, ``beta{i}``, buffers
    ``running_mean{i}`` and ``running_var{i}``) if ``batchnorm``, ``relu{i}``, and a
    ``pool{i}`` max pool of ``pool`` × ``pool`` (stride ``pool``) unless ``pool`` is 1."""
    W = b.param(f"W{index}", init_weights(rng, (c_out, c_in, kernel, kernel), c_in * kernel * kernel,
                                          "he", dtype))
    bias = b.param(f"b{index}", np.zeros(c_out, dtype=dtype))
    h = b.op("conv2d", x, W, bias, padding=kernel // 2, name=f"conv{index}")
    if batchnorm:
        gamma = b.param(f"gamma{index}", np.ones(c_out, dtype=dtype))
        beta = b.param(f"beta{index}", np.zeros(c_out, dtype=dtype))
        mean = b.buffer(f"running_mean{index}", np.zeros(c_out, dtype=dtype))
        var = b.buffer(f"running_var{index}", np.ones(c_out, dtype=dtype))
        h = b.op("batchnorm", h, gamma, beta, mean, var, name=f"bn{index}")
    h = b.op("relu", h, name=f"relu{index}")
    if pool > 1:
        h = b.op("max_pool2d", h, kernel=pool, stride=pool, name=f"pool{index}")
    return h


def _positive(what: str, values: Sequence[int]) -> list[int]:
    out = list(values)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in out):
        raise GraphError(f"{what} must be positive integers, got {values!r}")
    return [int(v) for v in out]


def convnet(input_shape: Sequence[int] = (1, 8, 8), conv: Sequence[int] = (16, 32), kernel: int = 3,
            pool: int = 2, hidden: Sequence[int] = (64,), classes: int = 10, *,
            batchnorm: bool = False, dropout: float = 0.0, loss: str = "softmax",
            reg: float = 0.0, seed: int = 0, dtype: Any = "float64",
            name: str | None = None) -> Graph:
    """A convolutional classifier with inputs ``x`` (N, C, H, W) and ``y`` (N,), outputs
    ``loss`` and ``scores`` (N, classes), like :func:`graphexec.nn.mlp`.

    Args:
        input_shape: (C, H, W) of one example.
        conv: Output channels of each conv block (see :func:`conv_block`).
        kernel: Odd square kernel size of every conv ("same" padding keeps H and W).
        pool: Max-pool size after each block (1: none); H and W must stay >= 1.
        hidden: Widths of the fully connected relu layers after flattening.
        classes: Number of classes.
        batchnorm: A batchnorm after every conv (running statistics are buffers).
        dropout: Inverted-dropout probability after every hidden layer (0: none).
        loss: ``"softmax"`` or ``"svm"``.
        reg: L2 strength on every weight (``W{i}``), inside the graph.
        seed: Seed of the weights.
        dtype: ``"float64"`` or ``"float32"``.
        name: Graph name (default ``convnet_...``).
    """
    c, h, w = _positive("input_shape", input_shape)
    conv, hidden = _positive("conv", conv), _positive("hidden", hidden)
    (kernel, pool, classes) = _positive("kernel, pool and classes", (kernel, pool, classes))
    if kernel % 2 == 0:
        raise GraphError(f"kernel must be odd (\"same\" padding), got {kernel}")
    if not 0.0 <= dropout < 1.0:
        raise GraphError(f"dropout must be in [0, 1), got {dropout!r}")
    rng = np.random.default_rng(seed)
    arch = f"{c}x{h}x{w}-" + "-".join(f"c{f}" for f in conv) + "".join(f"-{n}" for n in hidden)
    b = GraphBuilder(name or f"convnet_{arch}-{classes}".replace("x", "_"), metadata={
        "description": f"convnet {arch}-{classes}: conv{kernel}x{kernel}"
                       f"{'-batchnorm' if batchnorm else ''}-relu"
                       f"{f'-maxpool{pool}' if pool > 1 else ''} blocks, relu hidden layers"
                       f"{f', dropout {dropout:g}' if dropout else ''}, {loss} loss"})
    x = b.input("x", shape=(None, c, h, w), dtype=dtype)
    y = b.input("y", shape=(None,), dtype="int64")
    v, i = x, 0
    for i, f in enumerate(conv, 1):
        v = conv_block(b, v, c, f, index=i, kernel=kernel, pool=pool, batchnorm=batchnorm,
                       rng=rng, dtype=dtype)
        c, h, w = f, h // pool, w // pool
        if h < 1 or w < 1:
            raise GraphError(f"the image is pooled away after conv block {i}: use fewer blocks "
                             f"or a smaller pool")
    v = b.op("flatten", v, name="flat")
    width = c * h * w
    for n in hidden:
        i += 1
        v = b.op("relu", dense(b, v, width, n, index=i, rng=rng, dtype=dtype), name=f"a{i}")
        if dropout:
            v = b.op("dropout", v, p=float(dropout), name=f"drop{i}")
        width = n
    i += 1
    scores = dense(b, v, width, classes, index=i, rng=rng, dtype=dtype)
    total = classifier_loss(b, scores, y, loss, weights=[f"W{k}" for k in range(1, i + 1)], reg=reg)
    b.output(total, "loss")
    b.output(scores, "scores")
    return b.build()
