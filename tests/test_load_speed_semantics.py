"""What the faster load and plan compile (issue 17) must keep: the same schedules as the plain
algorithm, the same orders and specs, and no work that grows with the graph where none is needed.
Counts and equalities only; speed is measured in benchmarks/bench_compile.py."""

from itertools import compress

import numpy as np
import pytest

import graphexec as gx
from graphexec import graph as graph_mod
from graphexec.plan import Plan, stable_hash

# ----------------------------------------------------------------- the plain algorithm


def reference_forward(plan, outputs):
    """The forward schedule as the plan computed it before issue 17, one node at a time."""
    g = plan.graph
    producer = {s: k for k, s in enumerate(plan.node_out)}
    outs = [(n, plan.output_slot(n)) for n in g.outputs if n in outputs]
    needed = {s for _, s in outs}
    for k in range(len(g.nodes) - 1, -1, -1):
        if plan.node_out[k] in needed:
            needed.update(plan.node_inputs[k])
    ks = [k for k, out in enumerate(plan.node_out) if out in needed]
    last = {s: i for i, k in enumerate(ks) for s in plan.node_inputs[k]}
    release = [()] * len(ks)
    for s, i in last.items():
        if s in producer and s not in {s for _, s in outs}:
            release[i] += (s,)
    leaves = [(d.name, s) for s, d in plan.inputs if s in needed]
    steps = [(g.nodes[k].gate, plan.node_inputs[k], plan.node_out[k], k) for k in ks]
    return outs, leaves, steps, release, {plan.node_out[k] for k in ks}


def reference_backward(plan, fwd, seeds, wrt):
    producer = set(plan.node_out)
    wrt_slots = [(n, plan.slot[n]) for n in plan.grad_leaves if n in wrt]
    requires = {s for _, s in wrt_slots}
    for _, ins, out, _ in fwd.steps:
        if not requires.isdisjoint(ins):
            requires.add(out)
    flows = {plan.output_slot(n) for n in seeds}
    for _, ins, out, _ in reversed(fwd.steps):
        if out in flows:
            flows.update(ins)
    steps, last = [], []
    for _, ins, out, k in reversed(fwd.steps):
        if out in requires and out in flows:
            needs = tuple(s in requires for s in ins)
            targets = tuple(compress(enumerate(ins), needs))
            gate = plan.graph.nodes[k].gate
            step = (gate, len(ins), needs, targets, out, k, getattr(gate, "fresh_grads", False) is True)
            (last if all(s not in producer for _, s in targets) else steps).append(step)
    fresh_only = {}
    for step in steps + last:
        for _, s in step[3]:
            fresh_only[s] = fresh_only.get(s, True) and step[6]
    seeded = {plan.output_slot(n) for n in seeds}
    foreign = [s in seeded or not fresh_only.get(s, False) for _, s in wrt_slots]
    return steps + last, wrt_slots, foreign


def random_graph(seed, n=60):
    """Inputs (one of them int), params, a buffer, fan-out, an output that is an input, nodes
    no output needs, fresh_grads gates (relu), leaves-only nodes (l2 of a parameter)."""
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder(f"g{seed}")
    values = [b.input("x", shape=(3,)), b.input("z", shape=(3,)), b.param("W", np.ones(3)),
              b.param("V", np.ones(3)), b.buffer("m", np.zeros(3))]
    b.input("label", shape=(3,), dtype="int64")
    for i in range(n):
        op = ["add", "mul", "relu", "l2", "sub", "neg"][rng.integers(6)]
        if op == "l2":
            v = b.op("l2", values[2 + rng.integers(2)], name=f"n{i}")
        elif op in ("relu", "neg"):
            v = b.op(op, values[rng.integers(len(values))], name=f"n{i}")
        else:
            a, c = (values[len(values) - 1 - rng.integers(min(8, len(values)))] for _ in range(2))
            v = b.op(op, a, c, name=f"n{i}")
        values.append(v)
    for j in range(3):
        b.output(values[len(values) - 1 - j * 7], f"out{j}")
    b.output(values[0], "echo")  # an output that is a graph input
    return b.build(check_shapes=False)


def _same_forward(plan, names):
    fwd = plan.forward(names)
    outs, leaves, steps, release, computed = reference_forward(plan, set(names))
    assert fwd.outputs == tuple(outs) and fwd.leaves == tuple(leaves)
    assert [(s.forward.__self__, s.inputs, s.out, s.node) for s in fwd.steps] == steps
    assert all(s.forward.__func__ is type(g).forward for s, (g, *_) in zip(fwd.steps, steps))
    assert fwd.release == tuple(release) and fwd.computed == computed
    return fwd


