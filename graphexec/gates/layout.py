"""Layout gates (flatten, transpose, concat, pad) and clip: values moved or bounded, not mixed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape
from graphexec.gates._shapes import Dim, fmt, same_dim

__all__ = ["Clip", "Concat", "Flatten", "Pad", "Transpose"]


def _axis(axis: int, ndim: int, what: str, extra: int = 0) -> int:
    """``axis`` in 0..ndim-1+extra; a negative one counts from the end (-1: the last axis)."""
    if not -ndim <= axis < ndim + extra:
        raise GraphError(f"{what}: axis {axis} is out of range for {ndim} axes; expected "
                         f"{-ndim}..{ndim + extra - 1}")
    return axis + ndim if axis < 0 else axis


def _prod(dims: Any) -> Dim:
    return None if any(d is None for d in dims) else math.prod(dims)


class Flatten(Gate):
    """y = x reshaped to 2-D (∏ shape[:axis], ∏ shape[axis:]) (ONNX ``Flatten``; axis 1 keeps
    the batch).  Local gradient: dy reshaped back to x's shape."""

    name, version = "flatten", 1

    class Attrs(Attrs):
        axis: int = 1

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        a = _axis(self.attrs.axis, x.ndim, "flatten", extra=1)
        ctx.shape = x.shape
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy.reshape(ctx.shape),)

    def infer(self, x: Spec) -> Spec:
        if x.shape is None:
            return Spec((None, None), x.dtype)
        a = _axis(self.attrs.axis, len(x.shape), "flatten", extra=1)
        return Spec((_prod(x.shape[:a]), _prod(x.shape[a:])), x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 1, 4)
        return (rng.standard_normal(shape),), {"axis": int(rng.integers(-len(shape), len(shape) + 1))}


class Transpose(Gate):
    """y = x with its axes permuted: y.shape[i] = x.shape[perm[i]] (default: reversed, as
    numpy).  Local gradient: dy permuted back by the inverse permutation argsort(perm)."""

    name, version = "transpose", 1

    class Attrs(Attrs):
        perm: list[int] | None = None

        @model_validator(mode="after")
        def _is_permutation(self) -> Transpose.Attrs:
            if self.perm is not None and sorted(self.perm) != list(range(len(self.perm))):
                raise ValueError(f"perm {self.perm} is not a permutation of 0..{len(self.perm) - 1}")
            return self

    def _perm(self, ndim: int) -> list[int]:
        perm = self.attrs.perm
        if perm is None:
            return list(range(ndim))[::-1]
        if len(perm) != ndim:
            raise GraphError(f"transpose perm {perm} has {len(perm)} axes but x has {ndim}; "
                             f"give one entry per axis")
        return perm

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.perm = self._perm(x.ndim)
        return x.transpose(ctx.perm)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy.transpose(np.argsort(ctx.perm)),)

    def infer(self, x: Spec) -> Spec:
        if x.shape is None:
            return Spec(None if self.attrs.perm is None else (None,) * len(self.attrs.perm), x.dtype)
        return Spec(tuple(x.shape[i] for i in self._perm(len(x.shape))), x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 0, 4)
        perm = None if rng.random() < 0.2 else [int(v) for v in rng.permutation(len(shape))]
        return (rng.standard_normal(shape),), {"perm": perm}


class Concat(Gate):
    """y = x₁, x₂, … joined along ``axis`` (every other axis equal).  Local gradient: each input
    gets its own slice of dy back."""

    name, version = "concat", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        axis: int = 0

    def forward(self, ctx: Ctx, *xs: np.ndarray) -> np.ndarray:
        self.infer(*(Spec(x.shape, x.dtype) for x in xs))  # the shape checks, in one place
        a = _axis(self.attrs.axis, xs[0].ndim, "concat")
        ctx.bounds, ctx.axis = np.cumsum([x.shape[a] for x in xs])[:-1], a
        ctx.dtypes = [x.dtype for x in xs]
        return np.concatenate(xs, axis=a)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray, ...]:
        parts = np.split(dy, ctx.bounds, axis=ctx.axis)
        return tuple(p.astype(d, copy=True) for p, d in zip(parts, ctx.dtypes))

    def infer(self, *xs: Spec) -> Spec:
        if not xs:
            raise GraphError("concat needs at least one input")
        dtypes = [x.dtype for x in xs]
        dtype = None if None in dtypes else np.result_type(*dtypes)
        known = [x.shape for x in xs if x.shape is not None]
        if not known:
            return Spec(None, dtype)
        ndim = len(known[0])
        a = _axis(self.attrs.axis, ndim, "concat")
        out: list[Dim] = list(known[0])
        for s in known[1:]:
            if len(s) != ndim or not all(same_dim(d, e) for i, (d, e) in enumerate(zip(s, out))
                                         if i != a):
                raise GraphError(f"concat along axis {a}: shapes {', '.join(map(fmt, known))} "
                                 "differ in another axis; every axis but the joined one must match")
            out = [e if e is not None else d for d, e in zip(s, out)]
        sizes = [None if x.shape is None else x.shape[a] for x in xs]
        out[a] = None if None in sizes else sum(d for d in sizes if d is not None)
        return Spec(tuple(out), dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 1, 3)
        a = int(rng.integers(len(shape)))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            s = list(shape)
            s[a] = int(rng.integers(1, 4))
            parts.append(rng.standard_normal(s))
        return tuple(parts), {"axis": a - len(shape) if rng.random() < 0.3 else a}


