"""Selection by a mask: ``where`` (ONNX ``Where``) and the comparisons that make masks (ONNX
``Greater``, ``Less``, ``GreaterOrEqual``, ``LessOrEqual``, ``Equal``), with numpy
broadcasting. PyTorch's dynamo exporter writes ``F.softplus`` as
``Where(Greater(βx, threshold), x, log1p(exp(βx))/β)``; ``torch.where(x > 0, x, a·x)`` is the same.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec, unbroadcast
from graphexec.gates._samples import Sample, broadcast_shapes, random_shape
from graphexec.gates._shapes import broadcast

__all__ = ["Compare", "Where"]

_OPS = {"greater": np.greater, "less": np.less, "greater_equal": np.greater_equal,
        "less_equal": np.less_equal, "equal": np.equal}


class Where(Gate):
    """y = a where cond else b (cond: bool; cond, a, b broadcast together).  Local gradients:
    da = dy · cond, db = dy · (1 - cond), each summed back to its input's shape; cond, a bool,
    takes none (all False where the executor asks, as for a mask computed from floats).
    """

    name, version = "where", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if cond.dtype != np.bool_:
            raise GraphError(f"where: the condition has dtype {cond.dtype}; expected bool (make "
                             "it with a comparison, or cast it to bool)")
        ctx.cond, ctx.shapes = cond, (a.shape, b.shape)
        return np.asarray(np.where(cond, a, b))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        sa, sb = ctx.shapes
        zero = dy.dtype.type(0)
        da = unbroadcast(np.where(ctx.cond, dy, zero), sa)
        db = unbroadcast(np.where(ctx.cond, zero, dy), sb)
        # cond takes no gradient; a computed mask (from compare) is asked one: zeros, its dtype
        dcond = np.zeros(ctx.cond.shape, np.bool_) if ctx.needs_grad[0] else None
        return dcond, np.array(da, copy=True), np.array(db, copy=True)

    def infer(self, cond: Spec, a: Spec, b: Spec) -> Spec:
        dt = np.result_type(a.dtype, b.dtype) if a.dtype is not None and b.dtype is not None \
            else None
        return Spec(broadcast(cond.shape, a.shape, b.shape), dt)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        c, a, b = broadcast_shapes(rng, random_shape(rng), 3)
        return (rng.random(c) < 0.5, rng.standard_normal(a), rng.standard_normal(b)), {}


class Compare(Gate):
    """y = x ▷ z elementwise, a bool mask; ▷ is ``kind`` (greater, less, greater_equal,
    less_equal, equal).  Local gradients 0 (a step function: flat wherever it is
    differentiable)."""

    name, version = "compare", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        kind: Literal["greater", "less", "greater_equal", "less_equal", "equal"] = "greater"

    def forward(self, ctx: Ctx, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        ctx.x, ctx.z = x, z
        return np.asarray(_OPS[self.attrs.kind](x, z))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        return tuple(np.zeros_like(v) if v.dtype.kind == "f" else None  # type: ignore[return-value]
                     for v in (ctx.x, ctx.z))

    def infer(self, x: Spec, z: Spec) -> Spec:
        return Spec(broadcast(x.shape, z.shape), np.dtype(bool))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        x, z = broadcast_shapes(rng, random_shape(rng), 2)
        return (rng.standard_normal(x), rng.standard_normal(z)), {"kind": str(rng.choice(list(_OPS)))}
