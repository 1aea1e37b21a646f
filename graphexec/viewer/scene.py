"""What the page draws: one view of the whole circuit, or, for a large graph, one box per layer
with one view inside each box; laid out the way ``graphexec draw`` lays them out.

Layout is Graphviz' (:func:`graphexec.draw.dot_layout`, the drawing's own attributes) when ``dot``
is installed; otherwise the page lays each view out with the vendored dagre library when it is
first shown. Neither path places a node by a rule of ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from graphexec.draw import LAYOUT, SYMBOLS, dot_layout
from graphexec.graph import Graph

__all__ = ["groups", "layout_view", "scene"]

#: Box sizes in pixels (= points): gate, input/parameter/output, layer box, stub.
SIZES = {"gate": (58, 42), "input": (64, 36), "param": (64, 36), "output": (64, 36),
         "group": (190, 54), "stub": (110, 30)}
#: Up to this many gates, the whole circuit is one view.
FLAT_MAX = 60
CHAR_W, LINE_H = 6.7, 15.0


def _layers(graph: Graph) -> list[list[int]]:
    """Consecutive nodes (execution order) split into layers: a new layer starts at a node
    reading a parameter when the current one already has such a node, or, for names with a
    ``/``, where the part before the last ``/`` changes (as ONNX exports name them)."""
    slashed = sum("/" in n.name for n in graph.nodes) >= 0.8 * len(graph.nodes)
    out: list[list[int]] = []
    has_param, prefix = False, None
    for k, n in enumerate(graph.nodes):
        reads = any(s in graph.params for s in n.inputs)
        key = n.name.rsplit("/", 1)[0] if slashed else None
        new = (key != prefix) if slashed else (reads and has_param)
        if not out or new:
            out.append([])
            has_param = False
        out[-1].append(k)
        has_param, prefix = has_param or reads, key
    return out


def groups(graph: Graph, flat_max: int = FLAT_MAX) -> list[list[int]]:
    """Node indices per box of the overview: layers, merged while small and split while big so
    that neither the overview nor any box holds much more than √n gates. One group when the
    graph has at most ``flat_max`` gates (drawn flat)."""
    n = len(graph.nodes)
    if n <= flat_max:
        return [list(range(n))]
    cap = max(8, math.ceil(math.sqrt(n)))
    out: list[list[int]] = []
    for layer in _layers(graph):
        for i in range(0, len(layer), cap):
            part = layer[i:i + cap]
            if out and len(out[-1]) + len(part) <= cap:
                out[-1].extend(part)
            else:
                out.append(list(part))
    return out


def _label_w(texts: Sequence[str]) -> tuple[float, float]:
    longest = max((len(t) for t in texts), default=0)
    return (longest * CHAR_W + 8, LINE_H * len(texts) + 4) if longest else (0.0, 0.0)


class _View:
    def __init__(self, vid: str, title: str, parent: str | None, fanout: Mapping[str, int]):
        self.vid, self.title, self.parent, self.fanout = vid, title, parent, fanout
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.ids: dict[str, str] = {}

    def node(self, key: str, kind: str, label: str, sub: str, **ref: Any) -> str:
        if key not in self.ids:
            self.ids[key] = f"n{len(self.nodes)}"
            w, h = SIZES[kind]
            w = max(w, len(label) * 9 + 14, len(sub) * 6 + 12)
            fan = kind != "group" and ref.get("value") in self.fanout
            if fan:  # room inside the box for the running sum of the gradients (Σ∂ … (1 of 2))
                w, h = max(w, 118), h + 14
            self.nodes.append({"id": self.ids[key], "kind": kind, "label": label, "sub": sub,
                               "w": w, "h": h, "fanout": fan, **ref})
        return self.ids[key]

    def edge(self, a: str, b: str, value: str | None, key: str | None, texts: Sequence[str],
             wires: int = 1, names: Sequence[str] = ()) -> None:
        lw, lh = _label_w(texts)
        self.edges.append({"id": f"e{len(self.edges)}", "from": a, "to": b, "value": value,
                           "key": key, "wires": wires, "names": list(names), "lw": lw, "lh": lh})

    def to_dict(self) -> dict[str, Any]:
        # the overview of a deep net is a long chain of boxes: it reads top to bottom
        rankdir = "TB" if any(n["kind"] == "group" for n in self.nodes) else "LR"
        return {"id": self.vid, "title": self.title, "parent": self.parent, "nodes": self.nodes,
                "edges": self.edges, "rankdir": rankdir, "layout": None}


def _leaf(v: _View, graph: Graph, name: str) -> str:
    if name in graph.params:
        return v.node(name, "param", name, "parameter", value=name)
    return v.node(name, "input", name, "input", value=name)


def _gate(v: _View, graph: Graph, k: int) -> str:
    n = graph.nodes[k]
    return v.node(n.name, "gate", SYMBOLS.get(n.op, n.op), n.name, ref=k, value=n.name)


def _wire_texts(data: Mapping[str, Any], value: str, key: str | None) -> list[str]:
    """The lines a wire's label shows at most: (shape,) value, gradient."""
    info = data["values"].get(value, {})
    grad = data["edgeGrads"].get(key, {}).get("text", "") if key else ""
    lines = [info["dims"], info["range"]] if "range" in info else [info.get("text", "")]
    return [t for t in lines + [grad] if t]


