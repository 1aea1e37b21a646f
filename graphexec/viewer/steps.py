"""The viewer's story: the executor's forward pass, one step per node, then its backward pass in
reverse, with the numbers each step shows.

Every value and every gradient comes from the executor itself, through :func:`graphexec.draw.trace`
(forward values of every wire; the gradient flowing along each wire, fan-out branches apart). The
sums at fan-out are added here in the executor's own order (seed first, then readers in reverse
execution order), so each partial sum is the one the executor held at that step. A gate's *local*
gradient, for the chain-rule line, is the gate's own backward run on the same inputs with an
upstream gradient of 1: exact for a scalar output (the backward is linear in its upstream).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphexec.draw import SYMBOLS, Trace, format_value, trace
from graphexec.gate import Ctx
from graphexec.graph import Graph, Node

__all__ = ["grad_target", "node_info", "story", "text", "value_info"]

#: Gates drawn between their operands in an equation: q = x + y.
INFIX = {"add": "+", "sub": "−", "mul": "×", "div": "÷"}
#: Gates written as a function of their operands with a symbol of their own: f = σ(dot).
FUNCS = {"sigmoid": "σ"}
#: Cells of a heat map along each axis, at most.
HEAT = 24


def text(a: Any) -> str:
    """A value as the page writes it: :func:`graphexec.draw.format_value` with true minus signs."""
    return format_value(a).replace("-", "−")


def _paren(t: str) -> str:
    return f"({t})" if t.startswith("−") else t


def _num(x: float) -> str:
    return text(np.float64(x))


def _blocks(n: int) -> np.ndarray:
    """Start indices of at most HEAT near-equal blocks of n items."""
    return np.linspace(0, n, min(HEAT, n) + 1).astype(int)[:-1]


def _heat(a: np.ndarray) -> dict[str, Any] | None:
    """At most HEAT x HEAT block means of a tensor (rows: first axis, columns: the rest)."""
    if a.size <= 4 or a.dtype.kind not in "biuf":
        return None
    m = a.astype(np.float64).reshape(a.shape[0], -1) if a.ndim > 1 else a.astype(np.float64)[None]
    if m.shape[0] <= HEAT and m.shape[1] <= HEAT:
        cells = m
    else:
        r, c = _blocks(m.shape[0]), _blocks(m.shape[1])
        sums = np.add.reduceat(np.add.reduceat(m, r, axis=0), c, axis=1)
        cells = sums / np.outer(np.diff(np.append(r, m.shape[0])), np.diff(np.append(c, m.shape[1])))
    return {"cells": [[float(f"{v:.3g}") for v in row] for row in cells.tolist()],
            "scale": float(f"{np.abs(m).max():.4g}")}


def value_info(a: np.ndarray) -> dict[str, Any]:
    """What the page shows of one array: its text, shape and, for tensors, stats and a heat map."""
    info: dict[str, Any] = {"text": text(a), "shape": list(a.shape), "scalar": a.size == 1}
    if a.size > 4 or a.ndim > 2:  # the wire shows the shape and the range on lines of their own
        info["dims"] = format_value(a, shape=True).split(":")[0]
        info["range"] = text(a) if a.size == 0 else format_value(a, shape=False).replace("-", "−")
    if a.size > 1 and a.dtype.kind in "biuf":
        info["stats"] = {"min": _num(a.min()), "max": _num(a.max()), "mean": _num(a.mean())}
        info["heat"] = _heat(a)
    return info


def node_info(graph: Graph, node: Node, values: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What clicking a node shows: op, version, distribution, attributes, shapes, parameters."""
    params = {s: int(graph.params[s].size) for s in node.inputs if s in graph.params}
    doc = (type(node.gate).__doc__ or "").strip().split("\n\n")[0]
    out = values.get(node.name)
    return {
        "name": node.name, "op": node.op, "symbol": SYMBOLS.get(node.op, node.op),
        "version": node.version, "dist": node.info.dist, "distVersion": node.info.dist_version,
        "attrs": {k: str(list(v) if isinstance(v, tuple) else v) for k, v in node.attrs.items()},
        "inputs": list(node.inputs),
        "inShapes": [list(values[s].shape) if s in values else None for s in node.inputs],
        "outShape": list(out.shape) if out is not None else None,
        "params": params, "nParams": sum(params.values()), "doc": " ".join(doc.split()),
    }


def grad_target(graph: Graph, grad_of: str | None, outs: Mapping[str, np.ndarray]) -> str | None:
    """The output whose gradient is shown: ``grad_of``, else the first float output (or None)."""
    if grad_of is not None:
        return grad_of
    floats = [k for k in graph.output_map if k in outs and outs[k].dtype.kind == "f"]
    return floats[0] if floats else None


def _equation(node: Node, values: Mapping[str, np.ndarray]) -> str:
    """The forward step as an equation: q = x + y = −2 + 5 = 3 (numbers only for scalars)."""
    args, out = node.inputs, values[node.name]
    sym, fn = INFIX.get(node.op), FUNCS.get(node.op, node.op)
    form = f" {sym} ".join(args) if sym and len(args) == 2 else f"{fn}({', '.join(args)})"
    scalars = out.size == 1 and all(values[s].size == 1 for s in args)
    if not scalars:
        return f"{node.name} = {form}"
    nums = [text(values[s]) if j == 0 else _paren(text(values[s])) for j, s in enumerate(args)]
    filled = f" {sym} ".join(nums) if sym and len(args) == 2 else f"{fn}({', '.join(nums)})"
    return f"{node.name} = {form} = {filled} = {text(out)}"


