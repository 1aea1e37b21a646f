"""Elementwise one-input gates that PyTorch exports write as ONNX ops: sqrt, abs, reciprocal,
x to a constant power, and Mish; and ``full_like``, a constant of another value's shape (ONNX
``ConstantOfShape`` of a ``Shape`` known only when the model runs).

``pow_scalar`` has its exponent as an attribute: ONNX ``Pow`` with a constant exponent (what
``x ** 2``, ``x.pow(3)``, tanh-GELU's ``x³`` and ``torch.rsqrt``'s decompositions export to).
"""

from __future__ import annotations

import numpy as np
from pydantic import model_validator

from graphexec.dtypes import DTYPE_NAMES
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample, away_from_zero, random_shape
from graphexec.gates._shapes import elementwise, to_float
from graphexec.gates.arith import unary_sample

__all__ = ["Abs", "FullLike", "Mish", "PowScalar", "Reciprocal", "Sqrt"]


def _positive(rng: np.random.Generator) -> Sample:
    """Inputs in [0.5, 2.5): away from sqrt's and reciprocal's singularity at 0."""
    return (np.abs(away_from_zero(rng, random_shape(rng))) + 0.5,), {}


def _nonzero(rng: np.random.Generator) -> Sample:
    return (away_from_zero(rng, random_shape(rng)),), {}


class Sqrt(Gate):
    """y = √x (NaN for x < 0, as numpy and ONNX).  Local gradient dy/dx = 1 / (2√x)."""

    name, version = "sqrt", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(_positive)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # √(x < 0) = NaN, as numpy and ONNX
            ctx.y = np.sqrt(x)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):  # √0: an infinite slope, as torch
            return (dy / (2 * ctx.y),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class Abs(Gate):
    """y = |x|.  Local gradient sign(x) (0 at x = 0, PyTorch's subgradient there)."""

    name, version = "abs", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(_nonzero)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return np.abs(x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * np.sign(ctx.x).astype(dy.dtype),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x)


class Reciprocal(Gate):
    """y = 1 / x.  Local gradient dy/dx = -1 / x² = -y²."""

    name, version = "reciprocal", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(_nonzero)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = to_float(x)  # an integer x: numpy's float of its dtype, as infer says
        with np.errstate(divide="ignore"):  # 1/0 = inf, as numpy and ONNX
            ctx.y = np.asarray(x.dtype.type(1) / x)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (-dy * ctx.y * ctx.y,)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class PowScalar(Gate):
    """y = x^p for a constant exponent p (ONNX ``Pow`` with a constant exponent).  Local
    gradient dy/dx = p · x^(p-1); for p = 0 it is 0 (y = 1 everywhere), for integer p the
    power is numpy's (exact repeated multiplication for small p, as x·x for p = 2)."""

    name, version = "pow_scalar", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        exponent: float = 2.0

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x = to_float(x)  # an integer x: numpy's float of its dtype, as infer says
        p = self.attrs.exponent
        if p == 2.0:
            return np.asarray(x * x)
        return np.asarray(np.power(x, x.dtype.type(p)))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x, p = ctx.x, self.attrs.exponent
        if p == 0.0:
            return (np.zeros_like(dy),)
        if p == 1.0:
            return (np.array(dy, copy=True),)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = p * np.power(x, x.dtype.type(p - 1))
        return (dy * slope.astype(dy.dtype),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        p = float(rng.choice([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 1.5, -0.5]))
        x = _positive(rng)[0] if p != int(p) or p < 0 else unary_sample(rng)[0]
        return x, {"exponent": p}


class Mish(Gate):
    """y = x · tanh(softplus(x)), softplus(x) = log(1 + e^x) (ONNX ``Mish``).  With
    t = tanh(softplus(x)) and σ(x) = 1/(1 + e^-x): local gradient t + x · (1 - t²) · σ(x)."""

    name, version = "mish", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        zero = x.dtype.type(0)
        ctx.x, ctx.t = x, np.tanh(np.logaddexp(zero, x))
        ctx.s = np.exp(-np.logaddexp(zero, -x))
        return np.asarray(x * ctx.t)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        t = ctx.t
        return (dy * (t + ctx.x * (1 - t * t) * ctx.s),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class FullLike(Gate):
    """y = ``value`` everywhere, of x's shape and dtype ``dtype`` (None: x's dtype, as numpy's
    ``full_like``; ONNX ``ConstantOfShape`` of ``Shape(x)`` gives its value's dtype).  y does not
    depend on x's values: local gradient 0."""

    name, version = "full_like", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    class Attrs(Attrs):
        value: float = 0.0
        dtype: str | None = None

        @model_validator(mode="after")
        def _known(self) -> FullLike.Attrs:
            if self.dtype is not None and self.dtype not in DTYPE_NAMES:
                raise ValueError(f"dtype={self.dtype!r}: expected one of {', '.join(DTYPE_NAMES)}")
            return self

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return np.full(x.shape, self.attrs.value, np.dtype(self.attrs.dtype or x.dtype))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None]:
        return (np.zeros_like(ctx.x) if ctx.x.dtype.kind == "f" else None,)

    def infer(self, x: Spec) -> Spec:
        return Spec(x.shape, np.dtype(self.attrs.dtype) if self.attrs.dtype else x.dtype)
