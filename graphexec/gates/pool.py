"""Pooling over NCHW images: max, average, and global average (window geometry as conv2d)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import model_validator

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample
from graphexec.gates._shapes import Shape, fmt, pair, window_out
from graphexec.gates.conv import NonNegPair, PosPair, pad_spatial, window

__all__ = ["AvgPool2d", "GlobalAvgPool", "MaxPool2d"]


class PoolAttrs(Attrs):
    """``kernel``, ``stride`` (default: the kernel) and ``padding`` (at most half the kernel)."""

    kernel: PosPair = 2
    stride: PosPair | None = None
    padding: NonNegPair = 0

    @model_validator(mode="after")
    def _half_kernel(self) -> PoolAttrs:
        (kh, kw), (ph, pw) = pair(self.kernel), pair(self.padding)
        if 2 * ph > kh or 2 * pw > kw:
            raise ValueError(f"padding {self.padding} is more than half the kernel {self.kernel}; "
                             "a window would lie wholly in the padding")
        return self


def _geometry(attrs: PoolAttrs, shape: Shape) -> tuple[Any, ...]:
    """((KH, KW), (SH, SW), (PH, PW), (OH, OW)) for x of ``shape`` (N, C, H, W)."""
    if len(shape) != 4:
        raise GraphError(f"pooling expects x (N, C, H, W); found {fmt(shape)}; reshape it to "
                         "4 axes (NCHW)")
    k, p = pair(attrs.kernel), pair(attrs.padding)
    s = k if attrs.stride is None else pair(attrs.stride)
    return k, s, p, (window_out(shape[2], k[0], s[0], p[0]), window_out(shape[3], k[1], s[1], p[1]))


def _pool_infer(attrs: PoolAttrs, x: Spec) -> Spec:
    if x.shape is None:
        return Spec(None, x.dtype)
    return Spec((*x.shape[:2], *_geometry(attrs, x.shape)[3]), x.dtype)


def _taps(k: tuple[int, int], s: tuple[int, int], o: tuple[int, int]) -> list[tuple[slice, slice]]:
    """For each kernel tap (i, j), the strided slices of the padded input it reads."""
    return [(window(i, 1, s[0], o[0]), window(j, 1, s[1], o[1]))
            for i in range(k[0]) for j in range(k[1])]


def _grad_buffer(ctx: Ctx, dtype: np.dtype[Any]) -> np.ndarray:
    """The padded input's gradient, to be filled tap by tap: uninitialised when the windows tile
    it exactly (every element is written once), zeros otherwise."""
    return (np.empty if ctx.tiles else np.zeros)(ctx.xp_shape, dtype=dtype)


def _setup(ctx: Ctx, xp_shape: tuple[int, ...], x_shape: tuple[int, ...], k: tuple[int, int],
           s: tuple[int, int], p: tuple[int, int], o: tuple[int, int]) -> list[tuple[slice, slice]]:
    ctx.xp_shape, ctx.x_shape, ctx.pad, ctx.taps = xp_shape, x_shape, p, _taps(k, s, o)
    ctx.disjoint = k[0] <= s[0] and k[1] <= s[1]  # no element is read by two windows
    ctx.tiles = k == s and o[0] * s[0] == xp_shape[2] and o[1] * s[1] == xp_shape[3]
    return ctx.taps


def _crop(ctx: Ctx, dxp: np.ndarray) -> np.ndarray:
    (ph, pw), (h, w) = ctx.pad, ctx.x_shape[2:]
    return dxp if ph == pw == 0 and dxp.shape == ctx.x_shape else dxp[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d(Gate):
    """y[n, c, y, x] = max over the window of xp (x padded with -inf, an integer x with its
    dtype's min), one strided slice per tap.

    Local gradient: 1 for the winning element of each window, 0 for the others; **at a tie the
    first tap in row-major window order wins** (a valid subgradient; gradcheck accepts it).
    Overlapping windows (stride < kernel) add their gradients. The winners are found in
    backward (y == tap, first tap first), so inference pays only for the maxima.
    """

    name, version = "max_pool2d", 1
    fresh_grads = True  # see Gate.fresh_grads
    Attrs = PoolAttrs

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        k, s, p, o = _geometry(self.attrs, x.shape)
        low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min  # integers pad with min
        xp = pad_spatial(x, p[0], p[1], value=low)
        taps = _setup(ctx, xp.shape, x.shape, k, s, p, o)
        first = xp[(..., *taps[0])]
        y = np.maximum(first, xp[(..., *taps[1])]) if len(taps) > 1 else first.copy()
        for hs, ws in taps[2:]:
            np.maximum(y, xp[:, :, hs, ws], out=y)
        ctx.xp, ctx.y = xp, y
        return y

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        xp, y, dxp = ctx.xp, ctx.y, _grad_buffer(ctx, dy.dtype)
        free = np.ones(y.shape, dtype=bool)  # windows whose winner is still to be found
        last = len(ctx.taps) - 1
        for t, (hs, ws) in enumerate(ctx.taps):
            if t < last:
                won = xp[:, :, hs, ws] == y
                won &= free
                free ^= won  # won ⊆ free
            else:
                won = free  # some tap holds the max (a NaN window: the last)
            if ctx.disjoint:
                np.multiply(dy, won, out=dxp[:, :, hs, ws])
            else:
                dxp[:, :, hs, ws] += dy * won
        return (_crop(ctx, dxp),)

    def infer(self, x: Spec) -> Spec:
        return _pool_infer(self.attrs, x)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return pool_sample(rng, ties=True)


class AvgPool2d(Gate):
    """y[n, c, y, x] = (1/count) Σ over the window of xp (x zero-padded).

    ``count_include_pad`` True (the default, PyTorch's; ONNX's default is False): count = KH·KW
    always; False: count = the number of real (unpadded) pixels in the window.
    Local gradient: every pixel of a window gets dy / count (overlapping windows add).
    """

    name, version = "avg_pool2d", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(PoolAttrs):
        count_include_pad: bool = True

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        k, s, p, o = _geometry(self.attrs, x.shape)
        xp = pad_spatial(x, p[0], p[1])
        taps = _setup(ctx, xp.shape, x.shape, k, s, p, o)
        first = xp[(..., *taps[0])]
        y = first + xp[(..., *taps[1])] if len(taps) > 1 else first.copy()
        for hs, ws in taps[2:]:
            y += xp[:, :, hs, ws]
        ctx.inv = self._inverse_count(k, p, x.shape, taps, x.dtype)
        y *= ctx.inv
        return y

    def _inverse_count(self, k: tuple[int, int], p: tuple[int, int], shape: tuple[int, ...],
                       taps: list[tuple[slice, slice]], dtype: np.dtype[Any]) -> np.ndarray:
        if self.attrs.count_include_pad or p == (0, 0):
            return np.asarray(1.0 / (k[0] * k[1]), dtype=dtype)
        ones = pad_spatial(np.ones((1, 1, *shape[2:]), dtype=dtype), *p)
        count = sum(ones[0, 0, hs, ws] for hs, ws in taps)
        return np.asarray(1.0 / count, dtype=dtype)

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        dxp = _grad_buffer(ctx, dy.dtype)
        share = dy * ctx.inv
        for hs, ws in ctx.taps:
            if ctx.disjoint:
                dxp[:, :, hs, ws] = share
            else:
                dxp[:, :, hs, ws] += share
        return (_crop(ctx, dxp),)

    def infer(self, x: Spec) -> Spec:
        return _pool_infer(self.attrs, x)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        inputs, attrs = pool_sample(rng, ties=False)
        return inputs, {**attrs, "count_include_pad": bool(rng.random() < 0.5)}


class GlobalAvgPool(Gate):
    """y[n, c] = (1/(H·W)) Σ_{y,x} x[n, c, y, x]: (N, C, H, W) -> (N, C); an integer x gives
    float64 (numpy's mean). Local gradient 1/(H·W) for every pixel."""

    name, version = "global_avg_pool", 1
    fresh_grads = True  # see Gate.fresh_grads

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise GraphError(f"global_avg_pool expects x (N, C, H, W); found {x.shape}")
        ctx.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        h, w = ctx.shape[2:]
        dx = np.empty(ctx.shape, dtype=dy.dtype)
        dx[...] = (dy / (h * w))[:, :, None, None]
        return (dx,)

    def infer(self, x: Spec) -> Spec:
        if x.shape is not None and len(x.shape) != 4:
            raise GraphError(f"global_avg_pool expects x (N, C, H, W); found {fmt(x.shape)}")
        mean = x.dtype if x.dtype is None or x.dtype.kind == "f" else np.dtype("float64")
        return Spec(None if x.shape is None else x.shape[:2], mean)  # numpy's mean: float64

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        shape = tuple(int(v) for v in rng.integers(1, 5, size=4))
        return (rng.standard_normal(shape),), {}


def pool_sample(rng: np.random.Generator, *, ties: bool) -> Sample:
    """Pool inputs: odd sizes, kernels 1..3, stride 1..3 (overlapping windows too), padding;
    with ``ties``, values on a coarse grid so that windows hold equal maxima."""
    k = [int(v) for v in rng.integers(1, 4, size=2)]
    attrs: dict[str, Any] = {"kernel": k, "padding": [int(rng.integers(0, v // 2 + 1)) for v in k]}
    if rng.random() < 0.7:
        attrs["stride"] = [int(v) for v in rng.integers(1, 4, size=2)]
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)),
             int(rng.integers(k[0], k[0] + 4)), int(rng.integers(k[1], k[1] + 4)))
    x = rng.integers(-2, 3, size=shape).astype(float) if ties and rng.random() < 0.4 \
        else rng.standard_normal(shape)
    return (x,), attrs
