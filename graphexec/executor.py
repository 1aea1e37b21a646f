"""The executor: runs a plan forward and backward (the chain rule), one node at a time.

It alone checks inputs against their declarations, sums gradients at fan-out, checks each
gradient's shape and dtype against its input, and frees each node's ctx as soon as it is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np

from graphexec.errors import ExecutionError, GraphError, GraphexecError
from graphexec.gate import Ctx
from graphexec.graph import Graph, InputDecl
from graphexec.plan import BackwardSchedule, ForwardSchedule, plan_for

__all__ = ["Executor", "run", "check_input"]

ndarray = np.ndarray
NoneType = type(None)
_ABSENT = object()  # an input not given


def check_input(decl: InputDecl, value: Any) -> np.ndarray:
    """``value`` as an array of the declared dtype and shape, or a GraphError saying why not.

    Python numbers and lists are converted; numpy arrays must already have the declared float
    dtype (no silent up- or down-casts); integer arrays are accepted for integer inputs. A
    value the declared dtype cannot hold is refused, never wrapped: an integer out of its
    range, a finite number that would become inf (1e5 for a float16).
    """
    want = decl.dtype
    if isinstance(value, np.ndarray) and value.dtype == want:
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise GraphError(f"input {decl.name!r}: cannot read {type(value).__name__} as an "
                             f"array ({e})") from e
        kind = arr.dtype.kind
        if kind not in "biuf":
            raise GraphError(f"input {decl.name!r} must be numeric ({want}), got {arr.dtype} data")
        if isinstance(value, np.ndarray) and kind == "f" and want.kind == "f":
            raise GraphError(f"input {decl.name!r} expects {want}, got a {arr.dtype} array; "
                             f"convert it with .astype({want.name!r})")
        if want.kind in "iu" and kind == "f":
            raise GraphError(f"input {decl.name!r} expects integers ({want}), got {arr.dtype}")
        if want.kind in "iu" and kind in "iu" and arr.size and not np.can_cast(arr.dtype, want):
            _check_range(decl.name, arr, want)
        with np.errstate(over="ignore"):  # an overflow is refused just below, naming it
            given, arr = arr, arr.astype(want)
        if want.kind == "f" and arr.size and not np.can_cast(given.dtype, want):
            _check_finite(decl.name, given, arr)
    if decl.shape is not None and not _shape_fits(decl.shape, arr.shape):
        shape = "(" + ", ".join(map(str, decl.shape)) + ("," if len(decl.shape) == 1 else "") + ")"
        raise GraphError(f"input {decl.name!r} expects shape {shape} (None = any size), "
                         f"got {arr.shape}")
    return arr


def _check_range(name: str, arr: np.ndarray, want: np.dtype[Any]) -> None:
    """Integers that ``want`` cannot hold are refused: a cast would wrap them around."""
    lo, hi, info = arr.min(), arr.max(), np.iinfo(want)
    if lo < info.min or hi > info.max:
        raise GraphError(f"input {name!r} expects {want} ({info.min}..{info.max}), got values "
                         f"from {lo} to {hi}; a cast would wrap them around")


def _check_finite(name: str, given: np.ndarray, arr: np.ndarray) -> None:
    """Finite numbers that became inf in the narrower float dtype are refused."""
    grew = np.isinf(arr) & ~np.isinf(given)
    if grew.any():
        big = float(np.max(np.abs(given[grew])))
        raise GraphError(f"input {name!r} expects {arr.dtype} (largest "
                         f"{float(np.finfo(arr.dtype).max):g}), got {big:g}, which would "
                         "become inf")


@lru_cache(maxsize=1024)  # a training loop feeds the same few shapes again and again
def _shape_fits(want: tuple[int | None, ...], got: tuple[int, ...]) -> bool:
    if len(want) != len(got):
        return False
    for d, n in zip(want, got):
        if d is not None and d != n:
            return False
    return True


class Executor:
    """Runs one graph forward and backward. Compiles once; one executor per thread.

    A ``forward()`` keeps what ``backward()`` needs; ``backward()`` uses it up and frees it, so a
    second ``backward()`` needs a new ``forward()`` first (it raises a GraphError otherwise).
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.plan = plan_for(graph)
        self._fwd: ForwardSchedule | None = None
        self._vals: list[Any] | None = None
        self._ctxs: list[Ctx | None] | None = None
        self._wrt_cache: dict[int, tuple[BackwardSchedule, Any]] = {}  # see _wrt_lists
        # input slot -> the shape of the last array check_input accepted there (see _feed)
        self._fits: dict[int, tuple[int, ...] | None] = dict.fromkeys(s for s, _ in self.plan.inputs)

    def _feed(self, inputs: Mapping[str, Any] | None, kw: Mapping[str, Any]) -> list[Any]:
        feed = dict(inputs or {}, **kw) if kw or not isinstance(inputs, dict) else inputs
        vals: list[Any] = [None] * self.plan.n_slots
        fits, used = self._fits, 0
        for slot, decl in self.plan.inputs:
            value = feed.get(decl.name, _ABSENT)
            if value is _ABSENT:
                continue
            used += 1
            # An array exactly like one check_input accepted before passes unchanged again.
            if type(value) is ndarray and value.dtype is decl.dtype and value.shape == fits[slot]:
                vals[slot] = value
            else:
                vals[slot] = arr = check_input(decl, value)
                fits[slot] = arr.shape
        if used != len(feed):
            unknown = sorted(set(feed) - {d.name for _, d in self.plan.inputs})
            raise GraphError(f"unknown input {unknown[0]!r}; the graph's inputs are "
                             f"{self.graph.inputs}")
        plan = self.plan  # parameter and buffer slots are contiguous (see Plan)
        vals[plan.param_span] = map(self.graph.params.__getitem__, plan.param_names)
        vals[plan.buffer_span] = map(self.graph.buffers.__getitem__, plan.buffer_names)
        return vals

    def _missing(self, sched: ForwardSchedule, vals: list[Any]) -> None:
        for name, s in sched.leaves:
            if vals[s] is None:
                raise GraphError(f"missing input {name!r}; pass it as {name}=... "
                                 f"(the graph's inputs are {self.graph.inputs})")

    def forward(self, inputs: Mapping[str, Any] | None = None, /, *,
                outputs: Iterable[str] | None = None, training: bool = False,
                seed: int | None = None, step: int = 0, **kw: Any) -> dict[str, np.ndarray]:
        """Run forward and keep each node's ctx for ``backward``; returns the outputs by name.

        ``training=True`` runs in training mode: each gate sees ``ctx.training`` and may use
        ``ctx.rng``, a generator derived from ``(seed, step, node name)`` (a fresh random seed
        when ``seed`` is None), and the buffer updates gates propose are applied once the whole
        forward has succeeded. Evaluation mode (the default) never changes the graph.
        """
        key = _mode_key(seed, step) if training else None
        return self._forward(inputs, kw, outputs, keep=True, key=key)

    def _forward(self, inputs: Mapping[str, Any] | None, kw: Mapping[str, Any],
                 outputs: Iterable[str] | None, keep: bool,
                 key: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        sched = self.plan.forward(outputs)
        vals = self._feed(inputs, kw)
        self._missing(sched, vals)
        self._vals = self._ctxs = self._fwd = None
        # keep: every ctx is kept for backward; otherwise a throwaway ctx per node, and each
        # value dropped after its last reader.
        ctxs: list[Ctx | None] | None = [None] * len(self.graph.nodes) if keep else None
        proposed = self._interpret(sched, vals, ctxs, key, keep)
        if proposed:
            self._apply_updates(proposed)
        if ctxs is not None:
            self._fwd, self._vals, self._ctxs = sched, vals, ctxs
        return {name: vals[s] for name, s in sched.outputs}

    def _interpret(self, sched: ForwardSchedule, vals: list[Any], ctxs: list[Ctx | None] | None,
                   key: tuple[int, int] | None, keep: bool) -> list[tuple[int, Ctx]]:
        """The forward loop; returns the (node, ctx) pairs that proposed buffer updates."""
        release = repeat(()) if keep else sched.release
        node_keys = self.plan.node_keys
        proposed: list[tuple[int, Ctx]] = []
        k = -1
        try:
            for (forward, ins, out, k), free in zip(sched.steps, release):
                ctx = Ctx()
                if ctxs is not None:
                    ctxs[k] = ctx
                if key is not None:  # training mode (see forward)
                    ctx.training, ctx.rng_key = True, (*key, node_keys[k])
                # Calls spelled out by arity: no argument list is built for 1 or 2 inputs.
                n = len(ins)
                if n == 2:
                    a, b = ins
                    y = forward(ctx, vals[a], vals[b])
                elif n == 1:
                    y = forward(ctx, vals[ins[0]])
                else:
                    y = forward(ctx, *[vals[s] for s in ins])
                vals[out] = y if type(y) is ndarray else np.asarray(y)
                if key is not None and "updates" in ctx.__dict__:
                    proposed.append((k, ctx))
                for s in free:
                    vals[s] = None
        except Exception as e:
            _gate_failed(self.graph, k, "forward", e)
        return proposed

    def _apply_updates(self, proposed: list[tuple[int, Ctx]]) -> None:
        """Check every buffer update the gates proposed, then apply them all (or none).

        Each buffer gets a new array (the old one is not written), so a value another
        executor or a caller holds never changes under it."""
        staged: dict[str, np.ndarray] = {}
        for k, ctx in proposed:
            node = self.graph.nodes[k]
            for i, value in ctx.updates.items():
                slot = self.plan.node_inputs[k][i] if 0 <= i < len(node.inputs) else -1
                name = self.plan.buffer_of.get(slot)
                if name is None:
                    what = repr(node.inputs[i]) if slot >= 0 else "which does not exist"
                    raise ExecutionError(f"node {node.name!r} ({node.op}) proposed a new value "
                                         f"for its input {i} {what}, which is not a buffer; only "
                                         "buffers can be updated (declare it with b.buffer(...))")
                old, new = self.graph.buffers[name], np.asarray(value)
                if new.shape != old.shape or new.dtype != old.dtype:
                    raise ExecutionError(f"node {node.name!r} ({node.op}) proposed {new.dtype} "
                                         f"{new.shape} for buffer {name!r}; expected {old.dtype} "
                                         f"{old.shape}, like the buffer")
                staged[name] = np.array(new, copy=True)
        self.graph.buffers.update(staged)

    def backward(self, seeds: Mapping[str, Any] | None = None, *,
                 wrt: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Backpropagate from ``seeds`` (default: ones for every float output computed) to
        ``wrt`` (default: every float input and parameter); returns gradients by name."""
        fwd, vals, ctxs = self._fwd, self._vals, self._ctxs
        if fwd is None or vals is None or ctxs is None:
            raise GraphError("backward() needs a forward() first (each forward() allows one "
                             "backward(); run forward() again)")
        self._fwd = self._vals = self._ctxs = None
        grads: list[Any] = [None] * self.plan.n_slots
        seeded = self._seed(fwd, vals, grads, seeds)
        sched = self.plan.backward(fwd, seeded, self.plan.grad_leaves if wrt is None else wrt)
        self._backward_loop(sched, vals, ctxs, grads)
        return self._hand_out(sched, vals, grads)

    def _hand_out(self, sched: BackwardSchedule, vals: list[Any],
                  grads: list[Any]) -> dict[str, np.ndarray]:
        """The ``wrt`` gradients by name: zeros where nothing flowed, and an array of its own
        for each ``foreign`` one that is read-only (a broadcast view, say)."""
        names, slots, foreign = self._wrt_lists(sched)
        got = list(map(grads.__getitem__, slots))
        if NoneType in map(type, got):  # nothing flows to some (an unused input or parameter)
            got = [np.zeros_like(vals[s]) if g is None else g for g, s in zip(got, slots)]
        for j in foreign:
            if not got[j].flags.writeable:
                got[j] = np.array(got[j])
        return dict(zip(names, got))

    def _wrt_lists(self, sched: BackwardSchedule) -> tuple[tuple[str, ...], tuple[int, ...],
                                                             tuple[int, ...]]:
        """``sched.wrt`` as (names, slots, positions of the foreign ones), made once per schedule."""
        hit = self._wrt_cache.get(id(sched))
        if hit is None or hit[0] is not sched:
            names, slots = zip(*sched.wrt) if sched.wrt else ((), ())
            foreign = tuple(j for j, check in enumerate(sched.foreign) if check)
            hit = self._wrt_cache[id(sched)] = (sched, (names, slots, foreign))
        return hit[1]

    def _backward_loop(self, sched: BackwardSchedule, vals: list[Any], ctxs: list[Any],
                       grads: list[Any]) -> None:
        """Run each node's backward in reverse order; sum gradients at fan-out.

        ``owned[s]``: the gradient held for slot s is an array nobody else can see, so the next
        contribution is added into it in place. It is either a sum this loop made itself, or a
        gradient from a gate that declares ``fresh_grads`` (see :class:`graphexec.gate.Gate`).
        Any other gate's array is never written: the gate may still hold it.
        """
        owned = [False] * len(grads)
        array = ndarray  # a local name: read twice per gradient
        k = -1
        try:
            for backward, n_in, needs, targets, out, k, fresh in sched.steps:
                g = grads[out]
                if g is None:
                    continue
                grads[out] = None
                ctx = ctxs[k]
                ctxs[k] = None
                ctx.needs_grad = needs
                dins = backward(ctx, g)
                if len(dins) != n_in:
                    _bad_count(self.graph.nodes[k], dins)
                for i, s in targets:
                    d = dins[i]
                    v = vals[s]
                    if type(d) is not array or d.shape != v.shape or d.dtype is not v.dtype:
                        d = _checked(self.graph.nodes[k], i, d, v)
                    cur = grads[s]
                    if cur is None:
                        grads[s] = d
                        owned[s] = fresh
                    elif owned[s]:
                        cur += d
                    else:  # asarray: numpy gives a scalar, not an array, for a 0-d sum
                        grads[s] = np.asarray(cur + d)
                        owned[s] = True
                dins = d = cur = None  # nothing of this step stays alive during the next one
        except Exception as e:
            _gate_failed(self.graph, k, "backward", e)

    def _seed(self, fwd: ForwardSchedule, vals: list[Any], grads: list[Any],
              seeds: Mapping[str, Any] | None) -> list[str]:
        outs = dict(fwd.outputs)
        if seeds is None:
            seeds = {n: 1.0 for n, s in fwd.outputs if vals[s].dtype.kind == "f"}
        for name, dout in seeds.items():
            if name not in outs:
                raise GraphError(f"cannot seed {name!r}: it is not an output computed by the last "
                                 f"forward(); computed outputs: {list(outs)}")
            v = vals[outs[name]]
            try:
                d = np.asarray(dout, dtype=v.dtype)
                if d.shape != v.shape or d is dout:  # a read-only view: the caller's own
                    d = np.broadcast_to(d, v.shape)  # array is never handed back as a gradient
            except ValueError:
                raise GraphError(f"seed for {name!r} has shape {np.shape(dout)}; expected "
                                 f"{v.shape} (or a scalar)") from None
            s = outs[name]
            grads[s] = d if grads[s] is None else grads[s] + d
        return list(seeds)


def _mode_key(seed: int | None, step: int) -> tuple[int, int]:
    """The (seed, step) part of every node's random-number key in a training-mode forward."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    for what, v in (("seed", seed), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise GraphError(f"{what} must be a non-negative integer; found {v!r}")
    return int(seed), int(step)


def _gate_failed(graph: Graph, k: int, phase: str, e: Exception) -> None:
    """Re-raise a gate's own exception as an ExecutionError that names the node; a graphexec
    error a gate raises in forward (bad labels, say) keeps its class and gains the node's name."""
    if k < 0 or (isinstance(e, GraphexecError) and phase == "backward"):
        raise e  # backward's own errors (gradient shape or count) name the node already
    n = graph.nodes[k]
    if isinstance(e, GraphexecError):
        raise type(e)(f"node {n.name!r} ({n.op}) failed in {phase}: {e}") from e
    raise ExecutionError(f"node {n.name!r} ({n.op}) failed in {phase}: {type(e).__name__}: {e}"
                         ) from e


def _bad_count(node: Any, dins: Any) -> None:
    raise ExecutionError(f"node {node.name!r}: gate {node.op!r} returned "
                     f"{len(dins)} gradients for {len(node.inputs)} inputs")


def _checked(node: Any, i: int, d: Any, v: np.ndarray) -> np.ndarray:
    """The slow path of the gradient check: a numpy scalar becomes a 0-d array, an equal but
    distinct dtype object passes; anything else is an ExecutionError naming node, gate and input."""
    if type(d) is not ndarray:  # numpy turns 0-d results into scalars
        if not isinstance(d, (np.ndarray, np.generic)):
            raise ExecutionError(f"node {node.name!r}: gate {node.op!r} v{node.version} (from "
                                 f"{node.info.dist!r}) returned {type(d).__name__} as the gradient "
                             f"for input {i} ({node.inputs[i]!r}), which needs one; return an "
                             "ndarray")
        d = np.asarray(d)
    if d.shape != v.shape or d.dtype != v.dtype:
        found = f"{d.dtype} {d.shape}"
        raise ExecutionError(f"node {node.name!r}: gate {node.op!r} v{node.version} (from "
                             f"{node.info.dist!r}) returned a gradient for input {i} "
                         f"({node.inputs[i]!r}) of {found}; expected {v.dtype} {v.shape}, shaped "
                         "like the input")
    return d


def run(graph: Graph, inputs: Mapping[str, Any] | None = None, /, *,
        outputs: Iterable[str] | None = None, **kw: Any) -> dict[str, np.ndarray]:
    """Forward only (inference): keeps nothing for backward and frees each activation after its
    last use; ``outputs`` selects a subset of the graph's outputs."""
    return Executor(graph)._forward(inputs, kw, outputs, keep=False)
