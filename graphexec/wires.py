"""Values on the wires: run a graph through the public executor and record every wire's forward
value and the gradient flowing back along it (what ``graphexec draw`` and the viewer show)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.errors import GraphError
from graphexec.executor import Executor, check_input, run
from graphexec.graph import Graph, InputDecl, NodeDef, make_graph

__all__ = ["Trace", "trace"]


@dataclass
class Trace:
    """What the wires show: every value by name, and the gradient along each wire into a node
    (keyed by (node, input index)), and at each output (the seed)."""

    values: dict[str, np.ndarray]
    edge_grads: dict[tuple[str, int], np.ndarray]
    out_grads: dict[str, np.ndarray]


def _defs(graph: Graph) -> list[NodeDef]:
    return [NodeDef(n.name, n.op, n.inputs, n.attrs, n.version) for n in graph.nodes]


def _fresh(prefix: str, taken: set[str]) -> str:
    i = len(taken)
    while f"{prefix}{i}" in taken:
        i += 1
    taken.add(f"{prefix}{i}")
    return f"{prefix}{i}"


def trace(graph: Graph, inputs: Mapping[str, Any], grad: bool = False,
          grad_of: Sequence[str] | None = None) -> Trace:
    """Run ``graph`` on ``inputs`` and record the value (and, with ``grad``, the gradient) of every
    wire; gradients are those of the outputs ``grad_of`` (default: every float output, seeded
    with ones, as ``Executor.backward()`` does).

    Through the public executor only: the graph is copied with every node's value exposed as an
    output; for gradients, every float wire gets an ``add`` of a zero input, whose gradient is
    exactly the one flowing along that wire (so fan-out branches show their own gradients)."""
    taken = set(graph.inputs) | set(graph.params) | set(graph.buffers) | {n.name for n in graph.nodes}
    taken |= set(graph.output_map)
    shown = {_fresh("__value", taken): n.name for n in graph.nodes}
    probe = make_graph(graph.name, graph.input_decls, graph.params, _defs(graph),
                       {**graph.output_map, **shown}, buffers=graph.buffers, frozen=graph.frozen)
    outs = run(probe, dict(inputs))
    values = {**graph.params, **graph.buffers, **{d.name: check_input(d, inputs[d.name])
                                 for d in graph.input_decls if d.name in inputs}}
    values.update({shown[k]: v for k, v in outs.items() if k in shown})
    seeded = [k for k in graph.output_map if k in outs and outs[k].dtype.kind == "f"]
    if grad_of is not None:
        for k in grad_of:
            if k not in seeded:
                raise GraphError(f"cannot draw the gradient of {k!r}: it is not a float output; "
                                 f"the graph's float outputs are {seeded}")
        seeded = list(grad_of)
    out_grads = {k: np.ones_like(outs[k]) for k in seeded}
    edge_grads = _wire_grads(graph, inputs, values, taken, seeded) if grad else {}
    return Trace(values, edge_grads, out_grads if grad else {})


def _wire_grads(graph: Graph, inputs: Mapping[str, Any], values: Mapping[str, np.ndarray],
                taken: set[str], seeded: Sequence[str]) -> dict[tuple[str, int], np.ndarray]:
    decls, defs, feed, taps = list(graph.input_decls), [], dict(inputs), {}
    for n in graph.nodes:
        ins = list(n.inputs)
        for i, src in enumerate(n.inputs):
            v = values.get(src)
            if v is None or v.dtype.kind != "f":
                continue
            eps, tap = _fresh("__eps", taken), _fresh("__tap", taken)
            decls.append(InputDecl(eps, v.dtype, v.shape))
            feed[eps] = np.zeros_like(v)
            defs.append(NodeDef(tap, "add", (src, eps)))
            ins[i] = tap
            taps[eps] = (n.name, i)
        defs.append(NodeDef(n.name, n.op, tuple(ins), n.attrs, n.version))
    ex = Executor(make_graph(graph.name, decls, graph.params, defs, graph.output_map,
                             buffers=graph.buffers, frozen=graph.frozen))
    ex.forward(feed)
    grads = ex.backward({k: 1.0 for k in seeded})
    return {where: grads[eps] for eps, where in taps.items()}
