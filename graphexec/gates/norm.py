"""Normalisation and regularisation layers: batchnorm, layernorm, dropout.

Batchnorm and dropout behave differently in training mode (``ctx.training``) and evaluation
mode (the default). Batchnorm's running statistics are buffers: it reads them as inputs 3 and 4
and, in training mode only, proposes new values with ``ctx.update`` (the executor applies them
after the whole forward succeeded); it never differentiates them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample
from graphexec.gates._shapes import float_dtype, fmt, same_dim, to_float

__all__ = ["BatchNorm", "Dropout", "DropoutMask", "LayerNorm", "LayerNormStat"]


def _normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv: np.ndarray,
                        axes: tuple[int, ...]) -> np.ndarray:
    """dx of xhat = (x - mean) · inv over ``axes`` (batch statistics), given dxhat:
    dx = inv · (dxhat - mean(dxhat) - xhat · mean(dxhat · xhat))."""
    m1 = dxhat.mean(axis=axes, keepdims=True)
    m2 = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv * (dxhat - m1 - xhat * m2)


class BatchNorm(Gate):
    """y = γ · x̂ + β,  x̂ = (x - μ) / √(σ² + eps), per channel (axis 1) of x (N, C) or (N, C, H, W).

    Inputs x, γ (C,), β (C,), running_mean (C,), running_var (C,) (the last two: buffers).
    Training mode: μ, σ² are the batch's mean and biased variance over every axis but 1, and the
    gate proposes running_mean ← (1 - m)·running_mean + m·μ and running_var ← (1 - m)·running_var
    + m·σ²·n/(n - 1) (PyTorch's convention: m = momentum = 0.1, unbiased variance; n values per
    channel, at least 2). Evaluation mode: μ, σ² are the running statistics, nothing is proposed.
    Local gradients: dβ = Σ dy, dγ = Σ dy · x̂ (over every axis but 1); with dx̂ = γ · dy and
    1/σ = 1/√(σ² + eps), training: dx = (1/σ)(dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)); evaluation:
    dx = dx̂ / σ. The buffers are never differentiated by the executor (it does not ask, so they
    get None); asked directly, backward gives their true local gradients (see _buffer_grads).
    """

    name, version = "batchnorm", 1
    fresh_grads = True  # see Gate.fresh_grads
    #: Inputs that are buffers (read, never differentiated by the executor).
    buffer_inputs: ClassVar[tuple[int, ...]] = (3, 4)

    class Attrs(Attrs):
        momentum: float = Field(0.1, ge=0.0, le=1.0)
        eps: float = Field(1e-5, gt=0.0)

    def forward(self, ctx: Ctx, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        _bn_check(x.shape, gamma.shape, beta.shape, mean.shape, var.shape)
        x = to_float(x)  # an integer x: numpy's float of it (float16 for int8), as infer says
        axes, bshape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
        ctx.batch = training = bool(ctx.training)
        if training:
            mean, var = self._batch_stats(ctx, x, axes, mean, var)
        inv = (1.0 / np.sqrt(var.astype(x.dtype) + x.dtype.type(self.attrs.eps))).reshape(bshape)
        xhat = (x - mean.astype(x.dtype).reshape(bshape)) * inv
        ctx.xhat, ctx.inv, ctx.gamma, ctx.axes = xhat, inv, gamma, axes
        return xhat * gamma.astype(x.dtype).reshape(bshape) + beta.astype(x.dtype).reshape(bshape)

    def _batch_stats(self, ctx: Ctx, x: np.ndarray, axes: tuple[int, ...], rmean: np.ndarray,
                     rvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.size // x.shape[1]
        if n < 2:
            raise GraphError(f"batchnorm in training mode needs at least 2 values per channel; "
                             f"found x {x.shape}; use a batch of 2 or more")
        mu, var, m = x.mean(axis=axes), x.var(axis=axes), self.attrs.momentum
        ctx.update(3, ((1 - m) * rmean + m * mu).astype(rmean.dtype))
        ctx.update(4, ((1 - m) * rvar + m * var * (n / (n - 1))).astype(rvar.dtype))
        return mu, var

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, ...]:
        xhat, axes, gamma, needs = ctx.xhat, ctx.axes, ctx.gamma, ctx.needs_grad
        dgamma = (dy * xhat).sum(axis=axes).astype(gamma.dtype) if needs[1] else None
        dbeta = dy.sum(axis=axes).astype(gamma.dtype) if needs[2] else None
        dxhat = dy * gamma.astype(dy.dtype).reshape(ctx.inv.shape)
        dx = None
        if needs[0]:
            dx = _normalize_backward(dxhat, xhat, ctx.inv, axes) if ctx.batch else dxhat * ctx.inv
        return (dx, dgamma, dbeta, *self._buffer_grads(ctx, dxhat, needs[3:]))

    @staticmethod
    def _buffer_grads(ctx: Ctx, dxhat: np.ndarray, needs: tuple[bool, ...]) -> list[Any]:
        """Only if asked (the executor never asks: buffers are not differentiated): in training
        mode y does not depend on them (0); in evaluation mode dμ = -Σ dx̂/σ and
        dσ² = -½ Σ dx̂ · x̂/σ², over every axis but 1."""
        shape = ctx.inv.shape[1:2]
        if ctx.batch:
            return [np.zeros(shape, dtype=dxhat.dtype) if n else None for n in needs]
        inv = ctx.inv
        dmean = -(dxhat * inv).sum(axis=ctx.axes) if needs[0] else None
        dvar = -0.5 * (dxhat * ctx.xhat * inv * inv).sum(axis=ctx.axes) if needs[1] else None
        return [dmean, dvar]

    def infer(self, x: Spec, *params: Spec) -> Spec:
        if x.shape is not None:
            _bn_check(x.shape, *(p.shape for p in params))
        return Spec(x.shape, float_dtype(x))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.choice([2, 4]))))
        c = shape[1]
        vecs = (rng.uniform(0.5, 2, c), rng.standard_normal(c), rng.standard_normal(c),
                rng.uniform(0.5, 2, c))
        return (rng.standard_normal(shape), *vecs), {"eps": float(rng.choice([1e-5, 1e-3]))}


def _bn_check(xs: Any, *vec_shapes: Any) -> None:
    if len(xs) not in (2, 4):
        raise GraphError(f"batchnorm expects x (N, C) or (N, C, H, W); found {fmt(xs)}")
    names = ("gamma", "beta", "running_mean", "running_var")
    for name, vs in zip(names, vec_shapes):
        if vs is not None and (len(vs) != 1 or not same_dim(vs[0], xs[1])):
            raise GraphError(f"x has {xs[1]} channels but {name} is {fmt(vs)}; expected "
                             f"{name} ({xs[1]},), one value per channel (axis 1)")


class LayerNorm(Gate):
    """y = γ · x̂ + β,  x̂ = (x - μ) / √(σ² + eps) with μ, σ² the mean and (biased) variance of
    each sample over its trailing ``normalized_ndim`` axes; γ, β have those axes' shape.

    Same statistics in training and evaluation. Local gradients: dβ = Σ dy, dγ = Σ dy · x̂ over
    the leading axes; dx = (1/σ)(dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)) over the trailing ones,
    with dx̂ = γ · dy.
    """

    name, version = "layernorm", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        normalized_ndim: int = Field(1, ge=1)
        eps: float = Field(1e-5, gt=0.0)

    def forward(self, ctx: Ctx, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
        k = self.attrs.normalized_ndim
        _ln_check(x.shape, gamma.shape, beta.shape, k)
        x = to_float(x)  # an integer x: numpy's float of it (float16 for int8), as infer says
        axes = tuple(range(x.ndim - k, x.ndim))
        mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + x.dtype.type(self.attrs.eps))
        xhat = (x - mu) * inv
        ctx.xhat, ctx.inv, ctx.gamma, ctx.axes = xhat, inv, gamma, axes
        return xhat * gamma.astype(x.dtype) + beta.astype(x.dtype)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, ...]:
        xhat, gamma, needs = ctx.xhat, ctx.gamma, ctx.needs_grad
        lead = tuple(range(dy.ndim - gamma.ndim))
        dgamma = (dy * xhat).sum(axis=lead).astype(gamma.dtype) if needs[1] else None
        dbeta = dy.sum(axis=lead).astype(gamma.dtype) if needs[2] else None
        dx = _normalize_backward(dy * gamma.astype(dy.dtype), xhat, ctx.inv, ctx.axes) \
            if needs[0] else None
        return dx, dgamma, dbeta

    def infer(self, x: Spec, gamma: Spec, beta: Spec) -> Spec:
        if x.shape is not None:
            _ln_check(x.shape, gamma.shape, beta.shape, self.attrs.normalized_ndim)
        return Spec(x.shape, float_dtype(x))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(1, 4))))
        k = int(rng.integers(1, len(shape) + 1))
        tail = shape[len(shape) - k:]
        inputs = (rng.standard_normal(shape), rng.uniform(0.5, 2, tail), rng.standard_normal(tail))
        return inputs, {"normalized_ndim": k}


def _ln_check(xs: Any, gs: Any, bs: Any, k: int) -> None:
    if len(xs) < k:
        raise GraphError(f"layernorm over the last {k} axes needs x with at least {k} axes; "
                         f"found {fmt(xs)}; lower normalized_ndim")
    tail = tuple(xs[len(xs) - k:])
    for name, s in (("gamma", gs), ("beta", bs)):
        if s is not None and (len(s) != k or not all(map(same_dim, s, tail))):
            raise GraphError(f"layernorm normalises x {fmt(xs)} over its last {k} axes "
                             f"{fmt(tail)} but {name} is {fmt(s)}; expected {name} {fmt(tail)}")


class LayerNormStat(Gate):
    """One statistic of layernorm, per sample over its trailing ``normalized_ndim`` axes, kept
    as size-1 axes (ONNX LayerNormalization's second and third outputs): ``stat`` "mean" gives
    μ = (1/k) Σ x; "inv_std_dev" gives s = 1/√(σ² + eps), σ² the biased variance.

    Local gradients (k values per sample): mean: dx = dy / k; inv_std_dev: ds/dσ² = -½ s³ and
    dσ²/dx = 2 (x - μ) / k, so dx = -dy · s³ · (x - μ) / k.
    """

    name, version = "layernorm_stat", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        stat: Literal["mean", "inv_std_dev"] = "mean"
        normalized_ndim: int = Field(1, ge=1)
        eps: float = Field(1e-5, gt=0.0)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        k = self.attrs.normalized_ndim
        _ln_check(x.shape, None, None, k)
        x = to_float(x)  # an integer x: numpy's float of it (float16 for int8), as infer says
        axes = tuple(range(x.ndim - k, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)
        ctx.shape, ctx.count = x.shape, max(1, int(np.prod(x.shape[x.ndim - k:])))
        if self.attrs.stat == "mean":
            return np.asarray(mu)
        ctx.centred = x - mu
        ctx.inv = 1.0 / np.sqrt((ctx.centred ** 2).mean(axis=axes, keepdims=True)
                                + x.dtype.type(self.attrs.eps))
        return np.asarray(ctx.inv)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        if self.attrs.stat == "mean":
            return (np.broadcast_to(dy / ctx.count, ctx.shape).copy(),)
        return (-(dy * ctx.inv ** 3 / ctx.count) * ctx.centred,)

    def infer(self, x: Spec) -> Spec:
        k = self.attrs.normalized_ndim
        if x.shape is None:
            return Spec(None, float_dtype(x))
        _ln_check(x.shape, None, None, k)
        return Spec(x.shape[:len(x.shape) - k] + (1,) * k, float_dtype(x))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(1, 4))))
        k = int(rng.integers(1, len(shape) + 1))
        stat = str(rng.choice(["mean", "inv_std_dev"]))
        return (rng.standard_normal(shape),), {"normalized_ndim": k, "stat": stat}


class DropoutMask(Gate):
    """m = True for every element of x (shape of x, dtype bool): the mask that dropout keeps in
    evaluation mode (ONNX Dropout's second output with training_mode False).
    Local gradient 0: m does not depend on the values of x."""

    name, version = "dropout_mask", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return np.ones(x.shape, dtype=bool)

    def backward(self, ctx: Ctx, dm: np.ndarray) -> tuple[np.ndarray]:
        return (np.zeros(ctx.shape, dtype=ctx.dtype),)

    def infer(self, x: Spec) -> Spec:
        return Spec(x.shape, np.dtype(bool))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 4))))
        return (rng.standard_normal(shape),), {}


class Dropout(Gate):
    """Inverted dropout.  Training mode: y = x · m / (1 - p) with m ~ Bernoulli(1 - p) per
    element, drawn from ``ctx.rng`` (so a pure function of seed, step and node); evaluation
    mode: y = x.  Local gradient: the same mask, m / (1 - p) (or 1 in evaluation mode).
    p = 1 drops everything (y = 0).
    """

    name, version = "dropout", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        p: float = Field(0.5, ge=0.0, le=1.0)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        p = self.attrs.p
        if not ctx.training or p == 0.0:
            ctx.mask = None
            return x  # identity: no copy (backward hands out a fresh dy)
        keep = ctx.rng.random(x.shape) >= p  # ctx.rng names the fix when there is none
        scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
        ctx.mask = keep * x.dtype.type(scale) if x.dtype.kind == "f" else keep * scale
        return x * ctx.mask

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy.copy() if ctx.mask is None else dy * ctx.mask,)

    def infer(self, x: Spec) -> Spec:
        return x

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 4))))
        return (rng.standard_normal(shape),), {"p": float(rng.uniform(0, 0.9))}
