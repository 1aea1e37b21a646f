"""Constant folding at import: the shape arithmetic that exporters write.

PyTorch's TorchScript exporter writes ``x.view(x.size(0), -1)`` as Shape → Gather → Unsqueeze →
Concat → Reshape, and other tools write Constant / ConstantOfShape nodes. Once the input's
non-batch dimensions are known (from the model's declared shapes), such chains have a fixed
value, except for the batch size itself. This pass computes them before translation: a value
whose every entry is known becomes a constant; a shape holding a dimension known only when the
model runs (``Dim``) stays symbolic, and Reshape resolves it (``reshape_target``). The folded
nodes are skipped by the importer.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Dim", "fold", "reshape_target"]

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Dim:
    """Dimension ``axis`` of value ``of``, a size known only when the model runs."""

    of: str
    axis: int


Entries = list[Any]  # ints and Dims: a 1-D int64 value (``scalar`` in Sym: a 0-D one)


@dataclass
class Sym:
    entries: Entries
    scalar: bool = False


def fold(imp: Any) -> dict[str, Sym]:
    """Fold the shape chains of ``imp``'s graph into ``imp.consts`` (fully known) or the returned
    symbolic values; adds the folded nodes to ``imp.skip``."""
    syms: dict[str, Sym] = {}
    for k, node in enumerate(imp.graph.node):
        if k in imp.skip or node.domain not in DEFAULT_DOMAINS or not node.output:
            continue
        if len(node.input) < _ARITY.get(node.op_type, 1) or not all(node.input[:1]):
            continue  # malformed: left to the translator, which refuses it
        got = _STEP.get(node.op_type, _none)(imp, node, syms)
        if got is None:
            continue
        out = node.output[0]
        if all(isinstance(e, (int, np.integer)) for e in got.entries):
            arr = np.asarray(got.entries, dtype=np.int64)
            imp.consts[out] = arr.reshape(()) if got.scalar else arr
        else:
            syms[out] = got
        imp.skip.add(k)
    _propagate_dims(imp, syms)
    return syms


_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "Max", "Min", "Sum", "Neg", "Relu",
                "Sigmoid", "Tanh", "Exp", "Log", "Abs", "Sqrt", "Identity", "Cast", "Reciprocal"}


def _propagate_dims(imp: Any, syms: dict[str, Sym]) -> None:
    """Symbolic dimension names past where ONNX's shape inference drops them: a
    ConstantOfShape of ``Shape(v)`` has v's names, and a broadcasting elementwise op the names
    its inputs agree on (an input of size 1 there broadcasts). Read by ``Importer.same_size``."""
    for node in imp.graph.node:
        if not node.output or node.domain not in DEFAULT_DOMAINS:
            continue
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in syms:
            names = [imp.dim_params.get(e.of, ())[e.axis:e.axis + 1] if isinstance(e, Dim)
                     else () for e in syms[node.input[0]].entries]
            imp.dim_params[node.output[0]] = tuple(n[0] if n else None for n in names)
        elif node.op_type in _ELEMENTWISE:
            got = _broadcast_names(imp, [i for i in node.input if i])
            if got is not None:
                imp.dim_params[node.output[0]] = got


def _broadcast_names(imp: Any, ins: list[str]) -> tuple[str | None, ...] | None:
    shapes = [(imp.shape(i), imp.dim_params.get(i)) for i in ins]
    if not shapes or any(s is None or n is None or len(s) != len(n) for s, n in shapes):
        return None
    rank = max(len(s) for s, _ in shapes)
    out: list[str | None] = []
    for axis in range(rank):
        seen = set()
        for s, n in shapes:
            k = axis - (rank - len(s))
            if k < 0 or s[k] == 1:
                continue  # broadcast: this input does not decide the size
            seen.add(n[k] if s[k] is None else s[k])
        only = seen.pop() if len(seen) == 1 else None
        out.append(only if isinstance(only, str) else None)
    return tuple(out)


def _none(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    return None


def _value(imp: Any, name: str, syms: dict[str, Sym]) -> Sym | None:
    if name in syms:
        return syms[name]
    v = imp.consts.get(name)
    if v is None or v.dtype.kind not in "iu" or v.ndim > 1:
        return None
    return Sym([int(e) for e in v.reshape(-1)], scalar=v.ndim == 0)


def _shape(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    shape = imp.shape(node.input[0])
    if shape is None:
        return None
    a = imp.attrs(node)
    entries = [int(d) if d is not None else Dim(node.input[0], i) for i, d in enumerate(shape)]
    start, end = int(a.get("start", 0)), a.get("end")
    return Sym(entries[start:None if end is None else int(end)])


def _gather(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    data, idx = _value(imp, node.input[0], syms), _value(imp, node.input[1], syms)
    if data is None or idx is None or data.scalar or int(imp.attrs(node).get("axis", 0)):
        return None
    if not all(isinstance(i, int) and -len(data.entries) <= i < len(data.entries)
               for i in idx.entries):
        return None
    return Sym([data.entries[i] for i in idx.entries], scalar=idx.scalar)


def _unsqueeze(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    v = _value(imp, node.input[0], syms)
    axes = (imp.attrs(node).get("axes") if len(node.input) < 2
            else imp.consts.get(node.input[1]))
    if v is None or not v.scalar or axes is None or [int(a) for a in np.ravel(axes)] not in (
            [0], [-1]):
        return None
    return Sym(list(v.entries))


def _concat(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    parts = [_value(imp, i, syms) for i in node.input]
    if any(p is None or p.scalar for p in parts) or imp.attrs(node).get("axis", 0) not in (0, -1):
        return None
    return Sym([e for p in parts if p is not None for e in p.entries])


def _slice(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    """Slice of a 1-D shape value (``x.shape[1:]``): ONNX slicing is Python's."""
    v = _value(imp, node.input[0], syms)
    if v is None or v.scalar:
        return None
    if imp.opset >= 10:
        parts = [imp.consts.get(n) if n else None for n in list(node.input[1:5])]
        if any(n and p is None for n, p in zip(node.input[1:5], parts)):
            return None  # a computed or run-time bound: translated (or refused) as a Slice
        starts, ends, axes, steps = (parts + [None] * 4)[:4]
    else:
        a = imp.attrs(node)
        starts, ends, axes, steps = (a.get(k) for k in ("starts", "ends", "axes", "steps"))
    if starts is None or ends is None or np.size(starts) != 1 or np.size(ends) != 1:
        return None
    if axes is not None and [int(x) for x in np.ravel(axes)] not in ([0], [-1]):
        return None
    step = 1 if steps is None else int(np.ravel(steps)[0])
    if step == 0:
        return None
    return Sym(v.entries[int(np.ravel(starts)[0]):int(np.ravel(ends)[0]):step])


