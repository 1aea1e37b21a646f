"""What the performance work must not change: in-place gradient sums never write into an array
someone else can see, results are identical from run to run, float32 stays float32, and a
forward-only run keeps O(1) activations alive (measured with tracemalloc, not time)."""

import tracemalloc

import numpy as np
import pytest

import graphexec as gx
from graphexec.errors import GraphError
from graphexec.gate import Ctx
from graphexec.registry import registry

RNG = np.random.default_rng


# ---------------------------------------------------------------------------- in-place sums
def test_gate_returning_one_array_for_two_inputs_is_never_written():
    """add returns one array as the gradient of both its inputs. Its backward runs first here
    (it is the last reader of x and y), so the later contributions to x and to y must make
    new sums rather than add into that one shared array."""
    b = gx.GraphBuilder("alias")
    x, y = b.input("x", shape=(3,)), b.input("y", shape=(3,))
    p, q = b.op("mul", x, x), b.op("mul", y, y)  # early readers: their backward runs last
    s = b.op("add", x, y)  # late reader: gradient of x and of y is one (writeable) array
    f = b.op("add", b.op("add", p, q), b.op("mul", s, s))
    b.output(b.op("sum", f), "f")
    ex = gx.Executor(b.build())
    xv, yv = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 2.0])
    ex.forward(x=xv, y=yv)
    g = ex.backward()
    # f = Σ x² + y² + (x+y)²:  df/dx = 2x + 2(x+y),  df/dy = 2y + 2(x+y)
    np.testing.assert_array_equal(g["x"], 2 * xv + 2 * (xv + yv))
    np.testing.assert_array_equal(g["y"], 2 * yv + 2 * (xv + yv))
    assert not np.shares_memory(g["x"], g["y"])


def test_array_a_gate_keeps_is_never_written():
    """A gate (no fresh_grads) that keeps the gradient it returns must find it unchanged."""
    kept = []

    class Keeper(gx.Gate):
        name, version = "perf_keeper", 1

        def forward(self, ctx, x):
            return x * 2.0

        def backward(self, ctx, dy):
            d = dy * 2.0
            kept.append((d, d.copy()))
            return (d,)

    gx.register_gate(Keeper, replace=True)
    b = gx.GraphBuilder("keep")
    x = b.input("x", shape=(4,))
    sq = b.op("mul", x, x)
    kept_node = b.op("perf_keeper", x)  # the last reader of x: its gradient arrives first
    f = b.op("add", sq, kept_node)
    b.output(b.op("sum", f), "f")
    ex = gx.Executor(b.build())
    xv = np.arange(4.0)
    ex.forward(x=xv)
    np.testing.assert_array_equal(ex.backward()["x"], 2.0 + 2 * xv)
    (returned, snapshot), = kept
    np.testing.assert_array_equal(returned, snapshot)


def test_gradient_returned_to_the_caller_is_not_reused():
    g = _mlp("float64")
    ex = gx.Executor(g)
    x, y = _batch("float64")
    ex.forward(x=x, y=y, reg=np.array(0.1))
    first = ex.backward({"loss": 1.0}, wrt=list(g.params))
    copies = {k: v.copy() for k, v in first.items()}
    for _ in range(2):
        ex.forward(x=x[::-1].copy(), y=y[::-1].copy(), reg=np.array(0.1))
        ex.backward({"loss": 1.0}, wrt=list(g.params))
    for k in first:
        np.testing.assert_array_equal(first[k], copies[k])


def test_seed_array_is_not_handed_back():
    b = gx.GraphBuilder("seed")
    x = b.input("x", shape=(2,))
    b.output(x, "same")  # an output that is the input itself
    ex = gx.Executor(b.build())
    ex.forward(x=[1.0, 2.0])
    seed = np.array([3.0, 4.0])
    g = ex.backward({"same": seed})
    assert g["x"] is not seed and not np.shares_memory(g["x"], seed)
    g["x"][:] = 0
    np.testing.assert_array_equal(seed, [3.0, 4.0])


