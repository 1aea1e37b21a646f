"""Reductions to a scalar: sum and mean."""

from __future__ import annotations

import numpy as np

from graphexec.gate import Ctx, Gate, Spec
from graphexec.gates.arith import unary_sample


class Sum(Gate):
    """y = Σᵢ xᵢ over every element (a scalar).  Local gradient 1 for every element."""

    name, version = "sum", 1
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape = x.shape
        return np.asarray(x.sum())

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (np.broadcast_to(dy, ctx.shape),)

    def infer(self, x: Spec) -> Spec:
        return Spec((), None if x.dtype is None else np.zeros(0, dtype=x.dtype).sum().dtype)


class Mean(Gate):
    """y = (1/n) Σᵢ xᵢ over every element (a scalar).  Local gradient 1/n."""

    name, version = "mean", 1
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape = x.shape
        return np.asarray(x.mean())

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        n = max(1, int(np.prod(ctx.shape)))
        return (np.broadcast_to(dy / n, ctx.shape),)

    def infer(self, x: Spec) -> Spec:
        return Spec((), None if x.dtype is None else np.zeros(1, dtype=x.dtype).mean().dtype)
