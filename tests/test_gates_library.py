"""Gate library tests: each gate is driven directly (no executor), like the lecture's gradient checks.

For every gate we check, against independent references:
  * backward == central-difference gradient of sum(forward(...) * dout), in float64, away from kinks;
  * forward == a hand-written loop / formula, to 1e-12;
  * float32 in -> float32 out, for the output and every gradient, and gradient shapes == input shapes;
  * inputs (and dout) are never mutated; no per-run state is stored on the gate.
Any numpy warning (overflow, invalid value, ...) fails a test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from graphexec.gate import Ctx, Gate
from graphexec.gates.activations import ELU, LeakyReLU, Maxout, PReLU, ReLU, Tanh
from graphexec.gates.linear import Affine, Reshape
from graphexec.gates.losses import L2, SoftmaxCrossEntropy, SVMLoss

pytestmark = pytest.mark.filterwarnings("error")

Arrays = tuple[np.ndarray, ...]


# ---------------------------------------------------------------------------- helpers


def is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def make_gate(cls: type[Gate], attrs: dict[str, Any]) -> Gate:
    return cls(cls.Attrs(**attrs))


def run(
    gate: Gate,
    inputs: Arrays,
    dout: np.ndarray | None = None,
    needs: tuple[bool, ...] | None = None,
) -> tuple[np.ndarray, tuple[Any, ...] | None]:
    """Forward, then (if dout is given) backward, on a fresh Ctx."""
    ctx = Ctx()
    ctx.needs_grad = needs if needs is not None else tuple(is_float(a) for a in inputs)
    out = gate.forward(ctx, *inputs)
    grads = gate.backward(ctx, dout) if dout is not None else None
    return out, grads


def numeric_grad(gate: Gate, inputs: Arrays, dout: np.ndarray, i: int, h: float = 1e-5):
    """Central difference of f = sum(forward(inputs) * dout) with respect to inputs[i]."""
    x = inputs[i].astype(np.float64)  # a copy we may poke
    args = list(inputs)
    args[i] = x
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = np.sum(run(gate, tuple(args))[0] * dout)
        x[idx] = old - h
        f_minus = np.sum(run(gate, tuple(args))[0] * dout)
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def away_from_zero(
    rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1
) -> np.ndarray:
    """Random values with |v| in [low, 2): safely away from a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)


