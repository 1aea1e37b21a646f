"""Per-node overhead: forward + backward through a chain of 1000 tiny ops on shape-(1,) arrays.

The chain is v ← v · wᵢ ← v + bᵢ (500 mul and 500 add nodes, each with a learned (1,) parameter);
backward gives the gradient of every parameter and of x. The arrays are so small that the time
is almost all interpreter overhead: graphexec's executor vs a hand-written numpy loop doing the
same ufunc calls vs PyTorch autograd. Reported per node (total time / 1000).
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


def run(settings: Settings) -> list[Row]:
    check_same()
    torch, note = peer("torch")
    x, ws, bs = chain_params()
    contenders = {"numpy": numpy_chain(x, ws, bs), "graphexec": gx_chain(x, ws, bs)}
    if torch is not None:
        contenders["pytorch"] = torch_chain(torch, x, ws, bs)
    res = compare(contenders, settings, threaded=False)
    case = f"chain of {NODES} mul/add on (1,) float64, fwd+bwd"
    rows = [Row("per-node overhead", case, name, t / NODES, r,
                goal="≤ 2.0 µs" if name == "graphexec" else "")
            for name, (t, r) in res.items()]
    if torch is None:
        rows.append(Row("per-node overhead", case, "pytorch", None, None, note=note))
    print("  per node: " + ", ".join(f"{k} {v[0] / NODES * 1e6:.2f} µs" for k, v in res.items()),
          file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv, "cpu" if "--cpu" in sys.argv else "wall"))))
