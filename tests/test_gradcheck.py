"""gx.gradcheck: every registered gate at random shapes and at its kinks; wrong gates named; CLI."""

import json
import math
import zlib

import numpy as np
import pytest

import graphexec as gx
from graphexec.cli.main import main
from graphexec.gradcheck import GradcheckReport, gradcheck, judge, random_inputs
from graphexec.registry import IN_PROCESS, registry

from conftest import MODELS


def one_node(op, inputs, attrs=None, name="node"):
    """A graph ``out = op(in0, in1, ...)`` whose inputs are declared with the values' shapes."""
    b = gx.GraphBuilder(f"one_{op}")
    ins = [b.input(f"in{i}", shape=v.shape, dtype=v.dtype.name) for i, v in enumerate(inputs)]
    b.output(b.op(op, *ins, name=name, **(attrs or {})), "out")
    return b.build(), {f"in{i}": v for i, v in enumerate(inputs)}


# ---------------------------------------------------------------------------- every gate
def away(rng, shape, low=0.2):
    """Random values with |v| in [low, 2): clear of kinks at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)


def spec(op, rng):
    """(inputs, attrs) for a one-node graph of ``op`` at random shapes."""
    n, d, h, k = (int(v) for v in rng.integers(1, 6, size=4))
    c = int(rng.integers(2, 6))
    labels = rng.integers(0, c, size=n)
    table = {
        "log": ([rng.uniform(0.2, 3.0, (n, d))], {}),
        "div": ([rng.standard_normal((n, d)), away(rng, (d,))], {}),
        "matmul": ([rng.standard_normal((n, d)), rng.standard_normal((d, h))], {}),
        "affine": ([rng.standard_normal((n, d)), rng.standard_normal((d, h)),
                    rng.standard_normal(h)], {}),
        "reshape": ([rng.standard_normal((n, d))], {"shape": [d, -1]}),
        "prelu": ([away(rng, (n, d)), rng.uniform(0.05, 0.5, d)], {}),
        "maxout": ([rng.standard_normal((n, d)), rng.standard_normal((k + 1, d, h)),
                    rng.standard_normal((k + 1, h))], {}),
        "softmax_cross_entropy": ([rng.standard_normal((n, c)), labels], {}),
        "svm_loss": ([rng.standard_normal((n, c)) * 3, labels], {}),
        "leaky_relu": ([away(rng, (n, d))], {"alpha": 0.1}),
        "relu": ([away(rng, (n, d))], {}),
        "elu": ([away(rng, (n, d))], {"alpha": 0.7}),
        "max": ([rng.standard_normal((n, d)), rng.standard_normal((1, d))], {}),
        # issue 13's gates (NCHW), at shapes they accept; batchnorm in evaluation mode
        "conv2d": ([rng.standard_normal((n, 2, 5, 4)), rng.standard_normal((3, 2, 3, 2)),
                    rng.standard_normal(3)], {"stride": 2, "padding": 1}),
        "max_pool2d": ([rng.standard_normal((n, 2, 5, 4))], {"kernel": 2}),
        "avg_pool2d": ([rng.standard_normal((n, 2, 5, 4))], {"kernel": 3, "stride": 2, "padding": 1}),
        "global_avg_pool": ([rng.standard_normal((n, 3, 4, 2))], {}),
        "batchnorm": ([rng.standard_normal((n, d)), rng.uniform(0.5, 2, d), rng.standard_normal(d),
                       rng.standard_normal(d), rng.uniform(0.5, 2, d)], {}),
        "layernorm": ([rng.standard_normal((n, d + 1)), rng.uniform(0.5, 2, d + 1),
                       rng.standard_normal(d + 1)], {}),
        "transpose": ([rng.standard_normal((n, d, h))], {"perm": [2, 0, 1]}),
        "concat": ([rng.standard_normal((n, d)), rng.standard_normal((n, h))], {"axis": 1}),
        "pad": ([rng.standard_normal((n, d))], {"pads": [[1, 0], [0, 2]], "value": 1.0}),
        "clip": ([away(rng, (n, d))], {"min": -1.0}),
        "flatten": ([rng.standard_normal((n, d, h))], {}),
        # reductions over axes, indexing (integer indices take no gradient) and cast
        "reduce_max": ([rng.standard_normal((n, d, h))], {"axes": [0, -1], "keepdims": False}),
        "reduce_sum": ([rng.standard_normal((n, d, h))], {"axes": [1]}),
        "reduce_mean": ([rng.standard_normal((n, d, h))], {"axes": [-1, 0]}),
        "slice": ([rng.standard_normal((n, d, h))], {"starts": [-1, 0], "ends": [-2**62, 9],
                                                     "axes": [0, 2], "steps": [-1, 2]}),
        "gather": ([rng.standard_normal((n, d)), rng.integers(-d, d, size=(2, 3))], {"axis": 1}),
        "cast": ([rng.standard_normal((n, d)).astype("float32")], {"to": "float64"}),
        "nll_loss": ([rng.standard_normal((n, c)), labels, rng.uniform(0.5, 2, c)],
                     {"reduction": "mean"}),
        # elementwise ops of PyTorch exports: sqrt and pow_scalar(1.5) away from 0
        "sqrt": ([rng.uniform(0.5, 2, (n, d))], {}),
        "pow_scalar": ([rng.uniform(0.5, 2, (n, d))], {"exponent": 1.5}),
        "pow": ([rng.uniform(0.5, 2, (n, d)), rng.uniform(-2, 2, d)], {}),  # base > 0: ln x
        "where": ([rng.random((n, d)) < 0.5, rng.standard_normal((n, d)),
                   rng.standard_normal(d)], {}),
    }
    if op in table:
        return table[op]
    arity = registry().gates[op].n_inputs  # any other gate: elementwise, with broadcasting
    shapes = [(n, d), (d,), (n, 1)][: max(arity, 1)]
    return [rng.standard_normal(s) for s in shapes], {}


#: gates whose output is not a float: nothing flows back, so gradcheck has nothing to compare
NO_FLOAT_OUTPUT = {"dropout_mask", "argmax", "compare"}
OPS = sorted(op for op, info in registry().gates.items()
             if info.dist != IN_PROCESS and op not in NO_FLOAT_OUTPUT)


@pytest.mark.parametrize("op", sorted(NO_FLOAT_OUTPUT))
def test_gates_without_a_float_output_pass_back_zeros(op):
    inputs, attrs = spec(op, np.random.default_rng(0))
    g, feed = one_node(op, inputs, attrs)
    ex = gx.Executor(g)
    out = ex.forward(**feed)
    assert all(v.dtype.kind != "f" for v in out.values())
    grads = ex.backward(wrt=[f"in{i}" for i in range(len(inputs))])
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(grads[f"in{i}"], np.zeros_like(x))


def test_every_builtin_op_of_the_contract_is_covered():
    contract = {"add", "sub", "mul", "div", "neg", "exp", "log", "square", "sum", "mean", "max",
                "matmul", "affine", "reshape", "sigmoid", "tanh", "relu", "leaky_relu", "prelu",
                "elu", "maxout", "softmax_cross_entropy", "svm_loss", "l2"}
    assert contract <= set(OPS)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("trial", range(3))
def test_gradcheck_passes_on_every_registered_gate(op, trial):
    rng = np.random.default_rng([zlib.crc32(op.encode()), trial])
    inputs, attrs = spec(op, rng)
    g, feed = one_node(op, inputs, attrs)
    buffers = getattr(registry().gates[op].cls, "buffer_inputs", ())  # never differentiated
    wrt = [f"in{i}" for i, v in enumerate(inputs) if v.dtype.kind == "f" and i not in buffers]
    report = gradcheck(g, feed, wrt=wrt, seed=trial)
    assert report.ok, str(report)
    assert report.max_rel_error < 1e-6
    floats = [v for i, v in enumerate(inputs) if v.dtype.kind == "f" and i not in buffers]
    assert report.n_checked == sum(min(v.size, 32) for v in floats) > 0
    assert report.n_kinks == 0  # random inputs stay clear of the kinks


# ---------------------------------------------------------------------------- kinks
KINKS = {
    "relu at 0": ("relu", lambda: [np.array([[0.0, 1.5, -0.5], [0.0, 0.0, 2.0]])], {}),
    "leaky_relu at 0": ("leaky_relu", lambda: [np.array([[0.0, -1.0], [0.0, 3.0]])],
                        {"alpha": 0.1}),
    "prelu at 0": ("prelu", lambda: [np.array([[0.0, -1.0, 0.0], [2.0, 0.0, -0.5]]),
                                     np.array([0.2, 0.1, 0.3])], {}),
    "max ties": ("max", lambda: [np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 0.5]]),
                                 np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 0.7]])], {}),
    "max ties under broadcasting": ("max", lambda: [np.array([[0.5, -2.0], [0.5, 0.5]]),
                                                    np.array(0.5)], {}),
    "maxout ties": ("maxout", lambda: [np.array([[0.3, -1.2], [0.7, 0.4], [-0.5, 1.1]]),
                                       np.stack([[[0.5, -1.0, 0.2], [1.5, 0.3, -0.4]]] * 2),
                                       np.array([[0.1, 0.0, -0.2], [0.1, 0.0, -0.2]])], {}),
    "svm hinge corners": ("svm_loss", lambda: [np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0],
                                                          [5.0, 4.0, 4.0], [1.0, 1.0, 3.0]]),
                                               np.array([0, 2, 1, 2])], {}),
}


@pytest.mark.parametrize("case", sorted(KINKS))
def test_gradcheck_passes_at_kinks(case):
    op, make, attrs = KINKS[case]
    g, feed = one_node(op, make(), attrs)
    report = gradcheck(g, feed)
    assert report.ok, str(report)
    assert report.n_kinks > 0  # these coordinates fail a plain central difference


def test_a_kink_is_not_a_licence_for_any_value(restore_registry):
    class LeakySubgradient(gx.Gate):
        """y = relu(x), but backward claims slope 1.5 at x == 0 (outside [0, 1])."""

        name, version = "bad_kink_relu", 1

        def forward(self, ctx, x):
            ctx.x = x
            return np.maximum(x, 0)

        def backward(self, ctx, dy):
            return (np.where(ctx.x > 0, dy, np.where(ctx.x == 0, 1.5 * dy, 0.0)),)

    gx.register_gate(LeakySubgradient)
    g, feed = one_node("bad_kink_relu", [np.array([0.0, 1.0, -1.0])])
    report = gradcheck(g, feed)
    assert not report.ok
    assert report.tensors[0].worst == (0,) and report.tensors[0].n_failed == 1


def terms(*values):
    return np.array(values, dtype=float)


@pytest.mark.parametrize("a, verdict", [(0.0, "ok"), (0.3, "kink"), (-1.0, "kink"), (1.0, "kink"),
                                        (1.2, "fail"), (-1.5, "fail")])
def test_judge_at_the_corner_of_abs(a, verdict):
    h = 1e-6  # f = |x| at x = 0: left slope -1, right slope +1, central difference 0
    assert judge(a, terms(h), terms(0.0), terms(h), h, h, 1e-12, 1e-5)[1] == verdict


def test_judge_counts_each_term_s_kink_once():
    h = 1e-6  # f = relu(x) - relu(-x)... as two terms: slopes [0, 1] and [0, 1] -> a in [0, 2]
    tp, t0, tm = terms(h, 0.0), terms(0.0, 0.0), terms(0.0, -h)
    assert judge(0.0, tp, t0, tm, h, h, 1e-12, 1e-5)[1] == "kink"
    assert judge(2.0, tp, t0, tm, h, h, 1e-12, 1e-5)[1] == "kink"
    assert judge(2.5, tp, t0, tm, h, h, 1e-12, 1e-5)[1] == "fail"
    # the same f as one term is smooth (f = x): only the true slope 1 passes
    assert judge(0.0, terms(h), terms(0.0), terms(-h), h, h, 1e-12, 1e-5)[1] == "fail"


def test_judge_smooth_function():
    h = 1e-6  # f = 3x at 0: a right gradient passes, a wrong one fails (no kink to hide behind)
    assert judge(3.0, terms(3 * h), terms(0.0), terms(-3 * h), h, h, 1e-12, 1e-5)[1] == "ok"
    assert judge(3.001, terms(3 * h), terms(0.0), terms(-3 * h), h, h, 1e-12, 1e-5)[1] == "fail"
    assert judge(float("nan"), terms(3 * h), terms(0.0), terms(-3 * h), h, h, 1e-12, 1e-5) \
        == (math.inf, "fail")


# ---------------------------------------------------------------------------- wrong gates
class BadSquare(gx.Gate):
    """y = x², with a backward wrong by a factor 1.5: 3x instead of 2x."""

    name, version = "bad_square", 3

    def forward(self, ctx, x):
        ctx.x = x
        return x * x

    def backward(self, ctx, dy):
        return (3.0 * ctx.x * dy,)


def bad_graph():
    rng = np.random.default_rng(7)
    b = gx.GraphBuilder("bad_net")
    x = b.input("x", shape=(None, 4))
    W = b.param("W", rng.standard_normal((4, 2)))
    h = b.op("matmul", x, W, name="h")
    b.output(b.op("sum", b.op("bad_square", h, name="sq"), name="loss"), "loss")
    return b.build(), {"x": rng.standard_normal((3, 4))}


def test_gradcheck_fails_a_gate_wrong_by_a_constant_factor_and_names_it(restore_registry):
    gx.register_gate(BadSquare)
    g, feed = bad_graph()
    report = gradcheck(g, feed)
    assert not report.ok
    assert {f.value for f in report.failures if f.kind == "graph"} == {"x", "W"}
    [node] = report.failing_nodes  # matmul and sum pass alone: only the bad gate is named
    assert (node.node, node.op, node.version, node.dist, node.input) == ("sq", "bad_square", 3,
                                                                         IN_PROCESS, 0)
    assert node.value == "h" and node.rel_error == pytest.approx(1 / 3, rel=1e-6)
    assert node.analytic == pytest.approx(1.5 * node.numerical, rel=1e-6)
    text = str(report)
    assert "FAILED" in text
    assert "first failing node: node 'sq': op 'bad_square' v3 from '<in-process>', input 0 ('h')" \
        in text
    assert report.max_rel_error == pytest.approx(1 / 3, rel=1e-6)


def test_only_nodes_the_outputs_need_are_blamed(restore_registry):
    gx.register_gate(BadSquare)
    b = gx.GraphBuilder("unused")
    x = b.input("x", shape=(3,))
    b.op("log", b.op("neg", b.op("square", x)), name="nan_but_unused")  # log of negatives: NaN
    b.output(b.op("sum", b.op("bad_square", x, name="sq")), "loss")
    report = gradcheck(b.build(), {"x": [0.5, -1.0, 2.0]})
    assert [f.node for f in report.failing_nodes] == ["sq"]


def test_sparse_sampling_still_catches_the_wrong_gate(restore_registry):
    gx.register_gate(BadSquare)
    rng = np.random.default_rng(3)
    b = gx.GraphBuilder("big")
    W = b.param("W", rng.standard_normal((50, 40)))
    b.output(b.op("sum", b.op("bad_square", W, name="sq")), "loss")
    report = gradcheck(b.build(), {}, max_coords=10)
    assert report.tensors[0].n_checked == 10 and report.tensors[0].n_failed == 10
    assert report.failing_nodes[0].node == "sq"


def test_every_gate_right_but_a_kink_combination_is_explained():
    # f(x) = relu(x) - relu(-x) = x: at x = 0 each relu's subgradient 0 is right alone, yet their
    # chain-rule sum 0 is not the true slope 1. The report says so instead of blaming a gate.
    b = gx.GraphBuilder("relu_pair")
    x = b.input("x", shape=())
    h = b.op("relu", b.op("mul", x, b.param("w", np.array([1.0, -1.0]))))
    b.output(b.op("sum", b.op("mul", h, b.param("v", np.array([1.0, -1.0])))), "out")
    report = gradcheck(b.build(), {"x": 0.0})
    assert not report.ok and not report.failing_nodes
    assert [f.value for f in report.failures] == ["x"]
    assert report.failures[0].analytic == 0.0 and report.failures[0].rel_error == 1.0
    assert "several kinks meet" in str(report)


# ---------------------------------------------------------------------------- behaviour
def test_public_names_are_the_function_and_the_report_class():
    import graphexec.gradcheck  # noqa: F401  (importing the module must not shadow the function)

    assert gx.gradcheck is gradcheck and gx.GradcheckReport is GradcheckReport


def test_float32_graph_is_checked_in_float64_and_left_untouched():
    rng = np.random.default_rng(1)
    b = gx.GraphBuilder("f32")
    x = b.input("x", shape=(None, 3), dtype="float32")
    W = b.param("W", rng.standard_normal((3, 2)).astype(np.float32))
    b.output(b.op("sum", b.op("tanh", b.op("matmul", x, W))), "out")
    g = b.build()
    before = g.params["W"].copy()
    feed = random_inputs(g, {}, seed=2)
    assert feed["x"].dtype == np.float32 and feed["x"].shape == (3, 3)
    report = gradcheck(g, feed)
    assert report.ok and report.max_rel_error < 1e-6  # float64 precision, not float32's
    assert g.params["W"].dtype == np.float32 and np.array_equal(g.params["W"], before)


def test_wrt_limits_the_check():
    g = gx.load(MODELS / "wx_norm.gx")
    report = gradcheck(g, {"x": [0.2, 0.4]}, wrt=["W"])
    assert [t.name for t in report.tensors] == ["W"] and report.n_checked == 4


def test_an_unused_input_may_be_left_out():
    b = gx.GraphBuilder("unused_input")
    x, _ = b.input("x", shape=(2,)), b.input("z", shape=(2,))
    b.output(b.op("sum", b.op("square", x)), "f")
    report = gradcheck(b.build(), {"x": [1.0, 2.0]})
    assert report.ok and [t.name for t in report.tensors] == ["x"]


def test_non_finite_outputs_fail_with_advice():
    b = gx.GraphBuilder("logs")
    b.output(b.op("sum", b.op("log", b.input("x", shape=(2,)))), "out")
    report = gradcheck(b.build(), {"x": [-1.0, 2.0]})
    assert not report.ok and report.failures[0].kind == "error"
    assert "not finite" in str(report) and report.to_dict()["max_rel_error"] == "inf"


def test_report_to_dict_is_json(restore_registry):
    gx.register_gate(BadSquare)
    d = json.loads(json.dumps(gradcheck(*bad_graph()).to_dict()))
    assert d["ok"] is False and d["n_checked"] == 12 + 8
    node = next(f for f in d["failures"] if f["kind"] == "node")
    assert node["op"] == "bad_square" and node["index"] is not None


def test_random_inputs_follow_the_declarations():
    b = gx.GraphBuilder("decls")
    x = b.input("x", shape=(None, 4))
    s = b.input("s")  # shape None: a scalar
    y = b.input("y", shape=(None,), dtype="int64")
    other = b.input("k", shape=(2,), dtype="int32")
    W = b.param("W", np.ones((4, 7)))
    scores = b.op("mul", b.op("matmul", x, W), s)
    b.output(b.op("softmax_cross_entropy", scores, y), "loss")
    b.output(other, "k_out")
    g = b.build()
    feed = random_inputs(g, {}, seed=0, size=40)
    assert feed["x"].shape == (40, 4) and feed["x"].dtype == np.float64
    assert feed["s"].shape == ()
    assert feed["y"].dtype == np.int64 and set(feed["y"]) == set(range(7))  # C = 7 inferred
    assert feed["k"].dtype == np.int32 and set(feed["k"]) <= {0, 1}
    again = random_inputs(g, {"s": 2.0}, seed=0, size=40)
    assert again["s"] == 2.0 and np.array_equal(again["x"], feed["x"])
    assert not np.array_equal(random_inputs(g, {}, seed=1, size=40)["x"], feed["x"])


# ---------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("path", sorted(MODELS.glob("*.gx")), ids=lambda p: p.name)
def test_cli_check_grad_passes_on_shipped_models(path, capsys):
    assert main(["check", str(path), "--grad", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is True and res["gradcheck"]["ok"] is True
    assert res["gradcheck"]["n_checked"] > 0 and res["gradcheck"]["max_rel_error"] < 1e-6


def test_cli_check_grad_with_given_inputs(capsys):
    argv = ["check", str(MODELS / "add_mul.gx"), "--grad", "-i", "x=-2", "-i", "y=5", "-i", "z=-4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "gradcheck 'add_mul': ok" in out and "3 coordinates checked" in out


def test_cli_check_grad_on_a_classifier_with_labels(tmp_path, capsys):
    rng = np.random.default_rng(5)
    b = gx.GraphBuilder("clf")
    x, y = b.input("x", shape=(None, 2)), b.input("y", shape=(None,), dtype="int64")
    h = b.op("relu", b.op("affine", x, b.param("W1", rng.standard_normal((2, 6))),
                          b.param("b1", rng.standard_normal(6) * 0.1)))
    W2, b2 = b.param("W2", rng.standard_normal((6, 3))), b.param("b2", np.zeros(3))
    scores = b.op("affine", h, W2, b2)
    b.output(b.op("add", b.op("svm_loss", scores, y), b.op("l2", "W1")), "loss")
    gx.save(b.build(), tmp_path / "clf.gx")
    assert main(["check", str(tmp_path / "clf.gx"), "--grad", "--seed", "3"]) == 0
    assert "gradcheck 'clf': ok" in capsys.readouterr().out


def test_cli_check_grad_exits_1_and_names_the_wrong_gate(tmp_path, capsys, restore_registry):
    gx.register_gate(BadSquare)
    g, _ = bad_graph()
    gx.save(g, tmp_path / "bad.gx")
    assert main(["check", str(tmp_path / "bad.gx"), "--grad"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "first failing node: node 'sq': op 'bad_square' v3" in out
    assert main(["check", str(tmp_path / "bad.gx"), "--grad", "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is False and res["gradcheck"]["failures"][-1]["node"] == "sq"


# ---------------------------------------------------------------------------- max at a tie
TIED_Y = {  # each ties with x = [[1, -2, 0.5], [1, 0, 0.5]] somewhere, some under broadcasting
    "same shape": np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 0.7]]),
    "row": np.array([1.0, 0.0, 0.5]),
    "column": np.array([[1.0], [0.5]]),
    "scalar": np.array(0.5),
}


@pytest.mark.parametrize("order", ["xy", "yx"])
@pytest.mark.parametrize("tie", sorted(TIED_Y))
def test_max_ties_pass_for_the_documented_choice_in_a_graph(order, tie):
    """The max gate sends dz to its first input at a tie (documented in the gate); gradcheck
    must accept that subgradient however the tie is broadcast and whatever reads the max."""
    x, y = np.array([[1.0, -2.0, 0.5], [1.0, 0.0, 0.5]]), TIED_Y[tie]
    b = gx.GraphBuilder("ties")
    xi, yi = b.input("x", shape=x.shape), b.input("y", shape=y.shape)
    m = b.op("max", xi, yi) if order == "xy" else b.op("max", yi, xi)
    b.output(b.op("sum", b.op("mul", m, b.op("square", m))), "f")  # Σ max³: not linear in max
    report = gradcheck(b.build(), {"x": x, "y": y})
    assert report.ok, str(report)
    assert report.n_kinks > 0


def test_max_tie_at_large_values_does_not_divide_by_a_zero_step():
    """Before: at |x| ~ 1e11, x + 1e-6 == x, the step was 0 and gradcheck raised
    ZeroDivisionError (also a traceback from `graphexec check --grad`)."""
    g, feed = one_node("max", [np.full((2,), 1e11), np.array([1e11, 3e15])])
    report = gradcheck(g, feed)
    assert report.ok, str(report)
    assert report.n_checked == 4
