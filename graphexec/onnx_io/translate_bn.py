"""BatchNormalization with ``training_mode=1`` (opset 14+), composed from existing gates.

ONNX's definition (``onnx/reference/ops/op_batch_normalization.py``, ``_batchnorm_training_mode``):
with μ, σ² the batch mean and population variance of x (N, C, D1, ...) over every axis but 1,

    Y            = scale · (x - μ) / √(σ² + epsilon) + B            (per channel)
    running_mean = input_mean · momentum + μ · (1 - momentum)
    running_var  = input_var · momentum + σ² · (1 - momentum)

Y is x transposed to (C, N, D1, ...), flattened to (C, M), normalised over its last axis by
``layernorm`` (γ = 1, β = 0: frozen constants), times scale and plus B as (C, 1) columns, and
laid back out; its gradient flows through the batch statistics (layernorm's backward). The
running statistics are ``reduce_mean`` over the same axes times constant momentum multipliers.
Only the outputs that are used (or are graph outputs) are built.

InstanceNormalization (PyTorch's ``nn.InstanceNorm*`` and ``nn.GroupNorm`` exports) is the same
normalisation per (sample, channel) over the spatial axes: x reshaped to (N·C, D1·D2·…),
``layernorm`` over the last axis, reshaped back, times scale and plus B as (C, 1, …) columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphexec.onnx_io.translate import Importer, f32

__all__ = ["batchnorm_training", "instance_norm"]

NAMES = ("X", "scale", "B", "input_mean", "input_var")


def batchnorm_training(imp: Importer, node: Any) -> None:
    """Translate one BatchNormalization node with training_mode=1 (see the module docstring)."""
    x = node.input[0]
    shape = imp.shape(x)
    if shape is None or len(shape) < 2:
        rank = "unknown" if shape is None else str(len(shape))
        raise imp.refuse(node, f"training_mode=1 on X of rank {rank}; ONNX normalises "
                               "(N, C, D1, ...) over every axis but 1, so X needs rank >= 2")
    dt = _one_dtype(imp, node)
    a = imp.attrs(node)
    eps, momentum = f32(a.get("epsilon", 1e-5)), float(np.float32(a.get("momentum", 0.9)))
    used = [bool(o) and (imp.uses[o] > 0 or o in imp.graph_outputs) for o in node.output[:3]]
    if used[0]:
        _normalized(imp, node, dt, eps)
    for k in (1, 2):
        if len(used) > k and used[k]:
            _running(imp, node, k, dt, momentum)


def _one_dtype(imp: Importer, node: Any) -> np.dtype[Any]:
    """X, scale, B and the running statistics share one float dtype (ONNX lets them differ
    from opset 15 on; the reference casts every output to X's type): that dtype."""
    dts = [imp.dtype(i) for i in node.input[:5]]
    if len(node.input) < 5 or None in dts or len(set(dts)) != 1:
        found = ", ".join(f"{n} {d}" for n, d in zip(NAMES, dts))
        raise imp.refuse(node, f"training_mode=1 with inputs of dtypes ({found}); graphexec "
                               "composes it for five inputs of one dtype, float32 or float64")
    dt = dts[0]
    assert dt is not None
    return dt


def _normalized(imp: Importer, node: Any, dt: np.dtype[Any], eps: float) -> None:
    """Y: layernorm of x as (C, M) over M, then scale and B as (C, 1) columns, laid back."""
    x, out = node.input[0], node.output[0]
    shape = imp.shape(x)
    assert shape is not None
    if any(d is None for d in shape):
        raise imp.refuse(node, f"training_mode=1 on X of shape {shape}; graphexec needs every "
                               "dimension known to normalise over the batch (N, D1, ...)")
    n, c, *rest = (int(d) for d in shape)  # type: ignore[arg-type]
    for i in (1, 2):
        if tuple(imp.shape(node.input[i]) or ()) != (c,):
            raise imp.refuse(node, f"{NAMES[i]} {node.input[i]!r} has shape "
                                   f"{imp.shape(node.input[i])}, expected ({c},) (one per channel)")
    m, perm = n * math.prod(rest), [1, 0, *range(2, len(shape))]
    cols = imp.emit("transpose", [imp.ref(x)], hint=f"{out}_CN", perm=perm)
    if rest:
        cols = imp.emit("reshape", [cols], hint=f"{out}_CM", shape=[c, m])
    ones = imp.param(f"{out}_ones", np.ones(m, dt), made_up=True)
    zeros = imp.param(f"{out}_zeros", np.zeros(m, dt), made_up=True)
    xhat = imp.emit("layernorm", [cols, ones, zeros], hint=f"{out}_xhat", normalized_ndim=1,
                    eps=eps)
    scale, bias = (imp.emit("reshape", [imp.ref(node.input[i])], hint=f"{out}_{NAMES[i]}_col",
                            shape=[c, 1]) for i in (1, 2))
    y = imp.emit("mul", [xhat, scale], hint=f"{out}_scaled")
    y = imp.emit("add", [y, bias], hint=f"{out}_CM_y" if rest else f"{out}_CN_y")
    if rest:
        y = imp.emit("reshape", [y], hint=f"{out}_CN_y", shape=[c, n, *rest])
    imp.emit("transpose", [y], out, perm=perm)  # perm swaps axes 0 and 1: its own inverse


def _running(imp: Importer, node: Any, k: int, dt: np.dtype[Any], momentum: float) -> None:
    """running_mean (k=1) or running_var (k=2): input · momentum + batch stat · (1 - momentum)."""
    x, out = imp.ref(node.input[0]), node.output[k]
    shape = imp.shape(node.input[0])
    assert shape is not None
    want = imp.shape(node.input[k + 2])
    if shape[1] is not None and tuple(want or ()) != (shape[1],):
        raise imp.refuse(node, f"{NAMES[k + 2]} {node.input[k + 2]!r} has shape {want}, "
                               f"expected ({shape[1]},) (one per channel)")
    axes = [0, *range(2, len(shape))]
    if k == 1:
        stat = imp.emit("reduce_mean", [x], hint=f"{out}_batch_mean", axes=axes, keepdims=False)
    else:
        mu = imp.emit("reduce_mean", [x], hint=f"{out}_batch_mu", axes=axes, keepdims=True)
        centred = imp.emit("sub", [x, mu], hint=f"{out}_centred")
        sq = imp.emit("square", [centred], hint=f"{out}_sq")
        stat = imp.emit("reduce_mean", [sq], hint=f"{out}_batch_var", axes=axes, keepdims=False)
    keep = imp.param(f"{out}_momentum", np.asarray(momentum, dt), made_up=True)
    take = imp.param(f"{out}_one_minus_momentum", np.asarray(1.0 - momentum, dt), made_up=True)
    old = imp.emit("mul", [imp.buffer_of(node.input[k + 2]), keep], hint=f"{out}_kept")
    new = imp.emit("mul", [stat, take], hint=f"{out}_taken")
    imp.emit("add", [old, new], out)


def instance_norm(imp: Importer, node: Any) -> None:
    """InstanceNormalization: y = scale · (x - μ) / √(σ² + epsilon) + B, μ and σ² per sample
    and channel over the spatial axes (see the module docstring)."""
    x, out = node.input[0], node.output[0]
    shape, dt = imp.shape(x), imp.dtype(x)
    if shape is None or len(shape) < 3 or any(d is None for d in shape[1:]):
        raise imp.refuse(node, f"input of shape {shape}; graphexec needs (N, C, D1, ...) with "
                               "every size but the batch known")
    if dt is None or dt.kind != "f":
        raise imp.refuse(node, f"input of dtype {dt}; InstanceNormalization takes floats")
    c, *rest = (int(d) for d in shape[1:])  # type: ignore[arg-type]
    for i in (1, 2):
        if tuple(imp.shape(node.input[i]) or ()) != (c,):
            raise imp.refuse(node, f"{('scale', 'B')[i - 1]} {node.input[i]!r} has shape "
                                   f"{imp.shape(node.input[i])}, expected ({c},) (one per channel)")
    m = math.prod(rest)
    rows = imp.emit("reshape", [imp.ref(x)], hint=f"{out}_rows", shape=[-1, m])
    ones = imp.param(f"{out}_ones", np.ones(m, dt), made_up=True)
    zeros = imp.param(f"{out}_zeros", np.zeros(m, dt), made_up=True)
    eps = f32(imp.attrs(node).get("epsilon", 1e-5))
    xhat = imp.emit("layernorm", [rows, ones, zeros], hint=f"{out}_xhat", normalized_ndim=1,
                    eps=eps)
    xhat = imp.emit("reshape", [xhat], hint=f"{out}_xhat_nc", shape=[-1, c, *rest])
    col = [c] + [1] * len(rest)
    scale, bias = (imp.emit("reshape", [imp.ref(node.input[i])], hint=f"{out}_col{i}", shape=col)
                   for i in (1, 2))
    imp.emit("add", [imp.emit("mul", [xhat, scale], hint=f"{out}_scaled"), bias], out)
