"""Load + validate + compile a graph of 10k / 100k nodes vs networkx building and sorting it.

The graph: four inputs, then nodes that each combine two earlier values chosen at random among the
last 64 (ops add, mul, sub, max), the last node the output. graphexec's time covers ``gx.load``
(read, msgpack, pydantic validation, name and edge checks, the networkx order, binding each gate
and its attributes) plus ``Executor`` and the forward and backward schedules. The baseline is
networkx alone: ``DiGraph`` from the same edge list and ``topological_sort``.

Both are timed twice: with the garbage collector on, as Python ships it (objects that existed
before, such as other benchmarks' data and imported peers, frozen out of its way), and with it
off, as ``timeit`` does. Building a large object graph triggers many full collections, so the
first measures the collector nearly as much as the work.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import tempfile
from typing import Any

import networkx as nx
import numpy as np
from harness import Row, Settings, compare

import graphexec as gx
from graphexec.fileformat import Limits

SIZES = {"10k": 10_000, "100k": 100_000}
OPS = ("add", "mul", "sub", "max")


def random_dag(n: int, seed: int = 0) -> tuple[gx.Graph, list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder(f"dag_{n}")
    values = [b.input(f"x{i}", shape=(1,)).name for i in range(4)]
    edges = []
    picks = rng.integers(1, 65, size=(n, 2))
    ops = rng.integers(0, len(OPS), size=n)
    for i in range(n):
        a, c = (values[max(0, len(values) - int(k))] for k in picks[i])
        v = b.op(OPS[ops[i]], a, c, name=f"n{i}").name
        edges += [(a, v), (c, v)]
        values.append(v)
    b.output(values[-1], "y")
    return b.build(check_shapes=False), edges


def networkx_build_sort(edges: list[tuple[str, str]]) -> Any:
    def build_sort() -> list[str]:
        g = nx.DiGraph()
        g.add_edges_from(edges)
        return list(nx.topological_sort(g))

    return build_sort


def limits_for(n: int) -> Limits:
    """The default limits, raised where a graph of ``n`` nodes needs it (as docs/format.md
    advises for unusually large graphs)."""
    want = {"max_header_items": 16 * n, "max_array_len": 4 * n, "max_map_len": 4 * n}
    have = {f.name: getattr(Limits(), f.name) for f in dataclasses.fields(Limits)}
    return Limits(**{**have, **{k: max(v, have[k]) for k, v in want.items()
                                if have.get(k) is not None}})  # None: derived from the size


def gx_load_compile(path: str, n: int) -> Any:
    limits = limits_for(n)

    def load_compile() -> Any:
        g = gx.load(path, limits=limits)
        plan = gx.Executor(g).plan
        fwd = plan.forward()
        return plan.backward(fwd, g.outputs, plan.grad_leaves)

    return load_compile


def run(settings: Settings) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, n in SIZES.items():
            g, edges = random_dag(n)
            path = os.path.join(folder, f"dag_{n}.gx")
            gx.save(g, path)
            del g
            contenders = {"networkx build+sort": networkx_build_sort(edges),
                          "graphexec load+compile": gx_load_compile(path, n)}
            for collector in ("gc on", "gc off"):
                res = _timed(contenders, settings, collector == "gc on")
                case = f"{label} nodes, {collector}"
                for name, (t, r) in res.items():
                    rows.append(Row("load+validate+compile", case, name, t, r,
                                    goal="≤ 2×" if name.startswith("graphexec") else ""))
                print(f"  compile {case}: " + ", ".join(
                    f"{k} {v[0] * 1e3:.1f} ms ({v[1]:.2f}×)" for k, v in res.items()),
                    file=sys.stderr)
    return rows


def _timed(contenders: dict[str, Any], settings: Settings, collect: bool) -> Any:
    """Interleaved timings with the collector on (everything older than the benchmark frozen
    out of its way) or off (the work alone, as ``timeit`` measures it)."""
    gc.collect()
    gc.freeze()
    if not collect:
        gc.disable()
    try:
        fewer = Settings(rounds=max(3, settings.rounds // 3), min_time=settings.min_time)
        return compare(contenders, fewer, threaded=False)
    finally:
        gc.enable()
        gc.unfreeze()


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv))))
