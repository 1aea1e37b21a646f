"""ONNX → graphexec: the op subset graphexec can represent (``SUPPORTED_OPS``).

A model that graphexec exported comes back as the same gates: each gate's nodes carry a mark that
the importer verifies (``recognize.py``). Otherwise, one translator per ONNX op: initializers and
Constant outputs become parameters when a gate reads them, and attributes where graphexec wants an
attribute (Reshape's shape). Gemm's transposes, alpha and beta are folded into
constant operands at import time (graphexec has no transpose gate). A model with any other op is
refused with one error that names every unsupported op and the nodes that use it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphexec.errors import GraphError, OnnxNeedsConstantsError
from graphexec.fileformat import MAGIC
from graphexec.fileformat.schema import clean_text
from graphexec.graph import Graph, InputDecl, NodeDef, make_graph
from graphexec.onnx_io.common import OnnxImportError, numpy_dtype, require_onnx
from graphexec.onnx_io.recognize import Mark
from graphexec.onnx_io.translate import Importer, NeedsValue, Refused, clean_name, unique_name
from graphexec.onnx_io.translate_elem import TRANSLATORS as ELEM
from graphexec.onnx_io.translate_nn import TRANSLATORS as NN
from graphexec.onnx_io.translate_shape import TRANSLATORS as SHAPE

TRANSLATORS = {**NN, **SHAPE, **ELEM}

__all__ = ["SUPPORTED_OPS", "bind", "import_onnx"]

#: The ONNX ops (default domain) that import_onnx translates.
SUPPORTED_OPS = tuple(sorted(TRANSLATORS))


def import_onnx(model_or_path: Any, *, name: str | None = None,
                constants: Mapping[str, Any] | None = None) -> Graph:
    """A graphexec Graph from an ONNX model (a ``ModelProto``, a path, or the model's bytes).

    ``constants`` binds graph inputs to values at import (``{"shape": [2, -1]}``): each stops
    being an input and is read as an initializer, so a Reshape's shape, a reduction's axes or a
    Clip's bounds given as inputs become the fixed attributes graphexec's gates take.

    Raises OnnxNeedsConstantsError (an OnnxImportError) naming the graph inputs that must be
    bound that way, OnnxImportError naming every unsupported op (and every unsupported use of a
    supported one), OnnxUnavailableError without the ``onnx`` package.
    """
    onnx = require_onnx()
    model, where = _load(onnx, model_or_path)
    if constants:
        model = bind(onnx, model, constants, where)
    imp = Importer(onnx, model, where)
    needs: list[str] = []
    _refuse_unknown_ops(model, where, imp.skip | set(imp.gates))
    _declare_inputs(imp)
    for k, node in enumerate(model.graph.node):
        if k in imp.skip:
            continue
        try:
            if k in imp.gates:
                _gate(imp, imp.gates[k])
            else:
                TRANSLATORS.get(node.op_type, _custom)(imp, node)
        except OnnxImportError as e:
            imp.refused.update(node.output)
            if isinstance(e, NeedsValue) and e.name not in needs:
                needs.append(e.name)
            if not isinstance(e, Refused):
                imp.problems.append(str(e))
    outputs = _outputs(imp)
    if imp.problems:
        message = f"cannot import {where}: " + "; ".join(imp.problems)
        if needs:
            raise OnnxNeedsConstantsError(message, needs)
        raise OnnxImportError(message)
    metadata = _metadata(model, imp)
    if constants:  # the graph computes the model for these values only
        metadata["onnx_bound"] = _text(",".join(constants))
    gname = clean_name(name or model.graph.name or "onnx_model")
    try:
        return make_graph(gname, imp.inputs, imp.params, imp.defs, outputs, metadata=metadata,
                          buffers=imp.buffers, frozen=imp.constants)
    except GraphError as e:
        raise OnnxImportError(f"cannot import {where}: the translated graph is invalid: {e}") from e


def bind(onnx: Any, model: Any, constants: Mapping[str, Any], where: str) -> Any:
    """A copy of ``model`` in which each graph input named in ``constants`` is an initializer of
    that value (converted to the input's declared type, which it must fit exactly)."""
    inits = {t.name for t in model.graph.initializer}
    declared = {vi.name: vi for vi in model.graph.input if vi.name not in inits}
    unknown = [k for k in constants if k not in declared]
    if unknown:
        raise OnnxImportError(f"cannot import {where}: constants= names {unknown}, which are not "
                              f"graph inputs; the model's inputs are {list(declared)}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [vi for vi in out.graph.input if vi.name not in constants]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    for k, value in constants.items():
        arr = _bound_value(declared[k], value, k)
        out.graph.initializer.append(onnx.numpy_helper.from_array(arr, k))
    return out


def _bound_value(vi: Any, value: Any, k: str) -> np.ndarray:
    t = vi.type.tensor_type
    want = numpy_dtype(t.elem_type, f"constants[{k!r}]")
    given = np.asarray(value)
    exact = False
    if given.dtype.kind in "biuf":
        with np.errstate(all="ignore"):
            arr = given.astype(want)
        exact = bool(np.array_equal(arr, given, equal_nan=given.dtype.kind == "f" == want.kind))
    if not exact:
        raise OnnxImportError(f"constants[{k!r}]: expected values of the input's type {want}, "
                              f"found {given.dtype} values that {want} does not hold exactly")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] \
        if t.HasField("shape") else None
    if dims is not None and (len(dims) != arr.ndim or any(
            d is not None and d != n for d, n in zip(dims, arr.shape))):
        raise OnnxImportError(f"constants[{k!r}]: expected shape {tuple(dims)} (the input's "
                              f"declared shape), found {arr.shape}")
    return np.ascontiguousarray(arr)


def _load(onnx: Any, src: Any) -> tuple[Any, str]:
    if isinstance(src, onnx.ModelProto):
        return src, "the ONNX model"
    if isinstance(src, (bytes, bytearray)):
        _not_graphexec(bytes(src[:len(MAGIC)]), None)
        try:
            model = onnx.load_model_from_string(bytes(src))
        except Exception as e:
            raise OnnxImportError(f"cannot read the bytes as an ONNX model: {_not_onnx(e)}") from e
        return _has_graph(model, "the bytes"), "the ONNX model"
    where = os.fspath(src)
    _not_graphexec(_head(where), where)
    try:  # external tensor files are not followed: a model is one self-contained file
        model = _has_graph(onnx.load(where, load_external_data=False), repr(where))
    except OSError as e:
        raise OnnxImportError(f"cannot open {where!r}: {e.strerror or e}") from e
    except OnnxImportError:
        raise
    except Exception as e:
        raise OnnxImportError(f"cannot read {where!r} as an ONNX model: {_not_onnx(e)}") from e
    external = [t.name for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise OnnxImportError(f"cannot import {where!r}: tensors {external[:3]} are stored in "
                              "external files; save the model as one file (onnx.save with "
                              "save_as_external_data=False)")
    return model, repr(where)


def _head(where: str) -> bytes:
    """The first bytes of a regular file (a FIFO or a folder is refused, not waited on)."""
    try:
        st = os.stat(where)
    except OSError as e:
        raise OnnxImportError(f"cannot open {where!r}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(st.st_mode) else "a device or socket")
        raise OnnxImportError(f"cannot import {where!r}: expected an ONNX model file, found "
                              f"{kind}")
    try:
        with open(where, "rb") as f:
            return f.read(len(MAGIC))
    except OSError as e:
        raise OnnxImportError(f"cannot open {where!r}: {e.strerror or e}") from e


def _not_graphexec(head: bytes, where: str | None) -> None:
    """Refuse a graphexec file (by its magic bytes): it is already what an import would make."""
    if head != MAGIC:
        return
    if where is None:
        raise OnnxImportError("these bytes are a graphexec graph (.gx), not an ONNX model: they "
                              "need no import; load them with gx.loads")
    raise OnnxImportError(f"{where!r} is a graphexec graph file (.gx), not an ONNX model: it "
                          f"needs no import; run it as it is, or inspect it with: graphexec "
                          f"info {where}")


def _not_onnx(e: Exception) -> str:
    return ("expected a serialized ONNX ModelProto (protobuf), found bytes that do not parse "
            f"as one ({type(e).__name__}: {str(e)[:120]})")


def _has_graph(model: Any, what: str) -> Any:
    """A parsed ModelProto with an IR version and a graph: protobuf parses an empty file, and
    some other bytes, as an empty message."""
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise OnnxImportError(f"cannot read {what} as an ONNX model: expected a ModelProto with "
                              f"an IR version and a graph, found "
                              f"{'no IR version' if model.ir_version <= 0 else 'no graph'} (an "
                              "empty file, or a file of another kind)")
    return model


def _refuse_unknown_ops(model: Any, where: str, handled: set[int]) -> None:
    """One error naming every op graphexec cannot import, with the nodes that use it (nodes of
    recognised graphexec gates, ``handled``, are fine whatever their op)."""
    bad: dict[str, list[str]] = {}
    for k, node in enumerate(model.graph.node):
        if k in handled:
            continue
        default = node.domain in ("", "ai.onnx")
        if (default and node.op_type in TRANSLATORS) or (not default and _custom_ok(node)):
            continue
        op = node.op_type if default else f"{node.domain}:{node.op_type}"
        bad.setdefault(op, []).append(node.name or f"#{k}")
    if not bad:
        return
    parts = []
    for op, nodes in sorted(bad.items()):
        shown = ", ".join(repr(n) for n in nodes[:3])
        shown += f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        parts.append(f"{op} ({len(nodes)} node{'s' if len(nodes) > 1 else ''}: {shown})")
    raise OnnxImportError(f"cannot import {where}: unsupported ONNX ops: {'; '.join(parts)}. "
                          f"graphexec imports: {', '.join(SUPPORTED_OPS)}")


def _custom_ok(node: Any) -> bool:
    """A node of a ``graphexec.<dist>`` domain whose gate is installed (graphexec's own export)."""
    from graphexec.registry import registry

    return node.domain.startswith("graphexec.") and node.op_type in registry().gates


def _custom(imp: Importer, node: Any) -> None:
    """A ``graphexec.<dist>`` node back to its gate, attributes decoded (see emitters.custom_node)."""
    attrs: dict[str, Any] = {}
    version = None
    for a in node.attribute:
        value = imp.attr_value(a)
        if a.name == "graphexec_version":
            version = int(value)
        elif a.name.startswith("graphexec_"):
            continue
        elif a.name.endswith("__json"):
            attrs[a.name[:-6]] = json.loads(value)
        else:
            attrs[a.name] = value
    ins = [imp.ref(s) for s in node.input]
    imp.defs.append(NodeDef(imp.name_for(node.output[0]), node.op_type, tuple(ins), attrs, version))
    imp.alias[node.output[0]] = imp.defs[-1].name


def _gate(imp: Importer, mark: Mark) -> None:
    """A group of nodes that graphexec exported for one gate, back as that gate."""
    from graphexec.registry import registry

    held = getattr(registry().resolve(mark.op, mark.version).cls, "buffer_inputs", ())
    ins = tuple(imp.buffer_of(i) if k in held else imp.ref(i) for k, i in enumerate(mark.inputs))
    imp.defs.append(NodeDef(imp.name_for(mark.out), mark.op, ins, mark.attrs, mark.version))
    imp.alias[mark.out] = imp.defs[-1].name


def _declare_inputs(imp: Importer) -> None:
    inits = {t.name for t in imp.graph.initializer}
    for vi in imp.graph.input:
        if vi.name in inits:  # old exporters list initializers among the inputs too
            continue
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value") or "untyped"
            raise OnnxImportError(f"input {vi.name!r}: expected a tensor, found a "
                                  f"{kind.replace('_type', '')} value; graphexec has tensors only")
        t = vi.type.tensor_type
        dtype = numpy_dtype(t.elem_type, f"input {vi.name!r}")
        shape = None
        if t.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        name = imp.name_for(vi.name)
        imp.inputs.append(InputDecl(name, dtype, shape))
        imp.alias[vi.name] = name


def _outputs(imp: Importer) -> dict[str, str]:
    outputs: dict[str, str] = {}
    for vi in imp.graph.output:
        try:
            src = imp.ref(vi.name)
        except OnnxImportError as e:
            if not isinstance(e, Refused):
                imp.problems.append(str(e))
            continue
        outputs[unique_name(clean_name(vi.name), outputs)] = src
    return outputs


def _metadata(model: Any, imp: Importer) -> dict[str, str]:
    meta = {"source": "onnx"}
    if model.producer_name:
        meta["onnx_producer"] = _text(f"{model.producer_name} {model.producer_version}".strip())
    if model.graph.doc_string or model.doc_string:
        meta["description"] = _text(model.graph.doc_string or model.doc_string)
    if imp.constants:
        meta["onnx_constants"] = ",".join(imp.constants)
    return meta


def _text(s: str) -> str:
    return clean_text(s)  # the file schema's own definition of allowed text