def _local(node: Node, values: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    """∂node/∂input for each input: the gate's backward on the same inputs with upstream 1.
    Only meaningful (and only called) for a scalar output. A gate that cannot be re-run alone
    (it wants more of its ctx than a plain inference run gives) gets no local gradient: the
    page then shows the chain rule without the factors."""
    ins = [values[s] for s in node.inputs]
    ctx = Ctx()
    ctx.training = False
    try:
        out = node.gate.forward(ctx, *ins)
        ctx.needs_grad = tuple(v.dtype.kind == "f" for v in ins)
        local = tuple(node.gate.backward(ctx, np.ones_like(np.asarray(out))))
    except Exception:  # noqa: BLE001 - the numbers shown come from the executor, not from here
        return (None,) * len(ins)
    return local if len(local) == len(ins) else (None,) * len(ins)


def _rule(F: str, node: Node, i: int, dout: np.ndarray, grad: np.ndarray, local: Any,
          values: Mapping[str, np.ndarray]) -> str:
    """The chain-rule line: ∂f/∂x = ∂f/∂q · ∂q/∂x = −4 × 1 = −4 (scalars), or the same with stats."""
    src = node.inputs[i]
    head = f"∂{F}/∂{src} = ∂{F}/∂{node.name} · ∂{node.name}/∂{src}"
    if dout.size == 1 and values[src].size == 1 and local is not None:
        return f"{head} = {text(dout)} × {_paren(text(local))} = {text(grad)}"
    return f"{head}: {text(grad)}"


class _Sums:
    """Gradients summed at each value in the executor's order (the lecture's gradient adder)."""

    def __init__(self, graph: Graph, tr: Trace, order: Sequence[int], F: str | None):
        self.parts: dict[str, list[str]] = {}
        self.total: dict[str, np.ndarray] = {}
        self.branches: dict[str, int] = {}
        if F is not None:
            src = graph.output_map[F]
            self.branches[src] = 1
            self.parts[src] = ["1"]
            self.total[src] = tr.out_grads[F]
        for k in order:
            for i, s in enumerate(graph.nodes[k].inputs):
                if (graph.nodes[k].name, i) in tr.edge_grads:
                    self.branches[s] = self.branches.get(s, 0) + 1

    def add(self, s: str, g: np.ndarray) -> dict[str, Any]:
        cur = self.total.get(s)
        self.total[s] = g if cur is None else np.asarray(cur + g)
        self.parts.setdefault(s, []).append(text(g))
        n, of = len(self.parts[s]), self.branches[s]
        if of == 1:  # no fan-out: the sum is the one gradient (the page shows that)
            return {"value": s, "sum": None, "n": n, "of": of, "parts": None}
        return {"value": s, "sum": value_info(self.total[s]), "n": n, "of": of,
                "parts": list(self.parts[s])}


def _forward_steps(graph: Graph, values: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    return [{"phase": "forward", "node": k, "value": n.name, "eq": _equation(n, values)}
            for k, n in enumerate(graph.nodes) if n.name in values]


def _backward_step(graph: Graph, k: int, tr: Trace, sums: _Sums, F: str) -> dict[str, Any]:
    node = graph.nodes[k]
    dout = sums.total[node.name]
    edges = [i for i in range(len(node.inputs)) if (node.name, i) in tr.edge_grads]
    local = _local(node, tr.values) if dout.size == 1 else (None,) * len(node.inputs)
    rules = []
    for i in edges:
        g = tr.edge_grads[(node.name, i)]
        loc = local[i]
        rules.append({"input": i, "src": node.inputs[i], "grad": value_info(g),
                      "local": value_info(np.asarray(loc)) if loc is not None else None,
                      "text": _rule(F, node, i, dout, g, loc, tr.values),
                      "acc": sums.add(node.inputs[i], g)})
    seeded = graph.output_map[F] == node.name
    return {"phase": "backward", "node": k, "value": node.name, "dout": value_info(dout),
            "seed": f"∂{F}/∂{F} = 1" if seeded else None, "rules": rules}


def _edge_grads(steps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each wire's gradient and the step that sends it, keyed "node index:input index"; "out"
    is the seed at the output whose gradient is shown."""
    out: dict[str, dict[str, Any]] = {}
    for j, st in enumerate(steps):
        if st.get("seed"):
            out["out"] = {"text": "1", "step": j}
        for r in st.get("rules", []):
            g = r["grad"]
            out[f"{st['node']}:{r['input']}"] = {"text": g.get("range", g["text"]), "step": j}
    return out


def story(graph: Graph, inputs: Mapping[str, Any], grad_of: str | None = None) -> dict[str, Any]:
    """The page's data: values of every wire, each node's facts, and the steps (start, forward
    in execution order, backward in reverse) with the gradients each one sends along its wires."""
    first = trace(graph, inputs)
    outs = {k: first.values[v] for k, v in graph.output_map.items() if v in first.values}
    F = grad_target(graph, grad_of, outs)
    tr = trace(graph, inputs, grad=F is not None, grad_of=[F] if F else None)
    steps: list[dict[str, Any]] = [{"phase": "start"}] + _forward_steps(graph, tr.values)
    fanout: dict[str, int] = {}
    if F is not None:
        order = [k for k in reversed(range(len(graph.nodes)))
                 if any((graph.nodes[k].name, i) in tr.edge_grads
                        for i in range(len(graph.nodes[k].inputs)))]
        sums = _Sums(graph, tr, order, F)
        fanout = {s: n for s, n in sums.branches.items() if n > 1}
        steps += [_backward_step(graph, k, tr, sums, F) for k in order
                  if graph.nodes[k].name in sums.total]
    return {
        "gradOf": F, "edgeGrads": _edge_grads(steps), "fanout": fanout,
        "values": {k: value_info(v) for k, v in tr.values.items()},
        "nodes": [node_info(graph, n, tr.values) for n in graph.nodes],
        "steps": steps,
    }