def labels_for(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return rng.integers(0, c, size=n)


# ---------------------------------------------------------------------------- references
# Deliberately naive: python loops and the textbook formula, float64 only.


def ref_affine(x, w, b):
    n, d = x.shape
    m = w.shape[1]
    return np.array(
        [[sum(x[i, k] * w[k, j] for k in range(d)) + b[j] for j in range(m)] for i in range(n)]
    )


def ref_elementwise(fn: Callable[[float], float]):
    def ref(x):
        return np.array([fn(float(v)) for v in x.flat]).reshape(x.shape)

    return ref


def ref_tanh(v: float) -> float:
    t = math.exp(-2 * abs(v))
    return math.copysign((1 - t) / (1 + t), v)


def ref_prelu(x, alpha):
    alpha = np.broadcast_to(alpha, x.shape[-1:])
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        v = x[idx]
        out[idx] = v if v > 0 else alpha[idx[-1]] * v
    return out


def ref_maxout(x, w, b):
    k, d, hdim = w.shape
    out = np.empty((x.shape[0], hdim))
    for n in range(x.shape[0]):
        for h in range(hdim):
            out[n, h] = max(sum(x[n, i] * w[p, i, h] for i in range(d)) + b[p, h] for p in range(k))
    return out


def ref_softmax_ce(scores, labels):
    total = 0.0
    for s, y in zip(scores.tolist(), labels.tolist()):
        total += -math.log(math.exp(s[y]) / sum(math.exp(v) for v in s))
    return total / len(scores)


def ref_svm(scores, labels):
    total = 0.0
    for i in range(scores.shape[0]):
        y = labels[i]
        for j in range(scores.shape[1]):
            if j != y:
                total += max(0.0, scores[i, j] - scores[i, y] + 1.0)
    return total / scores.shape[0]


def ref_l2(x):
    return 0.5 * sum(float(v) ** 2 for v in x.flat)


# ---------------------------------------------------------------------------- input makers
# Each maker returns float64 inputs (plus int labels) that sit away from every kink, so the
# central difference is valid.


def make_maxout(rng, n=5, d=3, k=3, h=4):
    while True:  # redraw until the winning piece beats the runner-up clearly everywhere
        x, w, b = rng.normal(size=(n, d)), rng.normal(size=(k, d, h)), rng.normal(size=(k, h))
        top = np.sort(np.einsum("nd,kdh->knh", x, w) + b[:, None, :], axis=0)
        if np.min(top[-1] - top[-2]) > 0.05:
            return x, w, b


def make_svm(rng, n=6, c=4):
    while True:  # redraw until no margin s_j - s_y + 1 is near its kink at 0
        scores, labels = rng.normal(size=(n, c)), labels_for(rng, n, c)
        m = scores - scores[np.arange(n), labels][:, None] + 1
        m[np.arange(n), labels] = 1.0
        if np.min(np.abs(m)) > 0.05:
            return scores, labels


def normal(*shapes):
    """Maker of standard normal inputs of the given shapes."""
    return lambda rng: tuple(rng.normal(size=s) for s in shapes)


def kinkless(shape, alpha_shape=None):
    """Maker of an input away from 0 (plus a PReLU slope in [0.05, 0.3) of alpha_shape)."""
    if alpha_shape is None:
        return lambda rng: (away_from_zero(rng, shape),)
    return lambda rng: (away_from_zero(rng, shape), np.asarray(rng.uniform(0.05, 0.3, alpha_shape)))


def make_scores_labels(rng, n=5, c=4):
    return 3 * rng.normal(size=(n, c)), labels_for(rng, n, c)


def ref_flat(*shape):
    return lambda x: np.array(list(x.flat)).reshape(shape)


def ref_leaky(alpha):
    return ref_elementwise(lambda v: v if v > 0 else alpha * v)


def ref_elu(alpha):
    return ref_elementwise(lambda v: v if v > 0 else alpha * (math.exp(v) - 1))


@dataclass
class Case:
    id: str
    cls: type[Gate]
    make: Callable[[np.random.Generator], Arrays]
    ref: Callable[..., Any]
    attrs: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("affine", Affine, normal((4, 3), (3, 5), (5,)), ref_affine),
    Case("reshape", Reshape, normal((2, 3, 4)), ref_flat(4, 6), {"shape": [4, -1]}),
    Case("reshape", Reshape, normal((2, 3, 4)), ref_flat(24)),  # default [-1]: flatten
    Case("reshape", Reshape, normal((6,)), ref_flat(1, 2, 3), {"shape": [1, -1, 3]}),
    Case("tanh", Tanh, normal((3, 4)), ref_elementwise(ref_tanh)),
    Case("relu", ReLU, kinkless((3, 4)), ref_elementwise(lambda v: max(0.0, v))),
    Case("leaky_relu", LeakyReLU, kinkless((3, 4)), ref_leaky(0.01)),
    Case("leaky_relu", LeakyReLU, kinkless((3, 4)), ref_leaky(0.2), {"alpha": 0.2}),
    Case("prelu", PReLU, kinkless((4, 3), alpha_shape=()), ref_prelu),
    Case("prelu", PReLU, kinkless((2, 3, 4), alpha_shape=(4,)), ref_prelu),
    Case("elu", ELU, kinkless((3, 4)), ref_elu(1.0)),
    Case("elu", ELU, kinkless((3, 4)), ref_elu(0.5), {"alpha": 0.5}),
    Case("maxout", Maxout, make_maxout, ref_maxout),
    Case("softmax_cross_entropy", SoftmaxCrossEntropy, make_scores_labels, ref_softmax_ce),
    Case("svm_loss", SVMLoss, make_svm, ref_svm),
    Case("l2", L2, normal((3, 4)), ref_l2),
]


def case_params():
    return [pytest.param(i, c, id=f"{c.id}-{i}") for i, c in enumerate(CASES)]


def draw(index: int, case: Case, dtype=np.float64):
    """Deterministic inputs and upstream gradient for one case, float inputs cast to dtype."""
    rng = np.random.default_rng(1000 + index)
    inputs = tuple(a.astype(dtype) if is_float(a) else a for a in case.make(rng))
    out, _ = run(make_gate(case.cls, case.attrs), inputs)
    dout = rng.normal(size=out.shape).astype(dtype)
    return inputs, dout


