"""Convolution and pooling layers: forward + backward, graphexec vs PyTorch eager.

Each case is one layer in a one-node graph run by ``gx.Executor`` (forward, then backward from a
fixed upstream gradient), against the same layer in PyTorch (``y.backward(dy)``), at N = 64.
Before timing, one step of each is checked to give the same output and gradients.

* conv2d 3→32 at 32×32 and 32→64 at 16×16 (3×3 kernels, padding 1), with the input gradient;
  the 3→32 layer also without it (a first layer: ``wrt`` leaves x out, ``requires_grad=False``
  in PyTorch), where graphexec skips the input-gradient GEMM;
* "GEMMs alone": only the three matrix products of the one-GEMM (channel-first) im2col
  formulation, on ready-made columns: the floor of that formulation with numpy's BLAS (the
  gate multiplies image by image for large images, see ``PER_SAMPLE_PIXELS``);
* 2×2 max and average pooling, stride 2, of a (64, 32, 32, 32) tensor.

    python benchmarks/bench_conv.py --threads 1 [--quick]
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from harness import Row, Settings, compare, peer

import graphexec as gx

N = 64
CONVS = [(3, 32, 32), (32, 64, 16)]  # (in channels, out channels, image size)
GOALS = {"float32": 1.5, "float64": 1.0}


def gx_layer(op: str, x: np.ndarray, params: dict[str, np.ndarray], wrt: list[str],
             **attrs: Any) -> tuple[Any, gx.Executor]:
    b = gx.GraphBuilder(op)
    ins = [b.input("x", shape=(None, *x.shape[1:]), dtype=x.dtype.name)]
    ins += [b.param(k, v) for k, v in params.items()]
    b.output(b.op(op, *ins, name="layer", **attrs), "y")
    ex = gx.Executor(b.build())
    dy = np.random.default_rng(1).standard_normal(ex.forward(x=x)["y"].shape).astype(x.dtype)
    ex.backward({"y": dy}, wrt=wrt)

    def step() -> Any:
        ex.forward(x=x)
        return ex.backward({"y": dy}, wrt=wrt)

    return step, ex


def torch_layer(torch: Any, fn: Any, x: np.ndarray, params: dict[str, np.ndarray],
                x_grad: bool) -> Any:
    tx = torch.from_numpy(x).requires_grad_(x_grad)
    tp = [torch.from_numpy(v.copy()).requires_grad_(True) for v in params.values()]
    with torch.no_grad():
        dy = torch.from_numpy(np.random.default_rng(1).standard_normal(
            tuple(fn(tx, *tp).shape)).astype(x.dtype))

    def step() -> Any:
        for t in (tx, *tp):
            t.grad = None
        fn(tx, *tp).backward(dy)
        return [t.grad for t in (tx, *tp)]

    return step


def gemms_alone(x: np.ndarray, w: np.ndarray) -> Any:
    """The three products of im2col conv on ready columns: Y = W·cols, dW = dY·colsᵀ,
    dcols = Wᵀ·dY."""
    f, k = w.shape[0], w[0].size
    m = x.shape[0] * x.shape[2] * x.shape[3]
    rng = np.random.default_rng(2)
    cols, wm = rng.standard_normal((k, m)).astype(x.dtype), w.reshape(f, k)
    dy = rng.standard_normal((f, m)).astype(x.dtype)
    return lambda: (wm @ cols, dy @ cols.T, wm.T @ dy)


def check_same(torch: Any, step_gx: Any, step_t: Any, names: list[str], dtype: str) -> None:
    tol = 2e-3 if dtype == "float32" else 1e-9
    got, want = step_gx(), step_t()
    for name, t in zip(names, want):
        if name in got:
            np.testing.assert_allclose(got[name], t.numpy(), rtol=tol, atol=tol)


def conv_rows(settings: Settings, torch: Any, note: str, dtype: str) -> list[Row]:
    rows = []
    rng = np.random.default_rng(0)
    for c, f, size in CONVS:
        x = rng.standard_normal((N, c, size, size)).astype(dtype)
        params = {"W": (rng.standard_normal((f, c, 3, 3)) * 0.1).astype(dtype),
                  "b": rng.standard_normal(f).astype(dtype)}
        first = [True, False] if c == 3 else [True]
        for x_grad in first:
            wrt = (["x"] if x_grad else []) + ["W", "b"]
            case = f"conv2d {c}→{f} @ {size}² N={N} {dtype}" + ("" if x_grad else ", no dx")
            gstep, _ = gx_layer("conv2d", x, params, wrt, padding=1)
            contenders: dict[str, Any] = {"graphexec": gstep}
            if x_grad:
                contenders["GEMMs alone"] = gemms_alone(x, params["W"])
            if torch is not None:
                tstep = torch_layer(torch, lambda a, w, b: torch.nn.functional.conv2d(a, w, b, padding=1),
                                    x, params, x_grad)
                check_same(torch, gstep, tstep, ["x", "W", "b"], dtype)
                contenders["pytorch eager"] = tstep
            res = compare(contenders, settings,
                          baseline="pytorch eager" if torch is not None else "graphexec")
            for name, (sec, ratio) in res.items():
                goal = f"≤ {GOALS[dtype]}× torch" if name == "graphexec" and x_grad else ""
                rows.append(Row("conv", case, name, sec, ratio if torch is not None else None,
                                goal, "" if torch is not None else note))
    return rows


def pool_rows(settings: Settings, torch: Any, note: str, dtype: str) -> list[Row]:
    rows = []
    x = np.random.default_rng(3).standard_normal((N, 32, 32, 32)).astype(dtype)
    for op, tfn in (("max_pool2d", "max_pool2d"), ("avg_pool2d", "avg_pool2d")):
        gstep, _ = gx_layer(op, x, {}, ["x"], kernel=2)
        contenders: dict[str, Any] = {"graphexec": gstep}
        if torch is not None:
            fn = getattr(torch.nn.functional, tfn)
            tstep = torch_layer(torch, lambda a, fn=fn: fn(a, 2), x, {}, True)
            check_same(torch, gstep, tstep, ["x"], dtype)
            contenders["pytorch eager"] = tstep
        res = compare(contenders, settings,
                      baseline="pytorch eager" if torch is not None else "graphexec")
        for name, (sec, ratio) in res.items():
            rows.append(Row("pool", f"{op} 2×2 (64, 32, 32, 32) {dtype}", name, sec,
                            ratio if torch is not None else None,
                            "≤ 1.0× torch" if name == "graphexec" else "",
                            "" if torch is not None else note))
    return rows


def run(settings: Settings) -> list[Row]:
    torch, note = peer("torch")
    rows: list[Row] = []
    for dtype in ("float32", "float64"):
        rows += conv_rows(settings, torch, note, dtype)
        rows += pool_rows(settings, torch, note, dtype)
    return rows


if __name__ == "__main__":
    import argparse

    from harness import table
    from run_all import set_threads

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    a = p.parse_args()
    if a.threads:
        set_threads(a.threads)
    print(table(run(Settings.make(a.quick, a.clock, a.threads))))
    sys.exit(0)
