"""Header ⇄ graph: a file's validated header and tensors become a :class:`Graph`, and back.

The one module that sees both the file format (:mod:`graphexec.fileformat`) and the graph stage
(:mod:`graphexec.graph`); :mod:`graphexec.api`'s ``load``/``save`` call it. It also defines
:class:`Training`, the checkpoint's training section as a graph carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic

from graphexec.dtypes import DTYPE_NAMES, DTYPE_SINCE
from graphexec.errors import GraphError, first_problem
from graphexec.fileformat import Header, tensor_entries
from graphexec.fileformat.schema import (
    HeaderV2,
    InputSpec,
    InputSpecV2,
    NodeSpec,
    OpSpec,
    OutputSpec,
    TensorEntry,
    TensorEntryV2,
    TrainingSection,
    TrainingSectionV2,
)
from graphexec.gcpause import collector_paused
from graphexec.graph import Graph, InputDecl, make_graph
from graphexec.registry import Registry

__all__ = ["Training", "from_header", "to_header"]


@dataclass
class Training:
    """The training section of a checkpoint: how to train (spec) and where a run stopped."""

    spec: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def _unique(what: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise GraphError(f"duplicate {what} {n!r}: each may appear only once")
        seen.add(n)


def from_header(header: Header, arrays: Sequence[np.ndarray], reg: Registry | None = None) -> Graph:
    """Build a graph from a validated header and its tensors (params, buffers, then training)."""
    with collector_paused():  # see graphexec.gcpause: a node definition per node, no garbage
        return _from_header(header, arrays, reg)


def _from_header(header: Header, arrays: Sequence[np.ndarray], reg: Registry | None) -> Graph:
    n = len(header.params)
    params = {e.name: a for e, a in zip(header.params, arrays[:n])}
    buffers: dict[str, np.ndarray] = {}
    frozen: list[str] = []
    if isinstance(header, HeaderV2):
        buffers = {e.name: a for e, a in zip(header.buffers, arrays[n:n + len(header.buffers)])}
        n += len(header.buffers)
        _unique("frozen name", header.frozen)
        frozen = header.frozen
    training = None
    if header.training is not None:
        t = header.training
        training = Training(dict(t.spec), dict(t.state),
                            {e.name: a for e, a in zip(t.tensors, arrays[n:])})
    inputs = [InputDecl(s.name, np.dtype(s.dtype),
                        None if s.shape is None else tuple(s.shape)) for s in header.inputs]
    _unique("output", [o.name for o in header.outputs])
    _unique("ops entry for op", [o.op for o in header.ops])
    provenance = {o.op: (o.dist, o.dist_version) for o in header.ops}
    # The validated NodeSpecs are the node definitions (see graph.NodeLike): no copy per node.
    return make_graph(header.name, inputs, params, header.nodes, {o.name: o.value for o in header.outputs},
                      metadata=header.metadata, training=training, provenance=provenance, reg=reg,
                      buffers=buffers, frozen=frozen)


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
        where, what = first_problem(e)
        raise GraphError(f"cannot save graph {g.name!r}: {where}: {what}") from e


def _training_section(g: Graph, start: int) -> tuple[TrainingSection | None, list[np.ndarray]]:
    if g.training is None:
        return None, []
    tnamed = [(k, np.asarray(v)) for k, v in g.training.tensors.items()]
    _savable("training tensor", tnamed)
    section = TrainingSection(spec=g.training.spec, state=g.training.state,
                              tensors=tensor_entries(tnamed, start))
    return section, [a for _, a in tnamed]


def _ops(g: Graph) -> list[OpSpec]:
    """One entry per op, with the highest version the graph uses."""
    best: dict[str, OpSpec] = {}
    for op, dist, dver, ver in sorted({(n.op, n.info.dist, n.info.dist_version, n.version)
                                       for n in g.nodes}):
        best[op] = OpSpec(op=op, version=ver, dist=dist, dist_version=dver)
    return list(best.values())


def _needs_v2(g: Graph) -> bool:
    """Whether ``g`` needs format version 2: buffers, frozen parameters, or a dtype version 1
    lacks (the oldest version that can hold a graph is the one written)."""
    tensors = [*g.params.values(), *g.buffers.values(),
               *(g.training.tensors.values() if g.training is not None else ())]
    dtypes = [d.dtype.name for d in g.input_decls] + [np.asarray(v).dtype.name for v in tensors]
    return bool(g.buffers or g.frozen) or any(DTYPE_SINCE.get(d, 1) > 1 for d in dtypes)


def _to_header(g: Graph) -> tuple[Header, list[np.ndarray]]:
    v2 = _needs_v2(g)
    entry: type[TensorEntry] = TensorEntryV2 if v2 else TensorEntry
    pnamed = [(k, np.asarray(v)) for k, v in g.params.items()]
    _savable("parameter", pnamed)
    pentries = tensor_entries(pnamed, 0, entry)
    end = pentries[-1].offset + pentries[-1].nbytes if pentries else 0
    bnamed = [(k, np.asarray(v)) for k, v in g.buffers.items()]
    _savable("buffer", bnamed)
    bentries = tensor_entries(bnamed, end, entry)
    end = bentries[-1].offset + bentries[-1].nbytes if bentries else end
    training, tnamed = None, []
    if g.training is not None:
        tnamed = [(k, np.asarray(v)) for k, v in g.training.tensors.items()]
        _savable("training tensor", tnamed)
        section: type[TrainingSection] = TrainingSectionV2 if v2 else TrainingSection
        training = section(spec=g.training.spec, state=g.training.state,
                           tensors=tensor_entries(tnamed, end, entry))
    ops = sorted({(n.op, n.info.dist, n.info.dist_version, n.version) for n in g.nodes})
    best: dict[str, OpSpec] = {}
    for op, dist, dver, ver in ops:  # one entry per op, with the highest version the graph uses
        best[op] = OpSpec(op=op, version=ver, dist=dist, dist_version=dver)
    spec: type[InputSpec] = InputSpecV2 if v2 else InputSpec
    fields: dict[str, Any] = dict(
        name=g.name,
        inputs=[spec(name=d.name, dtype=d.dtype.name,  # type: ignore[arg-type]
                     shape=None if d.shape is None else list(d.shape)) for d in g.input_decls],
        params=pentries,
        nodes=[NodeSpec(name=n.name, op=n.op, version=n.version, inputs=list(n.inputs),
                        attrs={k: _plain(v) for k, v in n.attrs.items()}) for n in g.nodes],
        outputs=[OutputSpec(name=k, value=v) for k, v in g.output_map.items()],
        ops=list(best.values()),
        metadata=g.metadata,
        training=training,
    )
    if v2:  # (the entries are TensorEntryV2: ``entry`` above)
        fields.update(buffers=bentries, frozen=[k for k in g.params if k in g.frozen])  # graph order
        header: Header = HeaderV2(**fields)
    else:
        header = Header(**fields)
    return header, [a for _, a in pnamed] + [a for _, a in bnamed] + [a for _, a in tnamed]
