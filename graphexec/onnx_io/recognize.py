"""graphexec's own export, read back into the same gates.

The exporter marks the last ONNX node it writes for each built-in gate with a ``doc_string``
``graphexec gate {json}`` naming the gate, its version, attributes, inputs and dtype. A mark is
only a claim: the importer checks it against the installed gate (version, attributes, arity),
re-runs that gate's emitter, and accepts the mark only if the emitted
nodes and constants are exactly the ones in the model, wired the same way, and nothing outside
the group reads a value inside it. An edited, optimised or forged group is not recognised; its
nodes go through the ordinary ONNX translators instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.dtypes import DTYPE_NAMES
from graphexec.errors import GraphexecError
from graphexec.graph import validate_attrs
from graphexec.onnx_io.emitters import EMITTERS, Emitter
from graphexec.registry import OWN_DIST, registry

__all__ = ["MARK", "Mark", "mark_text", "read_mark", "recognize"]

MARK = "graphexec gate "
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Mark:
    """A gate claimed by a mark: the node that computes ``out`` from ``inputs``."""

    op: str
    version: int
    attrs: dict[str, Any]
    inputs: tuple[str, ...]
    dtype: np.dtype[Any]
    out: str

    @property
    def name(self) -> str:
        return self.out


def mark_text(op: str, version: int, attrs: Any, inputs: Any, dtype: np.dtype[Any]) -> str:
    """The ``doc_string`` that marks the node computing a built-in gate's value."""
    body = {"op": op, "version": version, "attrs": dict(attrs), "inputs": list(inputs),
            "dtype": np.dtype(dtype).name}
    return MARK + json.dumps(body, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"{type(v).__name__} is not JSON")


def read_mark(node: Any) -> Mark | None:
    """The mark on ``node``, or None if it has none or one that is malformed."""
    if not node.doc_string.startswith(MARK) or node.domain not in DEFAULT_DOMAINS:
        return None
    try:
        d = json.loads(node.doc_string[len(MARK):])
    except (ValueError, RecursionError):
        return None
    ok = (isinstance(d, dict) and d.get("op") in EMITTERS and type(d.get("version")) is int
          and isinstance(d.get("attrs"), dict) and isinstance(d.get("inputs"), list)
          and all(isinstance(i, str) and i for i in d["inputs"]) and d.get("dtype") in DTYPE_NAMES
          and len(node.output) == 1 and node.output[0])
    if not ok:
        return None
    mark = Mark(d["op"], d["version"], d["attrs"], tuple(d["inputs"]), np.dtype(d["dtype"]),
                node.output[0])
    return mark if _installed(mark) else None


def _installed(mark: Mark) -> bool:
    """graphexec's own gate serves the mark: its version, its attributes, its arity."""
    try:
        info = registry().resolve(mark.op, mark.version)
        validate_attrs(mark.out, mark.op, info.cls, mark.attrs)
    except GraphexecError:
        return False
    return info.dist == OWN_DIST and info.n_inputs in (-1, len(mark.inputs))


def recognize(onnx: Any, graph: Any, opset: int,
              consts: dict[str, np.ndarray]) -> tuple[dict[int, Mark], set[int]]:
    """Marked groups that verify: {index of the marked node: its mark}, and the indices of the
    other nodes of those groups (which the importer skips)."""
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    found: dict[int, Mark] = {}
    claimed: set[int] = set()
    for k, node in enumerate(graph.node):
        mark = read_mark(node)
        if mark is None:
            continue
        group = _Match(onnx, graph, opset, consts, producer).run(k, mark)
        if group is None or group & claimed or not _closed(graph, group, k, uses, outputs):
            continue
        found[k] = mark
        claimed |= group
    return found, claimed - set(found)


def _closed(graph: Any, group: set[int], k: int, uses: dict[str, int], outputs: set[str]) -> bool:
    """No value computed inside the group, other than its result, is read outside it."""
    inner = {o for j in group if j != k for o in graph.node[j].output if o}
    inside: dict[str, int] = {}
    for j in group:
        for i in graph.node[j].input:
            inside[i] = inside.get(i, 0) + 1
    return all(uses.get(v, 0) == inside.get(v, 0) and v not in outputs for v in inner)


class _Match:
    """Walks the emitter's nodes and the model's nodes back from the result, in step."""

    def __init__(self, onnx: Any, graph: Any, opset: int, consts: dict[str, np.ndarray],
                 producer: dict[str, int]):
        self.onnx, self.graph, self.opset = onnx, graph, opset
        self.consts, self.producer = consts, producer

    def run(self, k: int, mark: Mark) -> set[int] | None:
        em = Emitter(self.onnx, set(mark.inputs) | {mark.out}, self.opset)
        try:
            with np.errstate(all="ignore"):
                EMITTERS[mark.op](em, mark, list(mark.inputs), mark.out, mark.dtype)
        except Exception:  # a mark whose attributes the emitter cannot use is no mark
            return None
        if not em.nodes or list(em.nodes[-1].output) != [mark.out]:
            return None
        self.want = em.nodes
        self.want_consts = {t.name: self.onnx.numpy_helper.to_array(t) for t in em.inits}
        self.want_producer = {o: j for j, n in enumerate(em.nodes) for o in n.output}
        self.externals = set(mark.inputs)
        self.names: dict[str, str] = {}
        self.pairs: dict[int, int] = {}
        if not self._walk(len(em.nodes) - 1, k):
            return None
        return set(self.pairs.values())

    def _walk(self, j0: int, k0: int) -> bool:
        stack = [(j0, k0)]
        while stack:
            j, k = stack.pop()
            if j in self.pairs:
                if self.pairs[j] != k:
                    return False
                continue
            if k in self.pairs.values() or not _same_node(self.want[j], self.graph.node[k]):
                return False
            self.pairs[j] = k
            for w, got in zip(self.want[j].input, self.graph.node[k].input):
                step = self._input(w, got)
                if step is False:
                    return False
                if step is not True:
                    stack.append(step)
        return len(self.pairs) == len(self.want)

    def _input(self, w: str, got: str) -> bool | tuple[int, int]:
        """Does model value ``got`` stand where the emitter wrote ``w``? A pair of nodes to
        match next when ``w`` is computed inside the group."""
        if not w or w in self.externals:
            return w == got
        if w in self.want_consts:
            have = self.consts.get(got)  # an initializer or a Constant node's value
            want = self.want_consts[w]
            return (have is not None and have.dtype == want.dtype and have.shape == want.shape
                    and have.tobytes() == want.tobytes())
        if self.names.setdefault(w, got) != got or got not in self.producer:
            return False
        return self.want_producer[w], self.producer[got]


def _same_node(want: Any, got: Any) -> bool:
    if (want.op_type != got.op_type or got.domain not in DEFAULT_DOMAINS
            or len(want.input) != len(got.input) or len(want.output) != len(got.output)):
        return False
    return ({a.name: a.SerializeToString() for a in want.attribute}
            == {a.name: a.SerializeToString() for a in got.attribute})
