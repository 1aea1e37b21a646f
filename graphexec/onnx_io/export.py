"""graphexec → ONNX: the forward graph as standard ONNX ops, parameters as initializers.

Each built-in gate becomes one ONNX op or a short decomposition (``EMITTERS``), its last node marked
with the gate so that ``import_onnx`` gives the same gate back (``recognize.py``); a gate from
another distribution goes into the custom domain ``graphexec.<dist>`` with op_type = the gate's
name and its version and distribution recorded as attributes. ``outputs=`` and ``dtype=`` choose
what is written (``select.py``). The model passes ``onnx.checker.check_model``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphexec.builder import probe_shapes
from graphexec.gate import Spec
from graphexec.graph import Graph
from graphexec.onnx_io.common import OnnxExportError, onnx_elem_type, require_onnx
from graphexec.onnx_io.emitters import EMITTERS, META, Emitter, custom_node
from graphexec.onnx_io.recognize import mark_text
from graphexec.onnx_io.select import convert_floats, float_dtype, only_outputs, output_map
from graphexec.registry import OWN_DIST

__all__ = ["DEFAULT_OPSET", "EMITTERS", "META", "export_onnx"]

DEFAULT_OPSET = 17


# ---------------------------------------------------------------------------- the model
def export_onnx(graph: Graph, path: str | os.PathLike[str] | None = None, *,
                outputs: Sequence[str] | None = None, dtype: Any = None,
                opset: int = DEFAULT_OPSET,
                input_shapes: Mapping[str, Sequence[int | None]] | None = None) -> Any:
    """The forward graph as an ONNX ``ModelProto`` (written to ``path`` if given).

    Args:
        graph: the graph; it is not changed.
        path: where to write the model; it must end in ``.onnx``, in a folder that exists.
        outputs: only these outputs (graph output names, or node names for intermediate
            values; a str is one name), the nodes they need and the inputs those read.
            None: every output.
        dtype: ``"float32"`` or ``"float64"``: every float input, parameter and constant in
            this dtype (integer inputs such as labels are kept). None: as in the graph.
        opset: the default domain's opset, 17 to the installed onnx package's newest.
        input_shapes: ranks for inputs declared with no shape (ONNX needs every input's rank).

    Inputs keep their shape (a None dimension becomes the symbolic ``<input>_dim<i>``);
    parameters become initializers. Raises OnnxExportError for what ONNX cannot express or a
    bad argument, OnnxUnavailableError without the ``onnx`` package.
    """
    target = _check_path(path) if path is not None else None
    onnx = require_onnx()
    top = onnx.defs.onnx_opset_version()
    if not DEFAULT_OPSET <= opset <= top:
        raise OnnxExportError(f"opset {opset} is not supported: choose {DEFAULT_OPSET} to {top} "
                              "(the installed onnx package's newest)")
    if outputs is not None:
        graph = only_outputs(graph, output_map(graph, outputs))
    if dtype is not None:
        graph = convert_floats(graph, float_dtype(dtype))
    model = _model(onnx, graph, opset, input_shapes)
    if target is not None:
        _save(model.SerializeToString(), target)
    return model


def _check_path(path: str | os.PathLike[str]) -> str:
    """``path`` if it ends in .onnx and its folder exists (checked before any work)."""
    p = os.fspath(path)
    suffix = os.path.splitext(p)[1]
    if suffix.lower() != ".onnx":
        raise OnnxExportError(f"cannot write {p!r}: expected a file name ending in .onnx, found "
                              f"{repr(suffix) if suffix else 'no suffix'}; name it like "
                              "model.onnx (graphexec files are written by gx.save)")
    folder = os.path.dirname(p) or "."
    if not os.path.isdir(folder):
        raise OnnxExportError(f"cannot write {p!r}: the folder {folder!r} does not exist; "
                              "create it first")
    return p


def _model(onnx: Any, graph: Graph, opset: int,
           input_shapes: Mapping[str, Sequence[int | None]] | None) -> Any:
    taken = (set(graph.inputs) | set(graph.params) | set(graph.buffers)
             | {n.name for n in graph.nodes})
    em = Emitter(onnx, taken | set(graph.output_map), opset)
    dtypes = _dtypes(graph)
    for n in graph.nodes:
        emit = EMITTERS.get(n.op) if n.info.dist == OWN_DIST else None
        if emit is None:
            _plugin_node(em, n, dtypes[n.name])
            continue
        emit(em, n, list(n.inputs), n.name, dtypes[n.name])
        em.nodes[-1].doc_string = mark_text(n.op, n.version, n.attrs, n.inputs, dtypes[n.name])
    _identity_outputs(em, graph)
    h = onnx.helper
    inputs = [h.make_tensor_value_info(d.name, onnx_elem_type(d.dtype),
                                       _input_dims(d, input_shapes)) for d in graph.input_decls]
    params = [onnx.numpy_helper.from_array(np.ascontiguousarray(v), k)
              for k, v in {**graph.params, **graph.buffers}.items()]
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
    _check_types(onnx, model)
    return model


def _check_types(onnx: Any, model: Any) -> None:
    """Refuse a model that breaks an ONNX op's type constraints (numpy computes Neg of uint8,
    Exp of int8 or MatMul of int16; ONNX defines none of them), which a runtime would reject."""
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # InferenceError; only a type error is the graph's fault
        msg = " ".join(str(e).split())[:300]
        if "unsupported type" in msg or "Type Error" in msg:
            raise OnnxExportError(f"cannot export: an ONNX op does not take this dtype ({msg}); "
                                  "cast the value to a dtype the op takes (ONNX's type "
                                  "constraints are narrower than numpy's)") from None


def _plugin_node(em: Emitter, n: Any, dt: np.dtype) -> None:
    """A gate's own ``onnx_export`` hook (standard ops), else a custom-domain node."""
    hook = getattr(n.info.cls, "onnx_export", None)
    if hook is None:
        custom_node(em, n, list(n.inputs), n.name)
        return
    before = len(em.nodes)
    try:
        hook(em, dict(n.attrs), list(n.inputs), n.name, dt)
    except OnnxExportError:
        raise
    except Exception as e:
        raise OnnxExportError(f"node {n.name!r} ({n.op}): the gate's onnx_export hook failed "
                              f"({type(e).__name__}: {str(e)[:200]}); fix the hook in "
                              f"{n.info.dist!r} or remove it to export a custom-domain node") from e
    if len(em.nodes) == before or list(em.nodes[-1].output) != [n.name]:
        raise OnnxExportError(f"node {n.name!r} ({n.op}): expected the onnx_export hook of "
                              f"{n.info.dist!r} to end with a node computing {n.name!r}, found "
                              f"{'no node' if len(em.nodes) == before else list(em.nodes[-1].output)}"
                              "; its last em.node call must pass out")