def rel_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Close to rtol relative to the array's scale (elementwise rtol is unfair to tiny entries)."""
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ---------------------------------------------------------------------------- generic tests


@pytest.mark.parametrize(("index", "case"), case_params())
def test_name_and_attrs_model(index, case):
    assert case.cls.name == case.id
    attrs = case.cls.Attrs(**case.attrs)
    with pytest.raises(ValidationError):
        case.cls.Attrs(**case.attrs, no_such_attribute=1)  # extra="forbid"
    if case.attrs:
        with pytest.raises(ValidationError):
            setattr(attrs, next(iter(case.attrs)), 0)  # frozen


@pytest.mark.parametrize(("index", "case"), case_params())
def test_backward_matches_numerical_gradient(index, case):
    inputs, dout = draw(index, case)
    gate = make_gate(case.cls, case.attrs)
    _, grads = run(gate, inputs, dout)
    assert len(grads) == len(inputs)
    for i, (a, g) in enumerate(zip(inputs, grads)):
        if not is_float(a):
            assert g is None  # integer labels take no gradient
            continue
        assert g.shape == a.shape and g.dtype == np.float64
        rel_close(g, numeric_grad(gate, inputs, dout, i), rtol=1e-6)


@pytest.mark.parametrize(("index", "case"), case_params())
def test_forward_matches_reference(index, case):
    inputs, _ = draw(index, case)
    out, _ = run(make_gate(case.cls, case.attrs), inputs)
    expected = np.asarray(case.ref(*inputs), dtype=np.float64)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("index", "case"), case_params())
def test_float32_stays_float32(index, case):
    inputs32, dout32 = draw(index, case, np.float32)
    out, grads = run(make_gate(case.cls, case.attrs), inputs32, dout32)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    inputs64, dout64 = draw(index, case)
    out64, grads64 = run(make_gate(case.cls, case.attrs), inputs64, dout64)
    np.testing.assert_allclose(out, out64, rtol=1e-4, atol=1e-5)
    for a, g, g64 in zip(inputs32, grads, grads64):
        if is_float(a):
            assert g.dtype == np.float32 and g.shape == a.shape
            np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("index", "case"), case_params())
def test_inputs_not_mutated_and_no_state_on_gate(index, case, dtype):
    inputs, dout = draw(index, case, dtype)
    copies = [a.copy() for a in inputs] + [dout.copy()]
    for a in (*inputs, dout):
        a.setflags(write=False)  # any in-place write raises
    gate = make_gate(case.cls, case.attrs)
    ctx = Ctx()
    ctx.needs_grad = tuple(is_float(a) for a in inputs)
    gate.forward(ctx, *inputs)
    first = [None if g is None else np.array(g) for g in gate.backward(ctx, dout)]  # copies
    second = gate.backward(ctx, dout)  # backward must not disturb ctx either
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)
    for a, c in zip((*inputs, dout), copies):
        np.testing.assert_array_equal(a, c)
    assert getattr(gate, "__dict__", {}) == {}  # all per-run state went to ctx


@pytest.mark.parametrize(("index", "case"), case_params())
def test_needs_grad_skipping(index, case):
    """Asking for one gradient only gives the same gradient (others may be None)."""
    inputs, dout = draw(index, case)
    gate = make_gate(case.cls, case.attrs)
    _, full = run(gate, inputs, dout)
    for i, a in enumerate(inputs):
        if not is_float(a):
            continue
        needs = tuple(j == i for j in range(len(inputs)))
        _, grads = run(gate, inputs, dout, needs)
        np.testing.assert_array_equal(grads[i], full[i])
        for j, g in enumerate(grads):
            if j != i and g is not None:
                np.testing.assert_array_equal(g, full[j])


# ---------------------------------------------------------------------------- gate-specific


def test_reshape_attrs_validation():
    with pytest.raises(ValidationError):
        Reshape.Attrs(shape=[-1, -1])
    with pytest.raises(ValidationError):
        Reshape.Attrs(shape=[2, -3])
    assert Reshape.Attrs().shape == [-1]


