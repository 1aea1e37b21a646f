"""Activation functions of the lecture (section 8): sigmoid, tanh, the ReLU family, ELU, maxout."""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec, unbroadcast
from graphexec.gates._samples import Sample, broadcasts_to, random_shape
from graphexec.gates._shapes import elementwise, fmt, result_dtype, same_dim, to_float
from graphexec.gates.arith import unary_sample


class Sigmoid(Gate):
    """y = 1 / (1 + e^-x).  Local gradient dy/dx = y (1 - y)."""

    name, version = "sigmoid", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = to_float(x)  # an integer x: numpy's float of it, as exp (and infer) say
        y = np.exp(-np.logaddexp(0.0, -x))  # = 1/(1+e^-x), without overflow for large |x|
        ctx.y = y
        return y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        y = ctx.y
        return (dy * y * (1.0 - y),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class Tanh(Gate):
    """y = tanh x = (e^x - e^-x) / (e^x + e^-x).  Local gradient dy/dx = 1 - y²."""

    name, version = "tanh", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.y = np.tanh(x)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        y = ctx.y
        return (dy * (1 - y * y),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class ReLU(Gate):
    """y = max(0, x).  Local gradient 1 where x > 0, else 0 (also at exactly x = 0).

    The ReLU gate is a max gate against the constant 0: it lets dy through or blocks it.
    dx = dy · [x > 0] is a multiply by the 0/1 mask: branch-free, so some 20× faster than
    ``np.where`` on a mask of random signs (a NaN or ±inf in dy meets a 0 as NaN).
    """

    name, version = "relu", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x  # the mask is made in backward: inference never pays for it
        return np.maximum(x, 0)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * (ctx.x > 0),)

    def infer(self, x: Spec) -> Spec:
        return x


class LeakyReLU(Gate):
    """y = x if x > 0 else αx, with a fixed small slope α.  Local gradient 1 or α."""

    name, version = "leaky_relu", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        model_config = ConfigDict(extra="forbid", frozen=True)
        alpha: float = 0.01

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = to_float(x)  # an integer x: numpy's float of it, as infer says
        ctx.mask = x > 0
        return np.where(ctx.mask, x, self.attrs.alpha * x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (np.where(ctx.mask, dy, self.attrs.alpha * dy),)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return unary_sample(rng)[0], {"alpha": float(rng.uniform(0.01, 0.5))}

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class PReLU(Gate):
    """y = x if x > 0 else αx, where the slope α is an input that is learned.

    α is a scalar (shape ()) or one slope per feature (shape (D,), broadcast over x's last axis);
    any shape that broadcasts with x works, as in numpy.
    Local gradients: dy/dx = 1 or α;  dy/dα = 0 or x, summed over every x that shares that α
    (and dx over every α that shares that x, if α broadcast x to more axes).
    """

    name, version = "prelu", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        ctx.x, ctx.alpha, ctx.mask = x, alpha, x > 0
        return np.where(ctx.mask, x, alpha * x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, alpha, mask = ctx.x, ctx.alpha, ctx.mask
        dx = unbroadcast(np.where(mask, dy, alpha * dy), x.shape) if ctx.needs_grad[0] else None
        dalpha = unbroadcast(np.where(mask, 0, x * dy), alpha.shape) if ctx.needs_grad[1] else None
        return dx, dalpha

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        sx = random_shape(rng)
        sa = (2, *sx) if rng.random() < 0.15 else broadcasts_to(rng, sx)  # (2, ...): α adds an axis
        return (rng.standard_normal(sx), rng.uniform(0.05, 0.5, sa)), {}

    def infer(self, x: Spec, alpha: Spec) -> Spec:
        return elementwise(x, alpha)


class ELU(Gate):
    """y = x if x > 0 else α(e^x - 1).  Local gradient 1 if x > 0 else αe^x.

    e^x - 1 is computed with expm1 (accurate for small |x|), and only on min(x, 0),
    so a large positive x never overflows the unused branch.
    """

    name, version = "elu", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        model_config = ConfigDict(extra="forbid", frozen=True)
        alpha: float = 1.0

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.mask, ctx.xneg = x > 0, np.minimum(x, 0)
        return np.where(ctx.mask, x, self.attrs.alpha * np.expm1(ctx.xneg))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (np.where(ctx.mask, dy, self.attrs.alpha * np.exp(ctx.xneg) * dy),)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return unary_sample(rng)[0], {"alpha": float(rng.uniform(0.1, 2.0))}

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class Maxout(Gate):
    """z = maxₖ (x @ W[k] + b[k]) for x (N, D), W (k, D, H), b (k, H): the max of k affine pieces.

    The max gate routes dz to the winning piece only (on a tie, the first one).  With
    dzₖ = dz where piece k won, else 0:  dx = Σₖ dzₖ @ W[k]ᵀ,  dW[k] = xᵀ @ dzₖ,  db[k] = Σₙ dzₖ[n].
    Other shapes are refused (GraphError), since these gradients hold for these shapes only.
    """

    name, version = "maxout", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        _maxout_shapes(x, w, b)
        pieces = x @ w + b[:, None, :]  # (k, N, H): all pieces at once via matmul broadcasting
        ctx.x, ctx.w, ctx.winner = x, w, pieces.argmax(axis=0)  # argmax picks the first on ties
        return pieces.max(axis=0)

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, w = ctx.x, ctx.w
        won = np.arange(w.shape[0])[:, None, None] == ctx.winner  # (k, N, H) one-hot over k
        dzk = np.where(won, dz, 0)
        dx = (dzk @ w.transpose(0, 2, 1)).sum(axis=0) if ctx.needs_grad[0] else None
        dw = x.T @ dzk if ctx.needs_grad[1] else None
        db = dzk.sum(axis=1) if ctx.needs_grad[2] else None
        return dx, dw, db

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        n, d, k, h = (int(v) for v in rng.integers(1, 5, size=4))
        shapes = [(n, d), (k, d, h), (k, h)]
        return tuple(rng.standard_normal(s) for s in shapes), {}

    def infer(self, x: Spec, w: Spec, b: Spec) -> Spec:
        return maxout_spec(x, w, b)


def _maxout_shapes(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    if x.ndim == 2 and w.ndim == 3 and x.shape[1] == w.shape[1] \
            and b.shape == (w.shape[0], w.shape[2]):
        return
    raise GraphError(f"maxout expects x (N, D), W (k, D, H) and b (k, H); found x {x.shape}, "
                     f"W {w.shape}, b {b.shape}; reshape them to fit")


def maxout_spec(x: Spec, w: Spec, b: Spec) -> Spec:
    """(N, H) for x (N, D), W (k, D, H), b (k, H), as far as the shapes are known."""
    xs, ws, bs = x.shape, w.shape, b.shape
    ok = (xs is None or len(xs) == 2) and (ws is None or len(ws) == 3) and (bs is None or len(bs) == 2)
    if ok and xs is not None and ws is not None:
        ok = same_dim(xs[1], ws[1])
    if ok and ws is not None and bs is not None:
        ok = same_dim(bs[0], ws[0]) and same_dim(bs[1], ws[2])
    if not ok:
        raise GraphError(f"maxout expects x (N, D), W (k, D, H) and b (k, H); found x {fmt(xs)}, "
                         f"W {fmt(ws)}, b {fmt(bs)}; reshape them to fit")
    n = None if xs is None else xs[0]
    h = ws[2] if ws is not None else (None if bs is None else bs[1])
    return Spec((n, h), result_dtype(x, w, b))
