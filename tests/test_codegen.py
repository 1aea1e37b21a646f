"""Compiled schedules (graphexec.codegen): the same results as the interpreting loops, bit for bit,
in every mode; the same error messages; the work per node bounded by counts; and no string from
the graph in the generated source."""

import re
import sys
import tracemalloc

import numpy as np
import pytest

import graphexec as gx
from graphexec import codegen
from graphexec.errors import ExecutionError, GraphError

UNARY = ["tanh", "sigmoid", "relu", "neg", "square"]
BINARY = ["add", "mul", "sub", "max"]


@pytest.fixture
def compiled(monkeypatch):
    """Compile every schedule on its first run."""
    monkeypatch.setattr(codegen, "COMPILE_AFTER", 0)


def _mode(monkeypatch, compile_: bool):
    monkeypatch.setattr(codegen, "COMPILE_AFTER", 0 if compile_ else 10**9)


def random_graph(seed, n_nodes=30):
    """A random DAG over (3, 4) and (4,) values: fan-out, broadcasting, leaves that take no
    gradient, two outputs (one an intermediate value)."""
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder(f"random{seed}")
    vals = [b.input("x", shape=(3, 4)), b.input("y", shape=(4,)),
            b.param("W", rng.standard_normal((3, 4))), b.param("c", rng.standard_normal(4))]
    for _ in range(n_nodes):
        if rng.random() < 0.4:
            vals.append(b.op(str(rng.choice(UNARY)), vals[rng.integers(len(vals))]))
        else:
            i, j = rng.integers(len(vals), size=2)  # i == j: the same value twice
            vals.append(b.op(str(rng.choice(BINARY)), vals[i], vals[j]))
    b.output(b.op("sum", b.op("add", vals[-1], vals[-2])), "f")
    b.output(vals[len(vals) // 2], "mid")
    return b.build()


def _run_twice(g, feed, seeds, wrt):
    """Three forward+backward passes (the third one compiled once COMPILE_AFTER allows)."""
    ex = gx.Executor(g)
    for _ in range(3):
        out = ex.forward(feed)
        grads = ex.backward(seeds, wrt=wrt)
    return out, grads, gx.run(g, feed), gx.run(g, feed), gx.run(g, feed)


@pytest.mark.parametrize("seed", range(12))
def test_compiled_equals_interpreted_on_random_graphs(seed, monkeypatch):
    rng = np.random.default_rng(100 + seed)
    feed = {"x": rng.standard_normal((3, 4)), "y": rng.standard_normal(4)}
    wrt = [w for w in ("x", "y", "W", "c") if rng.random() < 0.6] or None
    mid = gx.run(random_graph(seed), feed)["mid"]
    seeds = {"f": 1.0, "mid": rng.standard_normal(mid.shape)} if seed % 2 else None
    results = []
    for compile_ in (False, True):
        _mode(monkeypatch, compile_)
        results.append(_run_twice(random_graph(seed), feed, seeds, wrt))
    (out_i, grads_i, *runs_i), (out_c, grads_c, *runs_c) = results
    assert out_i.keys() == out_c.keys() and grads_i.keys() == grads_c.keys()
    for k in out_i:
        np.testing.assert_array_equal(out_c[k], out_i[k], strict=True)
    for k in grads_i:
        np.testing.assert_array_equal(grads_c[k], grads_i[k], strict=True)
        assert grads_c[k].flags.writeable
    for ri, rc in zip(runs_i, runs_c):
        for k in ri:
            np.testing.assert_array_equal(rc[k], ri[k], strict=True)
    g = random_graph(seed)
    _mode(monkeypatch, True)
    gx.Executor(g).forward(feed)
    assert g._plan.forward().code, "the compiled path ran"


def _stateful_net():
    b = gx.GraphBuilder("bn")
    x = b.input("x", shape=(None, 4))
    g_, be = b.param("gamma", np.ones(4)), b.param("beta", np.zeros(4))
    rm, rv = b.buffer("running_mean", np.zeros(4)), b.buffer("running_var", np.ones(4))
    h = b.op("batchnorm", x, g_, be, rm, rv)
    h = b.op("dropout", b.op("relu", h), p=0.5)
    b.output(b.op("sum", h), "f")
    return b.build()


def test_training_mode_compiled_equals_interpreted(monkeypatch):
    """ctx.training, ctx.rng (from seed, step and node) and buffer updates, in both paths."""
    x = np.random.default_rng(0).standard_normal((8, 4))
    results = []
    for compile_ in (False, True):
        _mode(monkeypatch, compile_)
        g = _stateful_net()
        ex = gx.Executor(g)
        trace = []
        for step in range(4):
            out = ex.forward(x=x, training=True, seed=7, step=step)
            trace.append((out["f"], ex.backward()["x"], g.buffers["running_mean"].copy()))
        results.append(trace)
        if compile_:
            assert g._plan.forward().code.keys() == {"train"}
    for (fi, gi, mi), (fc, gc, mc) in zip(*results):
        np.testing.assert_array_equal(fc, fi, strict=True)
        np.testing.assert_array_equal(gc, gi, strict=True)
        np.testing.assert_array_equal(mc, mi, strict=True)
    assert not np.array_equal(results[1][0][2], results[1][1][2])  # the buffer did move


class Boom(gx.Gate):
    """y = x, except that it raises (forward or backward, as the attribute says)."""

    name, version = "cg_boom", 1

    class Attrs(gx.Attrs):
        where: str = "forward"

    def forward(self, ctx, x):
        if self.attrs.where == "forward":
            raise ValueError("boom")
        return x

    def backward(self, ctx, dy):
        if self.attrs.where == "backward":
            raise ValueError("boom")
        if self.attrs.where == "shape":
            return (dy[:1],)
        if self.attrs.where == "count":
            return (dy, dy)
        return (dy,)

    def infer(self, x):  # a shape rule: the builder needs no probe forward
        return x


@pytest.mark.parametrize("where", ["forward", "backward", "shape", "count"])
def test_errors_name_the_node_the_same_way(where, monkeypatch):
    gx.register_gate(Boom, replace=True)
    messages = []
    for compile_ in (False, True):
        _mode(monkeypatch, compile_)
        b = gx.GraphBuilder("err")
        x = b.input("x", shape=(3,))
        h = b.op("tanh", x, name="first")
        b.output(b.op("sum", b.op("cg_boom", h, name="the_node", where=where)), "f")
        ex = gx.Executor(b.build())
        with pytest.raises(ExecutionError) as e:
            for _ in range(3):  # the third run is the compiled one
                ex.forward(x=np.ones(3))
                ex.backward()
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "'the_node'" in messages[1]


def test_a_second_backward_still_needs_a_forward(compiled):
    ex = gx.Executor(random_graph(1))
    ex.forward(x=np.ones((3, 4)), y=np.ones(4))
    ex.backward()
    with pytest.raises(GraphError, match="needs a forward"):
        ex.backward()


def _chain(n, op="tanh"):
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(2,))
    for _ in range(n):
        v = b.op(op, v)
    b.output(b.op("sum", v), "f")
    return b.build()


def _python_calls(fn):
    """Python-level function calls (not C functions) made while ``fn`` runs."""
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


def test_compiled_step_makes_two_python_calls_per_node(compiled):
    """Forward + backward of N nodes: the gates' forward and backward, and a constant number
    of calls besides (feeding, seeding, schedule look-ups), however long the chain."""
    counts = {}
    for n in (50, 250):
        ex = gx.Executor(_chain(n, "neg"))  # neg: forward and backward are one ufunc each

        def step(ex=ex):
            ex.forward(x=np.ones(2))
            ex.backward()

        step()
        counts[n] = _python_calls(step)
    per_node = (counts[250] - counts[50]) / 200
    assert per_node == 2.0, counts


def _executor_instructions(fn, code_names):
    """Bytecode instructions executed in frames whose code file is one of ``code_names``."""
    count = [0]

    def local(frame, event, arg):
        if event == "opcode":
            count[0] += 1
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename.endswith(code_names):
            frame.f_trace_opcodes = True
            return local
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count[0]


@pytest.mark.parametrize("compile_", [False, True])
def test_executor_work_per_node_is_bounded(compile_, monkeypatch):
    """Bytecode the executor itself runs per node and forward+backward (the gates' own code
    not counted). The compiled schedule's bound is what makes it faster than the loop."""
    _mode(monkeypatch, compile_)
    counts = {}
    for n in (50, 250):
        ex = gx.Executor(_chain(n, "neg"))

        def step(ex=ex):
            ex.forward(x=np.ones(2))
            ex.backward()

        for _ in range(3):
            step()
        counts[n] = _executor_instructions(step, ("executor.py", "<graphexec schedule>"))
    per_node = (counts[250] - counts[50]) / 200
    assert per_node <= (120 if compile_ else 250), per_node  # measured: 91 and 163 (3.11)


def test_compiled_forward_only_keeps_few_activations(compiled):
    g = _chain(32)
    x = np.ones((256, 256))
    g = gx.GraphBuilder("big")
    v = g.input("x", shape=(256, 256))
    for _ in range(32):
        v = g.op("tanh", v)
    g.output(v, "y")
    graph = g.build()
    gx.run(graph, x=x)
    assert graph._plan.forward().code.keys() == {"run"}
    tracemalloc.start()
    try:
        gx.run(graph, x=x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * x.nbytes, peak / x.nbytes


def test_generated_source_holds_no_string_from_the_graph(compiled):
    """Names that would be code if pasted into source stay out of it: only integers, True and
    False, and the names codegen makes up."""
    b = gx.GraphBuilder("evil'); import os; ('")
    x = b.input("x__import__('os')", shape=(2,))
    w = b.param("W); print('p", np.ones(2))
    h = b.op("mul", x, w, name="n'); raise SystemExit; ('")
    b.output(b.op("sum", h, name="__builtins__"), "f\nimport os")
    g = b.build()
    ex = gx.Executor(g)
    ex.forward({"x__import__('os')": np.ones(2)})
    ex.backward()
    plan = g._plan
    fwd = plan.forward()
    bwd = next(iter(plan._bwd.values()))
    for code in (fwd.code["keep"], bwd.code["bwd"]):
        names = set(code.code.co_names) | set(code.code.co_varnames)
        assert all(re.fullmatch(r"[A-Za-z]\w*", n) for n in names)
        made_up = {"C", "nd", "A", "chk", "bad", "type", "len", "training", "rng_key",
                   "needs_grad", "shape", "dtype", "V", "X", "G", "seed", "step", "c", "y",
                   "d", "e", "v"}
        assert all(n in made_up or re.fullmatch(r"[fbg]\d+", n) for n in names), names
        consts = [c for c in code.code.co_consts if c is not None]
        assert all(type(c) in (int, bool, tuple) for c in consts), consts
        assert code.fn.__globals__["__builtins__"].keys() == {"type", "len"}
