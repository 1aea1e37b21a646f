"""GraphBuilder: write a graph in Python, the way the lecture draws it.

>>> b = GraphBuilder("add_mul")
>>> x, y, z = b.input("x"), b.input("y"), b.input("z")
>>> b.output(b.op("mul", b.op("add", x, y), z), "f")
>>> g = b.build()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.dtypes import DTYPE_NAMES
from graphexec.errors import GraphError
from graphexec.executor import run
from graphexec.graph import Graph, InputDecl, NodeDef, make_graph, validate_attrs
from graphexec.registry import registry
from graphexec.shapes import has_rule

__all__ = ["GraphBuilder", "Value"]


@dataclass(frozen=True)
class Value:
    """A named value of the graph being built (an input, a parameter or a node's output)."""

    name: str


def _dtype(dtype: Any) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt.name not in DTYPE_NAMES:
        raise GraphError(f"dtype {dt.name!r} is not supported; use one of {list(DTYPE_NAMES)}")
    return dt


class GraphBuilder:
    """Collects inputs, parameters, nodes and outputs, then ``build()`` checks and binds them."""

    def __init__(self, name: str = "graph", *, metadata: dict[str, str] | None = None):
        self.name = name
        self.metadata = dict(metadata or {})
        self._inputs: list[InputDecl] = []
        self._params: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._frozen: set[str] = set()
        self._nodes: list[NodeDef] = []
        self._outputs: dict[str, str] = {}

    def input(self, name: str, shape: tuple[int | None, ...] | list[int | None] | None = None,
              dtype: Any = "float64") -> Value:
        """Declare an input. ``shape`` None: any shape; a None dimension: any size."""
        self._inputs.append(InputDecl(name, _dtype(dtype), None if shape is None else tuple(shape)))
        return Value(name)

    def param(self, name: str, value: Any, dtype: Any = None, *, trainable: bool = True) -> Value:
        """Add a learned parameter (copied into a fresh, writable, C-ordered array);
        ``trainable=False`` freezes it: training leaves it exactly as it is."""
        arr = np.array(value, dtype=dtype, order="C", copy=True)
        _dtype(arr.dtype)
        self._params[name] = arr
        if trainable:
            self._frozen.discard(name)
        else:
            self._frozen.add(name)
        return Value(name)

    def buffer(self, name: str, value: Any, dtype: Any = None) -> Value:
        """Add a buffer: named state that nodes read but nothing trains or differentiates
        (batch-norm running statistics, say); saved and loaded with the graph."""
        arr = np.array(value, dtype=dtype, order="C", copy=True)
        _dtype(arr.dtype)
        self._buffers[name] = arr
        return Value(name)

    def op(self, op: str, *inputs: Value | str, name: str | None = None, **attrs: Any) -> Value:
        """Apply gate ``op`` to ``inputs``; attributes as keywords: ``op("leaky_relu", h, alpha=0.1)``."""
        info = registry().resolve(op, 1)
        node = name or f"{op}_{len(self._nodes)}"
        model = validate_attrs(node, op, info.cls, attrs)
        names = tuple(v.name if isinstance(v, Value) else v for v in inputs)
        self._nodes.append(NodeDef(node, op, names, model.model_dump(), info.version))
        return Value(node)

    def output(self, value: Value | str, name: str | None = None) -> None:
        """Expose ``value`` as an output called ``name`` (default: the value's own name)."""
        src = value.name if isinstance(value, Value) else value
        key = name or src
        if key in self._outputs:
            raise GraphError(f"output {key!r} is declared twice")
        self._outputs[key] = src

    @classmethod
    def from_graph(cls, g: Graph, name: str | None = None) -> GraphBuilder:
        """A builder holding ``g``'s inputs, parameters (frozen ones stay frozen), buffers,
        nodes and outputs, to extend it: put a loss on an imported network, replace a head,
        freeze all but the last layer. Arrays are copied; ``g`` itself is never changed."""
        b = cls(name or g.name, metadata=dict(g.metadata))
        b._inputs = list(g.input_decls)
        for k, v in g.params.items():
            b.param(k, v, trainable=k not in g.frozen)
        for k, v in g.buffers.items():
            b.buffer(k, v)
        b._nodes = [NodeDef(n.name, n.op, n.inputs, dict(n.attrs), n.version) for n in g.nodes]
        b._outputs = dict(g.output_map)
        return b

    def value(self, name: str) -> Value:
        """A reference to an existing value (input, parameter, buffer, node, or an output's
        value by the output's name), to build on."""
        if name in self._outputs:
            name = self._outputs[name]
        known = ({d.name for d in self._inputs} | set(self._params) | set(self._buffers)
                 | {d.name for d in self._nodes})
        if name not in known:
            raise GraphError(f"the builder has no value {name!r}; it has {sorted(known)[:12]}")
        return Value(name)

    def freeze(self, *names: str, trainable: bool = False) -> None:
        """Mark parameters frozen (or, with ``trainable=True``, trainable again)."""
        for k in names:
            if k not in self._params:
                raise GraphError(f"cannot freeze {k!r}: it is not a parameter; the parameters "
                                 f"are {list(self._params)[:12]}")
            (self._frozen.discard if trainable else self._frozen.add)(k)

    def remove_output(self, name: str) -> None:
        """Stop exposing output ``name`` (its nodes stay unless nothing else needs them)."""
        if self._outputs.pop(name, None) is None:
            raise GraphError(f"no output {name!r}; the outputs are {list(self._outputs)}")

    def build(self, *, check_shapes: bool = True) -> Graph:
        """Check names, edges, cycles, ops and attributes, and infer every node's output shape
        from the declared ones without running anything (each gate's shape rule). Nodes whose
        gate has no rule are checked by one forward pass on small sample data instead, when
        every input declares a shape."""
        g = make_graph(self.name, self._inputs, self._params, self._nodes, self._outputs,
                       metadata=self.metadata, buffers=self._buffers,
                       frozen=[k for k in self._params if k in self._frozen])
        if (check_shapes and not all(map(has_rule, g.nodes))
                and all(d.shape is not None for d in g.input_decls)):
            probe_shapes(g)
        return g


def probe_inputs(g: Graph) -> dict[str, np.ndarray]:
    """Sample inputs for one trial run: None dimensions become 2; floats drawn uniformly from
    [0.5, 1.5) (seed 0: the same every time), other dtypes zeros."""
    rng = np.random.default_rng(0)
    feed = {}
    for d in g.input_decls:
        shape = tuple(2 if n is None else n for n in d.shape or ())
        if d.dtype.kind == "f":
            feed[d.name] = rng.uniform(0.5, 1.5, shape).astype(d.dtype)
        else:
            feed[d.name] = np.zeros(shape, dtype=d.dtype)
    return feed


def probe_shapes(g: Graph) -> dict[str, np.ndarray]:
    """Run the graph once on :func:`probe_inputs` to catch shape errors; returns the outputs."""
    with np.errstate(all="ignore"):
        return run(g, probe_inputs(g))
