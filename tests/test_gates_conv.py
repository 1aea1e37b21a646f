"""conv2d and the pooling gates against naive-loop numpy references and numerical gradients."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphexec as gx
import graphexec.gates.conv as conv_mod
from graphexec.errors import GraphError
from graphexec.gate import Ctx, Spec
from graphexec.gates.conv import Conv2d
from graphexec.gates.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from graphexec.gradcheck import check_gate_gradients


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """Seven nested loops, straight from the definition (float64)."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, _, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    fg = f // groups
    y = np.zeros((n, f, oh, ow))
    for ni in range(n):
        for fi in range(f):
            g = fi // fg
            for yi in range(oh):
                for xi in range(ow):
                    acc = 0.0 if b is None else float(b[fi])
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = yi * sh + i * dh - ph, xi * sw + j * dw - pw
                                if 0 <= r < h and 0 <= s < wd:
                                    acc += float(w[fi, ci, i, j]) * float(x[ni, g * cg + ci, r, s])
                    y[ni, fi, yi, xi] = acc
    return y


def ref_pool(x, kernel, stride, padding, kind, count_include_pad=True):
    (kh, kw), (ph, pw) = pair(kernel), pair(padding)
    sh, sw = pair(kernel if stride is None else stride)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for idx in np.ndindex(n, c, oh, ow):
        ni, ci, yi, xi = idx
        vals, count = [], 0
        for i in range(kh):
            for j in range(kw):
                r, s = yi * sh + i - ph, xi * sw + j - pw
                count += 1
                if 0 <= r < h and 0 <= s < w:
                    vals.append(float(x[ni, ci, r, s]))
        if kind == "max":
            y[idx] = max(vals)
        else:
            y[idx] = sum(vals) / (count if count_include_pad else len(vals))
    return y


CONV_CASES = [  # (x shape, W shape, attrs)
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((1, 3, 7, 5), (4, 3, 3, 2), {"stride": 2, "padding": 1}),  # batch 1, odd sizes
    ((2, 2, 9, 8), (3, 2, 3, 3), {"dilation": 2, "padding": (2, 1)}),
    ((2, 4, 6, 7), (6, 2, 2, 3), {"groups": 2, "stride": (1, 2)}),
    ((1, 3, 5, 5), (3, 1, 3, 3), {"groups": 3, "padding": 1}),  # depthwise
    ((2, 2, 5, 5), (6, 1, 3, 3), {"groups": 2, "stride": 3, "dilation": (1, 2), "padding": 2}),
    ((3, 1, 4, 4), (2, 1, 1, 1), {}),  # 1x1
]


@pytest.fixture(params=["batch GEMM", "per-sample GEMM"])
def layout(request, monkeypatch):
    """Run each conv test with both column layouts (chosen by output size in the gate)."""
    monkeypatch.setattr(conv_mod, "PER_SAMPLE_PIXELS", 10**9 if request.param == "batch GEMM" else 0)
    return request.param


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_naive_loops(xs, ws, attrs, dtype, bias, layout):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    gate = Conv2d(Conv2d.Attrs(**attrs))
    args = [x.astype(dtype), w.astype(dtype)] + ([b.astype(dtype)] if bias else [])
    y = gate.forward(Ctx(), *args)
    assert y.dtype == dtype and y.flags.c_contiguous
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref_conv(x, w, b, **attrs), rtol=tol, atol=tol)
    infer = gate.infer(*(Spec(a.shape, a.dtype) for a in args))
    assert infer == Spec(y.shape, y.dtype)


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_conv2d_gradients_are_numerical_gradients(xs, ws, attrs, layout):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])]
    checks, err = check_gate_gradients(Conv2d(Conv2d.Attrs(**attrs)), inputs,
                                       names=["x", "W", "b"], rng=rng, max_coords=40)
    assert not err
    assert all(t.n_failed == 0 and t.n_checked > 0 for t in checks.values()), checks


