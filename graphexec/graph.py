"""The graph stage: declared inputs, parameters and node definitions → :class:`Graph` (nodes
ordered by networkx, gates bound). Translating a file's header to and from these is
:mod:`graphexec.header`'s job: this module never sees the file format.

Checks here: unique names, no dangling edges, outputs that exist, no cycles (the cycle is listed),
each op resolved in the registry, each node's attributes validated by its gate's model, arity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from graphexec.errors import GraphError, first_problem
from graphexec.gate import Gate, Spec, describe_attrs
from graphexec.gcpause import collector_paused
from graphexec.registry import GateInfo, Registry, registry
from graphexec.shapes import infer_specs

if TYPE_CHECKING:
    from graphexec.header import Training

__all__ = ["Graph", "InputDecl", "Node", "NodeDef", "make_graph", "validate_attrs"]


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


class Graph:
    """A loaded or built graph: declared inputs, parameters, nodes in execution order, outputs.

    ``params`` are arrays that optimisers update in place (read-only views of the file after
    ``load(path, mmap=True)``: ``fit`` copies them first); those named in ``frozen`` are not
    trained. ``buffers`` are named non-trainable state (running statistics, say) that
    nodes read like any value and that a training-mode forward may replace (see
    ``docs/architecture.md``). Evaluation-mode runs never write a Graph, so any number of
    executors (threads) can share it.
    """

    def __init__(self, name: str, inputs: Sequence[InputDecl], params: dict[str, np.ndarray],
                 nodes: Sequence[Node], outputs: Mapping[str, str],
                 metadata: Mapping[str, str] | None = None, training: Training | None = None,
                 buffers: dict[str, np.ndarray] | None = None, frozen: Iterable[str] = ()):
        self.name = name
        self.input_decls = list(inputs)
        self.params = params
        self.buffers = buffers if buffers is not None else {}
        self.frozen = frozenset(frozen)
        self.nodes = list(nodes)
        self.output_map = dict(outputs)
        self.metadata = dict(metadata or {})
        self.training = training
        #: Each value's shape and dtype as known before running (see graphexec.shapes).
        self.specs: dict[str, Spec] = {}

    @property
    def trainable(self) -> list[str]:
        """The names of the parameters that training updates (every one not frozen)."""
        return [k for k in self.params if k not in self.frozen]

    @property
    def inputs(self) -> list[str]:
        return [d.name for d in self.input_decls]

    @property
    def outputs(self) -> list[str]:
        return list(self.output_map)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickle (and deepcopy) as the file's bytes: the compiled plan and its lock stay behind
        and the receiver validates the bytes as ``gx.loads`` does."""
        from graphexec.api import dumps, loads  # api imports this module

        return loads, (dumps(self),)

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: inputs {self.inputs}, outputs {self.outputs}, "
                f"{len(self.nodes)} nodes, {sum(p.size for p in self.params.values())} parameters>")


