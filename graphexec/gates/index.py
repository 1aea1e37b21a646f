"""Indexing gates (slice, gather) and cast: values picked out of x, or converted, not mixed."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from graphexec.dtypes import DTYPE_NAMES
from graphexec.errors import GraphError
from graphexec.gate import Attrs as GateAttrs
from graphexec.gate import Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape

__all__ = ["Cast", "Gather", "Slice"]


def _axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise GraphError(f"{what}: axis {axis} is out of range for {ndim} axes; expected "
                         f"{-ndim}..{ndim - 1}")
    return axis % ndim


class Slice(Gate):
    """y = x[starts[i]:ends[i]:steps[i]] on each of ``axes`` (default 0..len(starts)-1, steps 1).

    ONNX ``Slice`` semantics, which are Python's: a negative start or end counts from the end,
    and both are clamped to the axis (so 2**62 means "to the end"); a negative step walks
    backwards.  Local gradient: dx is zero except on the sliced region, where it is dy.
    """

    name, version = "slice", 1

    class Attrs(GateAttrs):
        starts: list[int] = Field(default_factory=list)  # empty (the default): y = x
        ends: list[int] = Field(default_factory=list)
        axes: list[int] | None = None
        steps: list[int] | None = None

        @model_validator(mode="after")
        def _consistent(self) -> Slice.Attrs:
            n = len(self.starts)
            if len(self.ends) != n or any(v is not None and len(v) != n
                                          for v in (self.axes, self.steps)):
                raise ValueError(f"starts, ends, axes and steps need one entry each per sliced "
                                 f"axis; got {self.starts}, {self.ends}, {self.axes}, {self.steps}")
            if self.steps is not None and 0 in self.steps:
                raise ValueError(f"steps {self.steps} has a 0; expected non-zero steps")
            if self.axes is not None and len(set(self.axes)) != n:
                raise ValueError(f"axes {self.axes} repeats an axis; slice each axis once")
            return self

    def _index(self, shape: tuple[int | None, ...]) -> list[slice]:
        a = self.attrs
        index = [slice(None)] * len(shape)
        axes = a.axes if a.axes is not None else list(range(len(a.starts)))
        steps = a.steps if a.steps is not None else [1] * len(axes)
        for ax, s, e, st in zip(axes, a.starts, a.ends, steps):
            index[_axis(ax, len(shape), "slice")] = slice(s, e, st)
        return index

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.index, ctx.shape, ctx.dtype = tuple(self._index(x.shape)), x.shape, x.dtype
        return np.array(x[ctx.index])  # a copy, not a view of x

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        dx = np.zeros(ctx.shape, ctx.dtype)
        dx[ctx.index] = dy  # the slices of one axis never overlap
        return (dx,)

    def infer(self, x: Spec) -> Spec:
        if x.shape is None:
            return Spec(None, x.dtype)
        index = self._index(x.shape)
        return Spec(tuple(None if d is None else len(range(*s.indices(d)))
                          for d, s in zip(x.shape, index)), x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 1, 3, max_size=5)
        n = int(rng.integers(1, len(shape) + 1))
        axes = [int(a) for a in rng.choice(len(shape), size=n, replace=False)]
        starts = [int(v) for v in rng.integers(-6, 6, size=n)]
        ends = [int(v) for v in rng.integers(-6, 7, size=n)]
        steps = [int(v) or 1 for v in rng.integers(-2, 3, size=n)]
        return (rng.standard_normal(shape),), {"starts": starts, "ends": ends, "axes": axes,
                                               "steps": steps}


class Gather(Gate):
    """y = x taken at ``indices`` along ``axis`` (ONNX ``Gather``; numpy ``take``): y's shape is
    x.shape[:axis] + indices.shape + x.shape[axis+1:]; a negative index counts from the end.
    Local gradient: dx scatter-adds dy back to the rows it was taken from (np.add.at, so a
    repeated index gets every copy's gradient); the integer indices take none.
    """

    name, version = "gather", 1

    class Attrs(GateAttrs):
        axis: int = 0

    def forward(self, ctx: Ctx, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        a = _axis(self.attrs.axis, x.ndim, "gather")
        if indices.dtype.kind not in "iu":
            raise GraphError(f"gather: indices have dtype {indices.dtype}; expected integers")
        n = x.shape[a]
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise GraphError(f"gather: indices {indices.min()}..{indices.max()} are out of "
                             f"range for axis {a} of size {n}; expected {-n}..{n - 1}")
        ctx.a, ctx.idx, ctx.shape, ctx.dtype = a, indices, x.shape, x.dtype
        return np.take(x, indices, axis=a)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray, None]:
        dx = np.zeros(ctx.shape, ctx.dtype)
        np.add.at(dx, (slice(None),) * ctx.a + (ctx.idx,), dy)
        return dx, None

    def infer(self, x: Spec, indices: Spec) -> Spec:
        if x.shape is None or indices.shape is None:
            return Spec(None, x.dtype)
        a = _axis(self.attrs.axis, len(x.shape), "gather")
        return Spec(x.shape[:a] + indices.shape + x.shape[a + 1:], x.dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 1, 3)
        a = int(rng.integers(len(shape)))
        idx = rng.integers(-shape[a], shape[a], size=random_shape(rng, 0, 2))
        return (rng.standard_normal(shape), idx), {"axis": a - len(shape) if rng.random() < 0.3
                                                   else a}


class Cast(Gate):
    """y = x converted to dtype ``to`` (ONNX ``Cast``): float → int truncates toward zero,
    anything → bool is x != 0, bool → number is 0 or 1.  Local gradient: 1 (dy converted back
    to x's dtype) between float dtypes; none through an integer or bool value.
    """

    name, version = "cast", 1

    class Attrs(GateAttrs):
        to: str = "float64"

        @model_validator(mode="after")
        def _known(self) -> Cast.Attrs:
            if self.to not in DTYPE_NAMES:
                raise ValueError(f"to={self.to!r}: expected one of {', '.join(DTYPE_NAMES)}")
            return self

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.dtype = x.dtype
        want = np.dtype(self.attrs.to)
        if want.kind in "iu" and x.dtype.kind == "f":
            with np.errstate(invalid="ignore"):  # NaN and out-of-range values: as numpy
                return np.asarray(np.trunc(x).astype(want))
        return x.astype(want)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None]:
        if ctx.dtype.kind != "f" or dy.dtype.kind != "f":
            return (None,)
        return (dy.astype(ctx.dtype),)

    def infer(self, x: Spec) -> Spec:
        return Spec(x.shape, np.dtype(self.attrs.to))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        x = rng.standard_normal(random_shape(rng)).astype(str(rng.choice(["float32", "float64"])))
        return (x,), {"to": "float64"}  # to float32 would round more than gradcheck allows
