"""ONNX → graphexec translators whose shapes, axes or bounds are operands: reductions over axes,
Squeeze / Unsqueeze, Clip, Slice, Gather and Cast.

Each reads those operands as constants at import (``Importer.const_input``): an initializer, a
folded value, or a graph input bound with ``import_onnx(..., constants=...)``. An unbound graph
input raises ``NeedsValue``, which the import reports as one ``OnnxNeedsConstantsError`` naming
every such input (the ONNX backend binds them per run). ``TRANSLATORS`` here overrides the
network table's entries for these ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphexec.dtypes import DTYPE_NAMES
from graphexec.onnx_io.common import OnnxImportError, numpy_dtype
from graphexec.onnx_io.translate import Importer, Translate
from graphexec.onnx_io.translate import _reshape as _reshape_basic

__all__ = ["TRANSLATORS"]

#: The opset from which each reduction takes its axes as input #2 instead of an attribute.
AXES_INPUT_FROM = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceSumSquare": 18,
                   "ReduceL2": 18}


def _ints(v: Any) -> list[int]:
    return [int(e) for e in np.ravel(v)]


def _axes(imp: Importer, node: Any, since: int) -> list[int] | None:
    """The node's axes: input #2 from opset ``since``, else the ``axes`` attribute (None: absent)."""
    if imp.opset >= since:
        v = imp.const_input(node, 1, "axes")
        return None if v is None else _ints(v)
    a = imp.attrs(node).get("axes")
    return None if a is None else _ints(a)


def _rank(imp: Importer, node: Any) -> int:
    shape = imp.shape(node.input[0])
    if shape is None:
        raise imp.refuse(node, f"the rank of {node.input[0]!r} is unknown (ONNX shape inference "
                               "gave none)")
    return len(shape)


def _reduce(op: str, square: bool = False, root: bool = False) -> Translate:
    """ReduceSum / ReduceMean / ReduceMax → reduce_sum / reduce_mean / reduce_max: no axes
    reduces every axis, unless noop_with_empty_axes=1 (then the identity). ReduceSumSquare is
    reduce_sum of ``square`` (x²), ReduceL2 its ``sqrt`` (floats only: ONNX would truncate an
    integer root)."""
    def tr(imp: Importer, node: Any) -> None:
        a, out, x = imp.attrs(node), node.output[0], imp.ref(node.input[0])
        axes = _axes(imp, node, AXES_INPUT_FROM[node.op_type])
        if not axes and a.get("noop_with_empty_axes", 0):
            imp.emit("reduce_" + op, [x], out, axes=[], keepdims=True)  # ONNX: x unchanged
            return
        keep = bool(a.get("keepdims", 1))
        rank = _rank(imp, node) if axes else None
        if rank is not None and any(not -rank <= v < rank for v in axes or ()):
            raise imp.refuse(node, f"axes {axes} are out of range for rank {rank}")
        dt = imp.dtype(node.input[0])
        if root and (dt is None or dt.kind != "f"):
            raise imp.refuse(node, f"input of dtype {dt}; graphexec takes ReduceL2 of floats "
                                   "(ONNX casts an integer root back, truncating it)")
        if square:
            x = imp.emit("square", [x], hint=f"{out}_square")
        y = None if root else out
        every = not axes or (rank is not None and len({v % rank for v in axes}) == rank)
        if every and not keep and op in ("sum", "mean") and dt is not None and dt.kind == "f":
            y = imp.emit(op, [x], y, hint=f"{out}_sum")  # the scalar gate
        else:
            y = imp.emit("reduce_" + op, [x], y, hint=f"{out}_sum", axes=axes or None,
                         keepdims=keep)
        if root:
            imp.emit("sqrt", [y], out)
    return tr


def _squeeze(imp: Importer, node: Any) -> None:
    """Squeeze → reshape to x's shape without the given size-1 axes (default: every one)."""
    shape = imp.shape(node.input[0])
    axes = _axes(imp, node, 13)
    if shape is None:
        raise imp.refuse(node, f"the shape of {node.input[0]!r} is unknown")
    rank = len(shape)
    if axes is None:
        if any(d is None for d in shape):
            raise imp.refuse(node, f"no axes, and input shape {shape} has sizes known only at "
                                   "run time (which of them are 1 is unknown)")
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        if any(not -rank <= v < rank for v in axes):
            raise imp.refuse(node, f"axes {axes} are out of range for rank {rank}")
        drop = {v % rank for v in axes}
        if any(shape[i] not in (1, None) for i in drop):
            raise imp.refuse(node, f"axes {axes} name an axis of size other than 1 in {shape}")
    out = [d for i, d in enumerate(shape) if i not in drop]
    if None in out and any(shape[i] is None for i in drop):
        raise imp.refuse(node, f"input shape {shape}: a squeezed axis and a kept one have sizes "
                               "known only at run time, so a reshape could not check that the "
                               "squeezed one is 1")
    _reshape_to(imp, node, out)


def _unsqueeze(imp: Importer, node: Any) -> None:
    """Unsqueeze → reshape to x's shape with size-1 axes inserted at ``axes`` (of the output)."""
    shape = imp.shape(node.input[0])
    axes = _axes(imp, node, 13)
    if shape is None or axes is None:
        raise imp.refuse(node, f"needs axes and a known input rank; got axes {axes}, shape "
                               f"{shape}")
    rank = len(shape) + len(axes)
    if any(not -rank <= v < rank for v in axes) or len({v % rank for v in axes}) != len(axes):
        raise imp.refuse(node, f"axes {axes} are out of range or repeated for output rank {rank}")
    ones = {v % rank for v in axes}
    rest = iter(shape)
    _reshape_to(imp, node, [1 if i in ones else next(rest) for i in range(rank)])


