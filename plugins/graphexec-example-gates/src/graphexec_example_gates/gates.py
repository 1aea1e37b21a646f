"""Three smooth activations, each one small gate class with its formula and local gradient.

The sigmoid is computed as σ(x) = exp(-logaddexp(0, -x)), which never overflows, and softplus
as logaddexp(0, x) = log(1 + e^x), which stays exact for large |x|.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from graphexec import Attrs, Ctx, Gate


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


class Softplus(Gate):
    """y = (1/β) log(1 + e^(βx)), a smooth ReLU.  Local gradient dy/dx = σ(βx).

    x: any shape; y: the same shape.  ``beta`` > 0 sharpens the corner (β → ∞ gives the ReLU).
    """

    name, version = "softplus", 1

    class Attrs(Attrs):  # graphexec.Attrs: an unknown or misspelled attribute is an error
        beta: float = Field(default=1.0, gt=0.0)

    attrs: Attrs  # the validated attributes, typed for this gate

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        beta = self.attrs.beta
        ctx.s = _sigmoid(beta * x)
        return np.logaddexp(0.0, beta * x) / beta

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * ctx.s,)

    @staticmethod
    def onnx_export(em: Any, attrs: dict[str, Any], ins: list[str], out: str,
                    dtype: np.dtype[Any]) -> None:
        """ONNX ``Softplus`` is log(1 + e^x): with β ≠ 1, Softplus(βx) / β."""
        beta = float(attrs.get("beta", 1.0))
        if beta == 1.0:
            em.node("Softplus", ins, out)
            return
        b = em.const(beta, dtype, f"{out}_beta")
        sp = em.node("Softplus", [em.node("Mul", [ins[0], b], hint=f"{out}_bx")], hint=f"{out}_sp")
        em.node("Div", [sp, b], out)


class SiLU(Gate):
    """y = x σ(x) (SiLU, also called swish).  Local gradient dy/dx = σ(x) (1 + x (1 - σ(x))).

    x: any shape; y: the same shape.
    """

    name, version = "silu", 1

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x, ctx.s = x, _sigmoid(x)
        return x * ctx.s

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x, s = ctx.x, ctx.s
        return (dy * s * (1.0 + x * (1.0 - s)),)


class GELU(Gate):
    """y = ½ x (1 + tanh u), u = √(2/π) (x + 0.044715 x³): GELU, tanh approximation.

    The exact GELU is x Φ(x) with the normal CDF Φ, which needs erf; numpy has no erf, so this is
    the tanh approximation of Hendrycks & Gimpel (within 1e-3 of the exact GELU everywhere).
    Local gradient, with t = tanh u:  dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²).
    """

    name, version = "gelu", 1
    C = math.sqrt(2.0 / math.pi)
    K = 0.044715

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        t = np.tanh(self.C * (x + self.K * x**3))
        ctx.x, ctx.t = x, t
        return 0.5 * x * (1.0 + t)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        x, t = ctx.x, ctx.t
        du = self.C * (1.0 + 3.0 * self.K * x * x)
        return (dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du),)

    @staticmethod
    def onnx_export(em: Any, attrs: dict[str, Any], ins: list[str], out: str,
                    dtype: np.dtype[Any]) -> None:
        """ONNX ``Gelu(approximate="tanh")`` from opset 20; before, the formula in Mul/Add/Tanh."""
        if em.opset >= 20:
            em.node("Gelu", ins, out, approximate="tanh")
            return
        x = ins[0]
        c = lambda v, h: em.const(v, dtype, f"{out}_{h}")  # noqa: E731
        x3 = em.node("Mul", [em.node("Mul", [x, x], hint=f"{out}_x2"), x], hint=f"{out}_x3")
        inner = em.node("Add", [x, em.node("Mul", [x3, c(GELU.K, "k")], hint=f"{out}_kx3")],
                        hint=f"{out}_inner")
        t = em.node("Tanh", [em.node("Mul", [inner, c(GELU.C, "c")], hint=f"{out}_u")],
                    hint=f"{out}_t")
        half_x = em.node("Mul", [x, c(0.5, "half")], hint=f"{out}_half_x")
        em.node("Mul", [half_x, em.node("Add", [t, c(1.0, "one")], hint=f"{out}_1pt")], out)
