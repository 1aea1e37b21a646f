"""The plan stage: a :class:`Graph` compiled once into flat, integer-indexed schedules.

Every value (input, parameter, node output) gets a slot number. A forward schedule lists, for the
nodes a set of outputs needs, ``(gate.forward, input slots, output slot, node index)``; a backward
schedule lists, in reverse, only the nodes through which a requested gradient flows, with each
node's ``needs_grad`` mask and the (input position, slot) pairs that take a gradient. The executor
runs these lists with no graph or dict lookups: the gates' methods are bound here, once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, is_, itemgetter, lt, not_
from typing import Any, NamedTuple, overload

from graphexec.errors import GraphError
from graphexec.gcpause import collector_paused
from graphexec.graph import Graph, InputDecl

__all__ = ["Plan", "ForwardSchedule", "BackwardSchedule", "BackStep", "NodeKeys", "Step", "plan_for"]


class Step(NamedTuple):
    """One node of a forward schedule (a NamedTuple: it unpacks as fast as a tuple)."""

    forward: Callable[..., Any]  # the gate's bound forward
    inputs: tuple[int, ...]  # input slots
    out: int  # output slot
    node: int  # index into ``graph.nodes``


class BackStep(NamedTuple):
    """One node of a backward schedule."""

    backward: Callable[..., Any]  # the gate's bound backward
    n_inputs: int
    needs_grad: tuple[bool, ...]  # one per input: does a wrt leaf depend on it?
    targets: tuple[tuple[int, int], ...]  # (input position, slot) of each input taking a gradient
    out: int  # output slot
    node: int  # index into ``graph.nodes``
    fresh: bool  # the gate's ``fresh_grads`` (see :class:`graphexec.gate.Gate`)


@dataclass(frozen=True)
class ForwardSchedule:
    """Nodes to run for ``outputs``; ``release[i]``: slots whose last reader is step i;
    ``leaves``: the graph inputs these nodes read, as (name, slot)."""

    outputs: tuple[tuple[str, int], ...]
    leaves: tuple[tuple[str, int], ...]
    steps: tuple[Step, ...]
    release: tuple[tuple[int, ...], ...]
    computed: frozenset[int]
    names: frozenset[str]  # the output names (the schedule's cache key)


@dataclass(frozen=True)
class BackwardSchedule:
    """Nodes to run backward (reverse order) so that gradients reach ``wrt``."""

    steps: tuple[BackStep, ...]
    wrt: tuple[tuple[str, int], ...]
    #: Per ``wrt`` entry: may its gradient be an array the executor did not make (a seed, or
    #: a gate's without ``fresh_grads``), and so perhaps read-only? False only when every
    #: gradient sent to it comes from a ``fresh_grads`` gate (then it is that gate's new
    #: array or a sum the executor made, whichever nodes run).
    foreign: tuple[bool, ...]


class Plan:
    """Slot numbering plus cached schedules for one graph.

    Slots are numbered inputs, parameters, buffers, then nodes in order, so node ``k``'s
    output is slot ``node_base + k`` and a slot is a node's output iff it is ``>= node_base``:
    the compile needs no slot → node map.
    """

    @collector_paused()  # a big graph's plan allocates a few objects per node: see gcpause
    def __init__(self, graph: Graph):
        self.graph = graph
        nodes = graph.nodes
        names = [*graph.inputs, *graph.params, *graph.buffers, *map(attrgetter("name"), nodes)]
        self.slot = dict(zip(names, range(len(names))))
        self.n_slots = len(names)
        self.inputs: tuple[tuple[int, InputDecl], ...] = tuple(
            (self.slot[d.name], d) for d in graph.input_decls)
        self.params = tuple((self.slot[k], k) for k in graph.params)
        self.buffers = tuple((self.slot[k], k) for k in graph.buffers)
        self.buffer_of = {s: k for s, k in self.buffers}
        n_in, n_p, n_b = len(graph.inputs), len(graph.params), len(graph.buffers)
        self.param_span = slice(n_in, n_in + n_p)  # the slots of params, then of buffers
        self.param_names = tuple(graph.params)
        self.buffer_span = slice(n_in + n_p, n_in + n_p + n_b)
        self.buffer_names = tuple(graph.buffers)
        self.node_base = n_in + n_p + n_b
        #: Per node, the stable part of its random-number key (see ``ctx_rng_key``).
        self.node_keys: Sequence[int] = NodeKeys(names, self.node_base)
        slot_of = self.slot.__getitem__
        self.node_inputs = list(map(tuple, map(map, repeat(slot_of),
                                                map(attrgetter("inputs"), nodes))))
        self.node_out = list(range(self.node_base, self.n_slots))
        self.grad_leaves = tuple(
            [d.name for d in graph.input_decls if d.dtype.kind == "f"]
            + [k for k, v in graph.params.items() if v.dtype.kind == "f"])
        self._all_outputs = frozenset(graph.output_map)
        self._all_leaves = frozenset(self.grad_leaves)
        self._fwd: dict[frozenset[str], ForwardSchedule] = {}
        self._bwd: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], BackwardSchedule] = {}
        self._lock = threading.Lock()

    def output_slot(self, name: str) -> int:
        try:
            return self.slot[self.graph.output_map[name]]
        except KeyError:
            raise GraphError(f"graph {self.graph.name!r} has no output {name!r}; "
                             f"its outputs are {self.graph.outputs}") from None

    def forward(self, outputs: Iterable[str] | None = None) -> ForwardSchedule:
        key = self._all_outputs if outputs is None else frozenset(outputs)
        sched = self._fwd.get(key)
        if sched is None:
            sched = self._compile_forward(key)
            with self._lock:
                self._fwd[key] = sched
        return sched

    @collector_paused()
    def _compile_forward(self, outputs: frozenset[str]) -> ForwardSchedule:
        outs = tuple((name, self.output_slot(name)) for name in self.graph.outputs if name in outputs)
        missing = outputs - {n for n, _ in outs}
        if missing:
            self.output_slot(sorted(missing)[0])
        needed = self._needed({s for _, s in outs})
        node_inputs, base = self.node_inputs, self.node_base
        ks = list(compress(range(len(node_inputs)), map(needed.__contains__, self.node_out)))
        ins = list(map(node_inputs.__getitem__, ks))
        forwards = map(attrgetter("gate.forward"), map(self.graph.nodes.__getitem__, ks))
        out_slots = [base + k for k in ks]
        steps = tuple(map(tuple.__new__, repeat(Step), zip(forwards, ins, out_slots, ks)))
        keep = {s for _, s in outs}
        leaves = tuple((d.name, s) for s, d in self.inputs if s in needed)
        return ForwardSchedule(outs, leaves, steps, _release(ins, base, keep),
                               frozenset(out_slots), outputs)

    def _needed(self, needed: set[int]) -> set[int]:
        """``needed`` (slots) grown by every slot they depend on."""
        base, node_inputs = self.node_base, self.node_inputs
        update = needed.update
        for s in range(self.n_slots - 1, base - 1, -1):  # reverse topological sweep
            if s in needed:
                update(node_inputs[s - base])
        return needed

    def backward(self, fwd: ForwardSchedule, seeds: Iterable[str], wrt: Iterable[str]) -> BackwardSchedule:
        wrt_key = self._all_leaves if wrt is self.grad_leaves else frozenset(wrt)
        key = (fwd.names, frozenset(seeds), wrt_key)
        sched = self._bwd.get(key)
        if sched is None:
            sched = self._compile_backward(fwd, key[1], key[2])
            with self._lock:
                self._bwd[key] = sched
        return sched

    @collector_paused()
    def _compile_backward(self, fwd: ForwardSchedule, seeds: frozenset[str],
                          wrt: frozenset[str]) -> BackwardSchedule:
        for name in wrt:
            if name not in self.grad_leaves:
                raise GraphError(f"cannot take a gradient with respect to {name!r}: it is not a "
                                 f"float input or parameter; choose from {list(self.grad_leaves)}")
        wrt_slots = tuple((n, self.slot[n]) for n in self.grad_leaves if n in wrt)
        requires = {s for _, s in wrt_slots}
        add, disjoint = requires.add, requires.isdisjoint
        for _, ins, out, _ in fwd.steps:  # forward sweep: what depends on a wrt leaf
            if not disjoint(ins):
                add(out)
        seeded = {self.output_slot(n) for n in seeds}
        steps, last = self._back_steps(fwd, requires, set(seeded))
        fresh_only: dict[int, bool] = {}  # leaf slot -> does every gradient sent to it come fresh?
        base = self.node_base
        for step in steps + last:
            for _, s in step.targets:
                if s < base:  # a leaf (input or parameter), not a node's output
                    fresh_only[s] = fresh_only.get(s, True) and step.fresh
        foreign = tuple(s in seeded or not fresh_only.get(s, False) for _, s in wrt_slots)
        return BackwardSchedule(tuple(steps + last), wrt_slots, foreign)

    def _back_steps(self, fwd: ForwardSchedule, requires: set[int],
                    flows: set[int]) -> tuple[list[BackStep], list[BackStep]]:
        """The backward steps, in reverse order, of the nodes through which a gradient flows
        from a seed (``flows``) to a slot in ``requires``; then those that send gradients only
        to leaves (say l2(W)), to run at the end: their parameter-sized gradients are then
        made when the activations are gone instead of being held through the whole pass.

        The nodes are chosen in one Python loop; each field of the steps is then made for
        all of them at once, with ``map`` (C loops, no Python frame per node)."""
        chosen: list[Step] = []
        update, pick = flows.update, chosen.append
        for step in reversed(fwd.steps):
            if step[2] in flows:  # its value reaches a seed (all its readers came before)
                update(step[1])
                if step[2] in requires:
                    pick(step)
        ins = list(map(itemgetter(1), chosen))
        ks = list(map(itemgetter(3), chosen))
        gates = list(map(attrgetter("gate"), map(self.graph.nodes.__getitem__, ks)))
        needs = list(map(tuple, map(map, repeat(requires.__contains__), ins)))
        targets = map(tuple, map(compress, map(enumerate, ins), needs))  # (position, slot)
        fresh = map(is_, map(getattr, gates, repeat("fresh_grads"), repeat(False)), repeat(True))
        steps = list(map(tuple.__new__, repeat(BackStep), zip(
            map(attrgetter("backward"), gates), map(len, ins), needs, targets,
            map(itemgetter(2), chosen), ks, fresh)))
        # max slot taking a gradient < node_base: it sends gradients to leaves only
        leaves_only = list(map(lt, map(max, map(compress, ins, needs)), repeat(self.node_base)))
        return list(compress(steps, map(not_, leaves_only))), list(compress(steps, leaves_only))


class NodeKeys(Sequence[int]):
    """``stable_hash`` of each node's name, computed when first asked for (training-mode runs
    ask; loading a million nodes need not hash them all)."""

    def __init__(self, names: list[str], base: int):
        self._names, self._base = names, base
        self._known: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._names) - self._base

    @overload
    def __getitem__(self, k: int) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[int]: ...
    def __getitem__(self, k: int | slice) -> int | Sequence[int]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        key = self._known.get(k)
        if key is None:
            if not -len(self) <= k < len(self):
                raise IndexError("node index out of range")
            key = self._known[k] = stable_hash(self._names[self._base + k % len(self)])
        return key


def _release(ins: list[tuple[int, ...]], base: int, keep: set[int]) -> tuple[tuple[int, ...], ...]:
    """Per step, the node-output slots whose last reader it is (outputs are kept)."""
    last = {s: i for i, step_ins in enumerate(ins) for s in step_ins}  # the last reader wins
    release: list[tuple[int, ...]] = [()] * len(ins)
    for s, i in last.items():
        if s >= base and s not in keep:
            release[i] += (s,)
    return tuple(release)


def stable_hash(name: str) -> int:
    """A node name as a 64-bit number, the same in every process and release (BLAKE2b of the
    UTF-8 bytes, first 8 bytes little-endian): part of each node's random-number key."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


_plan_lock = threading.Lock()


def plan_for(graph: Graph) -> Plan:
    """The graph's plan, compiled on first use and shared by every executor of the graph.

    The plan is kept on the graph; a plan whose ``graph`` is another object (the graph is a
    ``copy.copy`` of one that was run, and may declare other inputs or outputs) is not reused.
    """
    plan: Plan | None = graph.__dict__.get("_plan")
    if plan is None or plan.graph is not graph:
        with _plan_lock:
            plan = graph.__dict__.get("_plan")
            if plan is None or plan.graph is not graph:
                plan = graph.__dict__["_plan"] = Plan(graph)
    return plan
