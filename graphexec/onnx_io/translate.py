"""The ONNX → graphexec translators, one small function per ONNX op, and the state they share."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from graphexec.dtypes import DTYPE_NAMES
from graphexec.graph import InputDecl, NodeDef
from graphexec.onnx_io.common import OnnxImportError
from graphexec.onnx_io.recognize import recognize

__all__ = ["TRANSLATORS", "Importer", "NeedsValue", "Refused", "clean_name", "unique_name"]

DEFAULT_DOMAINS = ("", "ai.onnx")


def clean_name(name: str) -> str:
    """An ONNX name as a graphexec name: ``[A-Za-z_][A-Za-z0-9_.:-]{0,127}``."""
    s = re.sub(r"[^A-Za-z0-9_.:\-]", "_", name)
    if not s or not re.match(r"[A-Za-z_]", s):
        s = "v_" + s
    return s[:120]


def unique_name(name: str, taken: Any) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out


class Refused(OnnxImportError):
    """A value that depends on a node already refused (reported once, at that node)."""


class NeedsValue(OnnxImportError):
    """A node reads graph input ``name`` as a shape, axes or bound: known only when the model
    runs, so the import needs it bound (``import_onnx(..., constants={name: value})``)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class Importer:
    """What the translators share: constants, inferred shapes, names, and the graph being built."""

    def __init__(self, onnx: Any, model: Any, where: str):
        self.onnx, self.where, self.graph = onnx, where, model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 1)
        self.consts: dict[str, np.ndarray] = {
            t.name: onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.skip: set[int] = set()
        for k, node in enumerate(self.graph.node):
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
                self.consts[node.output[0]] = self._constant(node)
                self.skip.add(k)
        # graphexec's own marked gates (the other nodes of their groups are skipped)
        self.gates, claimed = recognize(onnx, self.graph, self.opset, self.consts)
        self.skip |= claimed
        self.uses = Counter(i for n in self.graph.node for i in n.input if i)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.types = self._infer(model)
        from graphexec.onnx_io.fold import fold

        self.syms = fold(self)
        self.alias: dict[str, str] = {}
        self.taken: set[str] = set()
        self.inputs: list[InputDecl] = []
        self.params: dict[str, np.ndarray] = {}
        self.defs: list[NodeDef] = []
        self.problems: list[str] = []
        self.refused: set[str] = set()  # outputs of refused nodes
        self.constants: list[str] = []  # parameters the import made up (e.g. for Softmax)
        self.buffers: dict[str, np.ndarray] = {}  # running statistics (BatchNormalization)
        self.input_names = {vi.name for vi in self.graph.input} - set(self.consts)
        self.producer = {o: (j, n) for n in self.graph.node for j, o in enumerate(n.output) if o}
        self.fused: dict[str, Any] = _find_affine(self)

    # ------------------------------------------------------------------ reading the model
    def _constant(self, node: Any) -> np.ndarray:
        a = {x.name: self.attr_value(x) for x in node.attribute}
        if "value" in a:
            return np.asarray(a["value"])
        for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
            if key in a:
                return np.asarray(a[key], dtype=dt)
        raise OnnxImportError(f"Constant node {node.name!r}: only numeric constants are supported, "
                              f"got {sorted(a)}")

    def attr_value(self, a: Any) -> Any:
        v = self.onnx.helper.get_attribute_value(a)
        if isinstance(v, self.onnx.TensorProto):
            return self.onnx.numpy_helper.to_array(v)
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if isinstance(v, list):
            return [x.decode("utf-8") if isinstance(x, bytes) else x for x in v]
        return v

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.attr_value(a) for a in node.attribute}

    def _infer(self, model: Any) -> dict[str, tuple[int, tuple[int | None, ...] | None]]:
        try:
            model = self.onnx.shape_inference.infer_shapes(model)
        except Exception:  # shapes help Flatten, Softmax and fusion; without them those refuse
            pass
        g = model.graph
        out = {}
        self.dim_params: dict[str, tuple[str | None, ...]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            t = vi.type.tensor_type
            shape = (tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
                     if t.HasField("shape") else None)
            out[vi.name] = (t.elem_type, shape)
            if t.HasField("shape"):  # symbolic sizes: one name is one size (ONNX's dim_param)
                self.dim_params[vi.name] = tuple(d.dim_param or None for d in t.shape.dim)
        return out

    def same_size(self, a: str, i: int, b: str, j: int) -> bool:
        """Is axis ``i`` of value ``a`` known to be as long as axis ``j`` of ``b`` (the same
        value and axis, or the same symbolic dimension name)?"""
        if a == b and i == j:
            return True
        pa, pb = self.dim_params.get(a, ()), self.dim_params.get(b, ())
        return i < len(pa) and j < len(pb) and pa[i] is not None and pa[i] == pb[j]

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.types.get(name, (0, None))[1]

    def dtype(self, name: str) -> np.dtype | None:
        if name in self.consts:
            return self.consts[name].dtype
        elem = self.types.get(name, (0, None))[0]
        floats: dict[int, np.dtype] = {1: np.dtype("float32"), 11: np.dtype("float64")}
        return floats.get(elem)

    # ------------------------------------------------------------------ building the graph
    def name_for(self, onnx_name: str) -> str:
        name = unique_name(clean_name(onnx_name), self.taken)
        self.taken.add(name)
        return name

    def ref(self, onnx_name: str) -> str:
        """The graphexec value for ONNX value ``onnx_name`` (a constant becomes a parameter)."""
        if onnx_name in self.alias:
            return self.alias[onnx_name]
        if onnx_name in self.refused:
            raise Refused(onnx_name)
        if onnx_name in self.consts:
            name = self.param(onnx_name, self.consts[onnx_name])
            self.alias[onnx_name] = name
            return name
        if onnx_name in self.syms:
            raise OnnxImportError(f"value {onnx_name!r} is a shape that depends on sizes known "
                                  f"only when the model runs ({self.syms[onnx_name].entries}); "
                                  "graphexec folds such values into Reshape only")
        made = self.producer.get(onnx_name)
        if made is not None and made[0] > 0:
            j, n = made
            raise OnnxImportError(f"node {n.name or n.output[0]!r} ({n.op_type}): its output "
                                  f"#{j + 1} {onnx_name!r} is used, but graphexec computes only "
                                  f"the first output of {n.op_type}")
        raise OnnxImportError(f"value {onnx_name!r} is not produced by any imported node")

    def buffer_of(self, onnx_name: str) -> str:
        """``onnx_name`` as a buffer if it is a constant (else the value it names)."""
        if onnx_name in self.consts:
            return self._own_buffer(onnx_name)
        return self.ref(onnx_name)

    def buffer(self, node: Any, onnx_name: str) -> str:
        """A constant read as non-trainable state (a running statistic): a graphexec buffer."""
        if onnx_name not in self.consts:
            if onnx_name in self.alias:  # a graph input (or a value) given as the statistic
                return self.alias[onnx_name]
            raise self.refuse(node, f"{onnx_name!r} is computed, not a constant; graphexec keeps "
                                    "running statistics as buffers")
        return self._own_buffer(onnx_name)

    def _own_buffer(self, onnx_name: str) -> str:
        """The buffer of constant ``onnx_name``. A constant that a gate already reads as a
        parameter (PyTorch shares one initializer between a fresh BatchNorm's weight, all ones,
        and its running variance) gets a buffer of its own: a buffer must never be trained, nor
        a parameter be overwritten by a running-statistic update."""
        known = self.alias.get(onnx_name)
        if known is not None and known in self.buffers:
            return known
        name = self.name_for(onnx_name if known is None else f"{onnx_name}_buffer")
        self.buffers[name] = np.array(self.consts[onnx_name], order="C", copy=True)
        if known is None:
            self.alias[onnx_name] = name
        return name

    def param(self, hint: str, value: np.ndarray, *, made_up: bool = False) -> str:
        arr = np.array(value, order="C", copy=True)
        if arr.dtype.name not in DTYPE_NAMES:
            raise OnnxImportError(f"constant {hint!r} has dtype {arr.dtype}; graphexec has "
                                  f"{', '.join(DTYPE_NAMES)}")
        name = self.name_for(hint)
        self.params[name] = arr
        if made_up:
            self.constants.append(name)
        return name

    def const_operand(self, onnx_name: str, value: np.ndarray, changed: bool, tag: str) -> str:
        """A constant operand that the import may have transformed (transposed, scaled)."""
        if not changed:
            return self.ref(onnx_name)
        alone = self.uses[onnx_name] == 1 and onnx_name not in self.alias
        return self.param(onnx_name if alone else f"{onnx_name}_{tag}", value)

    def emit(self, op: str, ins: list[str], out: str | None = None, *, hint: str = "",
             **attrs: Any) -> str:
        """Add a graphexec node; ``out`` is the ONNX value it computes (None: an intermediate)."""
        name = self.name_for(out if out is not None else hint or op)
        self.defs.append(NodeDef(name, op, tuple(ins), attrs))
        if out is not None:
            self.alias[out] = name
        return name

    def const_input(self, node: Any, i: int, what: str, its: str = "its") -> np.ndarray | None:
        """Input ``i`` of ``node`` as a constant (None if absent). A graph input raises
        NeedsValue (bind it with ``constants=``); a computed value is refused."""
        if len(node.input) <= i or not node.input[i]:
            return None
        name = node.input[i]
        if name in self.consts:
            return self.consts[name]
        if name in self.input_names:
            raise NeedsValue(self.refuse(node, f"{its} {what} {name!r} is a graph input, known "
                                               "only when the model runs; bind it at import: "
                                               f"import_onnx(model, constants={{{name!r}: "
                                               "value}) (or make it an initializer)").args[0],
                             name)
        raise self.refuse(node, f"{its} {what} {name!r} is computed by another node; graphexec "
                                "needs it as a constant at import (make it an initializer)")

    def refuse(self, node: Any, why: str) -> OnnxImportError:
        return OnnxImportError(f"node {node.name or node.output[0]!r} ({node.op_type}): {why}")


Translate = Callable[[Importer, Any], None]


def _find_affine(imp: Importer) -> dict[str, Any]:
    """MatMul(x, W) + b with constant W (D, M) and b (M,), x of rank 2 -> one affine gate.
    Returns MatMul output -> the Add node it fuses with (which is then skipped)."""
    producer = {o: k for k, n in enumerate(imp.graph.node) for o in n.output}
    fused: dict[str, Any] = {}
    taken = imp.skip | set(imp.gates)
    for k, n in enumerate(imp.graph.node):
        if n.op_type != "Add" or n.domain not in DEFAULT_DOMAINS or k in taken:
            continue
        for mm_out, b in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            j = producer.get(mm_out)
            if j is None or j in taken or mm_out in fused:
                continue
            mm = imp.graph.node[j]
            w = imp.consts.get(mm.input[1]) if mm.op_type == "MatMul" else None
            bias = imp.consts.get(b)
            x_shape = imp.shape(mm.input[0])
            if (w is not None and bias is not None and w.ndim == 2 and bias.shape == w.shape[1:]
                    and x_shape is not None and len(x_shape) == 2 and imp.uses[mm_out] == 1
                    and mm_out not in imp.graph_outputs):
                fused[mm_out] = n
                imp.skip.add(k)
                break
    return fused


# ---------------------------------------------------------------------------- translators
def _same(op: str, arity: int) -> Translate:
    def tr(imp: Importer, node: Any) -> None:
        ins = [i for i in node.input if i]
        if len(ins) != arity:
            raise imp.refuse(node, f"expected {arity} inputs, got {len(ins)}")
        imp.emit(op, [imp.ref(i) for i in ins], node.output[0])
    return tr


def f32(value: Any) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal that round-trips it:
    alpha=0.2 reads back as 0.2, not 0.20000000298023224."""
    return float(str(np.float32(value)))


def _alpha(op: str, default: float) -> Translate:
    def tr(imp: Importer, node: Any) -> None:
        alpha = f32(imp.attrs(node).get("alpha", default))
        imp.emit(op, [imp.ref(node.input[0])], node.output[0], alpha=alpha)
    return tr


def _fold(op: str) -> Translate:
    """Variadic Max / Sum as a chain of two-input gates."""
    def tr(imp: Importer, node: Any) -> None:
        ins = [imp.ref(i) for i in node.input if i]
        if len(ins) == 1:
            imp.alias[node.output[0]] = ins[0]
            return
        acc = ins[0]
        for i, x in enumerate(ins[1:], 2):
            last = i == len(ins)
            acc = imp.emit(op, [acc, x], node.output[0] if last else None,
                           hint=f"{node.output[0]}_{op}{i}")
    return tr


def _constant(imp: Importer, node: Any) -> None:
    """Constants were read up front; a gate that reads one turns it into a parameter."""


def _matmul(imp: Importer, node: Any) -> None:
    for i in node.input:
        if i in imp.consts and imp.consts[i].ndim > 2:
            raise imp.refuse(node, f"operand {i!r} has {imp.consts[i].ndim} dimensions; "
                                   "graphexec's matmul takes 1-D or 2-D operands")
    add = imp.fused.get(node.output[0])
    if add is not None:
        b = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        ins = [imp.ref(node.input[0]), imp.ref(node.input[1]), imp.ref(b)]
        imp.emit("affine", ins, add.output[0])
        return
    imp.emit("matmul", [imp.ref(i) for i in node.input], node.output[0])


def _gemm(imp: Importer, node: Any) -> None:
    """Y = alpha * A' @ B' + beta * C, with transposes and scales folded into constant operands."""
    a = imp.attrs(node)
    names = list(node.input) + [""] * (3 - len(node.input))
    vals: list[np.ndarray | None] = [imp.consts.get(n) for n in names[:3]]
    changed = [False, False, False]
    for i, flag in ((0, "transA"), (1, "transB")):
        v = vals[i]
        if a.get(flag, 0):
            if v is None:
                raise imp.refuse(node, f"{flag}=1 on {names[i]!r}, which is not a constant; "
                                       "graphexec has no transpose gate (only constant operands "
                                       "are transposed at import)")
            vals[i], changed[i] = np.ascontiguousarray(v.T), True
    for what, slots in (("alpha", (1, 0)), ("beta", (2,))):
        scale = f32(a.get(what, 1.0))
        if scale == 1.0 or (what == "beta" and not names[2]):
            continue
        slot = next((i for i in slots if vals[i] is not None), None)
        if slot is None:
            raise imp.refuse(node, f"{what}={scale} needs a constant operand to fold it into")
        v = vals[slot]
        assert v is not None
        vals[slot], changed[slot] = (v * scale).astype(v.dtype), True
    x, w, c = (("" if not n else imp.ref(n) if v is None
                else imp.const_operand(n, v, ch, "T" if i < 2 else "scaled"))
               for i, (n, v, ch) in enumerate(zip(names, vals, changed)))
    out = node.output[0]
    w_val, c_val = vals[1], vals[2]
    if not names[2]:
        imp.emit("matmul", [x, w], out)
    elif w_val is not None and c_val is not None and c_val.shape == w_val.shape[1:]:
        imp.emit("affine", [x, w, c], out)
    else:
        imp.emit("add", [imp.emit("matmul", [x, w], hint=f"{out}_AB"), c], out)


def _reshape(imp: Importer, node: Any) -> None:
    from graphexec.onnx_io.fold import reshape_target

    sym = imp.syms.get(node.input[1])
    if sym is not None:
        target = reshape_target(imp, node.input[0], sym.entries)
        if target is None:
            raise imp.refuse(node, f"the shape {node.input[1]!r} depends on sizes known only "
                                   f"when the model runs ({sym.entries}); graphexec's reshape "
                                   "takes a fixed shape with at most one -1")
        imp.emit("reshape", [imp.ref(node.input[0])], node.output[0], shape=target)
        return
    shape = imp.const_input(node, 1, "shape", "the")
    if shape is None:
        raise imp.refuse(node, "expected 2 inputs (data, shape), found 1")
    target = [int(n) for n in shape.reshape(-1)]
    if 0 in target and not imp.attrs(node).get("allowzero", 0):  # ONNX 0: copy that input dim
        src = imp.shape(node.input[0]) or ()
        copied = [src[i] if i < len(src) else None for i, n in enumerate(target) if n == 0]
        known = [d for d in copied if d is not None]
        if len(known) != len(copied):
            raise imp.refuse(node, "a 0 ('copy this dimension') entry on an input whose size "
                                   "there is unknown")
        it = iter(known)
        target = [next(it) if n == 0 else n for n in target]
    imp.emit("reshape", [imp.ref(node.input[0])], node.output[0], shape=target)


#: ONNX op (default domain) -> translator.
TRANSLATORS: dict[str, Translate] = {
    **{onnx_op: _same(op, 2) for onnx_op, op in [("Add", "add"), ("Sub", "sub"), ("Mul", "mul"),
                                                  ("Div", "div"), ("PRelu", "prelu")]},
    **{onnx_op: _same(op, 1) for onnx_op, op in [("Neg", "neg"), ("Exp", "exp"), ("Log", "log"),
                                                  ("Relu", "relu"), ("Sigmoid", "sigmoid"),
                                                  ("Tanh", "tanh")]},
    "LeakyRelu": _alpha("leaky_relu", 0.01), "Elu": _alpha("elu", 1.0),
    "Max": _fold("max"), "Sum": _fold("add"), "Constant": _constant, "MatMul": _matmul,
    "Gemm": _gemm, "Reshape": _reshape,
}
