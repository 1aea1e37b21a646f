"""2-D convolution over NCHW images, as im2col + GEMM (CS231n's "conv as matrix multiply").

Window geometry (per spatial axis, shared with the pooling gates): an input of size H padded by
p on each side, a kernel of size K with dilation d (taps d apart) and stride s gives
OH = ⌊(H + 2p - d(K-1) - 1) / s⌋ + 1 outputs; output row i reads padded rows s·i + d·k, k < K.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample
from graphexec.gates._shapes import Shape, fmt, pair, same_dim, window_out

__all__ = ["PER_SAMPLE_PIXELS", "Conv2d", "col2im_add", "im2col", "pad_spatial", "window"]

Pos = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
#: An ``int or pair`` attribute of sizes >= 1 ((height, width); an int is used for both).
PosPair = Pos | tuple[Pos, Pos]
#: An ``int or pair`` attribute of sizes >= 0.
NonNegPair = NonNeg | tuple[NonNeg, NonNeg]


def window(k: int, dilation: int, stride: int, n_out: int) -> slice:
    """The padded rows that kernel tap ``k`` reads for the ``n_out`` outputs: s·i + d·k."""
    start = k * dilation
    return slice(start, start + stride * (n_out - 1) + 1, stride)


def pad_spatial(x: np.ndarray, ph: int, pw: int, value: float = 0.0) -> np.ndarray:
    """x (N, C, H, W) with ``ph`` rows and ``pw`` columns of ``value`` on each side (x if 0)."""
    if ph == pw == 0:
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


#: Output pixels per image from which conv2d multiplies image by image (per-sample columns:
#: each GEMM is big enough, and no batch-wide transpose copies are needed); below it, one GEMM
#: over the whole batch (channel-first columns). Measured in benchmarks/bench_conv.py.
PER_SAMPLE_PIXELS = 512


def im2col(xp: np.ndarray, kernel: tuple[int, int], dilation: tuple[int, int],
           stride: tuple[int, int], out: tuple[int, int], per_sample: bool) -> np.ndarray:
    """Columns of padded xp (N, C, Hp, Wp), one strided copy per kernel tap (i, j):
    cols[n, c, i, j, y, x] = xp[n, c, s·y + d·i, s·x + d·j], laid out (N, C, KH, KW, OH, OW)
    if ``per_sample``, else channel-first (C, KH, KW, N, OH, OW)."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, *kernel, *out) if per_sample else (c, *kernel, n, *out), dtype=xp.dtype)
    for i in range(kernel[0]):
        hs = window(i, dilation[0], stride[0], out[0])
        for j in range(kernel[1]):
            tap = xp[:, :, hs, window(j, dilation[1], stride[1], out[1])]
            if per_sample:
                cols[:, :, i, j] = tap
            else:
                cols[:, i, j] = tap.transpose(1, 0, 2, 3)
    return cols


def col2im_add(dcols: np.ndarray, padded: tuple[int, ...], dilation: tuple[int, int],
               stride: tuple[int, int], per_sample: bool) -> np.ndarray:
    """The adjoint of :func:`im2col`: each tap's columns slice-added back where they were read
    (overlapping windows sum; ``np.add.at`` is some 9× slower). Channel-first columns are
    accumulated channel-first, where their slices are contiguous; returns (N, C, Hp, Wp)."""
    n, c, hp, wp = padded
    kh, kw = dcols.shape[2:4] if per_sample else dcols.shape[1:3]
    oh, ow = dcols.shape[-2:]
    acc = np.zeros((n, c, hp, wp) if per_sample else (c, n, hp, wp), dtype=dcols.dtype)
    for i in range(kh):
        hs = window(i, dilation[0], stride[0], oh)
        for j in range(kw):
            ws = window(j, dilation[1], stride[1], ow)
            acc[:, :, hs, ws] += dcols[:, :, i, j] if per_sample else dcols[:, i, j]
    return acc if per_sample else acc.transpose(1, 0, 2, 3)


