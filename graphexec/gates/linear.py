"""Linear algebra gates: matmul, affine (fully connected layer) and reshape."""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from graphexec.gate import Attrs, Ctx, Gate


class MatMul(Gate):
    """z = x @ W for x (N, D) or (D,) and W (D, M) or (D,).

    Local gradients: dx = dz @ Wᵀ, dW = xᵀ @ dz (for 1-D operands, the outer/inner products).
    """

    name, version = "matmul", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        ctx.x, ctx.w = x, w
        return np.asarray(x @ w)

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, w = ctx.x, ctx.w
        x2 = x if x.ndim > 1 else x[None, :]
        w2 = w if w.ndim > 1 else w[:, None]
        dz2 = dz.reshape(x2.shape[0], w2.shape[1])
        dx = (dz2 @ w2.T).reshape(x.shape) if ctx.needs_grad[0] else None
        dw = (x2.T @ dz2).reshape(w.shape) if ctx.needs_grad[1] else None
        return dx, dw


class Affine(Gate):
    """z = x @ W + b for x (N, D), W (D, M), b (M,): a fully connected layer.

    Local gradients: dx = dz @ Wᵀ, dW = xᵀ @ dz, db = Σₙ dz[n] (b was copied to every row).
    """

    name, version = "affine", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.x, ctx.w = x, w
        z = x @ w
        if z.dtype == b.dtype and z.shape[-1:] == b.shape:
            z += b  # in place, into the product we just made: one pass, no second array
            return z
        return z + b  # b that broadcasts otherwise or promotes: numpy's rules, as written

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, w = ctx.x, ctx.w
        dx = dz @ w.T if ctx.needs_grad[0] else None
        dw = x.T @ dz if ctx.needs_grad[1] else None
        db = dz.sum(axis=0) if ctx.needs_grad[2] else None
        return dx, dw, db


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