def test_conv2d_float32_gradients_stay_float32_and_match_float64(layout):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    dy = rng.standard_normal((2, 4, 4, 3))
    gate = Conv2d(Conv2d.Attrs(groups=2))
    grads = {}
    for dt in ("float32", "float64"):
        ctx = Ctx()
        gate.forward(ctx, x.astype(dt), w.astype(dt), b.astype(dt))
        ctx.needs_grad = (True, True, True)
        grads[dt] = gate.backward(ctx, dy.astype(dt))
        assert all(g.dtype == dt for g in grads[dt])
    for g32, g64 in zip(grads["float32"], grads["float64"]):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


def test_conv2d_skips_the_input_gradient_gemm_when_x_needs_none(monkeypatch, layout):
    calls = []
    real = np.matmul
    monkeypatch.setattr(conv_mod.np, "matmul", lambda a, b: calls.append(1) or real(a, b))
    monkeypatch.setattr(conv_mod, "col2im_add", lambda *a: pytest.fail("col2im ran"))
    rng = np.random.default_rng(3)
    gate, ctx = Conv2d(Conv2d.Attrs(groups=3)), Ctx()
    gate.forward(ctx, rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((6, 1, 3, 3)))
    ctx.needs_grad = (False, True)
    calls.clear()
    dx, dw = gate.backward(ctx, rng.standard_normal((2, 6, 3, 3)))
    assert dx is None and dw.shape == (6, 1, 3, 3)
    assert len(calls) == 1  # the weight-gradient GEMM only


def test_conv2d_through_a_graph_with_wrt_pruning(layout):
    b = gx.GraphBuilder("c")
    x = b.input("x", shape=(None, 2, 5, 5))
    w = b.param("W", np.random.default_rng(4).standard_normal((3, 2, 3, 3)))
    b.output(b.op("sum", b.op("conv2d", x, w, padding=1, name="conv"), name="s"), "out")
    g = b.build()
    ex = gx.Executor(g)
    ex.forward(x=np.ones((2, 2, 5, 5)))
    grads = ex.backward(wrt=["W"])
    assert set(grads) == {"W"}
    # every output pixel sums ones over the padded window: dW[f, c, i, j] = number of reads
    assert grads["W"][0, 0, 1, 1] == 2 * 25 and grads["W"][0, 0, 0, 0] == 2 * 16