def _reshape_to(imp: Importer, node: Any, out: list[int | None]) -> None:
    if sum(d is None for d in out) > 1:
        raise imp.refuse(node, f"output shape {out}: a reshape needs all but one size known")
    imp.emit("reshape", [imp.ref(node.input[0])], node.output[0],
             shape=[-1 if d is None else int(d) for d in out])


def _clip(imp: Importer, node: Any) -> None:
    """Clip → clip with float bounds; min > max gives max everywhere (ONNX), i.e. clip(max, max)."""
    a = imp.attrs(node)
    lo, hi = a.get("min"), a.get("max")
    if imp.opset >= 11:
        lo_v, hi_v = imp.const_input(node, 1, "min"), imp.const_input(node, 2, "max")
        lo = None if lo_v is None else lo_v.item()
        hi = None if hi_v is None else hi_v.item()
    dt = _dtype(imp, node.input[0])
    if dt is None or dt.kind not in "fiu" or (dt.kind in "iu" and dt.itemsize > 4):
        raise imp.refuse(node, f"input dtype {dt}; graphexec's clip takes floats and integers of "
                               "up to 32 bits (it clips in float64, exact for those)")
    if lo is not None and hi is not None and lo > hi:
        lo = hi
    bounds: dict[str, Any] = {k: float(np.asarray(v, dt)) for k, v in (("min", lo), ("max", hi))
                              if v is not None}
    imp.emit("clip", [imp.ref(node.input[0])], node.output[0], **bounds)


def _dtype(imp: Importer, name: str) -> np.dtype[Any] | None:
    """The numpy dtype of value ``name`` (None: unknown, or a type graphexec lacks)."""
    if name in imp.consts:
        return imp.consts[name].dtype
    try:
        return numpy_dtype(imp.types.get(name, (0, None))[0], name)
    except OnnxImportError:
        return None


def _slice(imp: Importer, node: Any) -> None:
    """Slice → slice: starts, ends, axes, steps as inputs (opset >= 10) or attributes."""
    if imp.opset >= 10:
        vals = [imp.const_input(node, i, what)
                for i, what in enumerate(("starts", "ends", "axes", "steps"), 1)]
        starts, ends, axes, steps = (None if v is None else _ints(v) for v in vals)
    else:
        a = imp.attrs(node)
        starts, ends, axes, steps = (None if a.get(k) is None else _ints(a[k])
                                     for k in ("starts", "ends", "axes", "steps"))
    if starts is None or ends is None:
        raise imp.refuse(node, "expected starts and ends, found none")
    if steps is not None and 0 in steps:
        raise imp.refuse(node, f"steps {steps} has a 0; ONNX requires non-zero steps")
    if axes is not None:
        rank = _rank(imp, node)
        if any(not -rank <= v < rank for v in axes) or len({v % rank for v in axes}) != len(axes):
            raise imp.refuse(node, f"axes {axes} are out of range or repeated for rank {rank}")
    if len(ends) != len(starts) or any(v is not None and len(v) != len(starts)
                                       for v in (axes, steps)):
        raise imp.refuse(node, f"starts {starts}, ends {ends}, axes {axes}, steps {steps} "
                               "differ in length")
    imp.emit("slice", [imp.ref(node.input[0])], node.output[0], starts=starts, ends=ends,
             axes=axes, steps=steps)


def _gather(imp: Importer, node: Any) -> None:
    """Gather → gather (x, indices): the indices are an operand, constant or computed."""
    imp.emit("gather", [imp.ref(node.input[0]), imp.ref(node.input[1])], node.output[0],
             axis=int(imp.attrs(node).get("axis", 0)))


def _cast(imp: Importer, node: Any) -> None:
    """Cast → cast to the graphexec dtype of ``to`` (an ONNX type graphexec lacks: refused by
    name)."""
    code = int(imp.attrs(node).get("to", 0))
    try:
        to = numpy_dtype(code, "Cast")
    except OnnxImportError:
        to = None
    if to is None or to.name not in DTYPE_NAMES:
        try:
            kind = imp.onnx.TensorProto.DataType.Name(code)
        except ValueError:
            kind = "unknown"
        raise imp.refuse(node, f"target type {kind} ({code}) is not a graphexec dtype; "
                               f"graphexec casts to {', '.join(DTYPE_NAMES)}") from None
    imp.emit("cast", [imp.ref(node.input[0])], node.output[0], to=to.name)


def _arity(tr: Translate, least: int) -> Translate:
    """``tr`` for a node with at least ``least`` inputs (a malformed node is refused, not
    indexed past its end)."""
    def checked(imp: Importer, node: Any) -> None:
        given = [i for i in node.input[:least] if i]
        if len(given) < least or not node.output:
            raise imp.refuse(node, f"expected at least {least} input(s) and an output, found "
                                   f"{len(given)} input(s) and {len(node.output)} output(s)")
        tr(imp, node)
    return checked


#: ONNX op (default domain) -> translator, for the ops whose operands are shapes or axes.
TRANSLATORS: dict[str, Translate] = {
    "ReduceSum": _arity(_reduce("sum"), 1), "ReduceMean": _arity(_reduce("mean"), 1),
    "ReduceMax": _arity(_reduce("max"), 1),
    "ReduceSumSquare": _arity(_reduce("sum", square=True), 1),
    "ReduceL2": _arity(_reduce("sum", square=True, root=True), 1), "Squeeze": _arity(_squeeze, 1),
    "Unsqueeze": _arity(_unsqueeze, 1), "Clip": _arity(_clip, 1), "Slice": _arity(_slice, 1),
    "Gather": _arity(_gather, 2), "Cast": _arity(_cast, 1), "Reshape": _arity(_reshape_basic, 2),
}