def _dtypes(graph: Graph) -> dict[str, np.dtype]:
    """Each value's dtype: a gate returns the dtype of its first float input (labels are ints)."""
    dt: dict[str, np.dtype] = {d.name: d.dtype for d in graph.input_decls}
    dt.update({k: v.dtype for k, v in {**graph.params, **graph.buffers}.items()})
    for n in graph.nodes:
        ins = [dt[s] for s in n.inputs]
        floats = [d for d in ins if d.kind == "f"]
        dt[n.name] = (np.dtype(n.attrs["to"]) if n.op == "cast"
                      else _bool_output(n, ins) or (floats[0] if floats else ins[0]))
    return dt


def _bool_output(n: Any, ins: list[np.dtype]) -> np.dtype | None:
    """bool or an integer dtype if the gate's ``infer`` says so (a mask, an index), else None."""
    rule = getattr(n.gate, "infer", None)
    try:
        told = rule(*[Spec(None, d) for d in ins]).dtype if rule is not None else None
    except Exception:  # noqa: BLE001  (a rule that needs shapes: keep the float default)
        return None
    return told if told is not None and told.kind in "biu" else None


def _input_dims(d: Any, overrides: Mapping[str, Sequence[int | None]] | None) -> list[Any]:
    shape = d.shape if d.shape is not None else (overrides or {}).get(d.name)
    if shape is None:
        raise OnnxExportError(
            f"input {d.name!r} declares no shape, and ONNX needs at least its rank: declare it "
            f"(GraphBuilder.input({d.name!r}, shape=(None, ...))) or pass "
            f"input_shapes={{{d.name!r}: (None, ...)}}")
    return [f"{d.name}_dim{i}" if n is None else int(n) for i, n in enumerate(shape)]


def _identity_outputs(em: Emitter, graph: Graph) -> None:
    """ONNX names an output by its value: an output named apart from its value gets an Identity."""
    values = (set(graph.inputs) | set(graph.params) | set(graph.buffers)
              | {n.name for n in graph.nodes})
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
    try:
        return {k: v.ndim for k, v in probe_shapes(graph).items()}  # the builder's sample run
    except Exception:
        return {}


def _save(data: bytes, path: str) -> None:
    from graphexec.atomic import atomic_write

    atomic_write(path, [data])
