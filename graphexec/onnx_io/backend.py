"""graphexec as a standard ONNX backend (``onnx.backend.base.Backend``).

``prepare(model)`` imports the model once and returns a :class:`GraphexecRep`; ``rep.run(inputs)``
returns the outputs in the model's output order. Where a node reads a graph input as a shape,
axes or bound (Reshape's shape, a reduction's axes, Clip's min/max, Slice's starts...), the
import needs that input's value: the rep then imports once per distinct value of those inputs
(``import_onnx(..., constants=...)``), keyed by the values' bytes, and keeps the last
``CACHE_SIZE`` graphs. What graphexec cannot compute exactly is refused with the import's
message (an ``OnnxImportError``), never run approximately.

Other people's runners use it as the backend module::

    import graphexec.onnx_io.backend as backend
    onnx.backend.test.BackendTest(backend, __name__)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphexec.errors import OnnxImportError, OnnxNeedsConstantsError
from graphexec.graph import Graph
from graphexec.onnx_io.common import require_onnx
from graphexec.onnx_io.importer import import_onnx

__all__ = ["CACHE_SIZE", "GraphexecBackend", "GraphexecRep", "is_compatible", "prepare",
           "run_model", "run_node", "supports_device"]

CACHE_SIZE = 16  # graphs kept per rep, one per distinct value of its shape/axes inputs
DEVICES = ("CPU",)

_onnx = require_onnx()
import onnx.backend.base as _base  # noqa: E402  (after require_onnx: its message if missing)


class GraphexecRep(_base.BackendRep):
    """A prepared model: ``run(inputs)`` (a sequence in graph-input order, or a name -> array
    mapping) -> the outputs, in the model's output order (a namedtuple-like tuple)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in inits]
        self.output_names = [vi.name for vi in model.graph.output]
        self.value_inputs: tuple[str, ...] = ()
        self._graphs: OrderedDict[bytes, tuple[Graph, list[str]]] = OrderedDict()
        self.imports = 0  # how many times the model was imported (one per cached value)
        try:
            self._fixed: Graph | None = self._import({})
        except OnnxNeedsConstantsError as e:
            self._fixed, self.value_inputs = None, e.names

    @property
    def cached(self) -> int:
        """How many specialised graphs the rep holds now (at most ``CACHE_SIZE``)."""
        return len(self._graphs)

    def _import(self, constants: dict[str, np.ndarray]) -> Graph:
        self.imports += 1
        return import_onnx(self.model, constants=constants)

    def graph_for(self, feed: Mapping[str, np.ndarray]) -> tuple[Graph, list[str]]:
        """The imported graph for these inputs (their shape/axes inputs bound), and the ONNX
        names of the graph inputs it still takes, in the order of its ``input_decls``."""
        if self._fixed is not None:
            return self._fixed, self.input_names
        bound = {k: np.asarray(feed[k]) for k in self.value_inputs}
        key = _key(bound)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        while True:  # a bound value can uncover another input the import needs (bounded)
            try:
                g = self._import(bound)
                break
            except OnnxNeedsConstantsError as e:
                more = [k for k in e.names if k not in bound and k in feed]
                if not more:
                    raise
                bound.update({k: np.asarray(feed[k]) for k in more})
                self.value_inputs += tuple(more)
        key = _key(bound)  # the inputs it took, all of them
        self._graphs[key] = g, [k for k in self.input_names if k not in bound]
        if len(self._graphs) > CACHE_SIZE:
            self._graphs.popitem(last=False)
        return self._graphs[key]

    def run(self, inputs: Any, **kwargs: Any) -> Any:
        from graphexec.executor import run

        feed = self._feed(inputs)
        g, names = self.graph_for(feed)
        values = {d.name: np.asarray(feed[k]) for d, k in zip(g.input_decls, names)}
        with np.errstate(all="ignore"):
            out = run(g, values)
        result = [out[k] for k in g.output_map]
        return _base.namedtupledict("Outputs", self.output_names)(*result)

    def _feed(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            missing = [k for k in self.input_names if k not in inputs]
            if missing:
                raise OnnxImportError(f"run: expected a value for every graph input "
                                      f"{self.input_names}, found none for {missing}")
            return {k: np.asarray(inputs[k]) for k in self.input_names}
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.input_names):
            raise OnnxImportError(f"run: expected {len(self.input_names)} inputs "
                                  f"{self.input_names}, found {len(inputs)}")
        return {k: np.asarray(v) for k, v in zip(self.input_names, inputs)}


class GraphexecBackend(_base.Backend):
    """The ONNX backend interface over ``import_onnx`` and ``gx.run`` (CPU only)."""

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> GraphexecRep:
        _device(device)
        if isinstance(model, (bytes, bytearray)):
            model = _onnx.load_model_from_string(bytes(model))
        return GraphexecRep(model)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> Any:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> Any:
        """One node on ``inputs`` (in the node's input order): a one-node model, run once."""
        helper = _onnx.helper
        arrays = [np.asarray(v) for v in inputs]
        names = [n for n in node.input if n]
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, arrays)]
        outs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        opset = int(kwargs.get("opset_version", _onnx.defs.onnx_opset_version()))
        graph = helper.make_graph([node], "run_node", ins, outs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, arrays, device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().split(":")[0] in DEVICES


def _key(bound: Mapping[str, np.ndarray]) -> bytes:
    """The cache key of bound values: each one's name, dtype, shape and bytes."""
    return b"".join(k.encode() + b"\0" + v.dtype.str.encode() + repr(v.shape).encode()
                    + np.ascontiguousarray(v).tobytes() for k, v in sorted(bound.items()))


def _device(device: str) -> None:
    if not GraphexecBackend.supports_device(device):
        raise OnnxImportError(f"device {device!r}: expected one of {', '.join(DEVICES)} (graphexec "
                              "runs on the CPU with numpy)")


is_compatible = GraphexecBackend.is_compatible
prepare = GraphexecBackend.prepare
run_model = GraphexecBackend.run_model
run_node = GraphexecBackend.run_node
supports_device = GraphexecBackend.supports_device
