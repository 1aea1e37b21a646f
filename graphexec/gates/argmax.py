"""argmax: the position of the largest value along one axis (ONNX ``ArgMax``), an int64 index."""

from __future__ import annotations

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Attrs as GateAttrs
from graphexec.gate import Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape

__all__ = ["ArgMax"]


class ArgMax(Gate):
    """i = argmax_k x[..., k, ...] along ``axis`` (int64; ONNX ``ArgMax``): the first maximum,
    or with ``select_last_index`` the last; a NaN counts as the largest value (numpy). keepdims
    keeps the reduced axis as size 1. x: any shape with x.shape[axis] ≥ 1.
    Local gradient 0: i is a step function of x (constant between ties), so dx = 0.
    """

    name, version = "argmax", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(GateAttrs):
        axis: int = 0
        keepdims: bool = True
        select_last_index: bool = False

    def _axis(self, ndim: int) -> int:
        a = self.attrs.axis
        if not -ndim <= a < ndim:
            raise GraphError(f"argmax: axis {a} is out of range for {ndim} axes; expected "
                             f"{-ndim}..{ndim - 1}")
        return a % ndim

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.shape, ctx.dtype = x.shape, x.dtype
        a = self._axis(x.ndim)
        if x.shape[a] == 0:
            raise GraphError(f"argmax: axis {a} of x {x.shape} is empty; expected ≥ 1 element")
        if self.attrs.select_last_index:
            i = x.shape[a] - 1 - np.argmax(np.flip(x, axis=a), axis=a, keepdims=True)
        else:
            i = np.argmax(x, axis=a, keepdims=True)
        i = i.astype(np.int64)
        return i if self.attrs.keepdims else np.asarray(np.squeeze(i, axis=a))

    def backward(self, ctx: Ctx, di: np.ndarray) -> tuple[np.ndarray]:
        return (np.zeros(ctx.shape, dtype=ctx.dtype),)

    def infer(self, x: Spec) -> Spec:
        if x.shape is None:
            return Spec(None, np.dtype(np.int64))
        a = self._axis(len(x.shape))
        keep = tuple(1 if i == a else d for i, d in enumerate(x.shape))
        return Spec(keep if self.attrs.keepdims else keep[:a] + keep[a + 1:], np.dtype(np.int64))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = random_shape(rng, 1, 3)
        axis = int(rng.integers(-len(shape), len(shape)))
        return (rng.standard_normal(shape),), {"axis": axis, "keepdims": bool(rng.random() < 0.5),
                                               "select_last_index": bool(rng.random() < 0.5)}
