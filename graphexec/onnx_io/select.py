"""What ``export_onnx`` writes: the part of a graph that the chosen outputs need, in the chosen
float dtype. Both are a new :class:`Graph` over the same bound nodes; the source is untouched."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphexec.graph import Graph
from graphexec.onnx_io.common import OnnxExportError

__all__ = ["convert_floats", "float_dtype", "only_outputs", "output_map"]

FLOATS = ("float32", "float64")
SHOWN = 8  # names quoted in an error before "and N more"


def output_map(graph: Graph, names: Sequence[str] | str) -> dict[str, str]:
    """Output name -> the value it shows, for ``names``: each a graph output or a node's name.

    A graph output wins over a node of the same name; a repeated name counts once.
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise OnnxExportError("outputs=[] selects nothing: expected at least one name, "
                              f"found none; the graph's outputs are {_listed(graph.outputs)}")
    nodes = {n.name for n in graph.nodes}
    out: dict[str, str] = {}
    for name in names:
        if name in graph.output_map:
            out[name] = graph.output_map[name]
        elif name in nodes:
            out[name] = name
        else:
            raise OnnxExportError(_unknown(graph, name))
    return out


def _unknown(graph: Graph, name: Any) -> str:
    what = ("an input" if name in graph.inputs else "a parameter" if name in graph.params
            else "not a value of the graph")
    return (f"cannot export output {name!r}: expected a graph output "
            f"({_listed(graph.outputs)}) or the name of a node's value "
            f"({_listed([n.name for n in graph.nodes])}), found {name!r}, which is {what}; "
            "choose outputs from those names")


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "") or "none"


def only_outputs(graph: Graph, outputs: dict[str, str]) -> Graph:
    """The graph with only ``outputs``, the nodes they need, and the inputs and parameters those
    nodes read (in the graph's order)."""
    need = set(outputs.values())
    nodes = []
    for n in reversed(graph.nodes):
        if n.name in need:
            nodes.append(n)
            need.update(n.inputs)
    nodes.reverse()
    return Graph(graph.name, [d for d in graph.input_decls if d.name in need],
                 {k: v for k, v in graph.params.items() if k in need}, nodes, outputs,
                 graph.metadata, buffers={k: v for k, v in graph.buffers.items() if k in need},
                 frozen=graph.frozen & need)


def float_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` as float32 or float64, or OnnxExportError saying what is allowed."""
    dt: np.dtype[Any] | None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in FLOATS:
        raise OnnxExportError(f"cannot export with dtype={dtype!r}: expected one of "
                              f"{', '.join(FLOATS)}, found {dtype!r}")
    return dt


def convert_floats(graph: Graph, dt: np.dtype[Any]) -> Graph:
    """Every float input and parameter as ``dt``; integer and bool ones (labels) as they are.
    Raises OnnxExportError if a finite parameter value does not fit ``dt``."""
    inputs = [dataclasses.replace(d, dtype=dt) if d.dtype.kind == "f" else d
              for d in graph.input_decls]
    params = {}
    for k, v in graph.params.items():
        if v.dtype.kind != "f" or v.dtype == dt:
            params[k] = v
            continue
        with np.errstate(over="ignore"):
            params[k] = v.astype(dt)
        lost = np.isfinite(v) & ~np.isfinite(params[k])
        if lost.any():
            raise OnnxExportError(
                f"cannot convert parameter {k!r} to {dt.name}: expected values within "
                f"±{np.finfo(dt).max:.4g}, found {float(np.abs(v[lost]).max()):.4g} "
                f"({int(lost.sum())} values would become infinite); rescale the parameter or "
                "export without dtype")
    buffers = {k: v.astype(dt) if v.dtype.kind == "f" else v for k, v in graph.buffers.items()}
    return Graph(graph.name, inputs, params, graph.nodes, graph.output_map, graph.metadata,
                 buffers=buffers, frozen=graph.frozen)
