"""The graph stage: validated header ⇄ :class:`Graph` (nodes ordered by networkx, gates bound).

Checks here: unique names, no dangling edges, outputs that exist, no cycles (the cycle is listed),
each op resolved in the registry, each node's attributes validated by its gate's model, arity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pydantic

from graphexec.errors import GraphError, printable
from graphexec.fileformat import Header, tensor_entries
from graphexec.fileformat.codec import describe_loc
from graphexec.fileformat.schema import InputSpec, NodeSpec, OpSpec, OutputSpec, TrainingSection
from graphexec.gate import Gate, describe_attrs
from graphexec.registry import GateInfo, Registry, registry

__all__ = ["Graph", "InputDecl", "Node", "NodeDef", "Training", "make_graph", "from_header", "to_header"]

DTYPE_NAMES = ("float32", "float64", "int32", "int64", "bool")


@dataclass(frozen=True)
class InputDecl:
    """A declared graph input. ``shape`` None: any shape; a None dimension: any size."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class NodeDef:
    """A node as written in a file or by the builder, before its gate is bound."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None  # None: the installed gate's version


@dataclass(frozen=True)
class Node:
    """A node with its gate bound: ``gate`` holds the validated attributes."""

    name: str
    op: str
    version: int
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    gate: Gate
    info: GateInfo


@dataclass
class Training:
    """The training section of a checkpoint: how to train (spec) and where a run stopped."""

    spec: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


class Graph:
    """A loaded or built graph: declared inputs, parameters, nodes in execution order, outputs.

    ``params`` are writable arrays that optimisers update in place. A Graph is never written
    during a run, so any number of executors (threads) can share it.
    """

    def __init__(self, name: str, inputs: Sequence[InputDecl], params: dict[str, np.ndarray],
                 nodes: Sequence[Node], outputs: Mapping[str, str],
                 metadata: Mapping[str, str] | None = None, training: Training | None = None):
        self.name = name
        self.input_decls = list(inputs)
        self.params = params
        self.nodes = list(nodes)
        self.output_map = dict(outputs)
        self.metadata = dict(metadata or {})
        self.training = training

    @property
    def inputs(self) -> list[str]:
        return [d.name for d in self.input_decls]

    @property
    def outputs(self) -> list[str]:
        return list(self.output_map)

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: inputs {self.inputs}, outputs {self.outputs}, "
                f"{len(self.nodes)} nodes, {sum(p.size for p in self.params.values())} parameters>")


# ---------------------------------------------------------------------------- checks
def _check_names(inputs: Sequence[InputDecl], params: Mapping[str, np.ndarray],
                 defs: Sequence[NodeDef], outputs: Mapping[str, str]) -> None:
    seen: dict[str, str] = {}
    for kind, name in ([("input", d.name) for d in inputs] + [("param", p) for p in params]
                       + [("node", d.name) for d in defs]):
        if name in seen:
            raise GraphError(f"duplicate name {name!r}: used by a {seen[name]} and a {kind}")
        seen[name] = kind
    for d in defs:
        for src in d.inputs:
            if src not in seen:
                raise GraphError(f"node {d.name!r} ({d.op}) reads {src!r}, which does not exist "
                                 "(no input, parameter or node has that name)")
    for out, src in outputs.items():
        if src not in seen:
            raise GraphError(f"output {out!r} shows {src!r}, which nothing produces")


def _order(defs: Sequence[NodeDef]) -> list[NodeDef]:
    """Topological order; ties keep the given order, so the result is deterministic."""
    index = {d.name: i for i, d in enumerate(defs)}
    if _already_ordered(defs, index):
        return list(defs)
    g = nx.DiGraph()
    g.add_nodes_from(index)
    g.add_edges_from((src, d.name) for d in defs for src in d.inputs if src in index)
    try:
        order = list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        del g  # the cycle search below needs only the defs
        raise GraphError(_cycle_message(defs, index)) from None
    return [defs[index[n]] for n in order]


def _cycle_message(defs: Sequence[NodeDef], index: Mapping[str, int], show: int = 8) -> str:
    """One cycle, found by walking node inputs; at most ``show`` names are listed.

    Place every node whose inputs are all placed (Kahn's algorithm): each node left over lies
    on a cycle or downstream of one, so it has an input that is left over too. From any left
    over node, follow such inputs until a node repeats. Memory: a few ints per node (networkx's
    ``find_cycle`` took ~4 KB per node)."""
    waiting = [0] * len(defs)
    readers: list[list[int]] = [[] for _ in defs]
    for i, d in enumerate(defs):
        for src in d.inputs:
            if src in index:
                waiting[i] += 1
                readers[index[src]].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    while ready:
        for j in readers[ready.pop()]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    i = next(k for k, w in enumerate(waiting) if w)
    step: dict[int, int] = {}
    while i not in step:
        step[i] = next(index[s] for s in defs[i].inputs if s in index and waiting[index[s]])
        i = step[i]
    cycle = [i]
    while step[cycle[-1]] != i:
        cycle.append(step[cycle[-1]])
    cycle.reverse()  # data-flow order, starting at the node that comes first in the file
    first = cycle.index(min(cycle))
    names = [defs[k].name for k in cycle[first:] + cycle[:first]]
    shown = names[:show] + names[:1] if len(names) <= show else names[:show] + ["..."]
    more = "" if len(names) <= show else f" ({len(names)} nodes in the cycle)"
    return f"the graph has a cycle: {' -> '.join(shown)}{more}"


def _already_ordered(defs: Sequence[NodeDef], index: Mapping[str, int]) -> bool:
    """True if every node reads only values defined before it (what the builder and saved
    files produce). Then the given order is exactly what lexicographical_topological_sort
    with ties broken by position returns: the smallest unplaced index is always ready."""
    for i, d in enumerate(defs):
        for src in d.inputs:
            if index.get(src, -1) >= i:
                return False
    return True


def _bind(d: NodeDef, reg: Registry, provenance: Mapping[str, tuple[str, str]]) -> Node:
    dist, dist_version = provenance.get(d.op, ("", ""))
    version = d.version
    info = reg.resolve(d.op, version if version is not None else 1, dist, dist_version)
    if info.n_inputs >= 0 and info.n_inputs != len(d.inputs):
        raise GraphError(f"node {d.name!r}: op {d.op!r} takes {info.n_inputs} inputs, "
                         f"got {len(d.inputs)}: {list(d.inputs)}")
    attrs = validate_attrs(d.name, d.op, info.cls, d.attrs)
    return Node(d.name, d.op, version if version is not None else info.version,
                tuple(d.inputs), dict(d.attrs), info.cls(attrs), info)


def validate_attrs(node: str, op: str, cls: type[Gate], attrs: Mapping[str, Any]) -> Any:
    """``attrs`` validated by the gate's ``Attrs`` model, with no conversion between types
    (``True`` is no number, ``"0.5"`` no float; an int may fill a float). GraphError names the
    node and the attribute."""
    try:
        model = cls.Attrs.model_validate(dict(attrs))
    except pydantic.ValidationError as e:
        err = e.errors(include_url=False, include_context=False, include_input=False)[0]
        raise GraphError(f"node {node!r} ({op}): bad attribute {describe_loc(err['loc'])!r}: "
                         f"{printable(err['msg'])}; {describe_attrs(cls)}") from e
    for key, given in attrs.items():
        validated = getattr(model, key, given)
        if not _same_kind(given, validated):
            raise GraphError(f"node {node!r} ({op}): bad attribute {key!r}: expected "
                             f"{_kind(validated)}, found {_kind(given)} {given!r:.60} "
                             f"(attributes are not converted between types); {describe_attrs(cls)}")
    return model


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "nil"
    return "list" if isinstance(v, (list, tuple)) else type(v).__name__


def _same_kind(given: Any, validated: Any) -> bool:
    """True unless validation changed the kind of a value (a file holds no coerced values:
    ``True`` is no number, ``"0.5"`` no float, ``2.0`` no int; an int MAY fill a float)."""
    a, b = _kind(given), _kind(validated)
    if a == "list" and b == "list":
        return len(given) == len(validated) and all(map(_same_kind, given, validated))
    return a == b or (a == "int" and b == "float") or b not in ("bool", "int", "float", "str", "nil", "list")


def make_graph(name: str, inputs: Sequence[InputDecl], params: dict[str, np.ndarray],
               defs: Sequence[NodeDef], outputs: Mapping[str, str], *,
               metadata: Mapping[str, str] | None = None, training: Training | None = None,
               provenance: Mapping[str, tuple[str, str]] | None = None,
               reg: Registry | None = None) -> Graph:
    """Check, order and bind a graph. ``provenance`` maps op -> (dist, version) from a file."""
    _check_names(inputs, params, defs, outputs)
    reg = reg or registry()
    prov, ordered = provenance or {}, _order(defs)
    reg.require((d.op, d.version or 1, *prov.get(d.op, ("", ""))) for d in ordered)  # all at once
    nodes = [_bind(d, reg, prov) for d in ordered]
    return Graph(name, inputs, params, nodes, outputs, metadata, training)


# ---------------------------------------------------------------------------- header <-> graph
def _unique(what: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise GraphError(f"duplicate {what} {n!r}: each may appear only once")
        seen.add(n)


def from_header(header: Header, arrays: Sequence[np.ndarray], reg: Registry | None = None) -> Graph:
    """Build a graph from a validated header and its tensors (params first, then training)."""
    n = len(header.params)
    params = {e.name: a for e, a in zip(header.params, arrays[:n])}
    training = None
    if header.training is not None:
        t = header.training
        training = Training(dict(t.spec), dict(t.state),
                            {e.name: a for e, a in zip(t.tensors, arrays[n:])})
    inputs = [InputDecl(s.name, np.dtype(s.dtype),
                        None if s.shape is None else tuple(s.shape)) for s in header.inputs]
    defs = [NodeDef(s.name, s.op, tuple(s.inputs), s.attrs, s.version) for s in header.nodes]
    _unique("output", [o.name for o in header.outputs])
    _unique("ops entry for op", [o.op for o in header.ops])
    provenance = {o.op: (o.dist, o.dist_version) for o in header.ops}
    return make_graph(header.name, inputs, params, defs, {o.name: o.value for o in header.outputs},
                      metadata=header.metadata, training=training, provenance=provenance, reg=reg)


def _plain(v: Any) -> Any:
    """Attribute values as msgpack-able plain Python (tuples become lists, numpy scalars items)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _savable(kind: str, named: Sequence[tuple[str, np.ndarray]]) -> None:
    for k, v in named:
        if v.dtype.name not in DTYPE_NAMES:  # (a big-endian float64 is fine: saved little-endian)
            raise GraphError(f"cannot save {kind} {k!r}: its dtype is {v.dtype.name} "
                             f"({v.dtype.str}); files hold {', '.join(DTYPE_NAMES)}; "
                             f"convert it with .astype(...)")


def to_header(g: Graph) -> tuple[Header, list[np.ndarray]]:
    """The header and tensors that represent ``g`` in a file.

    Raises GraphError, naming the value, for what a file cannot hold (an unsupported dtype, a
    name or metadata text the format forbids).
    """
    try:
        return _to_header(g)
    except pydantic.ValidationError as e:
        err = e.errors(include_url=False, include_context=False, include_input=False)[0]
        raise GraphError(f"cannot save graph {g.name!r}: {describe_loc(err['loc'])}: "
                         f"{printable(err['msg'])}") from e


def _to_header(g: Graph) -> tuple[Header, list[np.ndarray]]:
    pnamed = [(k, np.asarray(v)) for k, v in g.params.items()]
    _savable("parameter", pnamed)
    pentries = tensor_entries(pnamed)
    end = pentries[-1].offset + pentries[-1].nbytes if pentries else 0
    training, tnamed = None, []
    if g.training is not None:
        tnamed = [(k, np.asarray(v)) for k, v in g.training.tensors.items()]
        _savable("training tensor", tnamed)
        training = TrainingSection(spec=g.training.spec, state=g.training.state,
                                   tensors=tensor_entries(tnamed, end))
    ops = sorted({(n.op, n.info.dist, n.info.dist_version, n.version) for n in g.nodes})
    best: dict[str, OpSpec] = {}
    for op, dist, dver, ver in ops:  # one entry per op, with the highest version the graph uses
        best[op] = OpSpec(op=op, version=ver, dist=dist, dist_version=dver)
    header = Header(
        name=g.name,
        inputs=[InputSpec(name=d.name, dtype=d.dtype.name,  # type: ignore[arg-type]
                          shape=None if d.shape is None else list(d.shape)) for d in g.input_decls],
        params=pentries,
        nodes=[NodeSpec(name=n.name, op=n.op, version=n.version, inputs=list(n.inputs),
                        attrs={k: _plain(v) for k, v in n.attrs.items()}) for n in g.nodes],
        outputs=[OutputSpec(name=k, value=v) for k, v in g.output_map.items()],
        ops=list(best.values()),
        metadata=g.metadata,
        training=training,
    )
    return header, [a for _, a in pnamed] + [a for _, a in tnamed]
