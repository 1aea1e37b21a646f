"""Elementwise arithmetic gates (numpy broadcasting; gradients summed back to each input's shape)."""

from __future__ import annotations

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Ctx, Gate, Spec, unbroadcast
from graphexec.gates._samples import Sample, away_from_zero, broadcast_shapes, random_shape
from graphexec.gates._shapes import elementwise


def binary_sample(rng: np.random.Generator) -> Sample:
    """Two standard normal inputs whose shapes broadcast together (``sample_inputs``)."""
    return tuple(rng.standard_normal(s) for s in broadcast_shapes(rng, random_shape(rng), 2)), {}


def unary_sample(rng: np.random.Generator) -> Sample:
    """One standard normal input of a random shape, a scalar included (``sample_inputs``)."""
    return (rng.standard_normal(random_shape(rng)),), {}


class Add(Gate):
    """z = x + y.  Local gradients 1 and 1: the add gate distributes dz unchanged."""

    name, version = "add", 1
    sample_inputs = staticmethod(binary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sx, sy = x.shape, y.shape
        ctx.shapes = None if sx == sy else (sx, sy)  # None: nothing is broadcast
        return x + y

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if ctx.shapes is None:  # dz is already shaped like both inputs
            return dz, dz
        sx, sy = ctx.shapes
        return unbroadcast(dz, sx), unbroadcast(dz, sy)

    def infer(self, x: Spec, y: Spec) -> Spec:
        return elementwise(x, y)


class Sub(Gate):
    """z = x - y.  Local gradients 1 and -1."""

    name, version = "sub", 1
    sample_inputs = staticmethod(binary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sx, sy = x.shape, y.shape
        ctx.shapes = None if sx == sy else (sx, sy)  # None: nothing is broadcast
        return x - y

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        if ctx.shapes is None:  # dz is already shaped like both inputs
            return dz, (-dz if ctx.needs_grad[1] else None)
        sx, sy = ctx.shapes
        dy = unbroadcast(-dz, sy) if ctx.needs_grad[1] else None
        return unbroadcast(dz, sx), dy

    def infer(self, x: Spec, y: Spec) -> Spec:
        return elementwise(x, y)


class Mul(Gate):
    """z = x * y.  Local gradients y and x: the mul gate swaps its inputs ("swap multiplier")."""

    name, version = "mul", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(binary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ctx.x, ctx.y = x, y
        return x * y

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, y = ctx.x, ctx.y
        need_x, need_y = ctx.needs_grad
        if x.shape == y.shape:  # nothing was broadcast: dz is shaped like both inputs
            return (y * dz if need_x else None), (x * dz if need_y else None)
        dx = unbroadcast(y * dz, x.shape) if need_x else None
        dy = unbroadcast(x * dz, y.shape) if need_y else None
        return dx, dy

    def infer(self, x: Spec, y: Spec) -> Spec:
        return elementwise(x, y)


class Div(Gate):
    """z = x / y.  Local gradients dz/dx = 1/y, dz/dy = -x/y² = -z/y.

    Integer ÷ integer truncates toward zero and keeps the integer dtype (numpy's result type
    of x and y), as C and ONNX ``Div`` do: 7 / -2 = -3; unsigned types floor, which is the same.
    An integer x / 0 is 0 (numpy's rule; C and ONNX leave it undefined), and the one overflow,
    min / -1 of a signed type, wraps around to min as numpy's other integer arithmetic does.
    Integers take no gradient.  Any float operand gives true (float) division.
    """

    name, version = "div", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ints = x.dtype.kind in "iu" and y.dtype.kind in "iu"
        z = truncated_div(x, y) if ints else x / y
        ctx.x, ctx.y, ctx.z = x, y, z
        return z

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, y, z = ctx.x, ctx.y, ctx.z
        need_x = ctx.needs_grad[0] and x.dtype.kind == "f"  # integers take no gradient
        need_y = ctx.needs_grad[1] and y.dtype.kind == "f"
        dx = unbroadcast(dz / y, x.shape) if need_x else None
        dy = unbroadcast(-dz * z / y, y.shape) if need_y else None
        return dx, dy

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        sx, sy = broadcast_shapes(rng, random_shape(rng), 2)
        return (rng.standard_normal(sx), away_from_zero(rng, sy)), {}

    def infer(self, x: Spec, y: Spec) -> Spec:
        return elementwise(x, y)


def truncated_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x / y rounded toward zero, in the integer result type of x and y (C's and ONNX's rule)."""
    dtype = np.result_type(x, y)
    if dtype.kind not in "iu":
        raise GraphError(f"div of {x.dtype} by {y.dtype}: numpy has no integer type for both "
                         f"(it would give {dtype}); cast one of them with .astype")
    with np.errstate(divide="ignore", over="ignore"):  # x / 0 is 0, min / -1 wraps, as in numpy
        q, r = np.divmod(x, y)  # floors toward -inf; r has the sign of y
    q += (r != 0) & ((x < 0) != (y < 0))  # step back toward zero where the signs differ
    return np.asarray(q, dtype=dtype)


class Neg(Gate):
    """y = -x.  Local gradient -1."""

    name, version = "neg", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        return -x

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (-dy,)

    def infer(self, x: Spec) -> Spec:
        return x


class Exp(Gate):
    """y = e^x.  Local gradient e^x = y."""

    name, version = "exp", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.y = np.exp(x)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * ctx.y,)

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class Log(Gate):
    """y = ln x.  Local gradient 1/x."""

    name, version = "log", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return np.log(x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy / ctx.x,)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return (rng.uniform(0.5, 3.0, random_shape(rng)),), {}  # the domain x > 0

    def infer(self, x: Spec) -> Spec:
        return elementwise(x, floating=True)


class Square(Gate):
    """y = x².  Local gradient 2x."""

    name, version = "square", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(unary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return x * x

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (2 * ctx.x * dy,)

    def infer(self, x: Spec) -> Spec:
        return x


class Max(Gate):
    """z = max(x, y) elementwise.  The max gate routes dz to the larger input, the other gets 0:
    dz/dx = [x >= y],  dz/dy = [x < y].

    At a tie (x == y) max is not differentiable and any split of dz between x and y is a valid
    subgradient; this gate always sends the whole of dz to x, the first input (``x >= y``).
    gradcheck accepts it: at a tie the analytic value lies between the one-sided slopes.
    """

    name, version = "max", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(binary_sample)

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ctx.sx, ctx.sy, ctx.mask = x.shape, y.shape, x >= y
        return np.maximum(x, y)

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        zero = np.zeros((), dtype=dz.dtype)
        dx = unbroadcast(np.where(ctx.mask, dz, zero), ctx.sx) if ctx.needs_grad[0] else None
        dy = unbroadcast(np.where(ctx.mask, zero, dz), ctx.sy) if ctx.needs_grad[1] else None
        return dx, dy

    def infer(self, x: Spec, y: Spec) -> Spec:
        return elementwise(x, y)
