"""flatten, transpose, concat, pad, softmax, log_softmax and clip: references, gradients, edges."""

from __future__ import annotations

import numpy as np
import pytest

from graphexec.errors import GraphError
from graphexec.gate import Ctx, Spec
from graphexec.gates.layout import Clip, Concat, Flatten, Pad, Transpose
from graphexec.gates.softmax import LogSoftmax, Softmax
from graphexec.gradcheck import check_gate_gradients

DTYPES = ["float32", "float64"]


def grads_ok(gate, inputs, seed=0):
    checks, err = check_gate_gradients(gate, inputs, names=[f"in{i}" for i in range(len(inputs))],
                                       rng=np.random.default_rng(seed), max_coords=64)
    return not err and all(t.n_failed == 0 for t in checks.values())


def run(gate, *inputs, dy=None):
    ctx = Ctx()
    y = gate.forward(ctx, *inputs)
    ctx.needs_grad = (True,) * len(inputs)
    return y, gate.backward(ctx, np.ones_like(y) if dy is None else dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis", "out"), [
    ((2, 3, 4, 5), 1, (2, 60)), ((2, 3, 4), 0, (1, 24)), ((2, 3, 4), 3, (24, 1)),
    ((2, 3, 4), -1, (6, 4)), ((1, 7), 1, (1, 7)),
])
def test_flatten_is_onnx_flatten(shape, axis, out, dtype):
    x = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    gate = Flatten(Flatten.Attrs(axis=axis))
    y, (dx,) = run(gate, x)
    assert y.shape == out and y.dtype == dtype
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    assert dx.shape == shape
    assert gate.infer(Spec(shape, dtype)) == Spec(out, dtype)
    batch = gate.infer(Spec((None, *shape[1:]), dtype)).shape
    assert batch == ((None, out[1]) if (axis if axis >= 0 else axis + len(shape)) >= 1 else (1, None))


def test_flatten_axis_out_of_range():
    with pytest.raises(GraphError, match=r"axis 4 is out of range for 3 axes; expected -3\.\.3"):
        Flatten(Flatten.Attrs(axis=4)).forward(Ctx(), np.zeros((1, 2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_and_its_gradient(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    gate = Transpose(Transpose.Attrs(perm=[2, 0, 1]))
    dy = rng.standard_normal((4, 2, 3)).astype(dtype)
    y, (dx,) = run(gate, x, dy=dy)
    assert y.shape == (4, 2, 3) and y[1, 0, 2] == x[0, 2, 1]
    assert dx.dtype == dtype and dx[0, 2, 1] == dy[1, 0, 2]
    assert Transpose().forward(Ctx(), x).shape == (4, 3, 2)
    assert gate.infer(Spec((None, 3, 4), dtype)) == Spec((4, None, 3), dtype)
    with pytest.raises(ValueError, match="not a permutation"):
        Transpose.Attrs(perm=[0, 0, 1])
    with pytest.raises(GraphError, match="has 2 axes but x has 3"):
        Transpose(Transpose.Attrs(perm=[1, 0])).forward(Ctx(), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_joins_and_splits_the_gradient(dtype):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, n, 3)).astype(dtype) for n in (1, 3, 2)]
    gate = Concat(Concat.Attrs(axis=1))
    dy = rng.standard_normal((2, 6, 3)).astype(dtype)
    y, grads = run(gate, *xs, dy=dy)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=1))
    np.testing.assert_array_equal(grads[1], dy[:, 1:4])
    assert all(g.dtype == dtype and g.flags.writeable and g.base is None for g in grads)
    assert gate.infer(*(Spec((None, x.shape[1], 3), dtype) for x in xs)) == Spec((None, 6, 3), dtype)
    assert gate.infer(Spec((None, 2, 3), dtype), Spec(None, dtype)) == Spec((None, None, 3), dtype)
    assert grads_ok(gate, [x.astype(np.float64) for x in xs])


def test_concat_refuses_other_axes_that_differ():
    with pytest.raises(GraphError, match="differ in another axis"):
        Concat(Concat.Attrs(axis=0)).forward(Ctx(), np.zeros((1, 2)), np.zeros((1, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pad_is_numpy_constant_pad_and_crops_the_gradient(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3)).astype(dtype)
    gate = Pad(Pad.Attrs(pads=[(1, 0), (2, 3)], value=-1.5))
    y, (dx,) = run(gate, x, dy=np.arange(3 * 8, dtype=dtype).reshape(3, 8))
    assert y.dtype == dtype and y.shape == (3, 8)
    np.testing.assert_array_equal(y[1:, 2:5], x)
    assert (y[0] == -1.5).all() and (y[:, :2] == -1.5).all()
    np.testing.assert_array_equal(dx, np.arange(24, dtype=dtype).reshape(3, 8)[1:, 2:5])
    assert gate.infer(Spec((None, 3), dtype)) == Spec((None, 8), dtype)
    with pytest.raises(GraphError, match="2 .before, after. pairs but x has 3 axes"):
        gate.forward(Ctx(), np.zeros((1, 2, 3)))
    np.testing.assert_array_equal(Pad().forward(Ctx(), x), x)  # default: no padding


def ref_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax_match_reference_and_gradcheck(axis, dtype):
    rng = np.random.default_rng(4)
    x = 3 * rng.standard_normal((3, 4, 2))
    for gate, ref in ((Softmax(Softmax.Attrs(axis=axis)), ref_softmax(x, axis)),
                      (LogSoftmax(LogSoftmax.Attrs(axis=axis)), np.log(ref_softmax(x, axis)))):
        y = gate.forward(Ctx(), x.astype(dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
        assert grads_ok(gate, [x])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_huge_scores(dtype):
    x = np.array([[1000.0, 0.0, -1000.0]], dtype=dtype)
    np.testing.assert_allclose(Softmax().forward(Ctx(), x), [[1.0, 0.0, 0.0]])
    y = LogSoftmax().forward(Ctx(), x)
    assert np.isfinite(y).all() and y[0, 0] == 0 and y[0, 1] == -1000


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_gradient_is_one_strictly_inside_and_zero_at_and_beyond_the_bounds(dtype):
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, 3.0], dtype=dtype)
    gate = Clip(Clip.Attrs(min=-1.0, max=1.0))
    y, (dx,) = run(gate, x)
    np.testing.assert_array_equal(y, [-1, -1, -0.5, 0, 1, 1])
    np.testing.assert_array_equal(dx, [0, 0, 1, 1, 0, 0])
    assert y.dtype == dx.dtype == dtype
    checks, err = check_gate_gradients(gate, [x], names=["x"], rng=np.random.default_rng(0))
    assert not err and checks[0].n_failed == 0 and checks[0].n_kinks == 2  # x = -1 and x = 1


def test_clip_with_one_bound_or_none():
    x = np.array([-2.0, 0.5, 2.0])
    np.testing.assert_array_equal(Clip(Clip.Attrs(min=0.0)).forward(Ctx(), x), [0, 0.5, 2])
    np.testing.assert_array_equal(Clip(Clip.Attrs(max=0.0)).forward(Ctx(), x), [-2, 0, 0])
    np.testing.assert_array_equal(Clip().forward(Ctx(), x), x)
    with pytest.raises(ValueError, match="greater than max"):
        Clip.Attrs(min=1.0, max=0.0)
