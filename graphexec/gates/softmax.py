"""Softmax and log-softmax along one axis (stable: shifted by the max)."""

from __future__ import annotations

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape
from graphexec.gates._shapes import float_dtype

__all__ = ["LogSoftmax", "Softmax"]


class AxisAttrs(Attrs):
    """The axis normalised over (default the last)."""

    axis: int = -1


def _check_axis(axis: int, ndim: int | None, op: str) -> None:
    if ndim is not None and not -ndim <= axis < ndim:
        raise GraphError(f"{op}: axis {axis} is out of range for x with {ndim} axes; expected "
                         f"{-ndim}..{ndim - 1}")


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """log softmax = (x - m) - log Σ e^(x - m), m = max: every exponent <= 0, the sum >= 1."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _sample(rng: np.random.Generator) -> Sample:
    shape = random_shape(rng, 1, 3)
    return (3 * rng.standard_normal(shape),), {"axis": int(rng.integers(-len(shape), len(shape)))}


class Softmax(Gate):
    """yᵢ = e^(xᵢ - m) / Σⱼ e^(xⱼ - m) along ``axis`` (m the max, for stability).
    Local gradient: dx = y ⊙ (dy - Σⱼ dyⱼ yⱼ)."""

    name, version = "softmax", 1
    fresh_grads = True  # see Gate.fresh_grads
    Attrs = AxisAttrs
    sample_inputs = staticmethod(_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        _check_axis(self.attrs.axis, x.ndim, "softmax")
        e = np.exp(x - x.max(axis=self.attrs.axis, keepdims=True))
        e /= e.sum(axis=self.attrs.axis, keepdims=True)
        ctx.y = e
        return e

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        y = ctx.y
        return (y * (dy - (dy * y).sum(axis=self.attrs.axis, keepdims=True)),)

    def infer(self, x: Spec) -> Spec:
        _check_axis(self.attrs.axis, x.rank, "softmax")
        return Spec(x.shape, float_dtype(x))


class LogSoftmax(Gate):
    """yᵢ = xᵢ - log Σⱼ e^(xⱼ) along ``axis``, computed as (xᵢ - m) - log Σⱼ e^(xⱼ - m).
    Local gradient: dx = dy - softmax(x) · Σⱼ dyⱼ, with softmax(x) = e^y."""

    name, version = "log_softmax", 1
    fresh_grads = True  # see Gate.fresh_grads
    Attrs = AxisAttrs
    sample_inputs = staticmethod(_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        _check_axis(self.attrs.axis, x.ndim, "log_softmax")
        ctx.y = _log_softmax(x, self.attrs.axis)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy - np.exp(ctx.y) * dy.sum(axis=self.attrs.axis, keepdims=True),)

    def infer(self, x: Spec) -> Spec:
        _check_axis(self.attrs.axis, x.rank, "log_softmax")
        return Spec(x.shape, float_dtype(x))
