"""The graph stage: declared inputs, parameters and node definitions → :class:`Graph` (nodes
ordered by networkx, gates bound). Translating a file's header to and from these is
:mod:`graphexec.header`'s job: this module never sees the file format.

Checks here: unique names, no dangling edges, outputs that exist, no cycles (the cycle is listed),
each op resolved in the registry, each node's attributes validated by its gate's model, arity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, ge
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pydantic

from graphexec.errors import GraphError, first_problem
from graphexec.gate import Gate, Spec, describe_attrs
from graphexec.gcpause import collector_paused
from graphexec.registry import GateInfo, Registry, registry
from graphexec.shapes import infer_specs

if TYPE_CHECKING:
    from graphexec.header import Training

__all__ = ["Graph", "InputDecl", "Node", "NodeDef", "NodeLike", "make_graph", "validate_attrs"]


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


class NodeLike(Protocol):
    """What the graph stage reads of a node definition: a :class:`NodeDef`, or a file's
    validated ``NodeSpec`` as it is (a load makes no second object per node)."""

    @property
    def name(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def inputs(self) -> Sequence[str]: ...
    @property
    def attrs(self) -> Mapping[str, Any]: ...
    @property
    def version(self) -> int | None: ...


@dataclass(frozen=True, init=False)
class Node:
    """A node with its gate bound: ``gate`` holds the validated attributes."""

    name: str
    op: str
    version: int
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    gate: Gate
    info: GateInfo

    def __init__(self, name: str, op: str, version: int, inputs: tuple[str, ...],
                 attrs: Mapping[str, Any], gate: Gate, info: GateInfo) -> None:
        # The fields go into the instance dict directly: a frozen dataclass's own __init__
        # calls object.__setattr__ per field, half the cost of binding a node at 100k nodes.
        d = self.__dict__
        d["name"], d["op"], d["version"], d["inputs"] = name, op, version, inputs
        d["attrs"], d["gate"], d["info"] = attrs, gate, info


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
class Sources(NamedTuple):
    """Every node input as the position of the value it names, in one flat list: graph
    inputs, parameters, buffers, then the nodes as given are numbered 0, 1, ...; the nodes'
    positions start at ``base``."""

    flat: list[int]
    base: int

    def in_order(self, defs: Sequence[NodeLike]) -> bool:
        """Whether every node reads only values defined before it (see ``_already_ordered``):
        each input's position is below its reader's, compared in C loops (``map``)."""
        lengths = map(len, map(attrgetter("inputs"), defs))
        readers = chain.from_iterable(map(repeat, range(self.base, self.base + len(defs)), lengths))
        return not any(map(ge, self.flat, readers))


def _check_names(inputs: Sequence[InputDecl], params: Mapping[str, np.ndarray],
                 defs: Sequence[NodeLike], outputs: Mapping[str, str],
                 buffers: Mapping[str, np.ndarray], frozen: Iterable[str]) -> Sources | None:
    """Unique names, no dangling edge, outputs that exist, only parameters frozen; returns
    the node inputs' positions. One pass of lookups proves a good graph good; any doubt runs
    the checks one by one, which name the first problem."""
    frozen = list(frozen)
    names = [*(d.name for d in inputs), *params, *buffers, *map(attrgetter("name"), defs)]
    index = dict(zip(names, range(len(names))))
    flat = list(map(index.get, chain.from_iterable(map(attrgetter("inputs"), defs)), repeat(-1)))
    if (len(index) == len(names) and -1 not in flat
            and all(map(index.__contains__, outputs.values())) and set(params).issuperset(frozen)):
        return Sources(flat, len(names) - len(defs))
    _find_name_problem(inputs, params, defs, outputs, buffers, frozen)
    return None


def _find_name_problem(inputs: Sequence[InputDecl], params: Mapping[str, np.ndarray],
                       defs: Sequence[NodeLike], outputs: Mapping[str, str],
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


def _order(defs: Sequence[NodeLike]) -> list[NodeLike]:
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


def _cycle_message(defs: Sequence[NodeLike], index: Mapping[str, int], show: int = 8) -> str:
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


def _already_ordered(defs: Sequence[NodeLike]) -> bool:
    """True if every node reads only values defined before it (what the builder and saved
    files produce). Then the given order is exactly what lexicographical_topological_sort
    with ties broken by position returns: the smallest unplaced index is always ready."""
    later = set(map(attrgetter("name"), defs))  # the nodes not yet passed; other names are no nodes
    discard, disjoint = later.discard, later.isdisjoint
    for d in defs:
        if not disjoint(d.inputs):
            return False
        discard(d.name)
    return True


def _bind_all(defs: Sequence[NodeLike], reg: Registry,
              provenance: Mapping[str, tuple[str, str]]) -> list[Node]:
    """Each node with its gate bound, in order. An op's gate is resolved once, and the nodes
    of a gate class that carry no attributes share one validated model (models are frozen),
    so such a node costs its arity check and two small objects, not a pydantic call."""
    infos: dict[tuple[str, int | None], GateInfo] = {}
    defaults: dict[type[Gate], Any] = {}
    nodes: list[Node] = []
    append = nodes.append
    for d in defs:
        op, version, inputs, given = d.op, d.version, d.inputs, d.attrs
        info = infos.get((op, version))
        if info is None:
            info = infos[(op, version)] = _resolve(reg, provenance, op, version)
        cls = info.cls
        if info.n_inputs != len(inputs) and info.n_inputs >= 0:
            raise GraphError(f"node {d.name!r}: op {op!r} takes {info.n_inputs} inputs, "
                             f"got {len(inputs)}: {list(inputs)}")
        if given:
            attrs = validate_attrs(d.name, op, cls, given)
        else:
            attrs = defaults.get(cls)
            if attrs is None:
                attrs = defaults[cls] = validate_attrs(d.name, op, cls, {})
        append(Node(d.name, op, info.version if version is None else version,
                    tuple(inputs), dict(given), cls(attrs), info))
    return nodes


def _resolve(reg: Registry, provenance: Mapping[str, tuple[str, str]], op: str,
             version: int | None) -> GateInfo:
    dist, dist_version = provenance.get(op, ("", ""))
    return reg.resolve(op, version if version is not None else 1, dist, dist_version)


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
               defs: Sequence[NodeLike], outputs: Mapping[str, str], *,
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
                defs: Sequence[NodeLike], outputs: Mapping[str, str], *,
                metadata: Mapping[str, str] | None, training: Training | None,
                provenance: Mapping[str, tuple[str, str]] | None, reg: Registry | None,
                buffers: dict[str, np.ndarray] | None, frozen: Iterable[str]) -> Graph:
    buffers = buffers if buffers is not None else {}
    frozen = list(frozen)
    sources = _check_names(inputs, params, defs, outputs, buffers, frozen)
    reg = reg or registry()
    in_order = sources is not None and sources.in_order(defs)
    prov, ordered = provenance or {}, list(defs) if in_order else _order(defs)
    pairs = dict.fromkeys(zip(map(attrgetter("op"), ordered), map(attrgetter("version"), ordered)))
    wanted = dict.fromkeys((op, version or 1) for op, version in pairs)  # each once, in order
    reg.require((op, version, *prov.get(op, ("", ""))) for op, version in wanted)  # all at once
    nodes = _bind_all(ordered, reg, prov)
    g = Graph(name, inputs, params, nodes, outputs, metadata, training, buffers, frozen)
    g.specs = infer_specs(inputs, {**params, **buffers}, nodes)
    return g
