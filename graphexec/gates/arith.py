"""Elementwise arithmetic gates (numpy broadcasting; gradients summed back to each input's shape)."""

from __future__ import annotations

import numpy as np

from graphexec.gate import Ctx, Gate, unbroadcast


class Add(Gate):
    """z = x + y.  Local gradients 1 and 1: the add gate distributes dz unchanged."""

    name, version = "add", 1

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sx, sy = x.shape, y.shape
        ctx.shapes = None if sx == sy else (sx, sy)  # None: nothing is broadcast
        return x + y

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if ctx.shapes is None:  # dz is already shaped like both inputs
            return dz, dz
        sx, sy = ctx.shapes
        return unbroadcast(dz, sx), unbroadcast(dz, sy)


class Sub(Gate):
    """z = x - y.  Local gradients 1 and -1."""

    name, version = "sub", 1

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


class Mul(Gate):
    """z = x * y.  Local gradients y and x: the mul gate swaps its inputs ("swap multiplier")."""

    name, version = "mul", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ctx.x, ctx.y = x, y
        return x * y

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, y = ctx.x, ctx.y
        dx = unbroadcast(y * dz, x.shape) if ctx.needs_grad[0] else None
        dy = unbroadcast(x * dz, y.shape) if ctx.needs_grad[1] else None
        return dx, dy


class Div(Gate):
    """z = x / y.  Local gradients dz/dx = 1/y, dz/dy = -x/y² = -z/y."""

    name, version = "div", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        z = x / y
        ctx.x, ctx.y, ctx.z = x, y, z
        return z

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        x, y, z = ctx.x, ctx.y, ctx.z
        dx = unbroadcast(dz / y, x.shape) if ctx.needs_grad[0] else None
        dy = unbroadcast(-dz * z / y, y.shape) if ctx.needs_grad[1] else None
        return dx, dy


class Neg(Gate):
    """y = -x.  Local gradient -1."""

    name, version = "neg", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        return -x

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (-dy,)


class Exp(Gate):
    """y = e^x.  Local gradient e^x = y."""

    name, version = "exp", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.y = np.exp(x)
        return ctx.y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy * ctx.y,)


class Log(Gate):
    """y = ln x.  Local gradient 1/x."""

    name, version = "log", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return np.log(x)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (dy / ctx.x,)


class Square(Gate):
    """y = x².  Local gradient 2x."""

    name, version = "square", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x
        return x * x

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (2 * ctx.x * dy,)


class Max(Gate):
    """z = max(x, y) elementwise.  The max gate routes dz to the larger input, the other gets 0.

    At a tie (x == y) the whole gradient goes to x (the first input), as ``x >= y`` selects it.
    """

    name, version = "max", 1
    fresh_grads = True  # backward returns new arrays; the executor may sum into them

    def forward(self, ctx: Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ctx.sx, ctx.sy, ctx.mask = x.shape, y.shape, x >= y
        return np.maximum(x, y)

    def backward(self, ctx: Ctx, dz: np.ndarray) -> tuple[np.ndarray | None, ...]:
        zero = np.zeros((), dtype=dz.dtype)
        dx = unbroadcast(np.where(ctx.mask, dz, zero), ctx.sx) if ctx.needs_grad[0] else None
        dy = unbroadcast(np.where(ctx.mask, zero, dz), ctx.sy) if ctx.needs_grad[1] else None
        return dx, dy
