"""Linear algebra gates: matmul, affine (fully connected layer) and reshape."""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from graphexec.gate import Attrs, Ctx, Gate, Spec, unbroadcast
from graphexec.gates._samples import Sample, broadcasts_to, matmul_shapes, random_shape
from graphexec.gates._shapes import elementwise, matmul_shape, reshape_shape, result_dtype


def matmul_grads(x: np.ndarray, w: np.ndarray, dz: np.ndarray,
                 needs: tuple[bool, bool]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """dx = dz @ Wᵀ and dW = xᵀ @ dz under the whole of numpy's ``matmul`` semantics.

    A 1-D x is read as one row (1, D) and a 1-D W as one column (D, 1), and dz gets those axes
    back; batch axes broadcast, so each gradient is summed over the batch axes its input was
    copied along and reshaped to the input's shape. Each gradient keeps its input's dtype.
    """
    x2 = x[None, :] if x.ndim == 1 else x  # (..., N, D)
    w2 = w[:, None] if w.ndim == 1 else w  # (..., D, M)
    if w.ndim == 1:
        dz = dz[..., None]
    if x.ndim == 1:
        dz = dz[..., None, :]  # dz is now (..., N, M)
    dx = dw = None
    if needs[0]:
        dx = unbroadcast(dz @ w2.swapaxes(-1, -2), x2.shape).reshape(x.shape)
        dx = dx.astype(x.dtype, copy=False)
    if needs[1]:
        dw = unbroadcast(x2.swapaxes(-1, -2) @ dz, w2.shape).reshape(w.shape)
        dw = dw.astype(w.dtype, copy=False)
    return dx, dw


class MatMul(Gate):
    """z = x @ W with numpy's ``matmul`` semantics: x (..., N, D) or (D,), W (..., D, M) or (D,).

    A 1-D x is a row vector, a 1-D W a column vector (their axis is dropped from z); batch axes
    broadcast, e.g. (B, N, D) @ (D, M) -> (B, N, M).
    Local gradients: dx = dz @ Wᵀ, dW = xᵀ @ dz, each summed over the batch axes its input
    was broadcast along (so dx is shaped like x and dW like W).
    """

    name, version = "matmul", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        ctx.x, ctx.w = x, w
        return np.asarray(x @ w)

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        return matmul_grads(ctx.x, ctx.w, dz, (ctx.needs_grad[0], ctx.needs_grad[1]))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return tuple(rng.standard_normal(s) for s in matmul_shapes(rng)), {}

    def infer(self, x: Spec, w: Spec) -> Spec:
        return Spec(matmul_shape(x.shape, w.shape), result_dtype(x, w))


class Affine(Gate):
    """z = x @ W + b: a fully connected layer for x (N, D), W (D, M), b (M,).

    ``x @ W`` is :class:`MatMul` (any shapes numpy's ``matmul`` takes) and ``+ b`` is numpy
    broadcasting, so b may be any shape that broadcasts against x @ W, e.g. (M,) or (1, M).
    Local gradients: dx = dz @ Wᵀ, dW = xᵀ @ dz, db = Σₙ dz[n] (b was copied to every row):
    each summed over the axes its input was broadcast along, so db is shaped like b.
    """

    name, version = "affine", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = np.asarray(x @ w)
        ctx.x, ctx.w, ctx.b_shape, ctx.z_shape = x, w, b.shape, z.shape
        if z.dtype == b.dtype and z.shape[-1:] == b.shape:
            z += b  # in place, into the product we just made: one pass, no second array
            return z
        return np.asarray(z + b)  # b that broadcasts otherwise or promotes: numpy's rules

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        needs = ctx.needs_grad
        db = unbroadcast(dz, ctx.b_shape) if needs[2] else None
        if db is dz:  # fresh_grads: never hand back dz itself
            db = dz.copy()
        dxw = unbroadcast(dz, ctx.z_shape)  # b may have broadcast z itself to more axes
        dx, dw = matmul_grads(ctx.x, ctx.w, dxw, (needs[0], needs[1]))
        return dx, dw, db

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        sx, sw = matmul_shapes(rng)
        x, w = rng.standard_normal(sx), rng.standard_normal(sw)
        sz = np.shape(x @ w)
        # a b that broadcasts against x @ W, now and then one that adds an axis to it: (2, ...)
        sb = (2, *sz) if rng.random() < 0.15 else broadcasts_to(rng, sz)
        return (x, w, rng.standard_normal(sb)), {}

    def infer(self, x: Spec, w: Spec, b: Spec) -> Spec:
        z = Spec(matmul_shape(x.shape, w.shape), result_dtype(x, w))
        return elementwise(z, b)


class Reshape(Gate):
    """y = x viewed with a new ``shape`` (numpy semantics: one entry may be -1, "infer it").

    The values are not changed, only their layout, so the gradient is dy reshaped back to x's shape.
    The default shape [-1] flattens x.
    """

    name, version = "reshape", 1

    class Attrs(Attrs):
        model_config = ConfigDict(extra="forbid", frozen=True)
        shape: list[int] = Field(default_factory=lambda: [-1])

        @field_validator("shape")
        @classmethod
        def _one_minus_one(cls, shape: list[int]) -> list[int]:
            if any(n < -1 for n in shape) or shape.count(-1) > 1:
                raise ValueError(f"expected sizes >= 0 and at most one -1, got {shape}")
            return shape

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape = x.shape
        return x.reshape(self.attrs.shape)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy.reshape(ctx.shape),)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, min_ndim=1)
        sizes = [int(n) for n in rng.permutation(shape)]
        if len(sizes) > 1 and rng.random() < 0.5:
            sizes[int(rng.integers(len(sizes)))] = -1  # "infer this one"
        return (rng.standard_normal(shape),), {"shape": sizes}

    def infer(self, x: Spec) -> Spec:
        return Spec(reshape_shape(x.shape, self.attrs.shape), x.dtype)
