"""ONNX → graphexec translators for the elementwise ops and splits that PyTorch exports write
beyond the network ops: Sqrt, Abs, Reciprocal, Pow (constant exponent), Mish, Where, the
comparisons (Greater, Less, GreaterOrEqual, LessOrEqual, Equal), Split, Expand, and
ConstantOfShape of a shape known only when the model runs.

Each maps to a gate that computes the ONNX op exactly, or refuses naming the setting it cannot
represent (a computed exponent, an Expand to a size known only when the model runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphexec.dtypes import DTYPE_NAMES
from graphexec.onnx_io.translate import Importer, Translate
from graphexec.onnx_io.translate_shape import _dtype

__all__ = ["TRANSLATORS"]


def _float_unary(op: str) -> Translate:
    def tr(imp: Importer, node: Any) -> None:
        dt = imp.dtype(node.input[0])
        if dt is None or dt.kind != "f":
            raise imp.refuse(node, f"input dtype {dt}; graphexec's {op} takes float32/float64")
        imp.emit(op, [imp.ref(node.input[0])], node.output[0])
    return tr


def _abs(imp: Importer, node: Any) -> None:
    imp.emit("abs", [imp.ref(node.input[0])], node.output[0])


def _pow(imp: Importer, node: Any) -> None:
    """Pow(x, p): a float x to one constant value p → pow_scalar; anything else (a computed or
    non-uniform exponent, an integer x) → pow, ONNX's np.power(x, p).astype(x.dtype)."""
    dt = _dtype(imp, node.input[0])
    p = imp.const_input(node, 1, "exponent") if node.input[1] in imp.consts else None
    x_shape = imp.shape(node.input[0])
    if (dt is not None and dt.kind == "f" and p is not None and p.size > 0
            and np.all(p == p.reshape(-1)[0]) and np.isfinite(p.reshape(-1)[0])
            and p.ndim <= (len(x_shape) if x_shape is not None else 0)):
        imp.emit("pow_scalar", [imp.ref(node.input[0])], node.output[0],
                 exponent=float(p.reshape(-1)[0]))
        return
    if dt is None:
        raise imp.refuse(node, "the base's dtype is unknown (ONNX shape inference gave none)")
    imp.emit("pow", [imp.ref(i) for i in node.input[:2]], node.output[0])


def _where(imp: Importer, node: Any) -> None:
    """Where(cond, a, b) → where; cond must be bool (ONNX requires it)."""
    cond = node.input[0]
    if cond in imp.consts and imp.consts[cond].dtype != np.bool_:
        raise imp.refuse(node, f"condition of dtype {imp.consts[cond].dtype}; expected bool")
    imp.emit("where", [imp.ref(i) for i in node.input[:3]], node.output[0])


def _compare(kind: str) -> Translate:
    def tr(imp: Importer, node: Any) -> None:
        imp.emit("compare", [imp.ref(i) for i in node.input[:2]], node.output[0], kind=kind)
    return tr


