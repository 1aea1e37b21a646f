"""The same fully connected network four ways: a graphexec graph, hand-written numpy (CS231n
``layers.py`` style), PyTorch eager and an ONNX model. All start from the same weights.

Net: x (N, D) → [affine → relu] × (L-1) → affine → scores (N, C);
loss = softmax cross-entropy(scores, y) + reg · Σ ½‖W‖² over every weight matrix.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

import graphexec as gx


def init_params(sizes: list[int], dtype: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-initialised (W, b) per layer; W (D_in, D_out), b (D_out,)."""
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype), np.zeros(b, dtype))
            for a, b in pairwise(sizes)]


def batch(sizes: list[int], n: int, dtype: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


# ---------------------------------------------------------------------------- graphexec
def gx_mlp(params: list[tuple[np.ndarray, np.ndarray]], dtype: str) -> gx.Graph:
    """The network as a graph built with GraphBuilder (ops affine, relu, softmax_cross_entropy,
    l2, add, mul). Inputs x, y (int64) and reg (a scalar); outputs loss and scores."""
    b = gx.GraphBuilder("mlp")
    h = b.input("x", shape=(None, params[0][0].shape[0]), dtype=dtype)
    y = b.input("y", shape=(None,), dtype="int64")
    reg = b.input("reg", shape=(), dtype=dtype)
    penalty = None
    for i, (w, bias) in enumerate(params, 1):
        W, B = b.param(f"W{i}", w), b.param(f"b{i}", bias)
        h = b.op("affine", h, W, B, name=f"fc{i}")
        if i < len(params):
            h = b.op("relu", h, name=f"relu{i}")
        p = b.op("l2", W, name=f"l2_{i}")
        penalty = p if penalty is None else b.op("add", penalty, p)
    data_loss = b.op("softmax_cross_entropy", h, y, name="data_loss")
    b.output(b.op("add", data_loss, b.op("mul", reg, penalty), name="loss"), "loss")
    b.output(h, "scores")
    return b.build()


# ---------------------------------------------------------------------------- numpy
def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: Any, need_dx: bool = True) -> tuple[Any, ...]:
    x, w = cache
    return (dout @ w.T if need_dx else None), x.T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(0, x), x


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dout * (x > 0)


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -log_probs[np.arange(n), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    dx /= n
    return loss, dx


class NumpyMLP:
    """The hand-written reference: forward, backward (no gradient for the data), update."""

    def __init__(self, params: list[tuple[np.ndarray, np.ndarray]], reg: float):
        self.params = [(w.copy(), b.copy()) for w, b in params]
        self.reg = reg

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, list[Any]]:
        caches, h = [], x
        for i, (w, b) in enumerate(self.params):
            h, ac = affine_forward(h, w, b)
            rc = None
            if i < len(self.params) - 1:
                h, rc = relu_forward(h)
            caches.append((ac, rc))
        loss, dh = softmax_loss(h, y)
        loss += 0.5 * self.reg * sum(np.sum(w * w) for w, _ in self.params)
        grads: list[Any] = [None] * len(self.params)
        for i in range(len(self.params) - 1, -1, -1):
            ac, rc = caches[i]
            if rc is not None:
                dh = relu_backward(dh, rc)
            dh, dw, db = affine_backward(dh, ac, need_dx=i > 0)
            dw += self.reg * self.params[i][0]
            grads[i] = (dw, db)
        return loss, grads

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> Any:
        loss, grads = self.loss_and_grads(x, y)
        for (w, b), (dw, db) in zip(self.params, grads):
            w -= lr * dw
            b -= lr * db
        return loss

    def adam_step(self, x: np.ndarray, y: np.ndarray, lr: float, state: list[Any],
                  beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> Any:
        loss, grads = self.loss_and_grads(x, y)
        flat = [p for pair in self.params for p in pair]
        if not state:  # step count, then first and second moments per parameter
            state += [0, [np.zeros_like(p) for p in flat], [np.zeros_like(p) for p in flat]]
        state[0] += 1
        t = state[0]
        dflat = [d for pair in grads for d in pair]
        for p, dp, m, v in zip(flat, dflat, state[1], state[2]):
            m *= beta1
            m += (1 - beta1) * dp
            v *= beta2
            v += (1 - beta2) * dp**2
            p -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        return loss

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = x
        for i, (w, b) in enumerate(self.params):
            h = h @ w + b
            if i < len(self.params) - 1:
                h = np.maximum(0, h)
        return h


# ---------------------------------------------------------------------------- PyTorch
def torch_mlp(torch: Any, params: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    layers: list[Any] = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(*w.shape, dtype=getattr(torch, str(w.dtype)))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_train_step(torch: Any, model: Any, opt: Any, reg: float) -> Any:
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    cross_entropy = torch.nn.functional.cross_entropy

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y) + reg * 0.5 * sum((w * w).sum() for w in weights)
        loss.backward()
        opt.step()
        return loss

    return step


# ---------------------------------------------------------------------------- ONNX
def onnx_model(params: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The inference network (Gemm, Relu) built with onnx.helper; returns the serialised model."""
    from onnx import TensorProto, helper, numpy_helper

    elem = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float64"): TensorProto.DOUBLE}
    dt = elem[params[0][0].dtype]
    nodes, inits, h = [], [], "x"
    for i, (w, b) in enumerate(params, 1):
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [f"z{i}"]))
        h = f"z{i}"
        if i < len(params):
            nodes.append(helper.make_node("Relu", [h], [f"a{i}"]))
            h = f"a{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", dt, [None, params[0][0].shape[0]])],
        [helper.make_tensor_value_info(h, dt, [None, params[-1][0].shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())