@pytest.mark.parametrize(("xs", "ws", "attrs", "message"), [
    ((2, 3, 5, 5), (4, 2, 3, 3), {}, "x has 3 channels but W expects 2 per group × 1 groups"),
    ((2, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, "W has 3 filters, not a multiple of groups=2"),
    ((2, 3, 5), (4, 3, 3, 3), {}, "conv2d expects x (N, C, H, W)"),
    ((2, 3, 2, 5), (4, 3, 3, 3), {}, "a window spanning 3 does not fit in size 2"),
])
def test_conv2d_refuses_shapes_with_one_clear_line(xs, ws, attrs, message):
    gate = Conv2d(Conv2d.Attrs(**attrs))
    with pytest.raises(GraphError, match=re.escape(message)):
        gate.forward(Ctx(), np.zeros(xs), np.zeros(ws))
    with pytest.raises(GraphError, match=re.escape(message)):
        gate.infer(Spec(xs, "float64"), Spec(ws, "float64"))


def test_conv2d_bias_of_the_wrong_size_is_refused():
    with pytest.raises(GraphError, match=r"b is \(3,\) but W has 4 filters"):
        Conv2d().forward(Ctx(), np.zeros((1, 3, 4, 4)), np.zeros((4, 3, 3, 3)), np.zeros(3))


def test_conv2d_refuses_a_fourth_input():
    with pytest.raises(GraphError, match="conv2d takes x, W and an optional b; found 4 inputs"):
        Conv2d().forward(Ctx(), np.zeros((1, 3, 4, 4)), np.zeros((4, 3, 3, 3)), np.zeros(4), np.zeros(4))
    with pytest.raises(GraphError, match="found 4 inputs"):
        Conv2d().infer(*[Spec(None, None)] * 4)


def test_conv_attrs_are_validated_and_survive_a_file_round_trip():
    with pytest.raises(ValueError):
        Conv2d.Attrs(stride=0)
    with pytest.raises(ValueError):
        Conv2d.Attrs(padding=-1)
    b = gx.GraphBuilder("rt")
    x = b.input("x", shape=(None, 2, 6, 6))
    w = b.param("W", np.ones((2, 1, 3, 3)))
    b.output(b.op("conv2d", x, w, stride=(2, 1), padding=[1, 0], dilation=2, groups=2), "y")
    g = gx.loads(gx.dumps(b.build()))
    a = g.nodes[0].gate.attrs
    assert (a.stride, a.padding, a.dilation, a.groups) == ((2, 1), (1, 0), 2, 2)


POOL_CASES = [  # (x shape, attrs)
    ((2, 3, 8, 8), {"kernel": 2}),
    ((1, 2, 7, 5), {"kernel": 3, "stride": 2, "padding": 1}),  # odd, padded, batch 1
    ((2, 1, 6, 7), {"kernel": (3, 2), "stride": 1}),  # overlapping windows
    ((1, 2, 5, 5), {"kernel": 2, "stride": 3, "padding": (1, 0)}),
]


@pytest.mark.parametrize(("xs", "attrs"), POOL_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_matches_naive_loops_and_gradcheck(xs, attrs, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs)
    gate = MaxPool2d(MaxPool2d.Attrs(**attrs))
    y = gate.forward(Ctx(), x.astype(dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_pool(x, attrs["kernel"], attrs.get("stride"),
                                           attrs.get("padding", 0), "max"), rtol=1e-6)
    assert gate.infer(Spec(xs, dtype)) == Spec(y.shape, y.dtype)
    checks, err = check_gate_gradients(gate, [x], names=["x"], rng=rng)
    assert not err and checks[0].n_failed == 0


@pytest.mark.parametrize(("xs", "attrs"), POOL_CASES)
@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avg_pool_matches_naive_loops_and_gradcheck(xs, attrs, include, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(xs)
    gate = AvgPool2d(AvgPool2d.Attrs(**attrs, count_include_pad=include))
    y = gate.forward(Ctx(), x.astype(dtype))
    assert y.dtype == dtype
    ref = ref_pool(x, attrs["kernel"], attrs.get("stride"), attrs.get("padding", 0), "avg", include)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    checks, err = check_gate_gradients(gate, [x], names=["x"], rng=rng)
    assert not err and checks[0].n_failed == 0


def test_avg_pool_default_counts_the_padding_as_pytorch_does():
    y = AvgPool2d(AvgPool2d.Attrs(kernel=2, padding=1)).forward(Ctx(), np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(y[0, 0], np.full((2, 2), 0.25))  # one real pixel of four


def test_max_pool_tie_sends_the_gradient_to_the_first_tap_and_gradcheck_accepts_it():
    x = np.array([[[[1.0, 1.0], [1.0, 0.0]]]])  # three tied maxima in one window
    gate, ctx = MaxPool2d(), Ctx()
    gate.forward(ctx, x)
    ctx.needs_grad = (True,)
    (dx,) = gate.backward(ctx, np.array([[[[3.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0], [0.0, 0.0]])
    checks, err = check_gate_gradients(gate, [x], names=["x"], rng=np.random.default_rng(0))
    assert not err and checks[0].n_failed == 0 and checks[0].n_kinks >= 1


def test_max_pool_padding_is_minus_infinity_not_zero():
    y = MaxPool2d(MaxPool2d.Attrs(kernel=3, stride=1, padding=1)).forward(Ctx(), -np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y, -np.ones((1, 1, 2, 2)))


def test_pool_padding_over_half_the_kernel_is_refused():
    with pytest.raises(ValueError, match="more than half the kernel"):
        MaxPool2d.Attrs(kernel=2, padding=2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_global_avg_pool(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 5, 3)).astype(dtype)
    gate, ctx = GlobalAvgPool(), Ctx()
    y = gate.forward(ctx, x)
    assert y.shape == (1, 3) and y.dtype == dtype
    np.testing.assert_allclose(y, [[x[0, c].sum() / 15 for c in range(3)]], rtol=1e-6)
    ctx.needs_grad = (True,)
    (dx,) = gate.backward(ctx, np.array([[15.0, 30.0, 0.0]], dtype=dtype))
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx[0, :, 2, 1], [1.0, 2.0, 0.0])
    assert gate.infer(Spec((None, 3, None, None), dtype)) == Spec((None, 3), dtype)
