"""The circuit viewer: one offline HTML page that steps through the executor's forward pass and
then its backward pass, showing each value, gradient and chain-rule step as the lecture does.

>>> page = gx.view(gx.load("models/add_mul.gx"), {"x": -2, "y": 5, "z": -4}, "add_mul.html")
>>> page            # in Jupyter: the page inline (an iframe)

Pipeline: :func:`~graphexec.viewer.steps.story` (the executor's numbers, step by step) →
:func:`~graphexec.viewer.scene.scene` (what is drawn, laid out as ``graphexec draw`` lays it out) →
:func:`~graphexec.viewer.page.page_html` (the self-contained file).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any

from graphexec.draw import DrawError
from graphexec.errors import GraphError
from graphexec.fileformat.atomic import atomic_write
from graphexec.graph import Graph
from graphexec.viewer.page import page_html
from graphexec.viewer.scene import FLAT_MAX
from graphexec.viewer.scene import scene as build_scene  # the name "scene" stays the module
from graphexec.viewer.steps import story

__all__ = ["LAYOUTS", "Page", "view"]

#: ``layout=``: "auto" (Graphviz if installed, else dagre in the page), "dot" (Graphviz or an
#: error), "dagre" (always the page's own layout library).
LAYOUTS = ("auto", "dot", "dagre")


class Page:
    """A written viewer page: ``html`` (the file's text), ``path`` (where it was written, if it
    was); shown inline by Jupyter through ``_repr_html_``."""

    def __init__(self, text: str, path: str | None = None):
        self.html = text
        self.path = path

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the page to ``path`` (atomically); returns the path."""
        where = os.fspath(path)
        atomic_write(where, [self.html.encode("utf-8")])
        self.path = where
        return where

    def _repr_html_(self) -> str:
        # srcdoc keeps the page's own CSP; sandbox: scripts run, but in an origin of their own
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
                'style="width:100%;height:640px;border:1px solid #d0d7de"></iframe>')

    def __repr__(self) -> str:
        return f"<graphexec view page, {len(self.html)} characters{', ' + self.path if self.path else ''}>"


def _feed(graph: Graph, inputs: Mapping[str, Any] | None, seed: int) -> tuple[dict[str, Any], str]:
    from graphexec.gradcheck import random_inputs

    given = dict(inputs or {})
    missing = [n for n in graph.inputs if n not in given]
    if not missing:
        return given, ""
    note = (f"random values (seed {seed}) for {', '.join(missing)}; give your own with "
            "-i NAME=VALUE (Python: inputs={...})")
    return random_inputs(graph, given, seed=seed), note


def _check(graph: Graph, feed: Mapping[str, Any], data: dict[str, Any]) -> None:
    """Colour each node by the gradient check: failing nodes (checked alone) red, others green."""
    from graphexec.gradcheck import gradcheck

    report = gradcheck(graph, feed)
    bad = {f.node: f.message for f in report.failing_nodes}
    for n in data["nodes"]:
        n["check"] = {"result": "fail" if n["name"] in bad else "pass",
                      "message": bad.get(n["name"], "")}
    data["check"] = True
    data["checkSummary"] = str(report).splitlines()[0]


def view(graph: Graph, inputs: Mapping[str, Any] | None = None,
         path: str | os.PathLike[str] | None = None, *, grad_of: str | None = None,
         check: bool = False, layout: str = "auto", seed: int = 0,
         flat_max: int = FLAT_MAX) -> Page:
    """The interactive circuit page of ``graph`` run on ``inputs``.

    Args:
        graph: the graph.
        inputs: input values by name; any missing one gets random values (seeded by ``seed``),
            as ``graphexec check --grad`` draws them, and the page says so.
        path: if given, the page is written there (atomically).
        grad_of: the output whose gradient the backward pass shows (default: the first float
            output, e.g. ``loss``).
        check: run :func:`graphexec.gradcheck` and colour each node by its result.
        layout: one of :data:`LAYOUTS`.
        seed: seeds the random inputs.
        flat_max: graphs with more gates are drawn as one box per layer (expandable).

    Returns:
        A :class:`Page`. Raises GraphError for bad inputs or ``grad_of``, DrawError when
        ``layout="dot"`` and Graphviz is missing.
    """
    if layout not in LAYOUTS:
        raise GraphError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    feed, note = _feed(graph, inputs, seed)
    data = story(graph, feed, grad_of)
    data.update(title=graph.name, description=graph.metadata.get("description", ""), note=note,
                check=False, checkSummary="")
    if check:
        _check(graph, feed, data)
    data["views"] = build_scene(graph, data, flat_max=flat_max, use_dot=layout != "dagre")
    if layout == "dot" and any(v["layout"] is None for v in data["views"]):
        raise DrawError("layout='dot' needs Graphviz' 'dot' program, which is not installed; "
                        "install Graphviz or use layout='auto'")
    from graphexec import __version__

    text = page_html(data, need_dagre=any(v["layout"] is None for v in data["views"]),
                     version=__version__)
    page = Page(text)
    if path is not None:
        page.save(path)
    return page
