"""Per-node overhead: forward + backward through a chain of 1000 tiny ops on shape-(1,) arrays.

The chain is v ← v · wᵢ ← v + bᵢ (500 mul and 500 add nodes, each with a learned (1,) parameter);
backward gives the gradient of every parameter and of x. The arrays are so small that the time
is almost all interpreter overhead: graphexec's executor vs a hand-written numpy loop doing the
same ufunc calls vs PyTorch autograd. Reported per node (total time / 1000).

A fourth contender, "gates by hand", calls the graph's own mul and add gates in a hand-written
loop (a fresh ctx per node, ``needs_grad`` set, no checks, no fan-out bookkeeping): the part of
graphexec's time that is the gates' own, which no executor can remove.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from harness import Row, Settings, compare, peer

import graphexec as gx

NODES = 1000


def chain_params(dtype: str = "float64") -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    x = np.ones(1, dtype)
    ws = [np.array([1.0 + 0.001 * rng.standard_normal()], dtype) for _ in range(NODES // 2)]
    bs = [np.array([0.001 * rng.standard_normal()], dtype) for _ in range(NODES // 2)]
    return x, ws, bs


def gx_chain(x: np.ndarray, ws: list[np.ndarray], bs: list[np.ndarray]) -> Any:
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(1,), dtype=x.dtype)
    for i, (w, c) in enumerate(zip(ws, bs)):
        v = b.op("add", b.op("mul", v, b.param(f"w{i}", w)), b.param(f"b{i}", c))
    b.output(v, "y")
    ex = gx.Executor(b.build())

    def step() -> Any:
        ex.forward(x=x)
        return ex.backward()  # seed ones; gradients of x and of all 1000 parameters

    return step


def gates_by_hand(x: np.ndarray, ws: list[np.ndarray], bs: list[np.ndarray]) -> Any:
    from graphexec.gate import Ctx

    b = gx.GraphBuilder("pair")  # the gates graphexec binds for one (mul, add) pair
    b.output(b.op("add", b.op("mul", b.input("v", shape=(1,)), b.param("w", ws[0])),
                  b.param("b", bs[0])), "y")
    mul, add = (node.gate for node in b.build().nodes)
    n, both = len(ws), (True, True)

    def step() -> Any:
        ctxs, v = [], x
        for w, c in zip(ws, bs):
            cm, ca = Ctx(), Ctx()
            v = add.forward(ca, mul.forward(cm, v, w), c)
            ctxs.append((cm, ca))
        dv = np.ones_like(v)
        dws: list[Any] = [None] * n
        dbs: list[Any] = [None] * n
        for i in range(n - 1, -1, -1):
            cm, ca = ctxs[i]
            ca.needs_grad = cm.needs_grad = both
            dv, dbs[i] = add.backward(ca, dv)
            dv, dws[i] = mul.backward(cm, dv)
        return dv, dws, dbs

    return step


def numpy_chain(x: np.ndarray, ws: list[np.ndarray], bs: list[np.ndarray]) -> Any:
    n = len(ws)

    def step() -> Any:
        saved, v = [], x
        for w, c in zip(ws, bs):
            saved.append(v)
            v = v * w
            v = v + c
        dv = np.ones_like(v)
        dws: list[Any] = [None] * n
        dbs: list[Any] = [None] * n
        for i in range(n - 1, -1, -1):
            dbs[i] = dv  # the add gate passes the gradient through
            dws[i] = saved[i] * dv
            dv = ws[i] * dv
        return dv, dws, dbs

    return step


def torch_chain(torch: Any, x: np.ndarray, ws: list[np.ndarray], bs: list[np.ndarray]) -> Any:
    tx = torch.from_numpy(x.copy()).requires_grad_()
    tws = [torch.from_numpy(w.copy()).requires_grad_() for w in ws]
    tbs = [torch.from_numpy(c.copy()).requires_grad_() for c in bs]
    leaves = [tx, *tws, *tbs]

    def step() -> Any:
        for t in leaves:
            t.grad = None
        v = tx
        for w, c in zip(tws, tbs):
            v = v * w + c
        v.backward(torch.ones_like(v))
        return [t.grad for t in leaves]

    return step


def check_same() -> None:
    x, ws, bs = chain_params()
    g = gx_chain(x, ws, bs)()
    dx, dws, _ = numpy_chain(x, ws, bs)()
    np.testing.assert_allclose(g["x"], dx, rtol=1e-12)
    np.testing.assert_allclose(g["w0"], dws[0], rtol=1e-12)
    hx, hws, _ = gates_by_hand(x, ws, bs)()
    np.testing.assert_array_equal(g["x"], hx)
    np.testing.assert_array_equal(g["w0"], hws[0])


def run(settings: Settings) -> list[Row]:
    check_same()
    torch, note = peer("torch")
    x, ws, bs = chain_params()
    contenders = {"numpy": numpy_chain(x, ws, bs), "graphexec": gx_chain(x, ws, bs),
                  "gates by hand": gates_by_hand(x, ws, bs)}
    if torch is not None:
        contenders["pytorch"] = torch_chain(torch, x, ws, bs)
    res = compare(contenders, settings, threaded=False)
    case = f"chain of {NODES} mul/add on (1,) float64, fwd+bwd"
    rows = [Row("per-node overhead", case, name, t / NODES, r,
                goal="≤ 1.0 µs" if name == "graphexec" else "")
            for name, (t, r) in res.items()]
    if torch is None:
        rows.append(Row("per-node overhead", case, "pytorch", None, None, note=note))
    print("  per node: " + ", ".join(f"{k} {v[0] / NODES * 1e6:.2f} µs" for k, v in res.items()),
          file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv, "cpu" if "--cpu" in sys.argv else "wall"))))
