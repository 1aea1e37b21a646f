"""The executor's per-step work, bounded by counts (never by time), and the shortcuts that cut it
keep the results: gradients handed out are writeable arrays of their own, the optimizer's fast
path gives the same updates and the same errors."""

import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.errors import OptimError


def _chain(n, op="neg"):
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(2,))
    for _ in range(n):
        v = b.op(op, v)
    b.output(b.op("sum", v), "f")
    return b.build()


def _step(ex):
    def step():
        ex.forward(x=np.ones(2))
        ex.backward()
    return step


def _python_calls(fn):
    """Python-level function calls (C functions not counted) made while ``fn`` runs."""
    calls = [0]

    def prof(frame, event, arg):
        if event == "call":
            calls[0] += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls[0]


def test_a_step_makes_two_python_calls_per_node():
    """Forward + backward of N nodes: each gate's forward and backward, plus a constant number
    of calls (feeding, seeding, schedule look-ups) however long the chain."""
    counts = {}
    for n in (50, 250):
        step = _step(gx.Executor(_chain(n)))  # neg: forward and backward are one ufunc each
        step()
        counts[n] = _python_calls(step)
    assert (counts[250] - counts[50]) / 200 == 2.0, counts


def _executor_instructions(fn):
    """Bytecode instructions run in executor.py's own frames (the gates' code not counted)."""
    count = [0]

    def local(frame, event, arg):
        if event == "opcode":
            count[0] += 1
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename.endswith("executor.py"):
            frame.f_trace_opcodes = True
            return local
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count[0]


def test_executor_bytecode_per_node_is_bounded():
    counts = {}
    for n in (50, 250):
        step = _step(gx.Executor(_chain(n)))
        step()
        counts[n] = _executor_instructions(step)
    per_node = (counts[250] - counts[50]) / 200
    assert per_node <= 220, per_node  # 153 on CPython 3.11 (163 before issue 17): fwd + bwd of a node


def test_parameter_gradients_need_no_copy_check_only_from_fresh_gates():
    """The plan marks which gradients may be arrays the executor did not make: seeds and
    gradients from gates without fresh_grads; mul's (fresh) are handed out as they are."""
    b = gx.GraphBuilder("marks")
    x = b.input("x", shape=(3,))
    w, c = b.param("w", np.ones(3)), b.param("c", np.ones(3))
    b.output(b.op("add", b.op("mul", x, w), c), "y")
    ex = gx.Executor(b.build())
    fwd = ex.plan.forward()
    bwd = ex.plan.backward(fwd, ["y"], ["x", "w", "c"])
    assert dict(zip([n for n, _ in bwd.wrt], bwd.foreign)) == {"x": False, "w": False, "c": True}


@pytest.mark.parametrize("seed", range(8))
def test_every_gradient_handed_out_is_a_writeable_array_of_its_own(seed):
    """Seeds pass straight through add, reshape and sum to inputs and parameters: each
    gradient is still writeable and shares memory with no seed and no other gradient."""
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder("through")
    vals = [b.input("x", shape=(2, 3)), b.param("W", rng.standard_normal((2, 3))),
            b.param("V", rng.standard_normal((2, 3)))]
    for _ in range(6):
        i, j = rng.integers(len(vals), size=2)
        vals.append(b.op(str(rng.choice(["add", "mul", "sub"])), vals[i], vals[j]))
    b.output(vals[-1], "y")
    b.output(b.op("add", vals[1], vals[2]), "z")
    ex = gx.Executor(b.build())
    for _ in range(2):  # the second run uses the cached schedules
        ex.forward(x=rng.standard_normal((2, 3)))
        seeds = {"y": np.ones((2, 3)), "z": 1.0}
        grads = ex.backward(seeds)
        for k, g in grads.items():
            assert g.flags.writeable, k
            assert not np.shares_memory(g, seeds["y"]), k
            for k2, g2 in grads.items():
                assert k == k2 or not np.shares_memory(g, g2), (k, k2)


def test_parameters_are_read_afresh_each_run():
    """Parameters and buffers are fed by slot range: a replaced array is the one used."""
    b = gx.GraphBuilder("fresh")
    x = b.input("x", shape=(2,))
    b.output(b.op("add", b.op("mul", x, b.param("a", np.ones(2))), b.param("c", np.zeros(2))), "y")
    g = b.build()
    ex = gx.Executor(g)
    np.testing.assert_array_equal(ex.forward(x=np.ones(2))["y"], [1.0, 1.0])
    g.params["a"] = np.array([2.0, 3.0])
    g.params["c"] = np.array([0.5, 0.5])
    np.testing.assert_array_equal(ex.forward(x=np.ones(2))["y"], [2.5, 3.5])


