"""Each built-in gate as ONNX nodes: one op or a short decomposition per gate (``EMITTERS``).

An emitter writes the nodes that compute one graphexec node's value from its inputs; ``Emitter``
hands out fresh value names and collects the constants. The importer re-runs an emitter to check
that a marked group of nodes is exactly what graphexec wrote for a gate (``recognize.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from graphexec.graph import Node
from graphexec.onnx_io.common import custom_domain, onnx_elem_type

__all__ = ["EMITTERS", "META", "Emitter", "GateCall", "custom_node"]

#: The attributes that carry a custom-domain gate's provenance.
META = {"version": "graphexec_version", "dist": "graphexec_distribution",
        "dist_version": "graphexec_dist_version"}


class GateCall(Protocol):
    """What an emitter reads of a node: its name (for fresh names) and its attributes."""

    @property
    def name(self) -> str: ...

    @property
    def attrs(self) -> Mapping[str, Any]: ...


class Emitter:
    """Collects ONNX nodes and initializers; hands out fresh value names."""

    def __init__(self, onnx: Any, taken: Iterable[str], opset: int):
        self.onnx, self.h, self.opset = onnx, onnx.helper, opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.domains: dict[str, int] = {}
        self.taken = set(taken)  # the graph's own value names: fresh names avoid them

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self.taken:
            name, i = f"{hint}_{i}", i + 1
        self.taken.add(name)
        return name

    def node(self, op: str, ins: Sequence[str], out: str | None = None, *, hint: str = "",
             domain: str = "", **attrs: Any) -> str:
        """Append one ONNX node; returns its output name (``out``, or a fresh one from ``hint``)."""
        out = out or self.fresh(hint or op.lower())
        self.nodes.append(self.h.make_node(op, list(ins), [out], name=self.fresh(f"{out}__{op}"),
                                           domain=domain, **attrs))
        return out

    def const(self, value: Any, dtype: Any, hint: str) -> str:
        name = self.fresh(hint)
        arr = np.asarray(value, dtype=dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def reduce(self, op: str, x: str, out: str | None, axes: Sequence[int] | None, *,
               hint: str = "") -> str:
        """ReduceSum/ReduceMean/ReduceMax with keepdims=0 over ``axes`` (None: every axis); the
        axes are an input from opset 13 (ReduceSum) or 18 (the others), an attribute before."""
        as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes is None:
            return self.node(op, [x], out, hint=hint, keepdims=0)
        if as_input:
            return self.node(op, [x, self.const(list(axes), np.int64, f"{hint}_axes")], out,
                             hint=hint, keepdims=0)
        return self.node(op, [x], out, hint=hint, keepdims=0, axes=list(axes))

    def unsqueeze(self, x: str, axis: int, hint: str) -> str:
        return self.node("Unsqueeze", [x, self.const([axis], np.int64, f"{hint}_axis")], hint=hint)


Emit = Callable[[Emitter, GateCall, list[str], str, np.dtype], None]


def _simple(op: str) -> Emit:
    def emit(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
        em.node(op, ins, out)
    return emit


def _where_positive(em: Emitter, x: str, neg: str, out: str, p: str, dt: np.dtype) -> None:
    """out = x where x > 0, else ``neg`` (float64 stand-in for onnxruntime's float32-only kernels)."""
    zero = em.const(0.0, dt, f"{p}_zero")
    em.node("Where", [em.node("Greater", [x, zero], hint=f"{p}_pos"), x, neg], out)


def _leaky_relu(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    alpha = float(n.attrs.get("alpha", 0.01))
    if dt != np.float64:
        em.node("LeakyRelu", ins, out, alpha=alpha)
        return
    # onnxruntime has no float64 LeakyRelu/PRelu kernels, and ONNX float attributes are float32
    slope = em.const(alpha, dt, f"{n.name}_alpha")
    scaled = em.node("Mul", [ins[0], slope], hint=f"{n.name}_neg_branch")
    _where_positive(em, ins[0], scaled, out, n.name, dt)


def _prelu(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    if dt != np.float64:
        em.node("PRelu", ins, out)
        return
    scaled = em.node("Mul", [ins[0], ins[1]], hint=f"{n.name}_neg_branch")
    _where_positive(em, ins[0], scaled, out, n.name, dt)


def _square(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("Mul", [ins[0], ins[0]], out)


def _sum(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.reduce("ReduceSum", ins[0], out, None)


def _mean(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.reduce("ReduceMean", ins[0], out, None)


def _affine(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    xw = em.node("MatMul", ins[:2], hint=f"{n.name}_xW")
    em.node("Add", [xw, ins[2]], out)


def _reshape(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    shape = list(n.attrs.get("shape", [-1]))
    extra: dict[str, Any] = {"allowzero": 1} if 0 in shape else {}  # ONNX 0: "copy this dim"
    em.node("Reshape", [ins[0], em.const(shape, np.int64, f"{n.name}_shape")], out, **extra)


def _elu(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    alpha = float(n.attrs.get("alpha", 1.0))
    if dt != np.float64:
        em.node("Elu", ins, out, alpha=alpha)
        return
    # onnxruntime has no float64 Elu kernel, and ONNX float attributes are float32:
    # x if x > 0 else alpha * (e^min(x, 0) - 1), with alpha a float64 constant
    x, p = ins[0], n.name
    neg = em.node("Min", [x, em.const(0.0, dt, f"{p}_zero")], hint=f"{p}_xneg")
    em1 = em.node("Sub", [em.node("Exp", [neg], hint=f"{p}_exp"), em.const(1.0, dt, f"{p}_one")],
                  hint=f"{p}_expm1")
    scaled = em.node("Mul", [em1, em.const(alpha, dt, f"{p}_alpha")], hint=f"{p}_neg_branch")
    _where_positive(em, x, scaled, out, p, dt)


def _maxout(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    x, w, b = ins
    pieces = em.node("MatMul", [x, w], hint=f"{n.name}_xW")  # (N,D) @ (k,D,H) -> (k,N,H)
    shifted = em.node("Add", [pieces, em.unsqueeze(b, 1, f"{n.name}_b")], hint=f"{n.name}_pieces")
    em.reduce("ReduceMax", shifted, out, [0], hint=f"{n.name}_max")


def _softmax_ce(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("SoftmaxCrossEntropyLoss", ins, out, reduction="mean")


def _svm(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """L = mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1), with the j = y_i terms masked out."""
    s, y, p = ins[0], ins[1], n.name
    y64 = em.node("Cast", [y], hint=f"{p}_labels", to=7)
    yi = em.unsqueeze(y64, 1, f"{p}_labels_col")  # (N, 1)
    correct = em.node("GatherElements", [s, yi], hint=f"{p}_correct", axis=1)
    margin = em.node("Add", [em.node("Sub", [s, correct], hint=f"{p}_diff"),
                             em.const(1.0, dt, f"{p}_delta")], hint=f"{p}_margin")
    hinge = em.node("Relu", [margin], hint=f"{p}_hinge")
    classes = em.node("Shape", [s], hint=f"{p}_C", start=1, end=2)
    c = em.node("Squeeze", [classes], hint=f"{p}_C_scalar")
    start, step = em.const(0, np.int64, f"{p}_start"), em.const(1, np.int64, f"{p}_step")
    cols = em.node("Range", [start, c, step], hint=f"{p}_classes")
    is_y = em.node("Equal", [yi, cols], hint=f"{p}_is_label")
    kept = em.node("Where", [is_y, em.const(0.0, dt, f"{p}_zero"), hinge], hint=f"{p}_margins")
    rows = em.reduce("ReduceSum", kept, None, [1], hint=f"{p}_row_loss")
    em.reduce("ReduceMean", rows, out, None)


def _l2(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    sq = em.node("Mul", [ins[0], ins[0]], hint=f"{n.name}_sq")
    total = em.reduce("ReduceSum", sq, None, None, hint=f"{n.name}_sum")
    half = 0.5 * float(n.attrs.get("scale", 1.0))  # y = ½ · scale · Σx²
    em.node("Mul", [total, em.const(half, dt, f"{n.name}_half")], out)


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _conv(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    p = _pair(n.attrs.get("padding", 0))
    em.node("Conv", ins, out, strides=_pair(n.attrs.get("stride", 1)), pads=p + p,
            dilations=_pair(n.attrs.get("dilation", 1)), group=int(n.attrs.get("groups", 1)))


def _pool(op: str) -> Emit:
    def emit(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
        k, p = _pair(n.attrs.get("kernel", 2)), _pair(n.attrs.get("padding", 0))
        stride = n.attrs.get("stride")
        extra: dict[str, Any] = ({"count_include_pad": int(bool(
            n.attrs.get("count_include_pad", True)))} if op == "AveragePool" else {})
        em.node(op, ins, out, kernel_shape=k, strides=k if stride is None else _pair(stride),
                pads=p + p, **extra)
    return emit


def _global_avg(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    pooled = em.node("GlobalAveragePool", ins, hint=f"{n.name}_NC11")
    em.node("Flatten", [pooled], out, axis=1)


def _batchnorm(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("BatchNormalization", ins, out, epsilon=float(n.attrs.get("eps", 1e-5)),
            momentum=1.0 - float(n.attrs.get("momentum", 0.1)))


def _layernorm(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("LayerNormalization", ins, out, axis=-int(n.attrs.get("normalized_ndim", 1)),
            epsilon=float(n.attrs.get("eps", 1e-5)))


def _identity(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("Identity", ins, out)  # dropout: the forward that ONNX runs is inference


def _with_attrs(op: str, **names: str) -> Emit:
    """An ONNX op whose attributes are the gate's (renamed: ONNX name -> gate name)."""
    def emit(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
        attrs = {k: n.attrs[g] for k, g in names.items() if n.attrs.get(g) is not None}
        em.node(op, ins, out, **attrs)
    return emit


def _pad(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    pads = [list(p) for p in n.attrs.get("pads", [])]
    flat = [p[0] for p in pads] + [p[1] for p in pads]
    em.node("Pad", [ins[0], em.const(flat, np.int64, f"{n.name}_pads"),
                    em.const(float(n.attrs.get("value", 0.0)), dt, f"{n.name}_value")], out)


def _clip(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    bounds = [em.const(float(n.attrs[k]), dt, f"{n.name}_{k}") if n.attrs.get(k) is not None
              else "" for k in ("min", "max")]
    while bounds and not bounds[-1]:
        bounds.pop()
    em.node("Clip", [ins[0], *bounds], out)


def _reduce_axes(op: str) -> Emit:
    """reduce_sum / reduce_mean / reduce_max: ONNX's op with keepdims; axes [] (none) is the
    identity; the axes are an input from opset 13 (ReduceSum) or 18 (the others)."""
    def emit(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
        axes, keep = n.attrs.get("axes"), int(bool(n.attrs.get("keepdims", True)))
        if axes is not None and not list(axes):
            em.node("Identity", ins, out)
        elif axes is None:
            em.node(op, ins, out, keepdims=keep)
        elif em.opset >= (13 if op == "ReduceSum" else 18):
            em.node(op, [ins[0], em.const(list(axes), np.int64, f"{n.name}_axes")], out,
                    keepdims=keep)
        else:
            em.node(op, ins, out, keepdims=keep, axes=list(axes))
    return emit


def _slice(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    starts = list(n.attrs.get("starts") or [])
    if not starts:
        em.node("Identity", ins, out)
        return
    axes = n.attrs.get("axes")
    steps = n.attrs.get("steps")
    axes = list(range(len(starts))) if axes is None else list(axes)
    parts = [("starts", starts), ("ends", list(n.attrs["ends"])), ("axes", axes)]
    parts += [("steps", list(steps))] if steps is not None else []
    em.node("Slice", [ins[0], *(em.const(v, np.int64, f"{n.name}_{k}") for k, v in parts)], out)


def _cast(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("Cast", ins, out, to=onnx_elem_type(n.attrs.get("to", "float64")))

def _nll(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    ii = n.attrs.get("ignore_index")
    extra: dict[str, Any] = {} if ii is None else {"ignore_index": int(ii)}
    em.node("NegativeLogLikelihoodLoss", ins, out, reduction=str(n.attrs.get("reduction", "mean")),
            **extra)


def _mean_keep(em: Emitter, x: str, k: int, out: str | None, hint: str) -> str:
    """ReduceMean over the last ``k`` axes, keepdims=1 (axes an input from opset 18)."""
    axes = list(range(-k, 0))
    if em.opset >= 18:
        return em.node("ReduceMean", [x, em.const(axes, np.int64, f"{hint}_axes")], out,
                       hint=hint, keepdims=1)
    return em.node("ReduceMean", [x], out, hint=hint, keepdims=1, axes=axes)


def _layernorm_stat(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """mean: ReduceMean; inv_std_dev: 1 / sqrt(mean((x - mean)²) + eps), eps in x's dtype."""
    k, p = int(n.attrs.get("normalized_ndim", 1)), n.name
    if n.attrs.get("stat", "mean") == "mean":
        _mean_keep(em, ins[0], k, out, f"{p}_mean")
        return
    d = em.node("Sub", [ins[0], _mean_keep(em, ins[0], k, None, f"{p}_mean")], hint=f"{p}_centred")
    var = _mean_keep(em, em.node("Mul", [d, d], hint=f"{p}_sq"), k, None, f"{p}_var")
    eps = em.const(float(n.attrs.get("eps", 1e-5)), dt, f"{p}_eps")
    std = em.node("Sqrt", [em.node("Add", [var, eps], hint=f"{p}_var_eps")], hint=f"{p}_std")
    em.node("Reciprocal", [std], out)


def _gelu(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """Gelu from opset 20; before, ½ x (1 + erf(x/√2)) or the tanh formula."""
    approx = str(n.attrs.get("approximate", "none"))
    if em.opset >= 20:
        em.node("Gelu", ins, out, approximate=approx)
        return
    x, p = ins[0], n.name

    def c(v: float, h: str) -> str:
        return em.const(v, dt, f"{p}_{h}")
    if approx == "tanh":
        x3 = em.node("Mul", [em.node("Mul", [x, x], hint=f"{p}_x2"), x], hint=f"{p}_x3")
        inner = em.node("Add", [x, em.node("Mul", [x3, c(0.044715, "k")], hint=f"{p}_kx3")],
                        hint=f"{p}_inner")
        g = em.node("Tanh", [em.node("Mul", [inner, c(math.sqrt(2 / math.pi), "c")],
                                     hint=f"{p}_u")], hint=f"{p}_t")
    else:
        g = em.node("Erf", [em.node("Mul", [x, c(1 / math.sqrt(2), "rsqrt2")], hint=f"{p}_z")],
                    hint=f"{p}_erf")
    half_x = em.node("Mul", [x, c(0.5, "half")], hint=f"{p}_half_x")
    em.node("Mul", [half_x, em.node("Add", [g, c(1.0, "one")], hint=f"{p}_1pg")], out)


def _hard(swish: bool) -> Emit:
    """HardSigmoid / HardSwish; float64 as Mul/Add/Clip with float64 constants (onnxruntime
    has float32 kernels only, and ONNX float attributes are float32)."""
    def emit(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
        alpha = 1 / 6 if swish else float(n.attrs.get("alpha", 0.2))
        beta = 0.5 if swish else float(n.attrs.get("beta", 0.5))
        if dt != np.float64:
            if swish:
                em.node("HardSwish", ins, out)
            else:
                em.node("HardSigmoid", ins, out, alpha=alpha, beta=beta)
            return
        x, p = ins[0], n.name
        ax = em.node("Mul", [x, em.const(alpha, dt, f"{p}_alpha")], hint=f"{p}_ax")
        z = em.node("Add", [ax, em.const(beta, dt, f"{p}_beta")], hint=f"{p}_z")
        lo, hi = em.const(0.0, dt, f"{p}_zero"), em.const(1.0, dt, f"{p}_one")
        if swish:
            em.node("Mul", [x, em.node("Clip", [z, lo, hi], hint=f"{p}_gate")], out)
        else:
            em.node("Clip", [z, lo, hi], out)
    return emit


def _dropout_mask(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """All True in x's shape: ConstantOfShape(Shape(x), True)."""
    true = em.h.make_tensor("value", em.onnx.TensorProto.BOOL, [1], [True])
    em.node("ConstantOfShape", [em.node("Shape", ins, hint=f"{n.name}_shape")], out, value=true)


def _argmax(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("ArgMax", ins, out, axis=int(n.attrs.get("axis", 0)),
            keepdims=int(n.attrs.get("keepdims", True)),
            select_last_index=int(n.attrs.get("select_last_index", False)))


def _pow_scalar(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("Pow", [ins[0], em.const(float(n.attrs.get("exponent", 2.0)), dt, f"{n.name}_p")], out)


def _mish(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """Mish from opset 18; before, x · tanh(softplus(x)) (onnxruntime's Softplus-1 is float32
    only: float64 writes softplus as log(1 + eˣ), which saturates to x where eˣ overflows)."""
    if em.opset >= 18:
        em.node("Mish", ins, out)
        return
    if dt == np.float64:
        ex = em.node("Exp", ins, hint=f"{n.name}_exp")
        one = em.const(1.0, dt, f"{n.name}_one")
        sp = em.node("Log", [em.node("Add", [ex, one], hint=f"{n.name}_1p")], hint=f"{n.name}_sp")
    else:
        sp = em.node("Softplus", ins, hint=f"{n.name}_softplus")
    em.node("Mul", [ins[0], em.node("Tanh", [sp], hint=f"{n.name}_tanh")], out)


_COMPARE = {"greater": "Greater", "less": "Less", "greater_equal": "GreaterOrEqual",
            "less_equal": "LessOrEqual", "equal": "Equal"}


def _compare(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node(_COMPARE[str(n.attrs.get("kind", "greater"))], ins, out)


def _full_like(em: Emitter, n: GateCall, ins: list[str], out: str, dt: np.dtype) -> None:
    """ConstantOfShape(Shape(x)) with the value in the output's dtype."""
    value = em.onnx.numpy_helper.from_array(np.array([n.attrs.get("value", 0.0)], dt), "value")
    em.node("ConstantOfShape", [em.node("Shape", ins, hint=f"{n.name}_shape")], out, value=value)


#: Built-in op -> how it is written in ONNX.
EMITTERS: dict[str, Emit] = {
    **{op: _simple(onnx_op) for op, onnx_op in [
        ("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("div", "Div"), ("neg", "Neg"),
        ("exp", "Exp"), ("log", "Log"), ("max", "Max"), ("matmul", "MatMul"),
        ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("relu", "Relu")]},
    "square": _square, "sum": _sum, "mean": _mean, "affine": _affine, "reshape": _reshape,
    "leaky_relu": _leaky_relu, "prelu": _prelu, "elu": _elu, "maxout": _maxout,
    "softmax_cross_entropy": _softmax_ce, "svm_loss": _svm, "l2": _l2,
    "conv2d": _conv, "max_pool2d": _pool("MaxPool"), "avg_pool2d": _pool("AveragePool"),
    "global_avg_pool": _global_avg, "batchnorm": _batchnorm, "layernorm": _layernorm,
    "dropout": _identity, "flatten": _with_attrs("Flatten", axis="axis"),
    "transpose": _with_attrs("Transpose", perm="perm"), "concat": _with_attrs("Concat", axis="axis"),
    "pad": _pad, "clip": _clip, "softmax": _with_attrs("Softmax", axis="axis"),
    "log_softmax": _with_attrs("LogSoftmax", axis="axis"),
    "reduce_sum": _reduce_axes("ReduceSum"), "reduce_mean": _reduce_axes("ReduceMean"),
    "reduce_max": _reduce_axes("ReduceMax"), "slice": _slice, "cast": _cast,
    "gather": _with_attrs("Gather", axis="axis"),

    # issue 14 (ONNX losses, layernorm statistics, activations)
    "nll_loss": _nll, "layernorm_stat": _layernorm_stat, "erf": _simple("Erf"),
    "onnx_gelu": _gelu, "onnx_softplus": _simple("Softplus"), "hard_sigmoid": _hard(False),
    "hard_swish": _hard(True), "dropout_mask": _dropout_mask, "argmax": _argmax,
    # the ops of PyTorch exports
    **{op: _simple(onnx_op) for op, onnx_op in [
        ("sqrt", "Sqrt"), ("abs", "Abs"), ("reciprocal", "Reciprocal"), ("pow", "Pow"),
        ("where", "Where")]},
    "pow_scalar": _pow_scalar, "mish": _mish, "compare": _compare, "full_like": _full_like,
}


def custom_node(em: Emitter, n: Node, ins: list[str], out: str) -> None:
    """A gate ONNX has no op for: domain ``graphexec.<dist>``, op_type = gate name."""
    domain = custom_domain(n.info.dist)
    em.domains[domain] = max(em.domains.get(domain, 1), n.version)
    attrs: dict[str, Any] = {META["version"]: n.version, META["dist"]: n.info.dist,
                             META["dist_version"]: n.info.dist_version}
    for k, v in n.attrs.items():
        if _plain_attr(v):
            attrs[k] = v
        else:  # ONNX attributes hold numbers, strings and flat lists of them; the rest as JSON
            attrs[f"{k}__json"] = json.dumps(v, sort_keys=True)
    em.node(n.op, ins, out, domain=domain, **attrs)


def _plain_attr(v: Any) -> bool:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return True
    if isinstance(v, (list, tuple)) and v:
        kinds = {type(x) for x in v}
        return kinds <= {int} or kinds <= {float, int} or kinds <= {str}
    return False