# ---------------------------------------------------------------------------- fresh_grads
def _inputs(op: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Inputs for ``op``: the gates that need particular shapes or values are listed; any other
    gate (a new elementwise one, say) gets one (3, 4) array per input."""
    def n(*s):
        return rng.normal(size=s)

    def pos(*s):
        return rng.uniform(0.5, 2.0, size=s)

    table = {
        "mul": (n(3, 4), n(4)), "div": (n(3, 4), pos(4)), "log": (pos(3, 4),),
        "prelu": (n(3, 4), pos(4)), "maxout": (n(3, 2), n(2, 2, 4), n(2, 4)),
        "matmul": (n(3, 2), n(2, 4)), "affine": (n(3, 2), n(2, 4), n(4)),
        "softmax_cross_entropy": (n(3, 4), np.array([0, 3, 1])),
        "svm_loss": (n(3, 4), np.array([0, 3, 1])),
    }
    if op in table:
        return table[op]
    cls = registry().resolve(op, 1).cls
    generic = tuple(n(3, 4) for _ in range(max(cls_inputs(op), 1)))
    try:
        cls().forward(Ctx(), *generic)
        return generic
    except (GraphError, TypeError):  # it takes other shapes or arity (images, ...): ask it
        while True:
            sample = tuple(np.asarray(a) for a in cls.sample_inputs(rng)[0])
            if all(a.ndim >= 1 for a in sample):
                return sample


def cls_inputs(op: str) -> int:
    return registry().resolve(op, 1).n_inputs


def _builtin_gates() -> dict[str, type]:
    """graphexec's own gates, from the registry (so a new built-in gate is picked up)."""
    return {op: info.cls for op, info in registry().gates.items() if info.dist == "graphexec"}


FRESH = sorted(op for op, cls in _builtin_gates().items() if getattr(cls, "fresh_grads", False))
PASS_THROUGH = sorted(set(_builtin_gates()) - set(FRESH))


@pytest.mark.parametrize("op", FRESH)
def test_fresh_grads_are_new_arrays_nobody_else_holds(op):
    """A gate that declares fresh_grads lets the executor add into its gradients in place; so
    each must be a new writeable array sharing memory with no input, no dout, nothing on ctx
    and no other gradient it returned."""
    gate = registry().resolve(op, 1).cls()
    assert getattr(gate, "fresh_grads", False) is True
    inputs = _inputs(op, RNG(5))
    ctx = Ctx()
    out = gate.forward(ctx, *inputs)
    dout = RNG(6).normal(size=np.shape(out))
    ctx.needs_grad = tuple(a.dtype.kind == "f" for a in inputs)
    grads = [g for g in gate.backward(ctx, dout) if g is not None]
    assert grads
    seen = [*inputs, dout, *(v for v in vars(ctx).values() if isinstance(v, np.ndarray))]
    for i, g in enumerate(grads):
        assert isinstance(g, np.ndarray) and g.flags.writeable
        for other in seen + grads[:i]:
            assert not np.shares_memory(g, other), (op, i)


def test_the_gate_lists_come_from_the_registry():
    assert {"mul", "matmul", "softmax_cross_entropy"} <= set(FRESH)
    assert {"add", "sub", "sum", "mean", "reshape"} <= set(PASS_THROUGH)


@pytest.mark.parametrize("op", ["add", "sub", "sum", "mean", "reshape"])
def test_gates_that_pass_dout_through_do_not_claim_fresh_grads(op):
    assert getattr(registry().resolve(op, 1).cls, "fresh_grads", False) is False


# ---------------------------------------------------------------------------- identical results
def _mlp(dtype: str) -> gx.Graph:
    rng = RNG(0)
    b = gx.GraphBuilder("mlp")
    x = b.input("x", shape=(None, 5), dtype=dtype)
    y = b.input("y", shape=(None,), dtype="int64")
    reg = b.input("reg", shape=(), dtype=dtype)
    W1 = b.param("W1", rng.normal(size=(5, 7)).astype(dtype))
    b1 = b.param("b1", rng.normal(size=7).astype(dtype))
    W2 = b.param("W2", rng.normal(size=(7, 3)).astype(dtype))
    b2 = b.param("b2", rng.normal(size=3).astype(dtype))
    h = b.op("relu", b.op("affine", x, W1, b1))
    scores = b.op("affine", h, W2, b2)
    penalty = b.op("add", b.op("l2", W1), b.op("l2", W2))  # W1, W2 fan out: affine and l2
    loss = b.op("add", b.op("softmax_cross_entropy", scores, y), b.op("mul", reg, penalty))
    b.output(loss, "loss")
    b.output(scores, "scores")
    return b.build()


def _batch(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = RNG(1)
    return rng.normal(size=(6, 5)).astype(dtype), rng.integers(0, 3, size=6)


def _reference(g: gx.Graph, x: np.ndarray, y: np.ndarray, reg: float) -> tuple[float, dict]:
    """The same network written out in numpy (CS231n layers style), float64."""
    p = {k: v.astype(np.float64) for k, v in g.params.items()}
    x = x.astype(np.float64)
    z1 = x @ p["W1"] + p["b1"]
    h = np.maximum(z1, 0)
    s = h @ p["W2"] + p["b2"]
    e = np.exp(s - s.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(prob[np.arange(n), y]).mean() + reg * 0.5 * ((p["W1"] ** 2).sum()
                                                                + (p["W2"] ** 2).sum())
    ds = prob.copy()
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = (ds @ p["W2"].T) * (z1 > 0)
    return loss, {"W2": h.T @ ds + reg * p["W2"], "b2": ds.sum(0),
                  "W1": x.T @ dh + reg * p["W1"], "b1": dh.sum(0)}


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_mlp_gradients_match_reference_and_keep_dtype(dtype, tol):
    g = _mlp(dtype)
    x, y = _batch(dtype)
    ex = gx.Executor(g)
    out = ex.forward(x=x, y=y, reg=np.array(0.1, dtype=dtype))
    grads = ex.backward({"loss": 1.0}, wrt=list(g.params))
    loss, ref = _reference(g, x, y, 0.1)
    assert out["loss"].dtype == out["scores"].dtype == np.dtype(dtype)  # no silent upcast
    np.testing.assert_allclose(out["loss"], loss, rtol=tol)
    for k, v in ref.items():
        assert grads[k].dtype == np.dtype(dtype) and grads[k].shape == g.params[k].shape
        np.testing.assert_allclose(grads[k], v, rtol=tol, atol=tol)


def test_repeated_steps_give_identical_bits():
    """Fresh executors and a reused executor agree bit for bit (the sums happen in the same
    order every time, whether in place or not)."""
    g = _mlp("float64")
    x, y = _batch("float64")
    feed = {"x": x, "y": y, "reg": np.array(0.1)}

    def step(ex):
        ex.forward(feed)
        return ex.backward({"loss": 1.0}, wrt=list(g.params))

    ex = gx.Executor(g)
    runs = [step(ex), step(ex), step(gx.Executor(g))]
    for other in runs[1:]:
        for k in runs[0]:
            assert runs[0][k].tobytes() == other[k].tobytes()


def test_affine_bias_that_promotes_follows_numpy():
    """The in-place bias add applies only when it changes nothing: a float64 bias on float32
    data still promotes, as numpy's x @ W + b does."""
    gate = registry().resolve("affine", 1).cls()
    x, w = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    out = gate.forward(Ctx(), x, w, np.ones(4, np.float64))
    assert out.dtype == np.float64
    out = gate.forward(Ctx(), x, w, np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(out, np.full((2, 4), 4.0, np.float32))


# ---------------------------------------------------------------------------- memory
def test_forward_only_keeps_few_activations_alive():
    """A deep chain of large activations: gx.run's peak is a few activations, not one per node;
    Executor.forward (which keeps them for backward) is the contrast."""
    depth, shape = 40, (256, 256)
    b = gx.GraphBuilder("deep")
    v = b.input("x", shape=shape)
    for i in range(depth):
        v = b.op("tanh", v) if i % 2 else b.op("relu", v)
    b.output(v, "y")
    g = b.build(check_shapes=False)
    x = RNG(0).normal(size=shape)

    def peak(fn):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            out = fn()
            top = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        del out
        return (top - base) / x.nbytes

    assert peak(lambda: gx.run(g, x=x)) <= 5
    assert peak(lambda: gx.Executor(g).forward(x=x)) >= depth / 2