def test_input_shape_check_still_refuses_after_many_good_runs():
    g = _chain(2)
    ex = gx.Executor(g)
    for _ in range(3):
        ex.forward(x=np.ones(2))
    with pytest.raises(gx.GraphError, match=r"input 'x' expects shape \(2,\).*got \(3,\)"):
        ex.forward(x=np.ones(3))


def test_optimizer_fast_path_keeps_updates_and_errors():
    w = np.array([1.0, 2.0])
    opt = gx.optim.SGD(lr=0.5)
    opt.step({"w": w}, {"w": np.array([1.0, -1.0])})
    np.testing.assert_array_equal(w, [0.5, 2.5])
    with pytest.raises(OptimError, match=r"gradient of 'w' has shape \(3,\), parameter has "
                                         r"shape \(2,\)"):
        opt.step({"w": w}, {"w": np.ones(3)})
    with pytest.raises(OptimError, match="no gradient for parameter 'w'"):
        opt.step({"w": w}, {})
    with pytest.raises(OptimError, match="must be a float ndarray"):
        opt.step({"w": np.array([1, 2])}, {"w": np.ones(2)})
    opt.step({"w": w}, {"w": [2.0, 2.0]})  # a list still goes through the full check
    np.testing.assert_array_equal(w, [-0.5, 1.5])
    adam = gx.optim.Adam(lr=0.1)
    adam.step({"w": w}, {"w": np.ones(2)})
    adam.state["w"]["m"] = np.zeros(3)  # state that no longer fits is still refused
    with pytest.raises(OptimError, match=r"state 'm:w' is float64 \(3,\)"):
        adam.step({"w": w}, {"w": np.ones(2)})


# ---- the shortcuts keep the bits: same gradients as the plain formulas they replace

