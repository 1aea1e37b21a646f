"""Executor semantics: fan-out, broadcasting, routing, wrt pruning, outputs subsets, freeing,
input checks, dtype preservation, error messages."""

import gc
import weakref

import numpy as np
import pytest

import graphexec as gx


def chain_graph(dtype="float64"):
    b = gx.GraphBuilder("g")
    x = b.input("x", shape=(None, 3), dtype=dtype)
    W = b.param("W", np.arange(12, dtype=dtype).reshape(3, 4) / 10)
    h = b.op("matmul", x, W, name="h")
    s = b.op("sigmoid", h, name="s")
    b.output(b.op("sum", s, name="loss"), "loss")
    b.output(s, "s")
    return b.build()


def test_fan_out_gradients_are_summed():
    b = gx.GraphBuilder("fanout")
    x = b.input("x", shape=())
    y = b.op("mul", x, x)  # x used twice: the copy gate adds the gradients
    b.output(b.op("add", y, x), "f")
    ex = gx.Executor(b.build())
    assert ex.forward(x=3.0)["f"] == 12.0
    assert ex.backward()["x"] == 7.0  # d(x² + x)/dx = 2x + 1


def test_broadcast_gradients_reduce_to_input_shape():
    b = gx.GraphBuilder("bc")
    x = b.input("x", shape=(2, 3))
    c = b.param("c", np.array([1.0, 2.0, 3.0]))
    s = b.param("s", np.array(2.0))
    b.output(b.op("sum", b.op("mul", b.op("add", x, c), s)), "f")
    ex = gx.Executor(b.build())
    ex.forward(x=np.ones((2, 3)))
    g = ex.backward()
    np.testing.assert_array_equal(g["c"], [4.0, 4.0, 4.0])
    assert g["s"].shape == () and g["s"] == (np.ones((2, 3)) + [1, 2, 3]).sum()
    np.testing.assert_array_equal(g["x"], np.full((2, 3), 2.0))


def test_max_routes_gradient_and_tie_goes_to_first_input():
    b = gx.GraphBuilder("max")
    x, y = b.input("x", shape=(3,)), b.input("y", shape=(3,))
    b.output(b.op("sum", b.op("max", x, y)), "f")
    ex = gx.Executor(b.build())
    ex.forward(x=[1.0, 5.0, 2.0], y=[3.0, 4.0, 2.0])
    g = ex.backward()
    np.testing.assert_array_equal(g["x"], [0, 1, 1])
    np.testing.assert_array_equal(g["y"], [1, 0, 0])


def test_wrt_skips_data_gradient():
    calls = []

    class Spy(gx.Gate):
        name, version = "spy_matmul", 1

        def forward(self, ctx, x, w):
            ctx.x, ctx.w = x, w
            return x @ w

        def backward(self, ctx, dz):
            calls.append(ctx.needs_grad)
            dx = dz @ ctx.w.T if ctx.needs_grad[0] else None
            dw = ctx.x.T @ dz if ctx.needs_grad[1] else None
            return dx, dw

    gx.register_gate(Spy, replace=True)
    b = gx.GraphBuilder("spy")
    x = b.input("x", shape=(None, 2))
    W = b.param("W", np.ones((2, 2)))
    b.output(b.op("sum", b.op("spy_matmul", x, W)), "loss")
    ex = gx.Executor(b.build())
    ex.forward(x=np.ones((4, 2)))
    g = ex.backward({"loss": 1.0}, wrt=["W"])
    assert list(g) == ["W"] and calls == [(False, True)]
    np.testing.assert_array_equal(g["W"], np.full((2, 2), 4.0))


def test_outputs_subset_computes_only_what_is_needed():
    b = gx.GraphBuilder("subset")
    x = b.input("x", shape=())
    y = b.input("y", shape=())  # only the second output needs y
    b.output(b.op("exp", x), "a")
    b.output(b.op("mul", x, y), "b")
    g = b.build()
    out = gx.run(g, {"x": 0.0}, outputs=["a"])
    assert list(out) == ["a"] and out["a"] == 1.0
    with pytest.raises(gx.GraphError, match="missing input 'y'"):
        gx.run(g, {"x": 0.0})


def test_unused_input_param_and_node_are_allowed():
    calls = []

    class Spy(gx.Gate):
        name, version = "spy_log", 1

        def forward(self, ctx, x):
            calls.append("forward")
            return np.log(x)

        def backward(self, ctx, dy):
            calls.append("backward")
            return (dy,)

    gx.register_gate(Spy, replace=True)
    b = gx.GraphBuilder("unused")
    x = b.input("x", shape=())
    b.input("unused_in", shape=())
    b.param("unused_p", np.zeros(3))
    b.op("spy_log", x, name="dead")  # a node no output needs: never computed
    b.output(b.op("neg", x), "f")
    g = b.build()
    assert [n.name for n in g.nodes if n.op == "spy_log"] == ["dead"]  # it is in the graph
    ex = gx.Executor(g)
    assert ex.forward(x=-1.0)["f"] == 1.0
    grads = ex.backward()
    assert grads["x"] == -1.0 and grads["unused_in"] == 0.0
    np.testing.assert_array_equal(grads["unused_p"], np.zeros(3))
    assert gx.run(g, x=-1.0) == {"f": 1.0}
    assert calls == []  # neither forward nor backward ran the node nobody needs