def _flat(graph: Graph, data: Mapping[str, Any]) -> _View:
    v = _View("main", graph.name, None, data["fanout"])
    for d in graph.input_decls:
        _leaf(v, graph, d.name)
    for k, n in enumerate(graph.nodes):
        dst = _gate(v, graph, k)
        for i, s in enumerate(n.inputs):
            src = v.ids.get(s) or _leaf(v, graph, s)
            v.edge(src, dst, s, f"{k}:{i}", _wire_texts(data, s, f"{k}:{i}"))
    _outputs(v, graph, data, v.ids)
    return v


def _outputs(v: _View, graph: Graph, data: Mapping[str, Any], ids: Mapping[str, str]) -> None:
    for name, src in graph.output_map.items():
        if src in ids:
            o = v.node("out:" + name, "output", name, "output", value=src)
            key = "out" if name == data.get("gradOf") else None
            v.edge(ids[src], o, src, key, _wire_texts(data, src, key))


def _group_title(graph: Graph, members: Sequence[int]) -> tuple[str, str]:
    first, last = graph.nodes[members[0]].name, graph.nodes[members[-1]].name
    ops = list(dict.fromkeys(graph.nodes[k].op for k in members))
    shown = ", ".join(ops[:3]) + (", …" if len(ops) > 3 else "")
    title = first if len(members) == 1 else f"{first} … {last}"
    return title, f"{len(members)} gates: {shown}"


def _overview(graph: Graph, data: Mapping[str, Any], parts: Sequence[Sequence[int]],
              unit: Mapping[str, int]) -> _View:
    v = _View("main", graph.name, None, data["fanout"])
    for d in graph.input_decls:
        _leaf(v, graph, d.name)
    ids: dict[str, str] = {}
    for g, members in enumerate(parts):
        title, sub = _group_title(graph, members)
        box = v.node(f"group:{g}", "group", title, sub, group=g, view=f"g{g}")
        ids.update({graph.nodes[k].name: box for k in members})
    wires: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for k, n in enumerate(graph.nodes):
        for i, s in enumerate(n.inputs):
            if s in graph.params and unit.get(s) == unit[n.name]:
                continue  # drawn inside its layer's box
            src = ids.get(s) or _leaf(v, graph, s)
            if src != ids[n.name]:
                wires.setdefault((src, ids[n.name]), []).append((s, f"{k}:{i}"))
    for (a, b), ws in wires.items():
        names = sorted({w[0] for w in ws})
        value = names[0] if len(names) == 1 else None  # one value read by several gates
        key = ws[0][1] if len(ws) == 1 else None
        texts = _wire_texts(data, names[0], key) if value else [f"{len(ws)} wires"]
        v.edge(a, b, value, key, texts, len(ws), names=names)
    _outputs(v, graph, data, ids)
    return v