def _split_sizes(imp: Importer, node: Any, n: int | None) -> list[int]:
    """The Split's part sizes along its axis: given (input #2, or the ``split`` attribute before
    opset 13), else equal parts of ⌈n / k⌉ (the last smaller; ONNX's num_outputs rule)."""
    given = imp.const_input(node, 1, "split") if imp.opset >= 13 else None
    if given is None and imp.opset < 13 and "split" in imp.attrs(node):
        given = np.asarray(imp.attrs(node)["split"])
    if given is not None:
        sizes = [int(v) for v in given.reshape(-1)]
        if n is not None and sum(sizes) != n:
            raise imp.refuse(node, f"split sizes {sizes} do not add up to the axis size {n}")
        return sizes
    k = int(imp.attrs(node).get("num_outputs", len(node.output)))
    if n is None:
        raise imp.refuse(node, "equal parts of an axis whose size is unknown at import")
    if k != len(node.output) or k <= 0:
        raise imp.refuse(node, f"num_outputs={k} but {len(node.output)} outputs")
    each = -(-n // k)
    sizes = [min(each, n - i * each) for i in range(k)]
    if any(s <= 0 for s in sizes):
        raise imp.refuse(node, f"{k} parts of an axis of size {n} leave an empty part")
    return sizes


def _split(imp: Importer, node: Any) -> None:
    """Split → one slice per (used) output along ``axis``."""
    shape = imp.shape(node.input[0])
    if shape is None:
        raise imp.refuse(node, f"the rank of {node.input[0]!r} is unknown")
    axis = int(imp.attrs(node).get("axis", 0))
    if not -len(shape) <= axis < len(shape):
        raise imp.refuse(node, f"axis {axis} is out of range for rank {len(shape)}")
    axis %= len(shape)
    sizes = _split_sizes(imp, node, shape[axis])
    if len(sizes) != len(node.output):
        raise imp.refuse(node, f"{len(sizes)} split sizes for {len(node.output)} outputs")
    x, start = imp.ref(node.input[0]), 0
    for out, size in zip(node.output, sizes):
        if out:
            imp.emit("slice", [x], out, starts=[start], ends=[start + size], axes=[axis],
                     steps=None)
        start += size


def _expand(imp: Importer, node: Any) -> None:
    """Expand(x, shape): the identity where the broadcast leaves x's shape as it is (PyTorch's
    ``F.mse_loss`` expands both sides to their common shape); else x · ones(out shape), exact
    (x · 1 = x), when every output size is known at import; otherwise refused."""
    from graphexec.onnx_io.fold import Dim

    x_shape = imp.shape(node.input[0])
    sym = imp.syms.get(node.input[1])
    given = None if sym is not None else imp.const_input(node, 1, "shape", "the")
    target: list[Any] = (list(sym.entries) if sym is not None else
                         [] if given is None else [int(v) for v in given.reshape(-1)])
    if x_shape is None:
        raise imp.refuse(node, f"the shape of {node.input[0]!r} is unknown")
    rank = max(len(x_shape), len(target))
    xs = [1] * (rank - len(x_shape)) + list(x_shape)
    ts = [1] * (rank - len(target)) + target
    out: list[int | None] = []
    for i, (d, t) in enumerate(zip(xs, ts)):
        xi = i - (rank - len(x_shape))
        same_axis = isinstance(t, Dim) and xi >= 0 and imp.same_size(t.of, t.axis, node.input[0], xi)
        if t == 1 or same_axis or (d is not None and d != 1 and not isinstance(t, Dim) and t == d):
            out.append(d)
        elif d == 1 and isinstance(t, int):
            out.append(t)
        else:
            raise imp.refuse(node, f"expanding {tuple(x_shape)} to {target}: a size there is "
                                   "known only when the model runs; graphexec expands to sizes "
                                   "fixed at import")
    if out == list(x_shape):
        imp.alias[node.output[0]] = imp.ref(node.input[0])
        return
    dt = imp.dtype(node.input[0])
    if dt is None or None in out:
        raise imp.refuse(node, f"expanding {tuple(x_shape)} of dtype {dt} to {out}")
    ones = imp.param(f"{node.output[0]}_ones", np.ones([int(v) for v in out if v is not None], dt),
                     made_up=True)
    imp.emit("mul", [imp.ref(node.input[0]), ones], node.output[0])


def _constant_of_shape(imp: Importer, node: Any) -> None:
    """ConstantOfShape(Shape(v)) (its shape known only when the model runs; a fixed shape is
    folded at import) → full_like(v): every entry of the shape must be v's own size there."""
    from graphexec.onnx_io.fold import Dim

    if node.input[0] in imp.input_names:
        imp.const_input(node, 0, "shape")  # NeedsValue: bind it (constants=) and it folds
    sym = imp.syms.get(node.input[0])
    of = next((e.of for e in sym.entries if isinstance(e, Dim)), None) if sym else None
    shape = imp.shape(of) if of is not None else None
    if sym is None or of is None or shape is None or len(shape) != len(sym.entries) or not all(
            (isinstance(e, Dim) and imp.same_size(e.of, e.axis, of, i))
            or (isinstance(e, int) and e == shape[i]) for i, e in enumerate(sym.entries)):
        raise imp.refuse(node, f"its shape {node.input[0]!r} is neither fixed at import nor the "
                               "shape of one value; graphexec makes constants of fixed shapes or "
                               "of another value's shape")
    value = imp.attrs(node).get("value")
    fill = np.asarray(value).reshape(-1)[:1] if value is not None else np.zeros(1, np.float32)
    if fill.dtype.kind not in "biuf" or fill.dtype.name not in DTYPE_NAMES:
        raise imp.refuse(node, f"fill value of dtype {fill.dtype}")
    imp.emit("full_like", [imp.ref(of)], node.output[0], value=float(fill[0]),
             dtype=fill.dtype.name)


#: ONNX op (default domain) -> translator, for the ops of this module.
TRANSLATORS: dict[str, Translate] = {
    "Sqrt": _float_unary("sqrt"), "Reciprocal": _float_unary("reciprocal"),
    "Mish": _float_unary("mish"), "Abs": _abs, "Pow": _pow, "Where": _where,
    "Greater": _compare("greater"), "Less": _compare("less"),
    "GreaterOrEqual": _compare("greater_equal"), "LessOrEqual": _compare("less_equal"),
    "Equal": _compare("equal"), "Split": _split, "Expand": _expand,
    "ConstantOfShape": _constant_of_shape,
}