def _cast(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    """A Cast of a symbolic shape to int32/int64 stays that shape; a Cast of a constant to a
    graphexec dtype is that constant converted (PyTorch writes ``x.clamp(-1, 1)``'s bounds as
    Cast(Constant)): stored directly, like ConstantOfShape."""
    to = imp.attrs(node).get("to")
    v = imp.consts.get(node.input[0])
    if v is not None and node.input[0] not in syms:
        dt = _cast_dtype(to)
        if dt is not None and v.dtype.kind in "biuf" and _exact_cast(v, dt):
            imp.consts[node.output[0]] = np.asarray(v).astype(dt)
            imp.skip.add(list(imp.graph.node).index(node))
        return None
    if to not in (6, 7) or node.input[0] not in syms:
        return None  # only shape values already symbolic; other casts are translated
    return syms[node.input[0]]


def _cast_dtype(to: Any) -> np.dtype[Any] | None:
    from graphexec.dtypes import DTYPE_NAMES
    from graphexec.onnx_io.common import OnnxImportError, numpy_dtype

    try:
        dt = numpy_dtype(int(to or 0), "Cast")
    except OnnxImportError:
        return None
    return dt if dt.name in DTYPE_NAMES else None


def _exact_cast(v: np.ndarray, dt: np.dtype[Any]) -> bool:
    """Folded only where numpy's conversion is ONNX's: to bool (x != 0), to a float (IEEE
    round to nearest), float to an integer type that holds the truncated values (C's
    truncation toward zero), integer to an integer type that holds the values."""
    if dt.kind in "bf":
        return True
    if v.dtype.kind == "f":
        t = np.trunc(v[np.isfinite(v)])
        info = np.iinfo(dt)
        return bool(np.isfinite(v).all() and (t >= info.min).all() and (t <= info.max).all())
    with np.errstate(all="ignore"):
        back = np.asarray(v).astype(dt)
    return bool(np.array_equal(back.astype(v.dtype), v))


def _identity(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    """Identity of a constant is that constant (TorchScript writes ``Identity(1.weight)`` for an
    initializer equal to another, e.g. a fresh BatchNorm's running variance, all ones)."""
    v = imp.consts.get(node.input[0])
    if v is not None:
        imp.consts[node.output[0]] = v
        imp.skip.add(list(imp.graph.node).index(node))
        return None
    return syms.get(node.input[0])


def _constant_of_shape(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    shape = imp.consts.get(node.input[0])
    if shape is None:
        return None
    value = imp.attrs(node).get("value")
    fill = np.asarray(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    imp.consts[node.output[0]] = np.full([int(d) for d in shape.reshape(-1)], fill[0], fill.dtype)
    return None  # stored directly: any dtype, any rank


def _constant_of_shape_step(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    before = node.output[0] in imp.consts
    _constant_of_shape(imp, node, syms)
    if not before and node.output[0] in imp.consts:
        imp.skip.add(list(imp.graph.node).index(node))
    return None


def _int64(imp: Any, name: str, syms: dict[str, Sym]) -> Sym | None:
    """``name`` as an int64 value with every entry known (a Shape chain's type), else None."""
    v = _value(imp, name, syms)
    if v is None or (name in imp.consts and imp.consts[name].dtype != np.int64):
        return None
    return v if all(isinstance(e, (int, np.integer)) for e in v.entries) else None


def _arith(imp: Any, node: Any, syms: dict[str, Sym]) -> Sym | None:
    """Add / Sub / Mul / Div of known int64 shape values (TorchScript writes ``x.chunk(2, 1)``'s
    bounds as Gather(Shape) + 1, / 2, * k). Div only of non-negative values, where ONNX's
    integer division and Python's floor division agree."""
    a, b = (_int64(imp, i, syms) for i in node.input[:2])
    if a is None or b is None or len(node.input) != 2:
        return None
    xs, ys = a.entries, b.entries
    if len(xs) != len(ys) and 1 not in (len(xs), len(ys)):
        return None
    n = max(len(xs), len(ys))
    xs, ys = (xs * n if len(xs) == 1 else xs), (ys * n if len(ys) == 1 else ys)
    if node.op_type == "Div" and any(x < 0 or y <= 0 for x, y in zip(xs, ys)):
        return None
    f = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul,
         "Div": operator.floordiv}[node.op_type]
    out = [int(f(int(x), int(y))) for x, y in zip(xs, ys)]
    if any(abs(v) >= 2 ** 62 for v in out):
        return None
    return Sym(out, scalar=a.scalar and b.scalar)


# inputs a step reads by position (default 1)
_ARITY = {"Gather": 2, "Concat": 1, "Add": 2, "Sub": 2, "Mul": 2, "Div": 2}
_STEP = {"Shape": _shape, "Gather": _gather, "Unsqueeze": _unsqueeze, "Concat": _concat,
         "Slice": _slice, "Cast": _cast, "ConstantOfShape": _constant_of_shape_step,
         "Identity": _identity, "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith}


def reshape_target(imp: Any, x: str, entries: Entries) -> list[int] | None:
    """A symbolic Reshape shape as graphexec's fixed one: the run-time dimension becomes -1 when
    it is the only unknown entry; with an explicit -1 as well, that -1 is computed from x's known
    sizes when the run-time entry is as long as the same axis of x (that axis of x itself, or
    one with the same symbolic name: ``conv(x).view(x.size(0), -1)``). None if neither holds."""
    dims = [i for i, e in enumerate(entries) if isinstance(e, Dim)]
    if len(dims) != 1:
        return None
    j = dims[0]
    rest = [int(e) for i, e in enumerate(entries) if i != j]
    if -1 not in rest:
        return [-1 if i == j else int(e) for i, e in enumerate(entries)]
    d, shape = entries[j], imp.shape(x)
    if not imp.same_size(d.of, d.axis, x, j) or shape is None or rest.count(-1) != 1:
        return None
    others = [s for i, s in enumerate(shape) if i != j]
    if any(s is None for s in others):
        return None
    known = math.prod(e for e in rest if e != -1)
    total = math.prod(int(s) for s in others)
    if known == 0 or total % known:
        return None
    return [-1 if i == j else total // known if e == -1 else int(e)
            for i, e in enumerate(entries)]
