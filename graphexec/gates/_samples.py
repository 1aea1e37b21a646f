"""Sample inputs for the built-in gates: random shapes that forward accepts, broadcasting included.

Each built-in gate has a ``sample_inputs(rng) -> (inputs, attrs)`` static method built from
these helpers; the property test over every registered gate (``tests/test_gate_properties.py``)
calls it, checks that backward returns one gradient per input shaped like it, and runs
``gx.gradcheck`` on a one-node graph. A plugin gate may define the same method to be driven
the same way; without it the test uses elementwise shapes for the gate's arity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Sample", "away_from_zero", "broadcast_shapes", "broadcasts_to", "matmul_shapes", "random_shape"]

Shape = tuple[int, ...]
#: What ``sample_inputs`` returns: the inputs, and the attributes to build the gate with.
Sample = tuple[tuple[np.ndarray, ...], dict[str, Any]]


def random_shape(rng: np.random.Generator, min_ndim: int = 0, max_ndim: int = 3,
                 max_size: int = 4) -> Shape:
    """A shape of ``min_ndim..max_ndim`` axes, each of size 1..``max_size``."""
    ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(n) for n in rng.integers(1, max_size + 1, size=ndim))


def broadcast_shapes(rng: np.random.Generator, full: Shape, k: int) -> list[Shape]:
    """``k`` shapes that broadcast together to ``full`` (numpy's rules): each drops some leading
    axes and sets some others to 1; at least one of them keeps every axis of ``full``."""
    out = [broadcasts_to(rng, full) for _ in range(k)]
    out[int(rng.integers(k))] = full  # the result has exactly the shape ``full``
    return out


def broadcasts_to(rng: np.random.Generator, full: Shape) -> Shape:
    """One shape that broadcasts to ``full``: some leading axes dropped, some others set to 1."""
    lead = int(rng.integers(0, len(full) + 1))
    return tuple(1 if rng.random() < 0.3 else n for n in full[lead:])


def matmul_shapes(rng: np.random.Generator) -> tuple[Shape, Shape]:
    """Operand shapes for numpy's ``matmul``: 1-D vectors, matrices, and broadcast batches."""
    n, d, m = (int(v) for v in rng.integers(1, 5, size=3))
    batch = random_shape(rng, 0, 2)
    bx, bw = broadcast_shapes(rng, batch, 2) if batch else ((), ())
    sx = (d,) if rng.random() < 0.2 else (*bx, n, d)
    sw = (d,) if rng.random() < 0.2 else (*bw, d, m)
    return sx, sw


def away_from_zero(rng: np.random.Generator, shape: Shape, low: float = 0.5) -> np.ndarray:
    """Values with |v| in [low, 2): a divisor that keeps x / y well conditioned."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)
