"""Training step: forward + backward (parameters only) + optimiser update in place.

graphexec (Executor + graphexec.optim) vs the same network hand-written in numpy vs PyTorch eager.
Before timing, one step of each is checked to give the same loss and the same updated weights.

For the small net a fourth contender, "gates by hand", runs the graph's own gates in a plain loop
over the executor's schedules (no checks, no fan-out bookkeeping, ``w -= lr * dw`` by hand): the
part of graphexec's time that is the gates' own, which no executor can remove.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from harness import Row, Settings, compare, peer
from nets import NumpyMLP, batch, gx_mlp, init_params, torch_mlp, torch_train_step

import graphexec as gx

SMALL = [2, 16, 3]  # the net whose step is mostly per-node overhead
NETS = [  # (sizes, batch size, goal as a ratio to numpy)
    ([784, 512, 512, 10], 256, 1.02),
    ([3072, 100, 10], 200, 1.02),
    (SMALL, 300, 1.15),
]
REG, LR = 1e-3, 1e-3


def gx_trainer(sizes: list[int], n: int, dtype: str, optimizer: str) -> tuple[Any, gx.Graph]:
    params = init_params(sizes, dtype)
    g = gx_mlp(params, dtype)
    x, y = batch(sizes, n, dtype)
    reg = np.array(REG, dtype=dtype)
    ex = gx.Executor(g)
    wrt = list(g.params)
    opt = gx.optim.SGD(lr=LR) if optimizer == "sgd" else gx.optim.Adam(lr=LR)
    feed = {"x": x, "y": y, "reg": reg}

    def step() -> Any:
        loss = ex.forward(feed)["loss"]
        opt.step(g.params, ex.backward({"loss": 1.0}, wrt=wrt))
        return loss

    return step, g


def gates_by_hand(sizes: list[int], n: int, dtype: str) -> tuple[Any, gx.Graph]:
    """One SGD step through the graph's gates called by hand, in the executor's order."""
    from graphexec.gate import Ctx

    g = gx_mlp(init_params(sizes, dtype), dtype)
    x, y = batch(sizes, n, dtype)
    plan, wrt = gx.Executor(g).plan, list(g.params)
    fwd = plan.forward(["loss"])
    bwd = plan.backward(fwd, ["loss"], wrt)
    loss_slot, slots = plan.output_slot("loss"), [plan.slot[k] for k in wrt]
    fed = [(plan.slot["x"], x), (plan.slot["y"], y), (plan.slot["reg"], np.array(REG, dtype))]
    fed += [(plan.slot[k], v) for k, v in g.params.items()]
    seed = np.array(1.0, dtype)

    def step() -> Any:
        vals: list[Any] = [None] * plan.n_slots
        for s, v in fed:
            vals[s] = v
        ctxs: dict[int, Any] = {}
        for forward, ins, out, k in fwd.steps:
            ctxs[k] = ctx = Ctx()
            vals[out] = np.asarray(forward(ctx, *[vals[s] for s in ins]))
        grads: list[Any] = [None] * plan.n_slots
        grads[loss_slot] = seed
        for backward, _, needs, targets, out, k, _ in bwd.steps:
            ctx = ctxs[k]
            ctx.needs_grad = needs
            dins = backward(ctx, grads[out])
            for i, s in targets:
                grads[s] = dins[i] if grads[s] is None else grads[s] + dins[i]
        for w, s in zip(g.params.values(), slots):
            w -= LR * grads[s]
        return vals[loss_slot]

    return step, g


def numpy_trainer(sizes: list[int], n: int, dtype: str, optimizer: str) -> tuple[Any, NumpyMLP]:
    net = NumpyMLP(init_params(sizes, dtype), REG)
    x, y = batch(sizes, n, dtype)
    state: list[Any] = []
    if optimizer == "sgd":
        return (lambda: net.sgd_step(x, y, LR)), net
    return (lambda: net.adam_step(x, y, LR, state)), net


def torch_trainer(torch: Any, sizes: list[int], n: int, dtype: str, optimizer: str) -> Any:
    model = torch_mlp(torch, init_params(sizes, dtype))
    x, y = batch(sizes, n, dtype)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    opt = (torch.optim.SGD(model.parameters(), lr=LR) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=LR))
    step = torch_train_step(torch, model, opt, REG)
    return lambda: step(tx, ty)


def check_same(sizes: list[int], n: int, dtype: str, optimizer: str) -> None:
    """One step of graphexec and of numpy give the same loss and the same new weights."""
    gstep, g = gx_trainer(sizes, n, dtype, optimizer)
    nstep, net = numpy_trainer(sizes, n, dtype, optimizer)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(gstep(), nstep(), rtol=tol)
    for i, (w, b) in enumerate(net.params, 1):
        np.testing.assert_allclose(g.params[f"W{i}"], w, rtol=tol, atol=tol)
        np.testing.assert_allclose(g.params[f"b{i}"], b, rtol=tol, atol=tol)
        assert g.params[f"W{i}"].dtype == np.dtype(dtype)
    if optimizer == "sgd" and sizes == SMALL:
        hstep, h = gates_by_hand(sizes, n, dtype)
        np.testing.assert_allclose(hstep(), gx_trainer(sizes, n, dtype, optimizer)[0](), rtol=tol)
        for k in g.params:
            np.testing.assert_allclose(h.params[k], g.params[k], rtol=tol, atol=tol)


def run(settings: Settings, optimizers: tuple[str, ...] = ("sgd",)) -> list[Row]:
    torch, note = peer("torch")
    rows = []
    for optimizer in optimizers:
        for sizes, n, goal in NETS:
            for dtype in ("float32", "float64"):
                check_same(sizes, n, dtype, optimizer)
                case = f"{'-'.join(map(str, sizes))} N={n} {dtype} {optimizer}"
                contenders = {"numpy": numpy_trainer(sizes, n, dtype, optimizer)[0],
                              "graphexec": gx_trainer(sizes, n, dtype, optimizer)[0]}
                if optimizer == "sgd" and sizes == SMALL:
                    contenders["gates by hand"] = gates_by_hand(sizes, n, dtype)[0]
                if torch is not None:
                    contenders["pytorch"] = torch_trainer(torch, sizes, n, dtype, optimizer)
                res = compare(contenders, settings)
                for name, (t, r) in res.items():
                    rows.append(Row("train step", case, name, t, r,
                                    goal=f"≤ {goal}×" if name == "graphexec" else ""))
                if torch is None:
                    rows.append(Row("train step", case, "pytorch", None, None, note=note))
                print(f"  train step {case}: " + ", ".join(
                    f"{k} {v[0] * 1e3:.3f} ms ({v[1]:.2f}×)" for k, v in res.items()),
                    file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv),
                    ("sgd", "adam") if "--adam" in sys.argv else ("sgd",))))
