"""A full CS231n three-layer convnet training step: graphexec vs hand-written numpy vs PyTorch.

The network (CS231n assignment 2's ``ThreeLayerConvNet``), N = 64 images 3×32×32::

    conv 32 7×7 (pad 3) - relu - 2×2 max pool - affine 8192→100 - relu - affine 100→10 - softmax
    loss = cross-entropy + reg · Σ ½‖W‖²  (reg 1e-3 on W1, W2, W3)

One step is forward + backward (parameters only: no gradient for the images) + an SGD update
in place. The numpy contender is the fastest this network can be written in numpy (see
:class:`NumpyConvNet`): every buffer allocated once, im2col as 49 strided copies into a
per-image column buffer, one batched GEMM forward and one backward (no input-gradient GEMM),
the pool as four strided slices, relu and pool gradients fused. Before timing, one step of
each contender is checked to give the same loss and the same updated weights.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/bench_convnet.py
    python benchmarks/bench_convnet.py --quick   # the script pins one thread itself when run
"""

from __future__ import annotations

import os
import resource
import sys

if __name__ == "__main__":  # before numpy is imported (run_all.py pins threads its own way)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from harness import Row, Settings, compare, peer  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.nn import convnet  # noqa: E402

N, C, H, F, K, HIDDEN, CLASSES = 64, 3, 32, 32, 7, 100, 10
REG, LR, GOAL = 1e-3, 1e-3, 1.05
TAPS = [(i, j) for i in range(2) for j in range(2)]  # the 2×2 pool's four strided slices


def graph(dtype: str) -> gx.Graph:
    return convnet(input_shape=(C, H, H), conv=[F], kernel=K, pool=2, hidden=[HIDDEN],
                   classes=CLASSES, reg=REG, seed=0, dtype=dtype)


