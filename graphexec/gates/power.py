"""``pow``: x raised to a computed exponent, elementwise with broadcasting (ONNX ``Pow`` whose
exponent is a tensor; a constant exponent imports as ``pow_scalar``)."""

from __future__ import annotations

import numpy as np

from graphexec.errors import ExecutionError
from graphexec.gate import Ctx, Gate, Spec, unbroadcast
from graphexec.gates._samples import Sample, broadcast_shapes, random_shape
from graphexec.gates._shapes import broadcast

__all__ = ["Pow"]


class Pow(Gate):
    """z = x^e, in x's dtype (ONNX: ``np.power(x, e).astype(x.dtype)``; an integer x to a float
    e truncates the power, an integer x to a negative integer e is refused).

    Local gradients (float x and e only; integers take none): dz/dx = e · x^(e-1),
    dz/de = z · ln x, which is 0 where x = 0 and e ≥ 0 (as PyTorch) and NaN for x < 0 (no
    real logarithm).
    """

    name, version = "pow", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        if x.dtype.kind in "iub" and e.dtype.kind in "iu" and (e < 0).any():
            raise ExecutionError(f"pow of {x.dtype} to a negative {e.dtype} exponent: an integer "
                                 "result is undefined; cast the base to a float dtype")
        with np.errstate(all="ignore"):
            z = np.asarray(np.power(x, e).astype(x.dtype, copy=False))
        ctx.x, ctx.e, ctx.z = x, e, z
        return z

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, e, z = ctx.x, ctx.e, ctx.z
        need_x = ctx.needs_grad[0] and x.dtype.kind == "f"
        need_e = ctx.needs_grad[1] and e.dtype.kind == "f" and x.dtype.kind == "f"
        dx = de = None
        with np.errstate(all="ignore"):
            if need_x:
                slope = e * np.power(x, (e - 1).astype(x.dtype, copy=False))
                dx = unbroadcast((dz * slope).astype(x.dtype, copy=False), x.shape)
            if need_e:
                ln = np.where((x == 0) & (e >= 0), 0, z * np.log(x))
                de = unbroadcast((dz * ln).astype(e.dtype, copy=False), e.shape)
        return dx, de

    def infer(self, x: Spec, e: Spec) -> Spec:
        return Spec(broadcast(x.shape, e.shape), x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        sx, se = broadcast_shapes(rng, random_shape(rng), 2)
        return (rng.uniform(0.5, 2.0, sx), rng.uniform(-2.0, 2.0, se)), {}