def test_second_backward_needs_a_new_forward():
    ex = gx.Executor(chain_graph())
    ex.forward(x=np.ones((2, 3)))
    ex.backward({"loss": 1.0})
    with pytest.raises(gx.GraphError, match=r"backward\(\) needs a forward\(\) first"):
        ex.backward()


def test_float32_stays_float32():
    ex = gx.Executor(chain_graph("float32"))
    out = ex.forward(x=np.ones((2, 3), dtype=np.float32))
    assert all(v.dtype == np.float32 for v in out.values())
    g = ex.backward({"loss": 1.0})
    assert g["W"].dtype == np.float32 and g["x"].dtype == np.float32


@pytest.mark.parametrize("value, message", [
    (np.ones((2, 4)), r"input 'x' expects shape \(None, 3\) \(None = any size\), got \(2, 4\)"),
    (np.ones((2, 3), dtype=np.float32), r"input 'x' expects float64, got a float32 array"),
    ("abc", r"input 'x' must be numeric"),
    ([[1, 2], [3]], r"input 'x': cannot read list"),
])
def test_bad_inputs_are_named(value, message):
    with pytest.raises(gx.GraphError, match=message):
        gx.run(chain_graph(), x=value)


def test_unknown_input_and_output_names():
    g = chain_graph()
    with pytest.raises(gx.GraphError, match=r"unknown input 'z'; the graph's inputs are \['x'\]"):
        gx.run(g, x=np.ones((1, 3)), z=1.0)
    with pytest.raises(gx.GraphError, match=r"has no output 'nope'"):
        gx.run(g, x=np.ones((1, 3)), outputs=["nope"])


def test_wrong_gradient_shape_is_caught_by_the_executor():
    class Bad(gx.Gate):
        name, version = "bad_grad", 1

        def forward(self, ctx, x):
            return x * 2

        def backward(self, ctx, dy):
            return (dy.sum(),)

    gx.register_gate(Bad, replace=True)
    b = gx.GraphBuilder("bad")
    x = b.input("x", shape=(3,))
    b.output(b.op("sum", b.op("bad_grad", x, name="oops")), "f")
    ex = gx.Executor(b.build())
    ex.forward(x=[1.0, 2.0, 3.0])
    with pytest.raises(gx.GraphError, match=r"node 'oops': gate 'bad_grad' v1 .*input 0 \('x'\) of "
                       r"float64 \(\); expected float64 \(3,\)"):
        ex.backward()


def test_forward_only_frees_activations_after_last_use():
    alive = []

    class Track(gx.Gate):
        name, version = "track", 1

        def forward(self, ctx, x):
            y = x + 1
            alive.append(weakref.ref(y))
            return y

        def backward(self, ctx, dy):
            return (dy,)

    gx.register_gate(Track, replace=True)
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(4,))
    for _ in range(20):
        v = b.op("track", v)
    b.output(v, "y")
    g = b.build(check_shapes=False)
    peak = []

    class Peek(gx.Gate):
        name, version = "peek", 1

        def forward(self, ctx, x):
            gc.collect()
            peak.append(sum(r() is not None for r in alive))
            return x

        def backward(self, ctx, dy):
            return (dy,)

    gx.register_gate(Peek, replace=True)
    b2 = gx.GraphBuilder("chain2")
    v = b2.input("x", shape=(4,))
    for i in range(20):
        v = b2.op("peek", b2.op("track", v))
    b2.output(v, "y")
    out = gx.run(b2.build(check_shapes=False), x=np.zeros(4))
    np.testing.assert_array_equal(out["y"], np.full(4, 20.0))
    assert max(peak) <= 2, peak  # never one activation per node
    del g


def test_executors_share_a_graph_without_interference():
    g = chain_graph()
    e1, e2 = gx.Executor(g), gx.Executor(g)
    e1.forward(x=np.ones((1, 3)))
    e2.forward(x=np.zeros((1, 3)))
    g1, g2 = e1.backward({"loss": 1.0}), e2.backward({"loss": 1.0})
    assert not np.array_equal(g1["W"], g2["W"])
    np.testing.assert_array_equal(g2["W"], np.zeros((3, 4)))


def test_build_catches_shape_mismatch():
    b = gx.GraphBuilder("shapes")
    x = b.input("x", shape=(None, 3))
    W = b.param("W", np.ones((4, 2)))
    b.output(b.op("matmul", x, W, name="mm"), "y")
    with pytest.raises(gx.GraphError, match=r"node 'mm' \(matmul\)"):
        b.build()