def batch(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return (rng.standard_normal((N, C, H, H)).astype(dtype),
            rng.integers(0, CLASSES, N).astype(np.int64))


class NumpyConvNet:
    """The network by hand, in the fastest numpy we could write; parameters as in :func:`graph`."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.p = {k: v.copy() for k, v in params.items()}
        dt, p = self.p["W1"].dtype, K // 2
        self.xp = np.zeros((N, C, H + 2 * p, H + 2 * p), dtype=dt)  # borders stay zero
        self.cols = np.empty((N, C, K, K, H, H), dtype=dt)
        self.y1 = np.empty((N, F, H * H), dtype=dt)
        self.pool = np.empty((N, F, H // 2, H // 2), dtype=dt)
        self.dy1 = np.empty((N, F, H, H), dtype=dt)

    def _conv_relu_pool(self, x: np.ndarray) -> np.ndarray:
        p, W1 = K // 2, self.p["W1"]
        self.xp[:, :, p:p + H, p:p + H] = x
        for i in range(K):
            for j in range(K):
                self.cols[:, :, i, j] = self.xp[:, :, i:i + H, j:j + H]
        cols = self.cols.reshape(N, C * K * K, H * H)
        np.matmul(W1.reshape(F, -1), cols, out=self.y1)
        self.y1 += self.p["b1"][:, None]
        np.maximum(self.y1, 0, out=self.y1)  # relu in place: the pool's max sees it
        a = self.y1.reshape(N, F, H, H)
        np.maximum(a[:, :, 0::2, 0::2], a[:, :, 0::2, 1::2], out=self.pool)
        np.maximum(self.pool, a[:, :, 1::2, 0::2], out=self.pool)
        np.maximum(self.pool, a[:, :, 1::2, 1::2], out=self.pool)
        return self.pool.reshape(N, -1)

    def _pool_relu_conv_back(self, dpool: np.ndarray) -> None:
        """dW1, db1 from the pool's output gradient: each tap that holds its window's max gets
        the gradient, unless the max is 0 (relu's gradient is 0 there, and only there can
        several taps tie, since relu made them all 0)."""
        a = self.y1.reshape(N, F, H, H)
        live = dpool * (self.pool > 0)
        for i, j in TAPS:
            np.multiply(live, a[:, :, i::2, j::2] == self.pool, out=self.dy1[:, :, i::2, j::2])
        dy1 = self.dy1.reshape(N, F, H * H)
        cols = self.cols.reshape(N, C * K * K, H * H)
        self.g["W1"] = np.matmul(dy1, cols.transpose(0, 2, 1)).sum(axis=0).reshape(F, C, K, K)
        self.g["b1"] = dy1.sum(axis=(0, 2))

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        p, self.g = self.p, {}
        flat = self._conv_relu_pool(x)
        h = flat @ p["W2"]
        h += p["b2"]
        np.maximum(h, 0, out=h)
        s = h @ p["W3"]
        s += p["b3"]
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=1, keepdims=True)
        rows = np.arange(N)
        loss = -np.log(s[rows, y]).mean() + 0.5 * REG * sum(
            float(np.vdot(p[w], p[w])) for w in ("W1", "W2", "W3"))
        s[rows, y] -= 1
        s /= N
        self.g["W3"], self.g["b3"] = h.T @ s, s.sum(axis=0)
        dh = s @ p["W3"].T
        dh *= h > 0
        self.g["W2"], self.g["b2"] = flat.T @ dh, dh.sum(axis=0)
        self._pool_relu_conv_back((dh @ p["W2"].T).reshape(self.pool.shape))
        for k in ("W1", "W2", "W3"):
            self.g[k] += REG * p[k]
        for k, w in p.items():
            w -= lr * self.g[k].astype(w.dtype, copy=False)
        return float(loss)


def gx_trainer(dtype: str) -> tuple[Any, gx.Graph]:
    g = graph(dtype)
    x, y = batch(dtype)
    ex, wrt, opt = gx.Executor(g), list(g.trainable), gx.optim.SGD(lr=LR)

    def step() -> float:
        loss = float(ex.forward({"x": x, "y": y}, outputs=["loss"], training=True)["loss"])
        opt.step(g.params, ex.backward({"loss": 1.0}, wrt=wrt))
        return loss

    return step, g


def numpy_trainer(dtype: str) -> tuple[Any, NumpyConvNet]:
    net = NumpyConvNet(graph(dtype).params)
    x, y = batch(dtype)
    return (lambda: net.step(x, y, LR)), net


def torch_trainer(torch: Any, dtype: str) -> tuple[Any, dict[str, Any]]:
    F_ = torch.nn.functional
    p = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in graph(dtype).params.items()}
    x, y = (torch.from_numpy(a) for a in batch(dtype))
    opt = torch.optim.SGD(list(p.values()), lr=LR)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        a = F_.max_pool2d(F_.relu(F_.conv2d(x, p["W1"], p["b1"], padding=K // 2)), 2)
        h = F_.relu(a.flatten(1) @ p["W2"] + p["b2"])
        loss = F_.cross_entropy(h @ p["W3"] + p["b3"], y) + 0.5 * REG * sum(
            (p[w] * p[w]).sum() for w in ("W1", "W2", "W3"))
        loss.backward()
        opt.step()
        return loss.item()

    return step, p


def check_same(torch: Any, dtype: str) -> None:
    """One step of each contender gives the same loss and the same updated parameters."""
    tol = 2e-4 if dtype == "float32" else 1e-9
    (gstep, g), (nstep, net) = gx_trainer(dtype), numpy_trainer(dtype)
    np.testing.assert_allclose(gstep(), nstep(), rtol=tol)
    for k, w in net.p.items():
        assert g.params[k].dtype == w.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g.params[k], w, rtol=tol, atol=tol * 1e-2, err_msg=k)
    if torch is not None:
        tstep, tp = torch_trainer(torch, dtype)
        np.testing.assert_allclose(tstep(), net_loss_at_start(dtype), rtol=tol)
        for k, w in net.p.items():
            np.testing.assert_allclose(tp[k].detach().numpy(), w, rtol=tol, atol=tol * 1e-2,
                                       err_msg=f"torch {k}")


def net_loss_at_start(dtype: str) -> float:
    return numpy_trainer(dtype)[0]()


def faults_per_step(step: Any, steps: int = 3) -> float:
    """Minor page faults per call of ``step`` (each a fresh page the kernel zeroes)."""
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def run(settings: Settings) -> list[Row]:
    torch, note = peer("torch")
    rows = []
    for dtype in ("float32", "float64"):
        check_same(torch, dtype)
        case = f"CS231n convnet 3×32×32 c32 7×7-pool2-100-10 N={N} {dtype} sgd"
        contenders = {"numpy": numpy_trainer(dtype)[0], "graphexec": gx_trainer(dtype)[0]}
        if torch is not None:
            contenders["pytorch"] = torch_trainer(torch, dtype)[0]
        res = compare(contenders, settings)
        for name, (t, r) in res.items():
            rows.append(Row("convnet step", case, name, t, r,
                            goal=f"≤ {GOAL}×" if name == "graphexec" else "",
                            note=f"{faults_per_step(contenders[name]):.0f} page faults/step"))
        if torch is None:
            rows.append(Row("convnet step", case, "pytorch", None, None, note=note))
        else:
            g_t = res["graphexec"][1] / res["pytorch"][1]
            rows.append(Row("convnet step", case, "graphexec / pytorch", None, g_t,
                            note="ratio of the two ratios"))
        print(f"  convnet step {case}: " + ", ".join(
            f"{k} {v[0] * 1e3:.2f} ms ({v[1]:.2f}×)" for k, v in res.items()), file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    settings = Settings.make("--quick" in sys.argv, threads=1)
    torch_mod, _ = peer("torch")
    if torch_mod is not None:
        torch_mod.set_num_threads(1)
    print(table(run(settings)))
