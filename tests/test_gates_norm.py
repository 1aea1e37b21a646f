"""batchnorm, layernorm and dropout: numpy references, both modes, proposals, gradients."""

from __future__ import annotations

import numpy as np
import pytest

from graphexec.errors import GraphError
from graphexec.gate import Ctx, Spec
from graphexec.gates.norm import BatchNorm, Dropout, LayerNorm
from graphexec.gradcheck import check_gate_gradients


def training_ctx(seed: int = 0) -> Ctx:
    ctx = Ctx()
    ctx.training = True
    ctx.rng = np.random.default_rng(seed)
    return ctx


def numgrad(f, x, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (in place)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


def bn_inputs(shape, rng):
    c = shape[1]
    return (rng.standard_normal(shape) * 2 + 1, rng.uniform(0.5, 2, c), rng.standard_normal(c),
            rng.standard_normal(c), rng.uniform(0.5, 2, c))


def ref_bn_per_channel(x, gamma, beta, mean, var, eps):
    """Channel by channel, from the definition."""
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        y[:, c] = gamma[c] * (x[:, c] - mean[c]) / np.sqrt(var[c] + eps) + beta[c]
    return y


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 3, 5), (2, 2, 1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_training_uses_batch_stats_and_proposes_running_stats(shape, dtype):
    rng = np.random.default_rng(0)
    x, gamma, beta, rm, rv = (v.astype(dtype) for v in bn_inputs(shape, rng))
    gate, ctx = BatchNorm(BatchNorm.Attrs(momentum=0.2, eps=1e-3)), training_ctx()
    before = [rm.copy(), rv.copy()]
    y = gate.forward(ctx, x, gamma, beta, rm, rv)
    assert y.dtype == dtype
    chans = [np.moveaxis(x, 1, 0)[c].ravel().astype(np.float64) for c in range(shape[1])]
    mu = np.array([v.mean() for v in chans])
    var = np.array([v.var() for v in chans])
    unbiased = np.array([v.var(ddof=1) for v in chans])
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref_bn_per_channel(x.astype(float), gamma, beta, mu, var, 1e-3),
                               rtol=tol, atol=tol)
    np.testing.assert_array_equal(rm, before[0])  # never written
    np.testing.assert_array_equal(rv, before[1])
    assert set(ctx.updates) == {3, 4}
    np.testing.assert_allclose(ctx.updates[3], 0.8 * rm + 0.2 * mu, rtol=tol)
    np.testing.assert_allclose(ctx.updates[4], 0.8 * rv + 0.2 * unbiased, rtol=tol)
    assert ctx.updates[3].dtype == dtype