def test_relu_family_at_exactly_zero():
    x = np.array([-1.0, 0.0, 2.0])
    dy = np.array([5.0, 7.0, 11.0])
    _, (dx,) = run(ReLU(), (x,), dy)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 11.0])  # gradient at 0 is 0
    _, (dx,) = run(LeakyReLU(LeakyReLU.Attrs(alpha=0.1)), (x,), dy)
    np.testing.assert_allclose(dx, [0.5, 0.7, 11.0])  # 0 is on the alpha * x side
    out, (dx, dalpha) = run(PReLU(), (x, np.array(0.25)), dy)
    np.testing.assert_array_equal(out, [-0.25, 0.0, 2.0])
    np.testing.assert_allclose(dx, [1.25, 1.75, 11.0])
    assert dalpha.shape == () and dalpha == -5.0  # sum of x * dy over x <= 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elu_large_inputs_no_overflow(dtype):
    x = np.array([1e3, 80.0, 0.0, -80.0, -1e3], dtype=dtype)
    out, (dx,) = run(ELU(ELU.Attrs(alpha=2.0)), (x,), np.ones_like(x))  # warnings are errors
    np.testing.assert_allclose(out, [1e3, 80.0, 0.0, -2.0, -2.0])
    np.testing.assert_allclose(dx, [1.0, 1.0, 2.0, 0.0, 0.0], atol=1e-30)
    assert out.dtype == dx.dtype == dtype


def test_maxout_tie_goes_to_first_piece():
    rng = np.random.default_rng(7)
    x, w1, b1 = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    w = np.stack([w1, w1, w1 - 5.0])  # pieces 0 and 1 identical, piece 2 mostly loses
    b = np.stack([b1, b1, b1 - 50.0])
    dz = rng.normal(size=(4, 2))
    _, (dx, dw, db) = run(Maxout(), (x, w, b), dz)
    np.testing.assert_allclose(dw[0], x.T @ dz)
    np.testing.assert_allclose(db[0], dz.sum(axis=0))
    assert not dw[1:].any() and not db[1:].any()
    np.testing.assert_allclose(dx, dz @ w1.T)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_softmax_cross_entropy_large_scores(scale, dtype):
    rng = np.random.default_rng(11)
    scores = (scale * rng.normal(size=(6, 5))).astype(dtype)
    labels = labels_for(rng, 6, 5)
    loss, (ds, dl) = run(SoftmaxCrossEntropy(), (scores, labels), np.array(1.0, dtype=dtype))
    assert np.isfinite(loss) and np.all(np.isfinite(ds)) and dl is None
    assert loss.shape == () and loss.dtype == ds.dtype == dtype
    # the exact answer: log-sum-exp is the row max up to a term in [0, log C]
    rows = np.arange(6)
    expected = np.mean(scores.max(axis=1).astype(np.float64) - scores[rows, labels])
    tol = 1e-5 * scale  # float32 rounding of scores this large
    assert expected - tol <= loss <= expected + np.log(5) + tol


def test_softmax_cross_entropy_known_values():
    scores = np.array([[1e4, 0.0, -1e4], [2.0, 2.0, 2.0]])
    loss, _ = run(SoftmaxCrossEntropy(), (scores, np.array([0, 1])))
    np.testing.assert_allclose(loss, np.log(3) / 2, rtol=1e-12)  # row 0 is ~0, row 1 is log C
    loss, _ = run(SoftmaxCrossEntropy(), (scores, np.array([1, 1])))
    np.testing.assert_allclose(loss, (1e4 + np.log(3)) / 2, rtol=1e-12)


def test_svm_loss_lecture_example():
    """The three-image example of the lecture: losses 2.9, 0 and 12.9."""
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    labels = np.array([0, 1, 2])
    loss, (ds, dl) = run(SVMLoss(), (scores, labels), np.array(3.0))
    np.testing.assert_allclose(loss, (2.9 + 0 + 12.9) / 3, rtol=1e-12)
    # image 0: only 'car' violates; image 1: none; image 2: 'cat' and 'car' both violate
    np.testing.assert_array_equal(ds, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])
    assert dl is None


def test_l2_value_and_scalar_output():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    out, (dx,) = run(L2(), (x,), np.array(2.0))
    assert out.shape == () and out == 0.5 * (1 + 4 + 9 + 0.25)
    np.testing.assert_array_equal(dx, 2.0 * x)


