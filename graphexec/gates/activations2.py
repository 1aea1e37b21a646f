"""Activations with ONNX's definitions: erf, GELU (exact or tanh), softplus, hard sigmoid,
hard swish.

The example plugin owns the op names ``gelu`` and ``softplus`` (its own tanh GELU and a softplus
with β); the core gates that compute ONNX's ``Gelu`` and ``Softplus`` are ``onnx_gelu`` and
``onnx_softplus``. numpy has no erf: it is the C library's ``erf`` (``math.erf``), element by
element, in float64, then cast to the input's float dtype.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample
from graphexec.gates._shapes import elementwise, to_float
from graphexec.gates.arith import unary_sample

__all__ = ["Erf", "HardSigmoid", "HardSwish", "OnnxGelu", "OnnxSoftplus"]

_ERF, _ERFC = np.frompyfunc(math.erf, 1, 1), np.frompyfunc(math.erfc, 1, 1)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) = (2/√π) ∫₀ˣ e^(-t²) dt elementwise, in x's float dtype (numpy's float for an int
    x: see ``to_float``)."""
    dt = to_float(x).dtype
    return np.asarray(_ERF(np.asarray(x, np.float64)), dtype=np.float64).astype(dt, copy=False)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = ½ erfc(-x/√2), in float64 then x's dtype: ½ (1 + erf) would cancel for x << 0."""
    z = np.asarray(x, np.float64) * -(1 / math.sqrt(2.0))
    return (0.5 * np.asarray(_ERFC(z), dtype=np.float64)).astype(x.dtype, copy=False)


class Erf(Gate):
    """y = erf(x) = (2/√π) ∫₀ˣ e^(-t²) dt.  Local gradient dy/dx = (2/√π) e^(-x²)."""

    name, version = "erf", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = to_float(x)
        return erf(ctx.x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x = ctx.x
        return (dy * (x.dtype.type(_TWO_OVER_SQRT_PI) * np.exp(-x * x)),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class OnnxGelu(Gate):
    """ONNX ``Gelu``.  approximate "none": y = x Φ(x), Φ(x) = ½ (1 + erf(x/√2)) = ½ erfc(-x/√2)
    (the erfc form does not cancel for x << 0); local gradient
    Φ(x) + x φ(x), φ(x) = e^(-x²/2)/√(2π).  "tanh": y = ½ x (1 + tanh u) = x σ(2u),
    u = √(2/π) (x + 0.044715 x³); with s = σ(2u) the local gradient is
    s + 2 x s (1 - s) u',  u' = √(2/π) (1 + 3·0.044715 x²).
    """

    name, version = "onnx_gelu", 1
    fresh_grads = True  # see Gate.fresh_grads
    C, K = math.sqrt(2.0 / math.pi), 0.044715

    class Attrs(Attrs):
        approximate: Literal["none", "tanh"] = "none"

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = ctx.x = to_float(x)
        if self.attrs.approximate == "tanh":  # ½ (1 + tanh u) = σ(2u): no cancellation
            u2 = x.dtype.type(2 * self.C) * (x + x.dtype.type(self.K) * x ** 3)
            ctx.cdf = np.exp(-np.logaddexp(x.dtype.type(0.0), -u2))
            return np.asarray(x * ctx.cdf)
        ctx.cdf = _normal_cdf(x)
        return np.asarray(x * ctx.cdf)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x = ctx.x
        if self.attrs.approximate == "tanh":
            s, du = ctx.cdf, self.C * (1.0 + 3.0 * self.K * x * x)
            return (dy * (s + 2.0 * x * s * (1.0 - s) * du),)
        pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return (dy * (ctx.cdf + x * pdf),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return unary_sample(rng)[0], {"approximate": str(rng.choice(["none", "tanh"]))}


class OnnxSoftplus(Gate):
    """ONNX ``Softplus``: y = log(1 + e^x), computed as logaddexp(0, x) (exact for large |x|).
    Local gradient dy/dx = σ(x) = 1 / (1 + e^-x)."""

    name, version = "onnx_softplus", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = to_float(x)
        ctx.s = np.exp(-np.logaddexp(x.dtype.type(0.0), -x))
        return np.asarray(np.logaddexp(x.dtype.type(0.0), x))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * ctx.s,)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class HardSigmoid(Gate):
    """y = max(0, min(1, αx + β)) (ONNX ``HardSigmoid``; α = 0.2, β = 0.5 by default).
    Local gradient α where 0 < αx + β < 1, else 0."""

    name, version = "hard_sigmoid", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        alpha: float = 0.2
        beta: float = 0.5

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = to_float(x)
        z = x * x.dtype.type(self.attrs.alpha) + x.dtype.type(self.attrs.beta)
        ctx.inside = (z > 0) & (z < 1)
        return np.asarray(np.clip(z, 0, 1))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * (ctx.inside * dy.dtype.type(self.attrs.alpha)),)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        attrs: dict[str, Any] = {"alpha": float(rng.uniform(0.1, 1)), "beta": float(rng.uniform(0, 1))}
        return unary_sample(rng)[0], attrs


class HardSwish(Gate):
    """y = x · max(0, min(1, x/6 + ½)) (ONNX ``HardSwish``: HardSigmoid with α = 1/6, β = ½).
    Local gradient 0 for x < -3, 1 for x > 3, x/3 + ½ between."""

    name, version = "hard_swish", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        x = ctx.x = to_float(x)
        return np.asarray(x * np.clip(x * x.dtype.type(1 / 6) + x.dtype.type(0.5), 0, 1))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x = ctx.x
        slope = np.where(x > 3, 1.0, np.where(x < -3, 0.0, x / 3 + 0.5)).astype(dy.dtype)
        return (dy * slope,)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)