def _unbroadcast_plain(grad, shape):
    """unbroadcast as it was before its shortcut: one keepdims sum over every axis, reshaped."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return (grad.sum(axis=axes, keepdims=True) if axes else grad).reshape(shape)


@pytest.mark.parametrize("seed", range(12))
def test_unbroadcast_gives_the_bits_of_the_plain_sum(seed):
    from graphexec.gate import unbroadcast

    rng = np.random.default_rng(seed)
    for _ in range(20):
        full = (int(rng.integers(1, 300)),  # long sums: a different order would show
                *(int(n) for n in rng.integers(1, 6, size=rng.integers(0, 3))))
        keep = int(rng.integers(0, len(full) + 1))  # trailing axes the input had
        shape = tuple(1 if rng.random() < 0.3 else n for n in full[len(full) - keep:])
        dtype = rng.choice(["float32", "float64"])
        grad = (rng.standard_normal(full) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
        got, want = unbroadcast(grad, shape), _unbroadcast_plain(grad, shape)
        assert type(got) is type(want) and got.shape == shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((), ()), ((2, 3), (2, 3)), ((2, 3), (3,)),
                                    ((4, 1), (1, 5)), ((), (2,))])
def test_mul_backward_gives_the_bits_of_the_plain_formula(shapes):
    from graphexec.gate import Ctx
    from graphexec.gates.arith import Mul

    rng = np.random.default_rng(len(shapes[0]) * 10 + len(shapes[1]))
    x, y = (rng.standard_normal(s) for s in shapes)
    dz = rng.standard_normal(np.broadcast_shapes(*shapes))
    for needs in ((True, True), (True, False), (False, True)):
        ctx = Ctx()
        Mul().forward(ctx, x, y)
        ctx.needs_grad = needs
        dx, dy = Mul().backward(ctx, dz)
        for got, want, need in ((dx, _unbroadcast_plain(y * dz, x.shape), needs[0]),
                                (dy, _unbroadcast_plain(x * dz, y.shape), needs[1])):
            if not need:
                assert got is None
                continue
            assert np.shape(got) == np.shape(want)
            np.testing.assert_array_equal(got, want)


def _by_hand(ex, feed, seeds, wrt):
    """The executor's arithmetic without its shortcuts: the plan's schedules run in a plain
    loop, inputs and every gradient taken as they come, fan-out summed with a new ``+``."""
    from graphexec.gate import Ctx

    plan, g = ex.plan, ex.graph
    vals = [None] * plan.n_slots
    for s, d in plan.inputs:
        vals[s] = feed[d.name]
    for s, name in plan.params:
        vals[s] = g.params[name]
    fwd, ctxs = plan.forward(), {}
    for forward, ins, out, k in fwd.steps:
        ctxs[k] = Ctx()
        vals[out] = np.asarray(forward(ctxs[k], *[vals[s] for s in ins]))
    grads = [None] * plan.n_slots
    for name, seed in seeds.items():
        grads[plan.output_slot(name)] = np.asarray(seed, dtype=vals[plan.output_slot(name)].dtype)
    for backward, _, needs, targets, out, k, _ in plan.backward(fwd, list(seeds), wrt).steps:
        if grads[out] is None:
            continue
        ctxs[k].needs_grad = needs
        dins = backward(ctxs[k], grads[out])
        for i, s in targets:
            d = np.asarray(dins[i])
            grads[s] = d if grads[s] is None else grads[s] + d
    return {name: grads[plan.slot[name]] for name in wrt}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_step_gradients_are_the_plain_loops_bits(dtype):
    """An MLP like benchmarks/nets.py (affine, relu, softmax cross-entropy, l2, add, mul; W
    gets two gradients), three steps: the executor's gradients equal the plain loop's bit for bit."""
    rng = np.random.default_rng(7)
    b = gx.GraphBuilder("mlp")
    h = b.input("x", shape=(None, 2), dtype=dtype)
    y = b.input("y", shape=(None,), dtype="int64")
    reg = b.input("reg", shape=(), dtype=dtype)
    penalty = None
    for i, (m, n) in enumerate([(2, 16), (16, 3)], 1):
        W = b.param(f"W{i}", rng.standard_normal((m, n)).astype(dtype))
        h = b.op("affine", h, W, b.param(f"b{i}", rng.standard_normal(n).astype(dtype)))
        h = b.op("relu", h) if i == 1 else h
        p = b.op("l2", W)
        penalty = p if penalty is None else b.op("add", penalty, p)
    b.output(b.op("add", b.op("softmax_cross_entropy", h, y), b.op("mul", reg, penalty)), "loss")
    ex = gx.Executor(b.build())
    wrt = list(ex.graph.params)
    for step in range(3):
        feed = {"x": rng.standard_normal((30, 2)).astype(dtype), "y": rng.integers(0, 3, 30),
                "reg": np.array(1e-2, dtype)}
        ex.forward(feed)
        got = ex.backward({"loss": 1.0}, wrt=wrt)
        want = _by_hand(ex, feed, {"loss": 1.0}, wrt)
        for k in wrt:
            assert got[k].dtype == want[k].dtype, (step, k)
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"step {step} {k}")


def test_chain_gradients_are_the_plain_loops_bits():
    rng = np.random.default_rng(3)
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(3,))
    for i in range(20):
        v = b.op("add", b.op("mul", v, b.param(f"w{i}", rng.standard_normal(3))),
                 b.param(f"b{i}", rng.standard_normal(1 if i % 3 == 0 else 3)))
    b.output(b.op("sum", v), "f")
    ex = gx.Executor(b.build())
    feed = {"x": rng.standard_normal(3)}
    ex.forward(feed)
    got = ex.backward({"f": 1.0})
    want = _by_hand(ex, feed, {"f": 1.0}, list(ex.plan.grad_leaves))
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_fed_array_is_checked_again_when_its_shape_or_dtype_changes():
    """_feed lets an array through unchanged only if it is exactly like one check_input took."""
    b = gx.GraphBuilder("feed")
    b.output(b.op("neg", b.input("x", shape=(None, 2))), "y")
    ex = gx.Executor(b.build())
    a = np.ones((4, 2))
    assert ex.forward(x=a)["y"].shape == (4, 2)
    assert ex.forward({"x": a})["y"].shape == (4, 2)
    with pytest.raises(gx.GraphError, match=r"expects shape \(None, 2\).*got \(4, 3\)"):
        ex.forward({"x": np.ones((4, 3))})
    with pytest.raises(gx.GraphError, match="expects float64, got a float32 array"):
        ex.forward({"x": a.astype("float32")})
    with pytest.raises(gx.GraphError, match="unknown input 'z'"):
        ex.forward({"x": a, "z": 1})
    np.testing.assert_array_equal(ex.forward({"x": [[1.0, 2.0]]})["y"], [[-1.0, -2.0]])
