"""One property over every registered gate: whatever forward accepts, backward serves.

For random shapes that forward accepts (broadcasting included), backward returns one gradient
per float input, shaped and typed like that input, and the gradients pass ``gx.gradcheck`` on a
one-node graph. The gates come from the registry, so a new gate gets this test for free.

Inputs come from the gate's optional ``sample_inputs(rng) -> (inputs, attrs)`` static method
(every built-in gate has one, see ``graphexec/gates/_samples.py``); a gate without it is
driven with elementwise shapes for its arity, broadcasting included, and skipped (with the
reason) if its forward refuses them.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

import graphexec as gx
from graphexec.gate import Ctx, Gate
from graphexec.gates._samples import broadcast_shapes, random_shape
from graphexec.registry import IN_PROCESS, registry

TRIALS = 12  # random draws per gate; each draw is a new family member (shapes, attrs, values)

GATES = sorted((op, info.cls, info.n_inputs) for op, info in registry().gates.items()
               if info.dist != IN_PROCESS)  # in-process ones belong to the test that made them


def draw(cls: type[Gate], arity: int,
         rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    """Inputs and attributes for one trial of ``cls``."""
    sample = getattr(cls, "sample_inputs", None)
    if sample is not None:
        inputs, attrs = sample(rng)
        return tuple(np.asarray(v) for v in inputs), attrs
    shapes = broadcast_shapes(rng, random_shape(rng), max(arity, 1))
    return tuple(rng.standard_normal(s) for s in shapes), {}


def one_node(op: str, inputs: tuple[np.ndarray, ...],
             attrs: dict[str, Any]) -> tuple[gx.Graph, dict[str, np.ndarray]]:
    b = gx.GraphBuilder(f"prop_{op}")
    ins = [b.input(f"in{i}", shape=v.shape, dtype=v.dtype.name) for i, v in enumerate(inputs)]
    b.output(b.op(op, *ins, name="node", **attrs), "out")
    return b.build(), {f"in{i}": v for i, v in enumerate(inputs)}


def test_every_gate_is_covered_and_the_builtins_bring_their_own_samples():
    ops = {op for op, _, _ in GATES}
    assert {"add", "matmul", "affine", "div", "max", "softmax_cross_entropy"} <= ops
    for op, cls, _ in GATES:
        if cls.__module__.startswith("graphexec."):
            assert callable(getattr(cls, "sample_inputs", None)), op


@pytest.mark.parametrize(("op", "cls", "arity"), GATES, ids=[g[0] for g in GATES])
def test_backward_serves_whatever_forward_accepts(op, cls, arity):
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    for trial in range(TRIALS):
        inputs, attrs = draw(cls, arity, rng)
        gate = cls(cls.Attrs(**attrs))
        ctx = Ctx()
        try:
            out = np.asarray(gate.forward(ctx, *inputs))
        except Exception as e:
            if getattr(cls, "sample_inputs", None) is not None:
                raise  # its own samples must be accepted
            pytest.skip(f"{op}: forward refuses elementwise inputs ({e}); give the gate a "
                        "sample_inputs(rng) static method to have it checked")
        buffers = getattr(cls, "buffer_inputs", ())  # read, never differentiated (batchnorm's)
        floats = tuple(v.dtype.kind == "f" and i not in buffers for i, v in enumerate(inputs))
        ctx.needs_grad = floats
        grads = gate.backward(ctx, rng.standard_normal(out.shape).astype(out.dtype))
        shapes = [v.shape for v in inputs]
        assert len(grads) == len(inputs), (op, shapes)
        for i, (v, g) in enumerate(zip(inputs, grads)):
            if floats[i]:
                assert isinstance(g, np.ndarray | np.generic), (op, shapes, i)
                assert np.shape(g) == v.shape and g.dtype == v.dtype, (op, shapes, attrs, i)
        g, feed = one_node(op, inputs, attrs)
        wrt = [f"in{i}" for i, f in enumerate(floats) if f]
        report = gx.gradcheck(g, feed, wrt=wrt, seed=trial, max_coords=12)
        assert report.ok, f"{op} at shapes {shapes}, attrs {attrs}:\n{report}"