class Pad(Gate):
    """y = x with ``pads[i] = (before, after)`` entries of the constant ``value`` added on each
    side of axis i (``pads`` empty, the default: no padding).  Local gradient: dy cropped back
    to x's region (the padding has none)."""

    name, version = "pad", 1

    class Attrs(Attrs):
        pads: list[tuple[int, int]] = Field(default_factory=list)
        value: float = 0.0

        @model_validator(mode="after")
        def _non_negative(self) -> Pad.Attrs:
            if any(p < 0 for pair in self.pads for p in pair):
                raise ValueError(f"pads {self.pads} has a negative entry; expected sizes >= 0")
            return self

    def _pads(self, ndim: int) -> list[tuple[int, int]]:
        pads = self.attrs.pads
        if not pads:  # the default: no padding
            return [(0, 0)] * ndim
        if len(pads) != ndim:
            raise GraphError(f"pad has {len(pads)} (before, after) pairs but x has {ndim} axes; "
                             "give one pair per axis")
        return pads

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        pads = self._pads(x.ndim)
        ctx.region = tuple(slice(b, b + n) for (b, _), n in zip(pads, x.shape))
        if x.ndim == 0:  # nothing to pad (and np.pad fails on a scalar)
            return x.copy()
        return np.pad(x, pads, constant_values=self.attrs.value)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy[ctx.region],)

    def infer(self, x: Spec) -> Spec:
        if x.shape is None:
            return Spec(None if not self.attrs.pads else (None,) * len(self.attrs.pads), x.dtype)
        pads = self._pads(len(x.shape))
        return Spec(tuple(None if d is None else d + b + a for d, (b, a) in zip(x.shape, pads)),
                    x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 0, 3)
        pads = [[int(v) for v in rng.integers(0, 3, size=2)] for _ in shape]
        return (rng.standard_normal(shape),), {"pads": pads, "value": float(rng.normal())}


def int_bounds(lo: float | None, hi: float | None, dtype: np.dtype[Any]) -> tuple[Any, Any]:
    """Clip bounds for ``dtype``: float bounds unchanged for a float x; for an integer x, the
    bounds as scalars of x's dtype (None where the dtype's range already stays inside), or a
    GraphError for a bound that would give a value the dtype cannot hold."""
    if dtype.kind not in "iu":
        return lo, hi
    info = np.iinfo(dtype)
    out: list[Any] = []
    for side, v in (("min", lo), ("max", hi)):
        if v is None or (v <= info.min if side == "min" else v >= info.max):
            out.append(None)  # the dtype's own range is inside this bound
        elif info.min <= v <= info.max and v == int(v):  # (a NaN fails the range test)
            out.append(dtype.type(int(v)))
        else:
            raise GraphError(f"clip of {dtype} with {side} {v}: the result would hold {v}, which "
                             f"{dtype} cannot ({info.min}..{info.max}); give a whole-number bound "
                             "in that range, or cast x to a float type")
    return out[0], out[1]


class Clip(Gate):
    """y = min(max(x, min), max) (a missing bound: none on that side).  Local gradient 1
    strictly inside (min < x < max), **0 outside and at exactly a bound**: there the one-sided
    slopes are 0 and 1 and 0 is a valid subgradient (gradcheck accepts it as a kink).
    An integer x is clipped exactly, in its own dtype: its bounds must be whole numbers that
    the dtype holds (a bound beyond the dtype's range on its own side bounds nothing)."""

    name, version = "clip", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        min: float | None = None
        max: float | None = None

        @model_validator(mode="after")
        def _ordered(self) -> Clip.Attrs:
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min {self.min} is greater than max {self.max}")
            return self

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        lo, hi = int_bounds(self.attrs.min, self.attrs.max, x.dtype)
        inside = np.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x > lo
        if hi is not None:
            inside &= x < hi
        ctx.inside = inside
        if lo is None and hi is None:
            return x.copy()
        return np.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * ctx.inside,)

    def infer(self, x: Spec) -> Spec:
        if x.dtype is not None:
            int_bounds(self.attrs.min, self.attrs.max, x.dtype)
        return x

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        lo, hi = sorted(float(v) for v in rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=2))
        x = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=random_shape(rng)) \
            if rng.random() < 0.3 else rng.standard_normal(random_shape(rng))  # bounds hit exactly
        attrs = {"min": None if rng.random() < 0.2 else lo, "max": None if rng.random() < 0.2 else hi}
        return (x,), attrs
