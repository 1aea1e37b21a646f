"""Straight-line code for a schedule: the executor's loops unrolled, one line per node.

A schedule that runs again and again (a training loop, a benchmark) is compiled into one Python
function whose body calls each gate's bound method directly, with the slot numbers written in:
no loop, no tuple unpacking, no per-node branches on arity, and the fan-out sums decided ahead
(which contribution assigns, which adds in place, which makes a new sum). What each line does is
exactly what the interpreting loops in :mod:`graphexec.executor` do, in the same order, so the
results are bit for bit the same; the interpreter stays the reference and runs a schedule's
first :data:`COMPILE_AFTER` runs (compiling costs about 0.1 ms per node, repaid after a few
dozen runs) and any schedule longer than :data:`MAX_STEPS`.

**What goes into the source.** Only integers made here (slot numbers, node indices, input
positions, the 64-bit node keys of :func:`graphexec.plan.stable_hash`), ``True``/``False`` and
names this module makes up (``f0``, ``b3``). No string from a graph file (node, op or parameter
name, attribute) is ever written into the source: the gates' bound methods are passed in the
function's namespace, whose builtins are only ``type`` and ``len``.

**Errors.** Line ``i`` of a function belongs to one node (``Compiled.line_node``); when a gate
raises, the executor reads the failing line from the traceback and names the node as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import CodeType, TracebackType
from typing import Any, NamedTuple

import numpy as np

from graphexec.gate import Ctx

__all__ = ["COMPILE_AFTER", "MAX_STEPS", "Compiled", "backward_code", "failed_node", "forward_code"]

#: Runs of a schedule interpreted before it is compiled (0: compile on first use).
COMPILE_AFTER = 2
#: Schedules with more steps than this are always interpreted (compiling would take seconds).
MAX_STEPS = 20_000

_BUILTINS = {"type": type, "len": len}


class Compiled(NamedTuple):
    """A compiled schedule: the function, its code object and the node of each line."""

    fn: Callable[..., Any]
    code: CodeType
    line_node: tuple[int, ...]  # line number -> node index (-1: not a node's line)
    #: Backward only, per wrt slot: may the gradient be an array the executor did not make
    #: (a gate's, perhaps a read-only view)? False: it is a sum made here or a fresh array.
    foreign: tuple[bool, ...] = ()


def _build(header: str, body: list[tuple[int, str]], tail: list[str],
           namespace: dict[str, Any]) -> Compiled:
    """``def`` + one line per (node, statement) + ``tail``, compiled in ``namespace``."""
    lines = [header] + [" " + text for _, text in body] + [" " + t for t in tail]
    line_node = (-1, -1) + tuple(k for k, _ in body) + (-1,) * len(tail)
    namespace["__builtins__"] = _BUILTINS
    exec(compile("\n".join(lines) + "\n", "<graphexec schedule>", "exec"), namespace)
    fn = namespace["_run"]
    return Compiled(fn, fn.__code__, line_node)


def _args(slots: Sequence[int]) -> str:
    return "".join(f", V[{int(s)}]" for s in slots)


def forward_code(steps: Sequence[Any], release: Sequence[Sequence[int]], mode: str,
                 node_keys: Sequence[int]) -> Compiled:
    """``_run(V, X, seed, step)`` for forward ``steps`` (:class:`graphexec.plan.Step`).

    ``V``: values by slot (inputs filled in; outputs written), ``X``: ctx by node index.
    ``mode`` "keep": every ctx kept in X for backward; "train": the same, in training mode
    (``ctx.training``, ``ctx.rng_key = (seed, step, node key)``); "run": a throwaway ctx per
    node and each value released after its last reader (``release``).
    """
    ns: dict[str, Any] = {"C": Ctx, "nd": np.ndarray, "A": np.asarray}
    body = []
    for i, (forward, ins, out, k) in enumerate(steps):
        ns[f"f{i}"] = forward
        k, out = int(k), int(out)
        if mode == "run":
            call = f"y = f{i}(C(){_args(ins)})"
        else:
            call = f"c = C(); X[{k}] = c; "
            if mode == "train":
                call += f"c.training = True; c.rng_key = (seed, step, {int(node_keys[k])}); "
            call += f"y = f{i}(c{_args(ins)})"
        free = "".join(f"; V[{int(s)}] = None" for s in release[i]) if mode == "run" else ""
        body.append((k, f"{call}; V[{out}] = y if type(y) is nd else A(y){free}"))
    return _build("def _run(V, X, seed, step):", body, ["return None"], ns)


def backward_code(steps: Sequence[Any], seeded: Sequence[int], wrt: Sequence[int],
                  chk: Callable[..., Any], bad: Callable[..., Any]) -> Compiled:
    """``_run(V, X, G) -> tuple`` for backward ``steps`` (:class:`graphexec.plan.BackStep`).

    ``G``: the seeded gradients by slot; returns the gradient of each ``wrt`` slot (None: none
    flows to it). The fan-out rule is the interpreter's, decided here once: the first gradient
    for a slot is kept as it is; the next is added into it in place if it is ``owned`` (a sum
    made here, or a ``fresh_grads`` gate's array), otherwise a new sum is made and owned.
    ``Compiled.foreign`` says which results may be arrays the executor did not make.
    ``chk(k, i, d, v)`` and ``bad(k, d)`` are the executor's slow path of the gradient check
    and its wrong-count error for node ``k``.
    """
    ns: dict[str, Any] = {"nd": np.ndarray, "A": np.asarray, "chk": chk, "bad": bad}
    owned: dict[int, bool] = {}  # slot -> does the gradient held for it belong to us?
    body: list[tuple[int, str]] = [(-1, f"g{int(s)} = G[{int(s)}]") for s in seeded]
    owned.update((int(s), False) for s in seeded)
    for i, (backward, n_in, needs, targets, out, k, fresh) in enumerate(steps):
        k, out = int(k), int(out)
        if out not in owned:  # no gradient reaches this node (the interpreter skips it too)
            continue
        ns[f"b{i}"] = backward
        mask = "(" + "".join("True, " if bool(n) else "False, " for n in needs) + ")"
        body.append((k, f"c = X[{k}]; X[{k}] = None; c.needs_grad = {mask}; "
                        f"d = b{i}(c, g{out}); g{out} = None"))
        body.append((k, f"if len(d) != {int(n_in)}: bad({k}, d)"))
        for pos, s in targets:
            pos, s = int(pos), int(s)
            body.append((k, f"e = d[{pos}]; v = V[{s}]"))
            body.append((k, "if type(e) is not nd or e.shape != v.shape or e.dtype is not v.dtype: "
                            f"e = chk({k}, {pos}, e, v)"))
            if s not in owned:
                body.append((k, f"g{s} = e"))
                owned[s] = bool(fresh)
            elif owned[s]:
                body.append((k, f"g{s} += e"))
            else:  # asarray: numpy gives a scalar, not an array, for a 0-d sum
                body.append((k, f"g{s} = A(g{s} + e)"))
                owned[s] = True
        body.append((k, "d = e = v = c = None"))  # nothing of this node stays alive
    result = "".join(f"g{int(s)}, " if int(s) in owned else "None, " for s in wrt)
    foreign = tuple(not owned.get(int(s), True) for s in wrt)
    return _build("def _run(V, X, G):", body, [f"return ({result})"], ns)._replace(foreign=foreign)


def failed_node(compiled: Compiled, tb: TracebackType | None) -> int:
    """The node whose line of ``compiled`` the traceback ``tb`` passes through (-1: none)."""
    while tb is not None:
        if tb.tb_frame.f_code is compiled.code:
            line = tb.tb_lineno
            return compiled.line_node[line] if 0 <= line < len(compiled.line_node) else -1
        tb = tb.tb_next
    return -1