def test_one_gate_many_runs():
    """A gate instance keeps nothing per run: two interleaved runs stay independent."""
    gate = SoftmaxCrossEntropy()
    rng = np.random.default_rng(3)
    s1, s2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y = np.array([0, 1, 2])
    c1, c2 = Ctx(), Ctx()
    c1.needs_grad = c2.needs_grad = (True, False)
    gate.forward(c1, s1, y)
    gate.forward(c2, s2, y)
    d1, _ = gate.backward(c1, np.array(1.0))
    _, (expected, _) = run(SoftmaxCrossEntropy(), (s1, y), np.array(1.0))
    np.testing.assert_array_equal(d1, expected)


# ---------------------------------------------------------------------------- forward == backward's domain
# Issue 10 §2: no gate accepts in forward what its backward cannot serve. These go through the
# executor (which checks every gradient's shape) and gx.gradcheck (numerical agreement).


def one_node_graph(op, inputs, attrs=None):
    import graphexec as gx

    b = gx.GraphBuilder(f"one_{op}")
    ins = [b.input(f"in{i}", shape=v.shape, dtype=v.dtype.name) for i, v in enumerate(inputs)]
    b.output(b.op(op, *ins, name="node", **(attrs or {})), "out")
    return b.build(), {f"in{i}": v for i, v in enumerate(inputs)}


def executor_grads(op, inputs, dout=None, attrs=None):
    import graphexec as gx

    g, feed = one_node_graph(op, inputs, attrs)
    ex = gx.Executor(g)
    out = ex.forward(feed)["out"]
    seed = np.ones_like(out) if dout is None else dout
    floats = [k for k, v in feed.items() if v.dtype.kind == "f"]
    return out, ex.backward({"out": seed}, wrt=floats)


@pytest.mark.parametrize("b_shape", [(5,), (1, 5), (4, 5), (1, 1), ()])
def test_affine_bias_gradient_is_shaped_like_the_bias(b_shape):
    rng = np.random.default_rng(21)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=b_shape)
    dz = rng.normal(size=(4, 5))
    out, grads = executor_grads("affine", [x, w, b], dz)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12)
    assert grads["in2"].shape == b_shape
    np.testing.assert_allclose(grads["in2"], unbroadcast_ref(dz, b_shape), rtol=1e-12)
    np.testing.assert_allclose(grads["in0"], dz @ w.T, rtol=1e-12)
    np.testing.assert_allclose(grads["in1"], x.T @ dz, rtol=1e-12)


