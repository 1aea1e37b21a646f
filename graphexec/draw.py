"""Circuit drawings: a graph the way the lecture draws it, as Graphviz DOT text (and SVG/PNG).

Inputs stand on the left (``rankdir=LR``), every gate is one box labelled with its op, parameters
are drawn apart (yellow), and, when input values are given, each wire carries its forward value
(green) and, with ``grad=True``, the gradient flowing back along it (red). Scalars are written
with 4 significant digits, tensors of more than 4 numbers by shape and range. Long chains of
one-input gates fold into one box; past ``max_nodes`` boxes a note counts the rest.

>>> g = gx.load("models/add_mul.gx")
>>> dot = to_dot(g, {"x": -2, "y": 5, "z": -4}, grad=True)          # -12 at f; -4, -4, 3 back
>>> render(g, "add_mul.png", {"x": -2, "y": 5, "z": -4}, grad=True)  # needs Graphviz' ``dot``
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphexec.atomic import atomic_write
from graphexec.errors import DrawError
from graphexec.graph import Graph, Node
from graphexec.registry import OWN_DIST
from graphexec.wires import Trace, trace

__all__ = ["FORMATS", "LAYOUT", "DrawError", "Trace", "dot_layout", "format_value", "render", "to_dot",
           "trace"]

#: Output formats by file suffix; "dot" is written directly, the others by Graphviz' ``dot``.
FORMATS = ("dot", "svg", "png")
GREEN, RED, GREY = "#1a7f37", "#c62828", "#57606a"
#: Graph attributes of every circuit layout: this drawing's and the viewer's (graphexec.viewer).
LAYOUT = "rankdir=LR; ordering=in; nodesep=0.3; ranksep=0.6;"
#: What a gate box shows for the lecture's arithmetic gates; other ops show their name.
SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "neg": "×(−1)", "sum": "Σ",
           "sigmoid": "σ", "max": "max", "l2": "½‖·‖²"}


def format_value(a: Any, *, shape: bool = True) -> str:
    """A value as a wire shows it: scalars to 4 significant digits (-12, 0.7311), up to 4 numbers as
    a list, bigger tensors as ``(shape): min … max`` (without the shape if ``shape`` is False)."""
    a = np.asarray(a)
    if 0 < a.size <= 4 and a.ndim <= 2:
        return str(_nested(a.tolist())).replace("'", "")
    dims = "(" + ", ".join(map(str, a.shape)) + ("," if a.ndim == 1 else "") + ")"
    if a.size == 0 or a.dtype.kind not in "biuf":
        return dims
    lo, hi = _num(a.min()), _num(a.max())
    span = f"all {lo}" if lo == hi else f"{lo} … {hi}"
    return f"{dims}: {span}" if shape else span


def _nested(v: Any) -> Any:
    return [_nested(x) for x in v] if isinstance(v, list) else _num(v)


def _num(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    text = f"{float(x):.4g}"
    return "0" if text == "-0" else text


# ---------------------------------------------------------------------------- layout model
@dataclass
class _Box:
    """One drawn gate box: a node, or a folded chain of one-input nodes (first .. last)."""

    nodes: list[Node]
    ident: str

    @property
    def first(self) -> Node:
        return self.nodes[0]

    @property
    def last(self) -> Node:
        return self.nodes[-1]


@dataclass
class _Layout:
    boxes: list[_Box] = field(default_factory=list)
    cut: list[Node] = field(default_factory=list)  # nodes past max_nodes, not drawn


def _groups(graph: Graph, min_chain: int) -> list[list[Node]]:
    """Nodes grouped into boxes: a run of >= ``min_chain`` one-input nodes, each the only reader
    of the one before (which is no graph output), is one group; any other node is its own."""
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for src in n.inputs:
            readers.setdefault(src, []).append(n)
    shown = set(graph.output_map.values())

    def feeds(n: Node) -> Node | None:  # the one-input node that alone reads one-input node n
        nxt = readers.get(n.name, [])
        if len(n.inputs) == 1 and n.name not in shown and len(nxt) == 1 and len(nxt[0].inputs) == 1:
            return nxt[0]
        return None

    inside = {m.name for n in graph.nodes if (m := feeds(n)) is not None}
    groups: list[list[Node]] = []
    for n in graph.nodes:
        if n.name in inside:  # collected by the head of its chain
            continue
        run = [n]
        while (m := feeds(run[-1])) is not None:
            run.append(m)
        groups.extend([run] if len(run) >= min_chain else [[m] for m in run])
    return groups


def _layout(graph: Graph, max_nodes: int, min_chain: int) -> _Layout:
    lay = _Layout()
    for i, group in enumerate(_groups(graph, min_chain)):
        if len(lay.boxes) < max_nodes:
            lay.boxes.append(_Box(group, f"n{i}"))
        else:
            lay.cut.extend(group)
    return lay


# ---------------------------------------------------------------------------- labels
def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _font(text: str, size: int | None = None, color: str | None = None, bold: bool = False) -> str:
    attrs = (f' POINT-SIZE="{size}"' if size else "") + (f' COLOR="{color}"' if color else "")
    body = f"<B>{_esc(text)}</B>" if bold else _esc(text)
    return f"<FONT{attrs}>{body}</FONT>" if attrs else body


def _attr_text(node: Node) -> str:
    parts = []
    for k, v in node.attrs.items():
        v = list(v) if isinstance(v, tuple) else v
        parts.append(f"{k}={_num(v) if isinstance(v, float) else v}")
    return ", ".join(parts)


def _gate_label(box: _Box) -> str:
    if len(box.nodes) > 1:
        ops = [n.op for n in box.nodes]
        shown = " → ".join(ops) if len(ops) <= 4 else " → ".join(ops[:2] + ["…"] + ops[-1:])
        lines = [_font(f"{len(ops)} gates", 14, bold=True), _font(shown, 10),
                 _font(f"{box.first.name} … {box.last.name}", 9, GREY)]
        return "<" + "<BR/>".join(lines) + ">"
    n = box.first
    symbol = SYMBOLS.get(n.op)
    lines = [_font(symbol, 20, bold=True) if symbol else _font(n.op, 14, bold=True)]
    if symbol and symbol not in ("+", "×", "−", "÷"):
        lines.append(_font(n.op, 9, GREY))
    if n.attrs:
        lines.append(_font(_attr_text(n), 10))
    if n.info.dist != OWN_DIST:
        lines.append(_font(f"v{n.version} from {n.info.dist}", 9, GREY))
    lines.append(_font(n.name, 9, GREY))
    return "<" + "<BR/>".join(lines) + ">"


def _leaf_label(name: str, kind: str, detail: str) -> str:
    lines = [_font(name, 14, bold=True), _font(kind + (f" {detail}" if detail else ""), 9, GREY)]
    return "<" + "<BR/>".join(lines) + ">"


def _wire_label(value: Any, grad: Any) -> str:
    if value is None:
        return '""'
    lines = [_font(format_value(value), 11, GREEN)]
    if grad is not None:
        lines.append(_font(format_value(grad, shape=False), 11, RED))
    return "<" + "<BR/>".join(lines) + ">"


def _shape_text(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "any shape"
    if shape == ():
        return ""
    dims = ", ".join("N" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


# ---------------------------------------------------------------------------- DOT text
def _legend(graph: Graph, tr: Trace | None, grad: bool) -> str:
    if tr is None:
        return _font("give input values (-i NAME=VALUE) to see the numbers on the wires", 10, GREY)
    text = [_font("green: forward value", 10, GREEN)]
    if grad:
        seeded = [k for k in graph.output_map if k in tr.out_grads]
        of = " + ".join(("Σ" if tr.out_grads[k].ndim else "") + k for k in seeded)
        text.append(_font(f"red: gradient of {of or 'the outputs'} (backward)", 10, RED))
    return "    ".join(text)


def _header(graph: Graph, tr: Trace | None, grad: bool) -> list[str]:
    rows = [_font(graph.name, 16, bold=True)]
    desc = graph.metadata.get("description", "")
    if desc:
        rows.append(_font(desc, 12))
    rows.append(_legend(graph, tr, grad))
    table = "".join(f"<TR><TD>{r}</TD></TR>" for r in rows)
    return ["digraph graphexec {",
            f"  {LAYOUT} labelloc=t; fontname=Helvetica;",
            f'  label=<<TABLE BORDER="0" CELLSPACING="2">{table}</TABLE>>;',
            ('  node [fontname=Helvetica, shape=box, style="rounded,filled", fillcolor="#e8f0fe", '
             'color="#4a6fa5"];'),
            '  edge [fontname=Helvetica, color="#555555", arrowsize=0.7];']


def _leaves(graph: Graph, used: set[str]) -> tuple[list[str], dict[str, str]]:
    """Inputs (one column on the left) and the parameters that drawn gates read (yellow boxes)."""
    lines, ids = [], {}
    for i, d in enumerate(graph.input_decls):
        ids[d.name] = f"i{i}"
        kind = "input" if d.dtype.kind == "f" else f"input {d.dtype.name}"
        label = _leaf_label(d.name, kind, _shape_text(d.shape))
        lines.append(f'  i{i} [shape=plaintext, style="", label={label}];')
    if ids:
        lines.append("  { rank=source; " + " ".join(ids.values()) + " }")
    for i, (k, v) in enumerate(graph.params.items()):
        if k in used:
            ids[k] = f"p{i}"
            label = _leaf_label(k, "parameter", _shape_text(v.shape))
            lines.append(f'  p{i} [shape=box, style="filled", fillcolor="#fff4c2", '
                         f'color="#b08800", label={label}];')
    for i, (k, v) in enumerate(graph.buffers.items()):  # state such as running statistics
        if k in used:
            ids[k] = f"s{i}"
            label = _leaf_label(k, "buffer", _shape_text(v.shape))
            lines.append(f'  s{i} [shape=box, style="filled,dashed", fillcolor="#eef2f7", '
                         f'color="#6b7b8c", label={label}];')
    return lines, ids


def to_dot(graph: Graph, inputs: Mapping[str, Any] | None = None, grad: bool = False, *,
           grad_of: Sequence[str] | None = None, max_nodes: int = 60, min_chain: int = 4) -> str:
    """The graph as Graphviz DOT text. With ``inputs``, each wire shows its forward value (green);
    with ``grad`` also the gradient flowing back along it (red): that of the outputs ``grad_of``,
    by default of every float output (seeded with ones, like ``Executor.backward()``).

    ``max_nodes`` caps the gate boxes drawn (the rest are counted in a note); runs of at least
    ``min_chain`` one-input gates are folded into one box. Raises GraphError for bad inputs.
    """
    tr = trace(graph, inputs or {}, grad, grad_of) if inputs is not None or grad else None
    lay = _layout(graph, max(1, max_nodes), max(2, min_chain))
    used = {s for b in lay.boxes for s in b.first.inputs} | set(graph.output_map.values())
    lines = _header(graph, tr, grad)
    leaf_lines, ids = _leaves(graph, used)
    lines += leaf_lines
    for box in lay.boxes:
        ids[box.last.name] = box.ident
        lines.append(f"  {box.ident} [label={_gate_label(box)}];")
    for box in lay.boxes:
        for i, src in enumerate(box.first.inputs):
            value = tr.values.get(src) if tr else None
            g = tr.edge_grads.get((box.first.name, i)) if tr else None
            lines.append(f"  {ids[src]} -> {box.ident} [label={_wire_label(value, g)}];")
    if lay.cut:
        lines += _cut(graph, lay, ids, max_nodes)
    lines += _outputs(graph, tr, ids)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cut(graph: Graph, lay: _Layout, ids: dict[str, str], max_nodes: int) -> list[str]:
    """The note that stands for the gates past ``max_nodes``, with the wires that lead into it."""
    note = (_font(f"… {len(lay.cut)} more gates not drawn", 12, bold=True) + "<BR/>"
            + _font(f"(limit {max_nodes} boxes; the graph has {len(graph.nodes)} gates)", 10))
    lines = [(f'  more [shape=note, style="filled", fillcolor="#fdecea", color="#c62828", '
              f'label=<{note}>];')]
    feeds = sorted({ids[s] for n in lay.cut for s in n.inputs if s in ids})
    lines += [f"  {src} -> more [style=dashed];" for src in feeds]
    ids.update({n.name: "more" for n in lay.cut})
    return lines


def _outputs(graph: Graph, tr: Trace | None, ids: Mapping[str, str]) -> list[str]:
    lines, outs = [], []
    for j, (name, src) in enumerate(graph.output_map.items()):
        if src not in ids:
            continue
        outs.append(f"o{j}")
        label = _leaf_label(name, "output", "")
        lines.append(f'  o{j} [shape=plaintext, style="", label={label}];')
        value = tr.values.get(src) if tr else None
        g = tr.out_grads.get(name) if tr else None
        lines.append(f"  {ids[src]} -> o{j} [label={_wire_label(value, g)}];")
    if outs:
        lines.append("  { rank=sink; " + " ".join(outs) + " }")
    return lines


# ---------------------------------------------------------------------------- files
def render(graph: Graph, path: str | os.PathLike[str], inputs: Mapping[str, Any] | None = None,
           grad: bool = False, *, fmt: str | None = None, **options: Any) -> None:
    """Write the drawing to ``path`` (atomically): DOT text for ``.dot``, else Graphviz' ``dot``
    renders it (``.svg``, ``.png``). ``options`` go to :func:`to_dot`. Raises DrawError for
    another suffix or when ``dot`` is missing or fails."""
    where = os.fspath(path)
    kind = (fmt or os.path.splitext(where)[1].lstrip(".")).lower()
    if kind not in FORMATS:
        raise DrawError(f"cannot draw to {where!r}: expected a .dot, .svg or .png file, "
                        f"got {'.' + kind if kind else 'no extension'}")
    text = to_dot(graph, inputs, grad, **options)
    data = text.encode("utf-8") if kind == "dot" else _graphviz(text, kind, where)
    _write_atomic(where, data)


def _graphviz(text: str, kind: str, where: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise DrawError(f"cannot render {where!r}: Graphviz' 'dot' program is not installed; "
                        "install Graphviz (Debian/Ubuntu: apt-get install graphviz, macOS: brew "
                        "install graphviz) or write DOT text with -o FILE.dot")
    args = [exe, f"-T{kind}"] + (["-Gdpi=144"] if kind == "png" else [])
    try:
        done = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DrawError(f"cannot render {where!r}: running Graphviz' dot failed: {e}") from e
    if done.returncode != 0:
        msg = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DrawError(f"cannot render {where!r}: Graphviz' dot failed (exit "
                        f"{done.returncode}): {msg[0] if msg else 'no message'}")
    return done.stdout


def dot_layout(text: str) -> dict[str, Any] | None:
    """Where Graphviz' ``dot`` puts the nodes and edges of DOT ``text``, or None without ``dot``.

    Returns ``{"size": [w, h], "nodes": {name: [cx, cy, w, h]}, "edges": {id: {"points": [[x, y],
    ...], "end": [x, y] or None, "label": [x, y] or None}}}`` in points, y growing downwards;
    ``points`` are the cubic Bézier control points (start, then three per segment), ``end`` the
    arrow's tip; edges are keyed by their ``id`` attribute. Raises DrawError if ``dot`` fails."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    data = json.loads(_graphviz(text, "json", "the layout").decode("utf-8"))
    height = float(data["bb"].split(",")[3])

    def pt(xy: str) -> list[float]:
        x, y = xy.split(",")[-2:]
        return [float(x), height - float(y)]

    nodes = {o["name"]: pt(o["pos"]) + [float(o["width"]) * 72, float(o["height"]) * 72]
             for o in data.get("objects", []) if "pos" in o}
    edges = {}
    for e in data.get("edges", []):
        spline = [p for p in e["pos"].split(" ") if not p.startswith(("e,", "s,"))]
        end = [pt(p) for p in e["pos"].split(" ") if p.startswith("e,")]
        edges[e.get("id", "")] = {"points": [pt(p) for p in spline], "end": end[0] if end else None,
                                  "label": pt(e["lp"]) if "lp" in e else None}
    return {"size": [float(data["bb"].split(",")[2]), height], "nodes": nodes, "edges": edges}


def _write_atomic(path: str, data: bytes) -> None:
    atomic_write(path, [data])
