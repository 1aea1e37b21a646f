"""Reductions: to a scalar (sum, mean) and over chosen axes (reduce_sum, reduce_mean, reduce_max)."""

from __future__ import annotations

import math

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape
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


# ---------------------------------------------------------------------------- over some axes
def _axes(axes: list[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    """``axes`` as sorted non-negative axes (None: every axis); a negative one counts from the end."""
    if axes is None:
        return tuple(range(ndim))
    bad = [a for a in axes if not -ndim <= a < max(ndim, 1)]
    if bad:
        raise GraphError(f"{op}: axes {axes} are out of range for {ndim} axes; expected "
                         f"{-ndim}..{ndim - 1}")
    return tuple(sorted({a % max(ndim, 1) for a in axes}))


class AxesAttrs(Attrs):
    axes: list[int] | None = None  # None: every axis; []: none (the identity)
    keepdims: bool = True


def _reduced(gate: Gate, x: Spec) -> Spec:
    """The shape rule of the axis reductions: reduced axes become 1 (keepdims) or disappear."""
    a = gate.attrs
    if x.shape is None:
        return Spec(None, x.dtype)
    axes = _axes(a.axes, len(x.shape), gate.name)
    if a.keepdims:
        return Spec(tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype)
    return Spec(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


def _sample_axes(rng: np.random.Generator) -> Sample:
    shape = random_shape(rng, 0, 4)
    n = len(shape)
    axes = (None if rng.random() < 0.2 or not n else
            [int(a) - (n if rng.random() < 0.3 else 0)
             for a in rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)])
    return (rng.standard_normal(shape),), {"axes": axes, "keepdims": bool(rng.random() < 0.5)}


def _back(dy: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """dy (reduced, keepdims either way) broadcast back to the input's ``shape``."""
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    return np.broadcast_to(np.reshape(dy, kept), shape)


class ReduceSum(Gate):
    """y = Σ x over ``axes`` (ONNX ``ReduceSum``; ints stay their dtype).  Local gradient: 1,
    so dx = dy broadcast back over the reduced axes."""

    name, version = "reduce_sum", 1
    Attrs = AxesAttrs
    sample_inputs = staticmethod(_sample_axes)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape, ctx.axes = x.shape, _axes(self.attrs.axes, x.ndim, self.name)
        dt = x.dtype if x.dtype.kind != "b" else None
        return np.asarray(x.sum(axis=ctx.axes, keepdims=self.attrs.keepdims, dtype=dt))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (_back(dy, ctx.shape, ctx.axes),)

    def infer(self, x: Spec) -> Spec:
        return _reduced(self, x)


class ReduceMean(Gate):
    """y = (1/k) Σ x over ``axes`` (k reduced elements; ints: the sum divided by k, truncated
    toward zero, as ONNX).  Local gradient: 1/k, so dx = dy / k broadcast back."""

    name, version = "reduce_mean", 1
    Attrs = AxesAttrs
    sample_inputs = staticmethod(_sample_axes)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape, ctx.axes = x.shape, _axes(self.attrs.axes, x.ndim, self.name)
        ctx.k = math.prod(x.shape[i] for i in ctx.axes)
        if x.dtype.kind in "iu":
            s = x.sum(axis=ctx.axes, keepdims=self.attrs.keepdims, dtype=x.dtype)
            return np.asarray(np.sign(s) * (np.abs(s) // max(ctx.k, 1)), dtype=x.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):  # an empty mean is NaN, as ONNX
            return np.asarray(x.mean(axis=ctx.axes, keepdims=self.attrs.keepdims))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (_back(dy / max(ctx.k, 1), ctx.shape, ctx.axes),)

    def infer(self, x: Spec) -> Spec:
        return _reduced(self, x)


class ReduceMax(Gate):
    """y = max x over ``axes`` (an empty set gives the dtype's lowest value, -inf for floats, as
    ONNX).  Local gradient: 1 at the maxima, 0 elsewhere; ties share it equally (1/t to each of
    t equal maxima: the subgradient torch.amax uses, and the one gradcheck's kinks accept)."""

    name, version = "reduce_max", 1
    Attrs = AxesAttrs
    sample_inputs = staticmethod(_sample_axes)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.axes = _axes(self.attrs.axes, x.ndim, self.name)
        low = (-np.inf if x.dtype.kind == "f" else False if x.dtype.kind == "b"
               else np.iinfo(x.dtype).min)
        y = np.max(x, axis=ctx.axes, keepdims=True, initial=low)
        ctx.x, ctx.y = x, y
        return y if self.attrs.keepdims else np.asarray(np.squeeze(y, axis=ctx.axes))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        hit = ctx.x == ctx.y
        ties = hit.sum(axis=ctx.axes, keepdims=True)
        return (np.where(hit, _back(dy, ctx.x.shape, ctx.axes) / np.maximum(ties, 1), 0.0)
                .astype(ctx.x.dtype),)

    def infer(self, x: Spec) -> Spec:
        return _reduced(self, x)