class Conv2d(Gate):
    """y[n, f] = b[f] + Σ_{c ∈ group(f), i, j} W[f, c, i, j] · xp[n, c, s·y + d·i, s·x + d·j].

    x (N, C, H, W), W (F, C/groups, KH, KW), optional b (F,); y (N, F, OH, OW) (see the module
    docstring for OH, OW); xp is x zero-padded. Channels split into ``groups`` groups, output
    channels f of group g reading only input channels of group g (depthwise: groups = C).
    As matrices per group: cols = im2col(xp) (C/g·KH·KW, N·OH·OW), Y = W · cols (image by image
    when the images are large, see ``PER_SAMPLE_PIXELS``), so the local gradients are
    dW = dY · colsᵀ, dcols = Wᵀ · dY (dx = col2im(dcols), the slice-adds of each tap back to
    the pixels it read), db[f] = Σ_{n,y,x} dy[n, f, y, x].
    """

    name, version = "conv2d", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        stride: PosPair = 1
        padding: NonNegPair = 0
        dilation: PosPair = 1
        groups: Pos = 1

    def forward(self, ctx: Ctx, x: np.ndarray, w: np.ndarray, *b: np.ndarray) -> np.ndarray:
        a = self.attrs
        _at_most_one_bias(len(b))
        oh, ow = _conv_out(self, x.shape, w.shape, b[0].shape if b else None)
        (ph, pw), g, (n, f) = pair(a.padding), a.groups, (x.shape[0], w.shape[0])
        ctx.per_sample = per = oh * ow >= PER_SAMPLE_PIXELS
        xp = pad_spatial(x, ph, pw)
        cols = im2col(xp, w.shape[2:], pair(a.dilation), pair(a.stride), (oh, ow), per)
        # (B, g, C/g·KH·KW, M): B = N, M = OH·OW image by image, or B = 1, M = N·OH·OW
        colsg = cols.reshape((n, g, -1, oh * ow) if per else (1, g, -1, n * oh * ow))
        wg = w.reshape(g, f // g, -1)
        y = np.matmul(wg, colsg)  # one GEMM per group (and per image)
        if b:
            y += b[0].astype(y.dtype, copy=False).reshape(g, f // g, 1)
        ctx.colsg, ctx.wg, ctx.xp_shape, ctx.x_shape, ctx.w_shape = colsg, wg, xp.shape, x.shape, w.shape
        ctx.cols_shape = cols.shape
        if per:
            return y.reshape(n, f, oh, ow)
        return np.ascontiguousarray(y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3))

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray | None, ...]:
        a, needs, (ph, pw), colsg = self.attrs, ctx.needs_grad, pair(self.attrs.padding), ctx.colsg
        dyg = (dy if ctx.per_sample else dy.transpose(1, 0, 2, 3)).reshape(
            *colsg.shape[:2], ctx.wg.shape[1], -1)  # (B, g, F/g, M), like the forward's y
        dw = None
        if needs[1]:
            dw = np.matmul(dyg, colsg.swapaxes(-1, -2)).sum(axis=0).reshape(ctx.w_shape)
            dw = dw.astype(ctx.wg.dtype, copy=False)
        db = [dy.sum(axis=(0, 2, 3)) if needs[2] else None] if len(needs) == 3 else []
        dx = None
        if needs[0]:  # wrt-pruning: no input-gradient GEMM when x needs no gradient
            dcols = np.matmul(ctx.wg.swapaxes(-1, -2), dyg).reshape(ctx.cols_shape)
            dxp = col2im_add(dcols, ctx.xp_shape, pair(a.dilation), pair(a.stride), ctx.per_sample)
            h, w = ctx.x_shape[2:]
            dx = np.ascontiguousarray(dxp[:, :, ph:ph + h, pw:pw + w], dtype=colsg.dtype)
        return (dx, dw, *db)

    def infer(self, x: Spec, w: Spec, *b: Spec) -> Spec:
        _at_most_one_bias(len(b))
        dtype = None if x.dtype is None or w.dtype is None else np.result_type(x.dtype, w.dtype)
        if x.shape is None or w.shape is None:
            f = None if w.shape is None or len(w.shape) != 4 else w.shape[0]
            n = None if x.shape is None or len(x.shape) != 4 else x.shape[0]
            return Spec(None if x.shape is None else (n, f, None, None), dtype)
        oh, ow = _conv_out(self, x.shape, w.shape, None if not b else b[0].shape)
        return Spec((x.shape[0], w.shape[0], oh, ow), dtype)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return conv_sample(rng)


def _at_most_one_bias(n_extra: int) -> None:
    if n_extra > 1:
        raise GraphError(f"conv2d takes x, W and an optional b; found {2 + n_extra} inputs; "
                         "pass at most 3")


def _conv_out(gate: Conv2d, xs: Shape, ws: Shape, bs: Shape | None) -> tuple[Any, Any]:
    """(OH, OW) after checking x (N, C, H, W), W (F, C/groups, KH, KW) and b (F,) agree."""
    a, g = gate.attrs, gate.attrs.groups
    if len(xs) != 4 or len(ws) != 4:
        raise GraphError(f"conv2d expects x (N, C, H, W) and W (F, C/groups, KH, KW); found x "
                         f"{fmt(xs)}, W {fmt(ws)}; reshape them to 4 axes (NCHW)")
    c, f = xs[1], ws[0]
    if c is not None and (c % g or (ws[1] is not None and ws[1] * g != c)):
        raise GraphError(f"x has {c} channels but W expects {ws[1]} per group × {g} groups "
                         f"(W is {fmt(ws)}); W must be (F, C/groups, KH, KW) and groups divide C")
    if f is not None and f % g:
        raise GraphError(f"W has {f} filters, not a multiple of groups={g} (W is {fmt(ws)})")
    if bs is not None and (len(bs) != 1 or not same_dim(bs[0], f)):
        raise GraphError(f"b is {fmt(bs)} but W has {f} filters; expected b ({f},)")
    (sh, sw), (ph, pw), (dh, dw) = pair(a.stride), pair(a.padding), pair(a.dilation)
    if ws[2] is None or ws[3] is None:
        return None, None
    return window_out(xs[2], ws[2], sh, ph, dh), window_out(xs[3], ws[3], sw, pw, dw)


def conv_sample(rng: np.random.Generator) -> Sample:
    """Small conv2d inputs: odd sizes, stride, padding, dilation, groups (depthwise too)."""
    g = int(rng.choice([1, 1, 2, 3]))
    cg, fg = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    attrs: dict[str, Any] = {"stride": [int(v) for v in rng.integers(1, 3, size=2)],
                             "padding": int(rng.integers(0, 2)),
                             "dilation": int(rng.choice([1, 1, 2])), "groups": g}
    d = attrs["dilation"]
    h = int(rng.integers(d * (kh - 1) + 1, d * (kh - 1) + 5))
    w = int(rng.integers(d * (kw - 1) + 1, d * (kw - 1) + 5))
    x = rng.standard_normal((int(rng.integers(1, 3)), g * cg, h, w))
    wt = rng.standard_normal((g * fg, cg, kh, kw))
    inputs = (x, wt) if rng.random() < 0.3 else (x, wt, rng.standard_normal(g * fg))
    return inputs, attrs
