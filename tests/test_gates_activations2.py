"""erf, onnx_gelu, onnx_softplus, hard_sigmoid, hard_swish: values from their definitions
(math.erf, the formulas) and gradcheck; layernorm_stat against numpy."""

import math

import numpy as np
import pytest

import graphexec as gx

X = np.array([-40.0, -3.5, -3.0, -1.2, -0.3, 0.0, 0.4, 1.7, 3.0, 3.2, 40.0])


def _run(op, x, **attrs):
    b = gx.GraphBuilder(op)
    b.output(b.op(op, b.input("x", shape=x.shape, dtype=x.dtype.name), **attrs), "y")
    g = b.build()
    return g, gx.run(g, {"x": x})["y"]


def _phi(v):
    return 0.5 * math.erfc(-v / math.sqrt(2))


@pytest.mark.parametrize("op, attrs, want", [
    ("erf", {}, math.erf),
    ("onnx_gelu", {}, lambda v: v * _phi(v)),
    ("onnx_gelu", {"approximate": "tanh"},
     # ½ v (1 + tanh u) = v σ(2u), the form that does not cancel for v << 0
     lambda v: v / (1 + math.exp(min(700.0, -2 * math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))))),
    ("onnx_softplus", {}, lambda v: max(v, 0) + math.log1p(math.exp(-abs(v)))),
    ("hard_sigmoid", {"alpha": 0.3, "beta": 0.4}, lambda v: min(1, max(0, 0.3 * v + 0.4))),
    ("hard_sigmoid", {}, lambda v: min(1, max(0, 0.2 * v + 0.5))),
    ("hard_swish", {}, lambda v: v * min(1, max(0, v / 6 + 0.5))),
])
def test_values_follow_the_definition_in_float64_and_float32(op, attrs, want):
    ref = np.array([want(v) for v in X])
    _, got = _run(op, X, **attrs)
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-300)
    _, got32 = _run(op, X.astype("float32"), **attrs)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("op, attrs", [("erf", {}), ("onnx_gelu", {}),
                                       ("onnx_gelu", {"approximate": "tanh"}),
                                       ("onnx_softplus", {}), ("hard_sigmoid", {}),
                                       ("hard_swish", {})])
def test_gradients_away_from_the_kinks(op, attrs):
    x = np.array([-4.1, -2.9, -1.2, -0.3, 0.4, 1.7, 2.6, 3.3])
    g, _ = _run(op, x, **attrs)
    assert gx.gradcheck(g, {"x": x}).ok


def test_softplus_is_exact_far_from_zero():
    _, y = _run("onnx_softplus", np.array([-800.0, 800.0]))
    assert y[0] == 0.0 and y[1] == 800.0  # no overflow, no log(inf)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_layernorm_stat_is_the_mean_and_inverse_std_of_layernorm(k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 3, 4))
    axes = tuple(range(3 - k, 3))
    _, mean = _run("layernorm_stat", x, normalized_ndim=k)
    g, inv = _run("layernorm_stat", x, normalized_ndim=k, stat="inv_std_dev", eps=1e-3)
    np.testing.assert_allclose(mean, x.mean(axis=axes, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(inv, 1 / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-3),
                               rtol=1e-13)
    assert mean.shape == inv.shape == x.shape[:3 - k] + (1,) * k
    assert gx.gradcheck(g, {"x": x}).ok