@pytest.mark.parametrize("shape", [(1, 3), (1, 2, 3, 3), (4, 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_evaluation_uses_running_stats_and_proposes_nothing(shape, dtype):
    rng = np.random.default_rng(1)
    x, gamma, beta, rm, rv = (v.astype(dtype) for v in bn_inputs(shape, rng))
    ctx = Ctx()
    y = BatchNorm().forward(ctx, x, gamma, beta, rm, rv)
    assert y.dtype == dtype and "updates" not in ctx.__dict__
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref_bn_per_channel(x, gamma, beta, rm, rv, 1e-5), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 3, 2), (2, 1, 1, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients_are_numerical_gradients(shape, training):
    rng = np.random.default_rng(2)
    inputs = list(bn_inputs(shape, rng))
    gate = BatchNorm()
    y = gate.forward(training_ctx() if training else Ctx(), *inputs)
    u = rng.standard_normal(y.shape)
    ctx = training_ctx() if training else Ctx()
    gate.forward(ctx, *inputs)
    ctx.needs_grad = (True, True, True, False, False)
    grads = gate.backward(ctx, u)
    assert grads[3] is None and grads[4] is None

    def f():
        return float((gate.forward(training_ctx() if training else Ctx(), *inputs) * u).sum())

    for i in range(3):
        np.testing.assert_allclose(grads[i], numgrad(f, inputs[i]), rtol=1e-5, atol=1e-7)


def test_batchnorm_training_with_one_value_per_channel_is_refused():
    rng = np.random.default_rng(3)
    with pytest.raises(GraphError, match="at least 2 values per channel"):
        BatchNorm().forward(training_ctx(), *bn_inputs((1, 3), rng))


def test_batchnorm_shape_rule():
    f = "float32"
    assert BatchNorm().infer(Spec((None, 3, 8, 8), f), *[Spec((3,), f)] * 4) == Spec((None, 3, 8, 8), f)
    with pytest.raises(GraphError, match=r"x has 3 channels but running_var is \(4,\)"):
        BatchNorm().infer(Spec((None, 3), f), *[Spec((3,), f)] * 3, Spec((4,), f))
    with pytest.raises(GraphError, match="expects x"):
        BatchNorm().infer(Spec((2, 3, 4), f), *[Spec((3,), f)] * 4)


@pytest.mark.parametrize(("shape", "k"), [((4, 5), 1), ((2, 3, 4), 2), ((1, 3), 1), ((3, 2, 2, 3), 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layernorm_matches_reference_and_numerical_gradients(shape, k, dtype):
    rng = np.random.default_rng(4)
    tail = shape[len(shape) - k:]
    x, gamma, beta = rng.standard_normal(shape), rng.uniform(0.5, 2, tail), rng.standard_normal(tail)
    gate = LayerNorm(LayerNorm.Attrs(normalized_ndim=k, eps=1e-4))
    y = gate.forward(Ctx(), x.astype(dtype), gamma.astype(dtype), beta.astype(dtype))
    assert y.dtype == dtype
    rows = x.reshape(-1, int(np.prod(tail)))
    ref = np.stack([(r - r.mean()) / np.sqrt(r.var() + 1e-4) for r in rows]).reshape(shape) * gamma + beta
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    checks, err = check_gate_gradients(gate, [x, gamma, beta], names=["x", "g", "b"], rng=rng)
    assert not err and all(t.n_failed == 0 for t in checks.values())


def test_layernorm_shape_rule_names_the_mismatch():
    with pytest.raises(GraphError, match=r"over its last 2 axes \(3, 4\) but gamma is \(4,\)"):
        LayerNorm(LayerNorm.Attrs(normalized_ndim=2)).infer(
            Spec((None, 3, 4), "float64"), Spec((4,), "float64"), Spec((3, 4), "float64"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_evaluation_is_the_identity(dtype):
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(dtype)
    gate, ctx = Dropout(Dropout.Attrs(p=0.9)), Ctx()
    np.testing.assert_array_equal(gate.forward(ctx, x), x)
    ctx.needs_grad = (True,)
    dy = np.ones_like(x)
    (dx,) = gate.backward(ctx, dy)
    np.testing.assert_array_equal(dx, dy)
    assert dx is not dy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_training_is_inverted_and_backward_uses_the_same_mask(dtype):
    x = np.ones((200, 50), dtype=dtype)
    gate, ctx = Dropout(Dropout.Attrs(p=0.3)), training_ctx(7)
    y = gate.forward(ctx, x)
    assert y.dtype == dtype
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02  # 10,000 Bernoulli(0.7) draws: sd 0.0046
    ctx.needs_grad = (True,)
    (dx,) = gate.backward(ctx, np.full_like(x, 2.0))
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_allclose(dx[kept], 2 / 0.7, rtol=1e-6)
    again = gate.forward(training_ctx(7), x)
    np.testing.assert_array_equal(again, y)  # a pure function of the generator
    assert not np.array_equal(gate.forward(training_ctx(8), x), y)


def test_dropout_edges_and_missing_generator():
    x = np.ones((4, 4))
    np.testing.assert_array_equal(Dropout(Dropout.Attrs(p=1.0)).forward(training_ctx(), x), 0 * x)
    np.testing.assert_array_equal(Dropout(Dropout.Attrs(p=0.0)).forward(training_ctx(), x), x)
    ctx = Ctx()
    ctx.training = True
    with pytest.raises(GraphError, match=r"ctx\.rng exists only in a training-mode forward"):
        Dropout().forward(ctx, x)
    with pytest.raises(ValueError):
        Dropout.Attrs(p=1.5)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_buffer_gradients_only_when_asked_and_then_true(training):
    rng = np.random.default_rng(9)
    inputs = list(bn_inputs((3, 2, 2, 2), rng))
    gate = BatchNorm()
    make = training_ctx if training else Ctx
    ctx = make()
    u = rng.standard_normal(gate.forward(ctx, *inputs).shape)
    ctx.needs_grad = (True,) * 5
    grads = gate.backward(ctx, u)

    def f():
        return float((gate.forward(make(), *inputs) * u).sum())

    for i in (3, 4):  # zero in training mode (y ignores them), the true slope in evaluation mode
        np.testing.assert_allclose(grads[i], numgrad(f, inputs[i]), rtol=1e-5, atol=1e-7)
    ctx = make()
    gate.forward(ctx, *inputs)
    ctx.needs_grad = (True, True, True, False, False)  # what the executor asks
    assert gate.backward(ctx, u)[3:] == (None, None)