def unbroadcast_ref(grad, shape):
    """Sum grad down to shape, one axis at a time (an independent spelling of unbroadcast)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(axis=i, keepdims=True)
    return grad


MATMUL_SHAPES = [
    ((3,), (3,)),  # inner product: a scalar
    ((3,), (3, 4)),  # row vector
    ((2, 3), (3,)),  # column vector
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),  # a batch of x against one W
    ((2, 3), (5, 3, 4)),  # one x against a batch of W
    ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (5, 3, 4)),  # batch axis of size 1 broadcast
    ((6, 1, 2, 3), (5, 3, 4)),  # both batch shapes broadcast: (6, 5, 2, 4)
    ((3,), (5, 3, 4)),  # vector against a batch
    ((5, 2, 3), (3,)),
]


@pytest.mark.parametrize(("sx", "sw"), MATMUL_SHAPES, ids=str)
def test_matmul_backward_follows_numpy_matmul(sx, sw):
    rng = np.random.default_rng(22)
    x, w = rng.normal(size=sx), rng.normal(size=sw)
    dz = rng.normal(size=np.shape(x @ w))
    out, grads = executor_grads("matmul", [x, w], dz)
    np.testing.assert_allclose(out, x @ w, rtol=1e-12)
    # reference: f = Σ dz · (x @ w) is linear in x and in w, so its gradient is exact via einsum
    assert grads["in0"].shape == sx and grads["in1"].shape == sw
    for name, v in (("in0", x), ("in1", w)):
        numeric = np.zeros_like(v)
        for idx in np.ndindex(v.shape):  # f is linear: a unit step gives the exact derivative
            e = np.zeros_like(v)
            e[idx] = 1.0
            numeric[idx] = np.sum(dz * ((e @ w) if name == "in0" else (x @ e)))
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-10, atol=1e-12)


def test_affine_follows_matmul_semantics_and_keeps_dtype():
    rng = np.random.default_rng(23)
    x, w, b = rng.normal(size=(5, 2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(2, 1))
    _, grads = executor_grads("affine", [x, w, b])
    assert [grads[k].shape for k in ("in0", "in1", "in2")] == [(5, 2, 3), (3, 4), (2, 1)]
    np.testing.assert_allclose(grads["in2"], np.full((2, 1), 5 * 4.0))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    ctx = Ctx()
    ctx.needs_grad = (True, True, True)
    z = Affine().forward(ctx, x32, w32, b)  # a float64 bias promotes z, as numpy does
    dx, dw, db = Affine().backward(ctx, np.ones_like(z))
    assert z.dtype == db.dtype == np.float64 and dx.dtype == dw.dtype == np.float32


def test_prelu_slope_that_broadcasts_x_gives_dx_shaped_like_x():
    rng = np.random.default_rng(24)
    x, alpha = away_from_zero(rng, (3,)), rng.uniform(0.1, 0.3, size=(2, 1))
    out, grads = executor_grads("prelu", [x, alpha])
    assert out.shape == (2, 3) and grads["in0"].shape == (3,) and grads["in1"].shape == (2, 1)
    np.testing.assert_allclose(grads["in0"], np.where(x > 0, 2.0, alpha.sum()))


@pytest.mark.parametrize(("shapes", "found"), [
    (((3,), (2, 3, 4), (2, 4)), "x (3,), W (2, 3, 4), b (2, 4)"),
    (((5, 3), (2, 3, 4), (4,)), "x (5, 3), W (2, 3, 4), b (4,)"),
    (((5, 3), (2, 3, 4), (1, 4)), "x (5, 3), W (2, 3, 4), b (1, 4)"),
    (((2, 5, 3), (2, 3, 4), (2, 4)), "x (2, 5, 3), W (2, 3, 4), b (2, 4)"),
])
def test_maxout_refuses_shapes_its_backward_cannot_serve(shapes, found):
    from graphexec.errors import GraphError

    inputs = [np.ones(s) for s in shapes]
    with pytest.raises(GraphError) as e:
        Maxout().forward(Ctx(), *inputs)
    assert str(e.value) == (f"maxout expects x (N, D), W (k, D, H) and b (k, H); found {found}; "
                            "reshape them to fit")


# ---------------------------------------------------------------------------- labels
BAD_LABELS = [
    (np.zeros((3, 10)), np.array([0, 1, -1]),
     "label -1 at row 2 is not in 0..9 (scores have 10 classes); give class indices from 0 to 9"),
    (np.zeros((3, 10)), np.array([0, 10, 3]),
     "label 10 at row 1 is not in 0..9 (scores have 10 classes); give class indices from 0 to 9"),
    (np.zeros((3, 10)), np.array([0, 1]),
     ("the labels have 2 entries but the scores have 3 rows; expected one label per row, "
      "shape (3,)")),
    (np.zeros((3, 10)), np.array([[0, 1, 2]]),
     ("the labels have shape (1, 3) but the scores have 3 rows; expected one label per row, "
      "shape (3,)")),
    (np.zeros((3, 10)), np.array([0.0, 1.0, 2.0]),
     "labels must be integer class indices; found float64; convert them with .astype('int64')"),
    (np.zeros((2, 3, 10)), np.array([0, 1]),
     ("scores must be a matrix (N, C), one row per sample; found shape (2, 3, 10); reshape "
      "them to (N, C)")),
]


@pytest.mark.parametrize("cls", [SoftmaxCrossEntropy, SVMLoss])
@pytest.mark.parametrize(("scores", "labels", "message"), BAD_LABELS)
def test_losses_refuse_bad_labels_with_one_clear_line(cls, scores, labels, message):
    from graphexec.errors import GraphError

    with pytest.raises(GraphError) as e:
        cls().forward(Ctx(), scores, labels)
    assert str(e.value) == message


def _classifier(op):
    import graphexec as gx

    b = gx.GraphBuilder("clf")
    s, y = b.input("scores", shape=(None, 10)), b.input("y", shape=(None,), dtype="int64")
    b.output(b.op(op, s, y, name="loss"), "loss")
    return b.build()


@pytest.mark.parametrize("op", ["softmax_cross_entropy", "svm_loss"])
def test_bad_labels_are_refused_by_executor_run_and_cli(op, tmp_path, capsys):
    """Before: label -1 silently meant the last class in all three."""
    import graphexec as gx
    from graphexec.cli.main import main

    g = _classifier(op)
    scores, y = np.zeros((3, 10)), np.array([0, 1, -1])
    want = (f"node 'loss' ({op}) failed in forward: label -1 at row 2 is not in 0..9 (scores "
            "have 10 classes); give class indices from 0 to 9")
    with pytest.raises(gx.GraphError) as e:
        gx.Executor(g).forward(scores=scores, y=y)
    assert str(e.value) == want
    with pytest.raises(gx.GraphError) as e:
        gx.run(g, scores=scores, y=np.array([0, 1]))
    assert "the labels have 2 entries but the scores have 3 rows" in str(e.value)
    path = tmp_path / "clf.gx"
    gx.save(g, path)
    np.save(tmp_path / "s.npy", scores)
    assert main(["run", str(path), "-i", f"scores=@{tmp_path / 's.npy'}", "-i", "y=[0,1,-1]"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {want}\n"


# ---------------------------------------------------------------------------- integer div
def test_integer_div_truncates_toward_zero_and_keeps_dtype():
    from graphexec.gates.arith import Div

    x = np.array([7, -7, 7, -7, 6, 0, -1], dtype=np.int32)
    y = np.array([2, 2, -2, -2, -3, 5, 3], dtype=np.int32)
    z = Div().forward(Ctx(), x, y)
    assert z.dtype == np.int32  # before: float64 true division
    np.testing.assert_array_equal(z, [3, -3, -3, 3, -2, 0, 0])  # C / ONNX Div: toward zero
    z = Div().forward(Ctx(), x, np.int64(2))
    assert z.dtype == np.int64
    np.testing.assert_array_equal(z, [3, -3, 3, -3, 3, 0, 0])


def test_integer_div_by_zero_gives_zero_without_a_warning():
    from graphexec.gates.arith import Div

    z = Div().forward(Ctx(), np.array([[1, -2], [3, 4]]), np.array([1, 0]))  # warnings: errors
    np.testing.assert_array_equal(z, [[1, 0], [3, 0]])


def test_div_with_one_float_operand_is_true_division_with_a_gradient_for_the_float():
    import graphexec as gx

    b = gx.GraphBuilder("mixed_div")
    x, k = b.input("x", shape=(3,)), b.input("k", shape=(3,), dtype="int64")
    b.output(b.op("div", x, k), "z")
    b.output(b.op("div", k, b.op("div", k, k)), "q")  # integer all the way: stays int64
    ex = gx.Executor(b.build())
    out = ex.forward(x=np.array([1.0, -3.0, 5.0]), k=np.array([2, 4, -5]))
    np.testing.assert_array_equal(out["z"], [0.5, -0.75, -1.0])
    assert out["q"].dtype == np.int64
    np.testing.assert_array_equal(out["q"], [2, 4, -5])
    grads = ex.backward({"z": np.ones(3)})
    assert list(grads) == ["x"]
    np.testing.assert_array_equal(grads["x"], [0.5, 0.25, -0.2])


# ---------------------------------------------------------------------------- max at a tie
def test_max_tie_sends_the_whole_gradient_to_the_first_input():
    from graphexec.gates.arith import Max

    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 3.0])
    dz = np.array([10.0, 20.0, 30.0])
    ctx = Ctx()
    ctx.needs_grad = (True, True)
    Max().forward(ctx, x, y)
    dx, dy = Max().backward(ctx, dz)
    np.testing.assert_array_equal(dx, [10.0, 0.0, 30.0])
    np.testing.assert_array_equal(dy, [0.0, 20.0, 0.0])
    ctx = Ctx()
    ctx.needs_grad = (True, True)
    Max().forward(ctx, y, x)  # swapped: the first input still wins the ties
    dy2, dx2 = Max().backward(ctx, dz)
    np.testing.assert_array_equal(dy2, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(dx2, [0.0, 0.0, 0.0])
