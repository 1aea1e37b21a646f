"""A graph's per-node summary, like Keras' ``model.summary()``: read from the header alone.

``summarize(header)`` binds the nodes and infers every output's shape from the declared inputs and
the parameters' declared shapes (placeholder arrays that hold no bytes), so ``graphexec info`` never
reads the tensor section.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphexec.dtypes import DTYPES
from graphexec.errors import GraphexecError
from graphexec.fileformat.schema import Header, HeaderV2

__all__ = ["summarize", "format_table"]


def _placeholders(header: Header) -> list[np.ndarray]:
    """An array per tensor entry with its dtype and shape and no memory (a broadcast scalar)."""
    entries = list(header.params)
    if isinstance(header, HeaderV2):
        entries += header.buffers
    if header.training is not None:
        entries += header.training.tensors
    return [np.broadcast_to(np.zeros((), DTYPES[e.dtype]), tuple(e.shape)) for e in entries]


def summarize(header: Header) -> dict[str, Any]:
    """Rows ``{"name", "op", "shape", "dtype", "params"}`` per node (``shape`` None where unknown,
    a None dimension for any size; ``params``: the elements of the parameters and buffers the node
    reads first), the totals, and the training state the file holds. ``nodes`` is None (with
    ``error``) when the graph cannot be bound here (a missing op, say)."""
    from graphexec.header import from_header  # the graph stage, only when a summary is asked for

    sizes = {e.name: int(np.prod(e.shape, dtype=object)) for e in header.params}
    buffers = {e.name: int(np.prod(e.shape, dtype=object))
               for e in (header.buffers if isinstance(header, HeaderV2) else [])}
    frozen = set(header.frozen) if isinstance(header, HeaderV2) else set()
    out: dict[str, Any] = {
        "totals": {"trainable": sum(v for k, v in sizes.items() if k not in frozen),
                   "frozen": sum(v for k, v in sizes.items() if k in frozen),
                   "buffers": sum(buffers.values())},
        "training_state": _state(header),
        "description": header.metadata.get("description"),
    }
    try:
        g = from_header(header, _placeholders(header))
    except GraphexecError as e:
        out["nodes"], out["error"] = None, str(e)
        return out
    counted: set[str] = set()
    rows = []
    for n in g.nodes:
        own = [s for s in n.inputs if (s in sizes or s in buffers) and s not in counted]
        counted.update(own)
        spec = g.specs.get(n.name)
        shape = None if spec is None or spec.shape is None else list(spec.shape)
        dtype = None if spec is None or spec.dtype is None else spec.dtype.name
        rows.append({"name": n.name, "op": n.op, "shape": shape, "dtype": dtype,
                     "params": sum(sizes.get(s, 0) + buffers.get(s, 0) for s in own)})
    out["nodes"] = rows
    return out


def _state(header: Header) -> dict[str, Any] | None:
    if header.training is None:
        return None
    s = header.training.state
    keep = ("epoch", "step", "best.epoch", "best.val_acc", "stopped_early")
    return {k: s[k] for k in keep if k in s}


def _shape_text(shape: list[int | None] | None) -> str:
    if shape is None:
        return "?"
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({dims}{',' if len(shape) == 1 else ''})"


def format_table(summary: dict[str, Any]) -> list[str]:
    """The summary as text lines: one row per node, then the totals."""
    lines: list[str] = []
    rows = summary.get("nodes")
    if rows:
        w = max(4, *(len(r["name"]) for r in rows))
        wo = max(2, *(len(r["op"]) for r in rows))
        lines.append(f"  {'node':<{w}}  {'op':<{wo}}  {'output shape':<20} {'params':>10}")
        for r in rows:
            lines.append(f"  {r['name']:<{w}}  {r['op']:<{wo}}  {_shape_text(r['shape']):<20} "
                         f"{r['params']:>10}")
    elif summary.get("error"):
        lines.append(f"  (no per-node table: {summary['error']})")
    t = summary["totals"]
    lines.append(f"  parameters: {t['trainable']} trainable, {t['frozen']} frozen; "
                 f"buffers: {t['buffers']}")
    if summary.get("description"):
        lines.append(f"  description: {summary['description']}")
    st = summary.get("training_state")
    if st:
        best = (f", best epoch {st['best.epoch']} (validation accuracy {st['best.val_acc']:.4f})"
                if st.get("best.epoch") is not None and st.get("best.val_acc") is not None else "")
        lines.append(f"  training: {st.get('epoch', 0)} epochs done{best}")
    return lines
