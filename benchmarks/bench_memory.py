"""Forward-only peak memory on a deep chain of large activations.

A chain of 64 tanh nodes on a 1000×1000 float64 input (8 MB per activation). The peak memory that
tracemalloc sees during the call (numpy reports its buffers to it), minus what was allocated
before, is given in activations: ``gx.run`` frees each activation after its last reader (goal:
≤ 5 alive at once), like the numpy loop; ``Executor.forward`` keeps every one for backward.
"""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import numpy as np
from harness import Row, Settings

import graphexec as gx

DEPTH, SHAPE = 64, (1000, 1000)


def chain() -> gx.Graph:
    b = gx.GraphBuilder("deep")
    v = b.input("x", shape=SHAPE)
    for _ in range(DEPTH):
        v = b.op("tanh", v)
    b.output(v, "y")
    return b.build(check_shapes=False)


def peak_activations(fn: Any, act_bytes: int) -> float:
    """Peak of newly allocated memory while ``fn`` runs, in activations (the result included)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return (peak - base) / act_bytes


def run(settings: Settings) -> list[Row]:
    x = np.random.default_rng(0).standard_normal(SHAPE) * 0.1
    g = chain()

    def numpy_loop() -> np.ndarray:
        v = x
        for _ in range(DEPTH):
            v = np.tanh(v)
        return v

    ex = gx.Executor(g)
    cases = {"numpy": numpy_loop, "graphexec gx.run": lambda: gx.run(g, x=x)["y"],
             "graphexec Executor.forward": lambda: ex.forward(x=x)["y"]}
    np.testing.assert_allclose(cases["graphexec gx.run"](), numpy_loop(), rtol=1e-12)
    rows = []
    case = f"chain of {DEPTH} tanh on {SHAPE[0]}×{SHAPE[1]} float64 ({x.nbytes / 1e6:.0f} MB each)"
    for name, fn in cases.items():
        alive = peak_activations(fn, x.nbytes)
        goal = "≤ 5 activations" if name == "graphexec gx.run" else ""
        note = "keeps all for backward (by design)" if "Executor" in name else ""
        rows.append(Row("forward-only peak memory", case, name, None, None, goal=goal, note=note,
                        extra={"display": f"{alive:.1f} activations", "activations": alive}))
        print(f"  memory {name}: {alive:.1f} activations at peak", file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv))))
