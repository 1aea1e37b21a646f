"""Load + validate + compile a graph of 10k / 100k / 1M nodes vs networkx building and sorting it.

The graph: four inputs, then nodes that each combine two earlier values chosen at random among the
last 64 (ops add, mul, sub, max), the last node the output. graphexec's time covers ``gx.load``
with the default limits (read, msgpack, pydantic validation, name and edge checks, the order,
binding each gate and its attributes, shape rules) plus ``Executor`` and the forward and backward
schedules: the file to an executor ready to run. The baseline is networkx alone: ``DiGraph`` from
the same edge list and ``topological_sort``.

The 1M-node case runs once in a fresh process (graphexec, then networkx, CPU time of the
process), which also reports the peak memory of the load (``ru_maxrss`` after minus before).

Both are timed twice: with the garbage collector on, as Python ships it (objects that existed
before, such as other benchmarks' data and imported peers, frozen out of its way), and with it
off, as ``timeit`` does. Building a large object graph triggers many full collections, so the
first measures the collector nearly as much as the work.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import msgpack
import networkx as nx
import numpy as np
from harness import Row, Settings, compare

import graphexec as gx
from graphexec.fileformat import MAGIC
from graphexec.fileformat.codec import PREAMBLE, align

SIZES = {"10k": 10_000, "100k": 100_000}
BIG = 1_000_000
OPS = ("add", "mul", "sub", "max")


def _picks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 65, size=(n, 2)), rng.integers(0, len(OPS), size=n)


def random_dag(n: int, seed: int = 0) -> tuple[gx.Graph, list[tuple[str, str]]]:
    picks, ops = _picks(n, seed)
    b = gx.GraphBuilder(f"dag_{n}")
    values = [b.input(f"x{i}", shape=(1,)).name for i in range(4)]
    edges = []
    for i in range(n):
        a, c = (values[max(0, len(values) - int(k))] for k in picks[i])
        v = b.op(OPS[ops[i]], a, c, name=f"n{i}").name
        edges += [(a, v), (c, v)]
        values.append(v)
    b.output(values[-1], "y")
    return b.build(check_shapes=False), edges


def dag_file(n: int, seed: int = 0) -> tuple[bytes, list[tuple[str, str]]]:
    """The bytes ``gx.dumps`` gives for ``random_dag(n, seed)``, written directly (building a
    million-node graph with the builder takes minutes); ``run`` checks they agree at 2000."""
    picks, ops = _picks(n, seed)
    values = [f"x{i}" for i in range(4)]
    nodes, edges = [], []
    for i in range(n):
        a, c = (values[max(0, len(values) - int(k))] for k in picks[i])
        v = f"n{i}"
        nodes.append({"attrs": {}, "inputs": [a, c], "name": v, "op": OPS[ops[i]], "version": 1})
        edges += [(a, v), (c, v)]
        values.append(v)
    used = sorted({OPS[k] for k in ops})
    header = {"inputs": [{"dtype": "float64", "name": x, "shape": [1]} for x in values[:4]],
              "metadata": {}, "name": f"dag_{n}", "nodes": nodes,
              "ops": [{"dist": "graphexec", "dist_version": gx.__version__, "op": op, "version": 1}
                      for op in used],
              "outputs": [{"name": "y", "value": values[-1]}], "params": []}
    hb = msgpack.packb(header, use_bin_type=True, use_single_float=False)
    pad = bytes(align(PREAMBLE.size + len(hb)) - PREAMBLE.size - len(hb))
    return PREAMBLE.pack(MAGIC, 1, 0, len(hb)) + hb + pad, edges


def networkx_build_sort(edges: list[tuple[str, str]]) -> Any:
    def build_sort() -> list[str]:
        g = nx.DiGraph()
        g.add_edges_from(edges)
        return list(nx.topological_sort(g))

    return build_sort


def load_compile(path: str) -> Any:
    """The file to an executor ready to run: load (default limits), plan, both schedules."""
    g = gx.load(path)
    plan = gx.Executor(g).plan
    fwd = plan.forward()
    return plan.backward(fwd, g.outputs, plan.grad_leaves)


def gx_load_compile(path: str) -> Any:
    return lambda: load_compile(path)


def run(settings: Settings) -> list[Row]:
    rows = []
    assert dag_file(2000)[0] == gx.dumps(random_dag(2000)[0]), "dag_file no longer matches"
    with tempfile.TemporaryDirectory() as folder:
        for label, n in SIZES.items():
            data, edges = dag_file(n)
            path = os.path.join(folder, f"dag_{n}.gx")
            with open(path, "wb") as f:
                f.write(data)
            del data
            contenders = {"networkx build+sort": networkx_build_sort(edges),
                          "graphexec load+compile": gx_load_compile(path)}
            for collector in ("gc on", "gc off"):
                res = _timed(contenders, settings, collector == "gc on")
                case = f"{label} nodes, {collector}"
                for name, (t, r) in res.items():
                    rows.append(Row("load+validate+compile", case, name, t, r,
                                    goal="≤ 2×" if name.startswith("graphexec") else ""))
                print(f"  compile {case}: " + ", ".join(
                    f"{k} {v[0] * 1e3:.1f} ms ({v[1]:.2f}×)" for k, v in res.items()),
                    file=sys.stderr)
        if not settings.quick:
            rows += _million(folder)
    return rows


def _million(folder: str) -> list[Row]:
    """One run of each in a fresh process: CPU seconds, and the load's peak memory."""
    data, _ = dag_file(BIG)
    path = os.path.join(folder, "dag_1m.gx")
    with open(path, "wb") as f:
        f.write(data)
    del data
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, os.path.join(here, "bench_compile.py"), "--child", path],
                         capture_output=True, text=True, check=True, cwd=here)
    r = json.loads(out.stdout)
    case = "1M nodes, gc on, one run, fresh process"
    note = f"peak memory +{r['peak_mib']:.0f} MiB (ru_maxrss); file {r['file_mib']:.0f} MiB"
    print(f"  compile {case}: networkx {r['networkx']:.2f} s, graphexec {r['graphexec']:.2f} s, "
          f"{note}", file=sys.stderr)
    return [Row("load+validate+compile", case, "networkx build+sort", r["networkx"], 1.0),
            Row("load+validate+compile", case, "graphexec load+compile", r["graphexec"],
                r["graphexec"] / r["networkx"], goal="≤ 5 s", note=note)]


def _child(path: str) -> None:
    """Measure ``load_compile(path)`` in this fresh process, then networkx on its edges."""
    import resource
    import time

    gc.collect()
    gc.freeze()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    load_compile(path)
    seconds = time.process_time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    g = gx.load(path)
    edges = [(s, n.name) for n in g.nodes for s in n.inputs]
    del g
    gc.collect()
    t0 = time.process_time()
    networkx_build_sort(edges)()
    nx_seconds = time.process_time() - t0
    print(json.dumps({"graphexec": seconds, "networkx": nx_seconds, "peak_mib": peak / 1024,
                      "file_mib": os.path.getsize(path) / 2**20}))


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
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
        sys.exit(0)
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv))))
