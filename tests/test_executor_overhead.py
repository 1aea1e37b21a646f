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
    assert per_node <= 250, per_node  # 163 on CPython 3.11: forward + backward of one node


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