def test_seed_with_explicit_upstream_gradient():
    ex = gx.Executor(chain_graph())
    x = np.ones((2, 3))
    s = ex.forward(x=x)["s"]
    g = ex.backward({"s": np.full(s.shape, 2.0)}, wrt=["x"])
    ex.forward(x=x)
    g1 = ex.backward({"s": 1.0}, wrt=["x"])
    np.testing.assert_allclose(g["x"], 2 * g1["x"], rtol=1e-15)


# ---------------------------------------------------------------------------- ExecutionError
class _Boom(gx.Gate):
    """Raises a plain Python error in forward (or, with ``where='backward'``, in backward)."""

    name, version = "boom_exec", 1

    def forward(self, ctx, x):
        if np.any(x < 0):
            raise ZeroDivisionError("negative input")
        return x * 1.0

    def backward(self, ctx, dy):
        raise KeyError("no gradient here")


def _boom_graph():
    gx.register_gate(_Boom, replace=True)  # the conftest fixture undoes it
    b = gx.GraphBuilder("boom")
    x = b.input("x", shape=(2,))
    b.output(b.op("sum", b.op("boom_exec", x, name="bang")), "f")
    return b.build()


@pytest.mark.parametrize("keep", [True, False])
def test_a_gate_failing_at_run_time_raises_execution_error_naming_the_node(keep):
    g = _boom_graph()
    run = gx.Executor(g).forward if keep else (lambda **kw: gx.run(g, **kw))
    assert run(x=[1.0, 2.0])["f"] == 3.0
    with pytest.raises(gx.ExecutionError) as info:
        run(x=[-1.0, 2.0])
    assert str(info.value) == ("node 'bang' (boom_exec) failed in forward: ZeroDivisionError: "
                               "negative input")
    assert isinstance(info.value, gx.GraphError)  # old `except GraphError` clauses still work
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_gate_failing_in_backward_raises_execution_error():
    ex = gx.Executor(_boom_graph())
    ex.forward(x=[1.0, 2.0])
    with pytest.raises(gx.ExecutionError, match=r"node 'bang' \(boom_exec\) failed in backward: "
                                                r"KeyError"):
        ex.backward()


def test_a_wrong_gradient_is_an_execution_error():
    class Bad(gx.Gate):
        name, version = "bad_grad2", 1

        def forward(self, ctx, x):
            return x * 2

        def backward(self, ctx, dy):
            return (dy.sum(),)

    gx.register_gate(Bad, replace=True)
    b = gx.GraphBuilder("bad")
    x = b.input("x", shape=(3,))
    b.output(b.op("sum", b.op("bad_grad2", x, name="oops")), "f")
    ex = gx.Executor(b.build())
    ex.forward(x=[1.0, 2.0, 3.0])
    with pytest.raises(gx.ExecutionError, match=r"node 'oops': gate 'bad_grad2'"):
        ex.backward()


def test_an_invalid_graph_or_a_usage_mistake_is_a_graph_error_not_an_execution_error():
    g = chain_graph()
    with pytest.raises(gx.GraphError) as info:
        gx.Executor(g).forward(x=np.ones((2, 4)))  # wrong shape: caught before any gate runs
    assert not isinstance(info.value, gx.ExecutionError)
    with pytest.raises(gx.GraphError) as info:
        gx.Executor(g).backward()
    assert not isinstance(info.value, gx.ExecutionError)


# ---------------------------------------------------------------------------- plans
def test_a_shallow_copy_of_a_graph_gets_its_own_plan():
    import copy

    g = chain_graph()
    ex = gx.Executor(g)
    x = np.ones((2, 3))
    assert set(ex.forward(x=x)) == {"loss", "s"}
    g2 = copy.copy(g)
    g2.output_map = {"h": "h"}  # the copy shows another value
    assert set(gx.Executor(g2).forward(x=x)) == {"h"}
    np.testing.assert_allclose(gx.run(g2, x=x)["h"], x @ g.params["W"])
    assert set(gx.Executor(g).forward(x=x)) == {"loss", "s"}  # the original is unchanged
    assert gx.Executor(g).plan is ex.plan  # and still shares its plan


def test_plan_steps_name_their_fields():
    g = chain_graph()
    ex = gx.Executor(g)
    fwd = ex.plan.forward()
    assert [g.nodes[s.node].name for s in fwd.steps] == ["h", "s", "loss"]
    assert fwd.steps[0].inputs == (ex.plan.slot["x"], ex.plan.slot["W"])
    assert fwd.steps[-1].out == ex.plan.slot["loss"]
    bwd = ex.plan.backward(fwd, ["loss"], ["W"])
    first = bwd.steps[0]
    assert g.nodes[first.node].name == "loss" and first.n_inputs == 1
    last = bwd.steps[-1]  # matmul: a gradient for W only (x is data)
    assert last.needs_grad == (False, True) and last.targets == ((1, ex.plan.slot["W"]),)
    assert last.fresh is True