@pytest.mark.parametrize("seed", range(12))
def test_schedules_equal_the_plain_algorithm(seed):
    g = random_graph(seed)
    plan = Plan(g)
    rng = np.random.default_rng(seed)
    subsets = [g.outputs, ["out0"], ["echo", "out2"], list(rng.permutation(g.outputs)[:2])]
    leaves = [list(plan.grad_leaves), ["W"], ["x", "V"], []]
    for names in subsets:
        fwd = _same_forward(plan, names)
        for wrt in leaves:
            for seeds in (names, names[:1]):
                bwd = plan.backward(fwd, seeds, wrt)
                steps, wrt_slots, foreign = reference_backward(plan, fwd, seeds, set(wrt))
                got = [(s.backward.__self__, s.n_inputs, s.needs_grad, s.targets, s.out, s.node,
                        s.fresh) for s in bwd.steps]
                assert got == steps
                assert all(type(s) is gx.plan.BackStep for s in bwd.steps)
                assert bwd.wrt == tuple(wrt_slots) and bwd.foreign == tuple(foreign)


def test_schedules_run_to_the_same_gradients_as_before():
    g = random_graph(3)
    ex = gx.Executor(g)
    feed = {"x": np.arange(3.0) - 1, "z": np.array([0.5, -2.0, 3.0]), "label": np.zeros(3, int)}
    out = ex.forward(feed)
    grads = ex.backward()
    report = gx.gradcheck(g, feed)
    assert report.ok, str(report)
    assert set(grads) == {"x", "z", "W", "V"} and set(out) == set(g.outputs)


def test_node_keys_are_the_stable_hashes_computed_on_demand():
    g = random_graph(1, n=20)
    keys = Plan(g).node_keys
    assert len(keys) == len(g.nodes)
    assert keys._known == {}  # nothing hashed while compiling
    assert [keys[k] for k in range(len(g.nodes))] == [stable_hash(n.name) for n in g.nodes]
    assert keys[-1] == stable_hash(g.nodes[-1].name) and list(keys[2:5]) == [keys[2], keys[3], keys[4]]
    with pytest.raises(IndexError):
        keys[len(g.nodes)]


def test_slots_number_nodes_after_inputs_params_and_buffers():
    g = random_graph(2, n=10)
    plan = Plan(g)
    assert plan.node_out == [plan.slot[n.name] for n in g.nodes]
    assert plan.node_out == list(range(plan.node_base, plan.n_slots))
    assert plan.node_inputs == [tuple(plan.slot[s] for s in n.inputs) for n in g.nodes]


# ------------------------------------------------------------------- the graph stage


def test_a_load_uses_the_validated_node_specs_as_definitions(monkeypatch):
    """No second object per node between the header and the bound nodes."""
    made = []
    real = graph_mod.NodeDef.__init__

    def counting(self, *a, **k):
        made.append(1)
        real(self, *a, **k)

    g = random_graph(4, n=30)
    data = gx.dumps(g)
    monkeypatch.setattr(graph_mod.NodeDef, "__init__", counting)
    g2 = gx.loads(data)
    assert made == [] and [n.name for n in g2.nodes] == [n.name for n in g.nodes]
    assert all(type(n.inputs) is tuple for n in g2.nodes)


def test_a_good_graph_is_checked_without_the_one_by_one_pass(monkeypatch):
    calls = []
    monkeypatch.setattr(graph_mod, "_find_name_problem", lambda *a: calls.append(a))
    gx.loads(gx.dumps(random_graph(5, n=30)))
    assert calls == []


@pytest.mark.parametrize("seed", range(6))
def test_position_order_check_agrees_with_the_name_check(seed):
    rng = np.random.default_rng(seed)
    defs = [graph_mod.NodeDef(f"n{i}", "add", (f"n{int(rng.integers(i))}" if i else "x", "x"))
            for i in range(40)]
    for order in (defs, list(rng.permutation(defs)), defs[:1] + [defs[2], defs[1]] + defs[3:]):
        sources = graph_mod._check_names([graph_mod.InputDecl("x", np.dtype("f8"), None)], {},
                                         order, {}, {}, [])
        assert sources is not None
        assert sources.in_order(order) == graph_mod._already_ordered(order)
    loop = [graph_mod.NodeDef("a", "neg", ("a",))]  # a node reading itself is out of order
    sources = graph_mod._check_names([], {}, loop, {}, {}, [])
    assert sources is not None and not sources.in_order(loop)
