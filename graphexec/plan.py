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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress
from typing import Any, NamedTuple

from graphexec.errors import GraphError
from graphexec.gcpause import collector_paused
from graphexec.graph import Graph, InputDecl

__all__ = ["Plan", "ForwardSchedule", "BackwardSchedule", "BackStep", "Step", "plan_for"]


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
    """Slot numbering plus cached schedules for one graph."""

    @collector_paused()  # a big graph's plan allocates a few objects per node: see gcpause
    def __init__(self, graph: Graph):
        self.graph = graph
        names = graph.inputs + list(graph.params) + list(graph.buffers) + [n.name for n in graph.nodes]
        self.slot = {name: i for i, name in enumerate(names)}
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
        #: Per node, the stable part of its random-number key (see ``ctx_rng_key``).
        self.node_keys = tuple(stable_hash(n.name) for n in graph.nodes)
        slot_of = self.slot.__getitem__
        self.node_inputs = [tuple(map(slot_of, n.inputs)) for n in graph.nodes]
        self.node_out = [slot_of(n.name) for n in graph.nodes]
        self.producer = {s: k for k, s in enumerate(self.node_out)}
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
        node_inputs, node_out, nodes = self.node_inputs, self.node_out, self.graph.nodes
        needed = {s for _, s in outs}
        for k in range(len(node_out) - 1, -1, -1):  # reverse topological sweep
            if node_out[k] in needed:
                needed.update(node_inputs[k])
        ks = [k for k, out in enumerate(node_out) if out in needed]
        steps = tuple([Step(nodes[k].gate.forward, node_inputs[k], node_out[k], k) for k in ks])
        last = {s: i for i, k in enumerate(ks) for s in node_inputs[k]}  # the last reader wins
        keep = {s for _, s in outs}
        release: list[tuple[int, ...]] = [()] * len(ks)
        for s, i in last.items():
            if s in self.producer and s not in keep:
                release[i] += (s,)
        leaves = tuple((d.name, s) for s, d in self.inputs if s in needed)
        return ForwardSchedule(outs, leaves, steps, tuple(release),
                               frozenset(node_out[k] for k in ks), outputs)

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
        for _, ins, out, _ in fwd.steps:  # forward sweep: what depends on a wrt leaf
            if not requires.isdisjoint(ins):
                requires.add(out)
        flows = {self.output_slot(n) for n in seeds}
        for _, ins, out, _ in reversed(fwd.steps):  # backward sweep: what reaches a seed
            if out in flows:
                flows.update(ins)
        steps: list[BackStep] = []
        last: list[BackStep] = []  # run after all the others (see below)
        nodes = self.graph.nodes
        for _, ins, out, k in reversed(fwd.steps):
            if out in requires and out in flows:
                needs = tuple(map(requires.__contains__, ins))
                targets = tuple(compress(enumerate(ins), needs))  # (position, slot) pairs
                gate = nodes[k].gate
                fresh = getattr(gate, "fresh_grads", False) is True
                step = BackStep(gate.backward, len(ins), needs, targets, out, k, fresh)
                # A node that sends gradients only to leaves (say l2(W)) can wait until the
                # end: its parameter-sized gradients are then made when the activations are
                # gone, instead of being held through the whole backward pass.
                leaves_only = all(s not in self.producer for _, s in targets)
                (last if leaves_only else steps).append(step)
        fresh_only: dict[int, bool] = {}  # slot -> does every gradient sent to it come fresh?
        for step in steps + last:
            for _, s in step.targets:
                fresh_only[s] = fresh_only.get(s, True) and step.fresh
        seeded = {self.output_slot(n) for n in seeds}
        foreign = tuple(s in seeded or not fresh_only.get(s, False) for _, s in wrt_slots)
        return BackwardSchedule(tuple(steps + last), wrt_slots, foreign)


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