# ---------------------------------------------------------------------------- checks
def _check_names(inputs: Sequence[InputDecl], params: Mapping[str, np.ndarray],
                 defs: Sequence[NodeDef], outputs: Mapping[str, str],
                 buffers: Mapping[str, np.ndarray], frozen: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for kind, names in (("input", [d.name for d in inputs]), ("param", params),
                        ("buffer", buffers), ("node", [d.name for d in defs])):
        for name in names:
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
    for name in frozen:
        if seen.get(name) != "param":
            what = f"a {seen[name]}" if name in seen else "nothing of that name exists"
            raise GraphError(f"{name!r} is marked frozen, but only parameters can be frozen "
                             f"({what}); the parameters are {list(params)[:8]}")


def _order(defs: Sequence[NodeDef]) -> list[NodeDef]:
    """Topological order; ties keep the given order, so the result is deterministic."""
    if _already_ordered(defs):
        return list(defs)
    import networkx as nx  # only for files out of order: ~150 ms to import, so not up front

    index = {d.name: i for i, d in enumerate(defs)}
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


def _already_ordered(defs: Sequence[NodeDef]) -> bool:
    """True if every node reads only values defined before it (what the builder and saved
    files produce). Then the given order is exactly what lexicographical_topological_sort
    with ties broken by position returns: the smallest unplaced index is always ready."""
    later = {d.name for d in defs}  # the nodes not yet passed; other names are no nodes
    for d in defs:
        for src in d.inputs:
            if src in later:
                return False
        later.discard(d.name)
    return True


def _bind_all(defs: Sequence[NodeDef], reg: Registry,
              provenance: Mapping[str, tuple[str, str]]) -> list[Node]:
    """Each node with its gate bound, in order. An op's gate is resolved once, and the nodes
    of a gate class that carry no attributes share one validated model (models are frozen),
    so such a node costs its arity check and two small objects, not a pydantic call."""
    infos: dict[tuple[str, int | None], GateInfo] = {}
    defaults: dict[type[Gate], Any] = {}
    nodes = []
    for d in defs:
        info = infos.get((d.op, d.version))
        if info is None:
            dist, dist_version = provenance.get(d.op, ("", ""))
            info = reg.resolve(d.op, d.version if d.version is not None else 1, dist, dist_version)
            infos[(d.op, d.version)] = info
        if info.n_inputs >= 0 and info.n_inputs != len(d.inputs):
            raise GraphError(f"node {d.name!r}: op {d.op!r} takes {info.n_inputs} inputs, "
                             f"got {len(d.inputs)}: {list(d.inputs)}")
        if d.attrs:
            attrs = validate_attrs(d.name, d.op, info.cls, d.attrs)
        else:
            attrs = defaults.get(info.cls)
            if attrs is None:
                attrs = defaults[info.cls] = validate_attrs(d.name, d.op, info.cls, {})
        nodes.append(Node(d.name, d.op, d.version if d.version is not None else info.version,
                          tuple(d.inputs), dict(d.attrs), info.cls(attrs), info))
    return nodes


def validate_attrs(node: str, op: str, cls: type[Gate], attrs: Mapping[str, Any]) -> Any:
    """``attrs`` validated by the gate's ``Attrs`` model, with no conversion between types
    (``True`` is no number, ``"0.5"`` no float; an int may fill a float). GraphError names the
    node and the attribute."""
    try:
        model = cls.Attrs.model_validate(dict(attrs))
    except pydantic.ValidationError as e:
        where, what = first_problem(e)
        raise GraphError(f"node {node!r} ({op}): bad attribute {where!r}: "
                         f"{what}; {describe_attrs(cls)}") from e
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
               reg: Registry | None = None, buffers: dict[str, np.ndarray] | None = None,
               frozen: Iterable[str] = ()) -> Graph:
    """Check, order and bind a graph. ``provenance`` maps op -> (dist, version) from a file."""
    with collector_paused():  # see graphexec.gcpause: many objects per node, no garbage
        return _make_graph(name, inputs, params, defs, outputs, metadata=metadata,
                           training=training, provenance=provenance, reg=reg, buffers=buffers,
                           frozen=frozen)


def _make_graph(name: str, inputs: Sequence[InputDecl], params: dict[str, np.ndarray],
                defs: Sequence[NodeDef], outputs: Mapping[str, str], *,
                metadata: Mapping[str, str] | None, training: Training | None,
                provenance: Mapping[str, tuple[str, str]] | None, reg: Registry | None,
                buffers: dict[str, np.ndarray] | None, frozen: Iterable[str]) -> Graph:
    buffers = buffers if buffers is not None else {}
    frozen = list(frozen)
    _check_names(inputs, params, defs, outputs, buffers, frozen)
    reg = reg or registry()
    prov, ordered = provenance or {}, _order(defs)
    wanted = dict.fromkeys((d.op, d.version or 1) for d in ordered)  # each pair once, in order
    reg.require((op, version, *prov.get(op, ("", ""))) for op, version in wanted)  # all at once
    nodes = _bind_all(ordered, reg, prov)
    g = Graph(name, inputs, params, nodes, outputs, metadata, training, buffers, frozen)
    g.specs = infer_specs(inputs, {**params, **buffers}, nodes)
    return g
