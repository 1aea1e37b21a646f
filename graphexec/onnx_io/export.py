"""graphexec → ONNX: the forward graph as standard ONNX ops, parameters as initializers.

Each built-in gate becomes one ONNX op or a short decomposition (``EMITTERS``); a gate from another
distribution goes into the custom domain ``graphexec.<dist>`` with op_type = the gate's name and its
version and distribution recorded as attributes. The model passes ``onnx.checker.check_model``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphexec.builder import probe_shapes
from graphexec.graph import Graph, Node
from graphexec.onnx_io.common import (
    OnnxExportError,
    custom_domain,
    onnx_elem_type,
    require_onnx,
)
from graphexec.registry import OWN_DIST

__all__ = ["DEFAULT_OPSET", "EMITTERS", "export_onnx"]

DEFAULT_OPSET = 17
META = {"version": "graphexec_version", "dist": "graphexec_distribution",
        "dist_version": "graphexec_dist_version"}


class _Emitter:
    """Collects ONNX nodes and initializers; hands out fresh value names."""

    def __init__(self, onnx: Any, graph: Graph, opset: int):
        self.onnx, self.h, self.opset = onnx, onnx.helper, opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.domains: dict[str, int] = {}
        self.taken = set(graph.inputs) | set(graph.params) | {n.name for n in graph.nodes}
        self.taken |= set(graph.output_map)

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


Emit = Callable[[_Emitter, Node, list[str], str, np.dtype], None]


def _simple(op: str) -> Emit:
    def emit(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
        em.node(op, ins, out)
    return emit


def _where_positive(em: _Emitter, x: str, neg: str, out: str, p: str, dt: np.dtype) -> None:
    """out = x where x > 0, else ``neg`` (float64 stand-in for onnxruntime's float32-only kernels)."""
    zero = em.const(0.0, dt, f"{p}_zero")
    em.node("Where", [em.node("Greater", [x, zero], hint=f"{p}_pos"), x, neg], out)


def _leaky_relu(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    alpha = float(n.attrs.get("alpha", 0.01))
    if dt != np.float64:
        em.node("LeakyRelu", ins, out, alpha=alpha)
        return
    # onnxruntime has no float64 LeakyRelu/PRelu kernels, and ONNX float attributes are float32
    slope = em.const(alpha, dt, f"{n.name}_alpha")
    scaled = em.node("Mul", [ins[0], slope], hint=f"{n.name}_neg_branch")
    _where_positive(em, ins[0], scaled, out, n.name, dt)


def _prelu(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    if dt != np.float64:
        em.node("PRelu", ins, out)
        return
    scaled = em.node("Mul", [ins[0], ins[1]], hint=f"{n.name}_neg_branch")
    _where_positive(em, ins[0], scaled, out, n.name, dt)


def _square(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("Mul", [ins[0], ins[0]], out)


def _sum(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    em.reduce("ReduceSum", ins[0], out, None)


def _mean(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    em.reduce("ReduceMean", ins[0], out, None)


def _affine(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    xw = em.node("MatMul", ins[:2], hint=f"{n.name}_xW")
    em.node("Add", [xw, ins[2]], out)


def _reshape(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    shape = list(n.attrs.get("shape", [-1]))
    extra: dict[str, Any] = {"allowzero": 1} if 0 in shape else {}  # ONNX 0: "copy this dim"
    em.node("Reshape", [ins[0], em.const(shape, np.int64, f"{n.name}_shape")], out, **extra)


def _elu(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
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


def _maxout(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    x, w, b = ins
    pieces = em.node("MatMul", [x, w], hint=f"{n.name}_xW")  # (N,D) @ (k,D,H) -> (k,N,H)
    shifted = em.node("Add", [pieces, em.unsqueeze(b, 1, f"{n.name}_b")], hint=f"{n.name}_pieces")
    em.reduce("ReduceMax", shifted, out, [0], hint=f"{n.name}_max")


def _softmax_ce(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    em.node("SoftmaxCrossEntropyLoss", ins, out, reduction="mean")


def _svm(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
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


def _l2(em: _Emitter, n: Node, ins: list[str], out: str, dt: np.dtype) -> None:
    sq = em.node("Mul", [ins[0], ins[0]], hint=f"{n.name}_sq")
    total = em.reduce("ReduceSum", sq, None, None, hint=f"{n.name}_sum")
    half = 0.5 * float(n.attrs.get("scale", 1.0))  # y = ½ · scale · Σx²
    em.node("Mul", [total, em.const(half, dt, f"{n.name}_half")], out)


#: Built-in op -> how it is written in ONNX.
EMITTERS: dict[str, Emit] = {
    **{op: _simple(onnx_op) for op, onnx_op in [
        ("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("div", "Div"), ("neg", "Neg"),
        ("exp", "Exp"), ("log", "Log"), ("max", "Max"), ("matmul", "MatMul"),
        ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("relu", "Relu")]},
    "square": _square, "sum": _sum, "mean": _mean, "affine": _affine, "reshape": _reshape,
    "leaky_relu": _leaky_relu, "prelu": _prelu, "elu": _elu, "maxout": _maxout,
    "softmax_cross_entropy": _softmax_ce, "svm_loss": _svm, "l2": _l2,
}


def _custom(em: _Emitter, n: Node, ins: list[str], out: str) -> None:
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


# ---------------------------------------------------------------------------- the model
def export_onnx(graph: Graph, path: str | os.PathLike[str] | None = None, *,
                opset: int = DEFAULT_OPSET,
                input_shapes: Mapping[str, Sequence[int | None]] | None = None) -> Any:
    """The forward graph as an ONNX ``ModelProto`` (written to ``path`` if given).

    Inputs keep their dtype and shape (a None dimension becomes the symbolic ``<input>_dim<i>``);
    an input declared with no shape at all needs its rank from ``input_shapes``. Parameters become
    initializers. Raises OnnxExportError for what ONNX cannot express, OnnxUnavailableError
    without the ``onnx`` package.
    """
    onnx = require_onnx()
    top = onnx.defs.onnx_opset_version()
    if not DEFAULT_OPSET <= opset <= top:
        raise OnnxExportError(f"opset {opset} is not supported: choose {DEFAULT_OPSET} to {top} "
                              "(the installed onnx package's newest)")
    em = _Emitter(onnx, graph, opset)
    dtypes = _dtypes(graph)
    for n in graph.nodes:
        emit = EMITTERS.get(n.op) if n.info.dist == OWN_DIST else None
        if emit is not None:
            emit(em, n, list(n.inputs), n.name, dtypes[n.name])
        else:
            _custom(em, n, list(n.inputs), n.name)
    _identity_outputs(em, graph)
    h = onnx.helper
    inputs = [h.make_tensor_value_info(d.name, onnx_elem_type(d.dtype),
                                       _input_dims(d, input_shapes)) for d in graph.input_decls]
    params = [onnx.numpy_helper.from_array(np.ascontiguousarray(v), k)
              for k, v in graph.params.items()]
    outputs = [h.make_tensor_value_info(k, onnx_elem_type(dtypes[src]), None)
               for k, src in graph.output_map.items()]
    body = h.make_graph(em.nodes, graph.name, inputs, outputs, initializer=params + em.inits,
                        doc_string=graph.metadata.get("description", ""))
    opsets = [h.make_opsetid("", opset)]
    opsets += [h.make_opsetid(d, v) for d, v in sorted(em.domains.items())]
    from graphexec import __version__

    model = h.make_model(body, opset_imports=opsets, producer_name="graphexec",
                         producer_version=__version__)
    model.ir_version = h.find_min_ir_version_for(opsets, ignore_unknown=True)
    if graph.metadata:
        h.set_model_props(model, dict(graph.metadata))
    _output_shapes(onnx, model, graph)
    onnx.checker.check_model(model)
    if path is not None:
        _save(model.SerializeToString(), os.fspath(path))
    return model


def _dtypes(graph: Graph) -> dict[str, np.dtype]:
    """Each value's dtype: a gate returns the dtype of its first float input (labels are ints)."""
    dt: dict[str, np.dtype] = {d.name: d.dtype for d in graph.input_decls}
    dt.update({k: v.dtype for k, v in graph.params.items()})
    for n in graph.nodes:
        ins = [dt[s] for s in n.inputs]
        floats = [d for d in ins if d.kind == "f"]
        dt[n.name] = floats[0] if floats else ins[0]
    return dt


def _input_dims(d: Any, overrides: Mapping[str, Sequence[int | None]] | None) -> list[Any]:
    shape = d.shape if d.shape is not None else (overrides or {}).get(d.name)
    if shape is None:
        raise OnnxExportError(
            f"input {d.name!r} declares no shape, and ONNX needs at least its rank: declare it "
            f"(GraphBuilder.input({d.name!r}, shape=(None, ...))) or pass "
            f"input_shapes={{{d.name!r}: (None, ...)}}")
    return [f"{d.name}_dim{i}" if n is None else int(n) for i, n in enumerate(shape)]


def _identity_outputs(em: _Emitter, graph: Graph) -> None:
    """ONNX names an output by its value: an output named apart from its value gets an Identity."""
    values = set(graph.inputs) | set(graph.params) | {n.name for n in graph.nodes}
    for name, src in graph.output_map.items():
        if name == src:
            continue
        if name in values:
            raise OnnxExportError(f"output {name!r} shows {src!r}, but {name!r} is also the name "
                                  "of another value; ONNX names outputs by value: rename the "
                                  "output")
        em.node("Identity", [src], name)


def _output_shapes(onnx: Any, model: Any, graph: Graph) -> None:
    """Give each output its shape (the checker wants every output's rank): from ONNX shape
    inference, or, where that cannot tell (custom ops), the rank from a graphexec probe run."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        infos = list(inferred.graph.output) + list(inferred.graph.value_info)
        known = {v.name: v.type for v in infos}
    except Exception:  # inference is a help here, not a requirement
        known = {}
    ranks: dict[str, int] | None = None
    for out in model.graph.output:
        t = known.get(out.name)
        if t is not None and t.tensor_type.HasField("shape"):
            out.type.tensor_type.shape.CopyFrom(t.tensor_type.shape)
            continue
        if ranks is None:
            ranks = _probe_ranks(graph)
        rank = ranks.get(out.name)
        if rank is None:
            raise OnnxExportError(f"cannot tell the rank of output {out.name!r} (ONNX shape "
                                  "inference and a sample run both failed)")
        out.type.tensor_type.shape.dim.extend([onnx.TensorShapeProto.Dimension()] * rank)


def _probe_ranks(graph: Graph) -> dict[str, int]:
    from graphexec.executor import run

    try:
        probe_shapes(graph)  # validates first, with the builder's sample data
        rng = np.random.default_rng(0)
        feed = {d.name: (rng.uniform(0.5, 1.5, [2 if n is None else n for n in d.shape or ()])
                         .astype(d.dtype) if d.dtype.kind == "f"
                         else np.zeros([2 if n is None else n for n in d.shape or ()], d.dtype))
                for d in graph.input_decls}
        with np.errstate(all="ignore"):
            return {k: v.ndim for k, v in run(graph, feed).items()}
    except Exception:
        return {}


def _save(data: bytes, path: str) -> None:
    from graphexec.fileformat.atomic import atomic_write

    atomic_write(path, [data])
