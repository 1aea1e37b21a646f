"""Shape rules: every built-in gate declares ``infer``, and it agrees with what forward does.

For each built-in gate and random inputs its forward accepts (its ``sample_inputs``), the spec
inferred from the concrete inputs is exactly the output's shape and dtype; with the batch axis
unknown, with every axis unknown, and with the rank unknown, the rule still answers and what it
says is true of the concrete output (never a wrong size, at most an unknown one).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import graphexec as gx
from graphexec.errors import GraphError
from graphexec.gate import Ctx, Spec
from graphexec.gates.activations import Maxout, ReLU
from graphexec.gates.arith import Add, Div, Exp
from graphexec.gates.linear import Affine, MatMul, Reshape
from graphexec.gates.losses import SoftmaxCrossEntropy
from graphexec.gates.reduce import Mean
from graphexec.registry import OWN_DIST, registry

BUILTINS = sorted((op, info.cls) for op, info in registry().gates.items() if info.dist == OWN_DIST)


def compatible(spec: Spec, y: np.ndarray) -> bool:
    """What the spec says is true of y: known rank, known dims, known dtype all match."""
    if spec.dtype is not None and spec.dtype != y.dtype:
        return False
    if spec.shape is None:
        return True
    return len(spec.shape) == y.ndim and all(d is None or d == n for d, n in zip(spec.shape, y.shape))


def test_every_builtin_gate_declares_a_shape_rule():
    assert len(BUILTINS) >= 38
    missing = [op for op, cls in BUILTINS if not callable(getattr(cls, "infer", None))]
    assert not missing


@pytest.mark.parametrize(("op", "cls"), BUILTINS, ids=[op for op, _ in BUILTINS])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_infer_agrees_with_forward(op, cls, dtype):
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    for _ in range(15):
        inputs, attrs = cls.sample_inputs(rng)
        inputs = [np.asarray(v).astype(dtype) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
                  for v in inputs]
        gate = cls(cls.Attrs(**attrs))
        y = np.asarray(gate.forward(Ctx(), *inputs))
        exact = gate.infer(*(Spec(v.shape, v.dtype) for v in inputs))
        assert exact == Spec(y.shape, y.dtype), (op, [v.shape for v in inputs], attrs)
        for vague in (
            [Spec((None, *v.shape[1:]) if v.ndim else (), v.dtype) for v in inputs],
            [Spec((None,) * v.ndim, v.dtype) for v in inputs],
            [Spec(None, None) for _ in inputs],
            [Spec(None, v.dtype) if i == 0 else Spec(v.shape, v.dtype) for i, v in enumerate(inputs)],
        ):
            spec = gate.infer(*vague)
            assert isinstance(spec, Spec) and compatible(spec, y), (op, vague, spec, y.shape)


def test_affine_mismatch_names_features_and_the_weight_shape():
    f = "float32"
    with pytest.raises(GraphError) as e:
        Affine().infer(Spec((None, 100), f), Spec((50, 10), f), Spec((10,), f))
    assert str(e.value) == ("x has 100 features but W expects 50 (W is (50, 10)); "
                            "expected x (..., 50)")
    assert MatMul().infer(Spec((None, 50), f), Spec((50, 10), f)) == Spec((None, 10), f)
    assert MatMul().infer(Spec((7,), f), Spec((None, 7, 2), f)) == Spec((None, 2), f)


def test_broadcast_rule_keeps_unknowns_and_refuses_definite_mismatches():
    f = "float64"
    assert Add().infer(Spec((None, 3), f), Spec((3,), f)) == Spec((None, 3), f)
    assert Add().infer(Spec((None, 1), f), Spec((1, 4), f)) == Spec((None, 4), f)
    assert Add().infer(Spec((2, None), f), Spec((1,), f)) == Spec((2, None), f)
    assert Add().infer(Spec((2, 3), "float32"), Spec((3,), "int64")).dtype == np.float64
    with pytest.raises(GraphError, match=r"shapes \(None, 3\), \(4,\) do not broadcast: axis -1"):
        Add().infer(Spec((None, 3), f), Spec((4,), f))


def test_dtype_rules_follow_numpy():
    i = "int64"
    assert Div().infer(Spec((2,), i), Spec((2,), i)).dtype == np.int64  # truncating integer div
    assert Exp().infer(Spec((2,), "int32")).dtype == np.float64
    assert ReLU().infer(Spec((2,), "int32")).dtype == np.int32
    assert Mean().infer(Spec((2,), i)) == Spec((), np.float64)


def test_reshape_rule():
    f = "float64"
    assert Reshape(Reshape.Attrs(shape=[-1, 6])).infer(Spec((4, 3), f)) == Spec((2, 6), f)
    assert Reshape(Reshape.Attrs(shape=[-1, 6])).infer(Spec((None, 3), f)) == Spec((None, 6), f)
    with pytest.raises(GraphError, match=r"cannot reshape x \(4, 3\) \(12 values\) to \[5, 2\]"):
        Reshape(Reshape.Attrs(shape=[5, 2])).infer(Spec((4, 3), f))
    with pytest.raises(GraphError, match="the other sizes multiply to 5"):
        Reshape(Reshape.Attrs(shape=[-1, 5])).infer(Spec((4, 3), f))


def test_loss_and_maxout_rules():
    f = "float32"
    assert SoftmaxCrossEntropy().infer(Spec((None, 10), f), Spec((None,), "int64")) == Spec((), f)
    with pytest.raises(GraphError, match="labels must be integer class indices"):
        SoftmaxCrossEntropy().infer(Spec((None, 10), f), Spec((None,), f))
    with pytest.raises(GraphError, match=r"the labels are \(3,\) but the scores have 4 rows"):
        SoftmaxCrossEntropy().infer(Spec((4, 10), f), Spec((3,), "int64"))
    assert Maxout().infer(Spec((None, 4), f), Spec((3, 4, 5), f), Spec((3, 5), f)) == Spec((None, 5), f)
    with pytest.raises(GraphError, match="maxout expects"):
        Maxout().infer(Spec((None, 3), f), Spec((3, 4, 5), f), Spec((3, 5), f))


def test_a_rule_runs_once_per_distinct_gate_attributes_and_input_specs(monkeypatch):
    """A 3000-node graph of two ops over one shape used to make 3000 rule calls."""
    from graphexec.gates.arith import Add, Mul

    calls = []
    for cls in (Add, Mul):
        rule = cls.infer
        monkeypatch.setattr(cls, "infer", lambda self, *s, _r=rule: calls.append(1) or _r(self, *s))
    b = gx.GraphBuilder("chain")
    v = b.input("x", shape=(None, 3))
    w = b.param("w", np.ones(3))
    for i in range(1500):
        v = b.op("mul", b.op("add", v, w, name=f"a{i}"), w, name=f"m{i}")
    b.output(v, "y")
    data = gx.dumps(b.build(check_shapes=False))
    calls.clear()
    g = gx.loads(data)
    assert g.specs["m1499"] == Spec((None, 3), np.dtype(np.float64))
    assert 0 < len(calls) <= 4
