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

from graphexec.errors import GraphError
from graphexec.executor import run
from graphexec.graph import DTYPE_NAMES, Graph, InputDecl, NodeDef, make_graph, validate_attrs
from graphexec.registry import registry

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

    def build(self, *, check_shapes: bool = True) -> Graph:
        """Check names, edges, cycles, ops and attributes; then, if every input declares a
        shape, run one forward pass on small sample data to check that the shapes fit."""
        g = make_graph(self.name, self._inputs, self._params, self._nodes, self._outputs,
                       metadata=self.metadata, buffers=self._buffers,
                       frozen=[k for k in self._params if k in self._frozen])
        if check_shapes and all(d.shape is not None for d in g.input_decls):
            probe_shapes(g)
        return g


def probe_shapes(g: Graph) -> None:
    """Run the graph once on sample inputs (None dimensions become 2) to catch shape errors."""
    rng = np.random.default_rng(0)
    feed = {}
    for d in g.input_decls:
        shape = tuple(2 if n is None else n for n in d.shape or ())
        if d.dtype.kind == "f":
            feed[d.name] = rng.uniform(0.5, 1.5, shape).astype(d.dtype)
        else:
            feed[d.name] = np.zeros(shape, dtype=d.dtype)
    with np.errstate(all="ignore"):
        run(g, feed)