def _inside(graph: Graph, data: Mapping[str, Any], g: int, members: Sequence[int],
            unit: Mapping[str, int], titles: Sequence[str]) -> _View:
    v = _View(f"g{g}", titles[g], "main", data["fanout"])
    mine = {graph.nodes[k].name for k in members}
    for k in members:
        dst = _gate(v, graph, k)
        for i, s in enumerate(graph.nodes[k].inputs):
            if s in mine or s in v.ids:
                src = v.ids[s]
            elif s in graph.params and unit.get(s) == g:
                src = _leaf(v, graph, s)
            else:
                where = titles[unit[s]] if s in unit else "input"
                src = v.node(s, "stub", s, f"from {where}", value=s)
            v.edge(src, dst, s, f"{k}:{i}", _wire_texts(data, s, f"{k}:{i}"))
    readers = {s for k, n in enumerate(graph.nodes) if k not in members for s in n.inputs}
    shown = readers | set(graph.output_map.values())
    for s in [graph.nodes[k].name for k in members if graph.nodes[k].name in shown]:
        o = v.node("to:" + s, "stub", s, "to the rest", value=s)
        v.edge(v.ids[s], o, s, None, _wire_texts(data, s, None))
    return v


def scene(graph: Graph, data: Mapping[str, Any], *, flat_max: int = FLAT_MAX,
          use_dot: bool = True) -> list[dict[str, Any]]:
    """The page's views (the first is the whole graph), each laid out by Graphviz when
    ``use_dot`` and ``dot`` is installed, else left for the page to lay out (dagre)."""
    parts = groups(graph, flat_max)
    if len(parts) == 1:
        views = [_flat(graph, data)]
    else:
        unit: dict[str, int] = {graph.nodes[k].name: g for g, m in enumerate(parts) for k in m}
        boxes: dict[str, set[int]] = {}
        for n in graph.nodes:
            for s in n.inputs:
                if s in graph.params:
                    boxes.setdefault(s, set()).add(unit[n.name])
        for p, where in boxes.items():  # a parameter sits in its readers' box if they share one
            if len(where) == 1:
                unit[p] = where.pop()
        titles = [_group_title(graph, m)[0] for m in parts]
        views = [_overview(graph, data, parts, unit)]
        views += [_inside(graph, data, g, m, unit, titles) for g, m in enumerate(parts)]
    out = [v.to_dict() for v in views]
    if use_dot:
        for d in out:
            d["layout"] = layout_view(d)
    return out


def layout_view(view: Mapping[str, Any]) -> dict[str, Any] | None:
    """Graphviz' layout of one view (node boxes and edge labels sized as the page draws them),
    or None without ``dot``."""
    # an overview's long edges past many boxes make dot's network simplex slow (9 s for 2,000
    # gates): bound its iterations there (Graphviz' nslimit trades placement quality for time)
    bound = " nslimit=1;" if view["rankdir"] == "TB" else ""
    lines = ["digraph view {", f"  {LAYOUT} rankdir={view['rankdir']};{bound}",
             "  node [shape=box, fixedsize=true, label=\"\"]; edge [fontname=Helvetica, fontsize=13];"]
    for n in view["nodes"]:
        lines.append(f'  {n["id"]} [width={n["w"] / 72:.3f}, height={n["h"] / 72:.3f}];')
    for e in view["edges"]:
        rows = max(1, round(e["lh"] / LINE_H))
        label = "\\n".join(["0" * max(1, round(e["lw"] / CHAR_W))] * rows) if e["lw"] else ""
        lines.append(f'  {e["from"]} -> {e["to"]} [id="{e["id"]}", label="{label}"];')
    for kind, rank in (("input", "source"), ("output", "sink")):
        same = [n["id"] for n in view["nodes"] if n["kind"] == kind]
        if same:
            lines.append(f"  {{ rank={rank}; {' '.join(same)} }}")
    lines.append("}")
    return dot_layout("\n".join(lines) + "\n")
