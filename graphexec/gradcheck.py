"""Numerical gradient checking: central differences, kink-aware, node by node.

The scalar checked is ``f = Σₒ Σ (outₒ · uₒ)`` over the graph's float outputs, with a random
upstream gradient ``uₒ`` per output (so a transposed or mis-routed gradient cannot hide behind
a symmetric seed). For each float input and parameter, at up to ``max_coords`` coordinates::

    numerical  n = (f(x + h·eᵢ) - f(x - h·eᵢ)) / 2h
    error        = |a - n| / max(|a|, |n|, floor)          (CS231n's relative error)

where ``a`` is the backward pass's value and ``floor`` is the rounding noise of ``f`` divided by
``rtol``, so that exact zeros and gradients lost in rounding noise pass.

**Kinks.** relu at 0, a max tie, a hinge corner: there the derivative does not exist and the
central difference averages two slopes. A coordinate that fails the central test still passes
when, term by term (``f = Σⱼ tⱼ``, one term per output element), the one-sided slopes
``Lⱼ = (tⱼ(x) - tⱼ(x-h))/h`` and ``Rⱼ = (tⱼ(x+h) - tⱼ(x))/h`` differ (a kink lies within
``h``) and the analytic value lies in ``[Σⱼ min(Lⱼ, Rⱼ), Σⱼ max(Lⱼ, Rⱼ)]``: any subgradient is
a right answer (the max gate's documented choice at a tie, all of dz to its first input, is
one: its slopes there are 0 and 1), and a coordinate that moves several ties at once (a batch
of maxout rows) has each tie counted once.

**Node by node.** When the whole graph fails, every node's gate is checked alone on the very
inputs it saw, and the report names each failing node: op, gate version, distribution, input.

The check always runs in float64: a float32 graph is checked on a float64 copy of itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphexec.executor import Executor, check_input, run
from graphexec.gate import Ctx, Gate
from graphexec.gradreport import Failure, GradcheckReport, Index, TensorCheck
from graphexec.graph import Graph, InputDecl, Node

__all__ = ["Failure", "GradcheckReport", "TensorCheck", "check_gate_gradients", "gradcheck",
           "node_values", "random_inputs"]

#: Rounding allowance of one evaluation of f, in units of float64 epsilon times Σ|terms|.
NOISE_ULPS = 64.0
EPS64 = float(np.finfo(np.float64).eps)
TINY = 1e-300

Objective = Callable[[], np.ndarray]  # the terms tⱼ of f at the current point (f = Σⱼ tⱼ)


# ---------------------------------------------------------------------------- one coordinate
def judge(a: float, tp: np.ndarray, t0: np.ndarray, tm: np.ndarray, hp: float, hm: float,
          noise: float, rtol: float) -> tuple[float, str]:
    """Compare an analytic derivative ``a`` with the differences of f = Σⱼ tⱼ around one point.

    Args:
        a: the analytic derivative.
        tp, t0, tm: the terms tⱼ of f (one per output element) at x + hp, x, x - hm.
        hp, hm: the steps actually taken (> 0; rounding makes them differ slightly from h).
        noise: the rounding error expected in a central difference of f.
        rtol: the relative error allowed.

    Returns:
        (relative error of the central difference, verdict ``"ok"``, ``"kink"`` or ``"fail"``).
        A kink passes when ``a`` lies in [Σⱼ min(Lⱼ, Rⱼ), Σⱼ max(Lⱼ, Rⱼ)] (the one-sided slopes
        Lⱼ, Rⱼ of each term), so that several ties met by one coordinate (a batch of maxout
        rows) each count once.
    """
    n = (float(np.sum(tp)) - float(np.sum(tm))) / (hp + hm)
    if not (math.isfinite(a) and math.isfinite(n)):
        return math.inf, "fail"
    err = abs(a - n) / max(abs(a), abs(n), noise / rtol, TINY)
    if err <= rtol:
        return err, "ok"
    left, right = (np.asarray(t0) - tm) / hm, (np.asarray(tp) - t0) / hp
    lo, hi = float(np.minimum(left, right).sum()), float(np.maximum(left, right).sum())
    tol = 2.0 * noise + rtol * max(abs(lo), abs(hi))
    if hi - lo > tol and lo - tol <= a <= hi + tol:
        return err, "kink"
    return err, "fail"


def sample_coords(shape: Index, max_coords: int, rng: np.random.Generator) -> list[Index]:
    """Every coordinate of ``shape``, or ``max_coords`` of them drawn without replacement."""
    size = math.prod(shape)
    if size <= max_coords:
        return list(np.ndindex(*shape))
    flat = np.sort(rng.choice(size, size=max_coords, replace=False))
    return [tuple(int(i) for i in idx) for idx in zip(*np.unravel_index(flat, shape))]


def check_tensor(name: str, x: np.ndarray, analytic: np.ndarray, objective: Objective,
                 coords: Sequence[Index], *, t0: np.ndarray, eps: float,
                 rtol: float) -> TensorCheck:
    """Perturb ``x`` in place at each coordinate (restoring it exactly) and judge ``analytic``.

    The step is ``eps``, or 4 units in the last place of x where that is larger (|x| > ~1e10),
    so that x + h != x; the rounding noise allowed grows as the step's share of x shrinks.
    """
    out = TensorCheck(name, tuple(x.shape))
    scale0 = float(np.abs(t0).sum())
    for idx in coords:
        old = float(x[idx])
        h = max(eps, 4.0 * float(np.spacing(abs(old))))  # where |x| is large, eps would not move x
        x[idx] = old + h
        hp = float(x[idx]) - old
        tp = objective()
        x[idx] = old - h
        hm = old - float(x[idx])
        tm = objective()
        x[idx] = old
        scale = max(scale0, float(np.abs(tp).sum()), float(np.abs(tm).sum()))
        noise = NOISE_ULPS * EPS64 * scale / min(hp, hm)
        a = float(analytic[idx])
        err, verdict = judge(a, tp, t0, tm, hp, hm, noise, rtol)
        out.note(idx, a, float(np.sum(tp) - np.sum(tm)) / (hp + hm), err, verdict)
    return out


def _terms(y: np.ndarray, u: np.ndarray) -> np.ndarray:
    return (np.asarray(y, dtype=np.float64) * u).ravel()


# ---------------------------------------------------------------------------- one gate
def check_gate_gradients(gate: Gate, inputs: Sequence[np.ndarray], *, names: Sequence[str],
                         rng: np.random.Generator, eps: float = 1e-6, rtol: float = 1e-5,
                         max_coords: int = 32) -> tuple[dict[int, TensorCheck], str]:
    """Check one gate's backward against central differences of its forward, kink-aware.

    Args:
        gate: the gate (only its forward and backward are called, each with a fresh Ctx).
        inputs: its inputs; float ones are copied to float64 and checked, others left alone.
        names: a label per input, for the results.
        rng: draws the upstream gradient (standard normal, shaped like the output) and coords.

    Returns:
        ({input index: TensorCheck} for the float inputs, an error message if backward broke
        the contract: wrong number of gradients, None or a wrong shape where one is needed).
    """
    xs = [np.array(v, dtype=np.float64) if v.dtype.kind == "f" else v for v in inputs]
    ctx = Ctx()
    y = np.asarray(gate.forward(ctx, *xs))
    u = rng.standard_normal(y.shape)
    ctx.needs_grad = tuple(v.dtype.kind == "f" for v in xs)
    grads = gate.backward(ctx, np.asarray(u, dtype=y.dtype))
    if len(grads) != len(xs):
        return {}, f"backward returned {len(grads)} gradients for {len(xs)} inputs"

    def objective() -> np.ndarray:
        return _terms(gate.forward(Ctx(), *xs), u)

    t0 = objective()
    checks: dict[int, TensorCheck] = {}
    for i, (x, g) in enumerate(zip(xs, grads)):
        if x.dtype.kind != "f":
            continue
        g = None if g is None else np.asarray(g)
        if g is None or g.shape != x.shape:
            found = "None" if g is None else f"a gradient of shape {g.shape}"
            return checks, (f"backward returned {found} for input {i} ({names[i]!r}); "
                            f"expected a gradient of shape {x.shape}, shaped like the input")
        coords = sample_coords(x.shape, max_coords, rng)
        checks[i] = check_tensor(names[i], x, g, objective, coords, t0=t0, eps=eps, rtol=rtol)
    return checks, ""


def node_values(graph: Graph, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value of the graph (inputs, parameters, node outputs) that ``feed`` determines.

    A node whose inputs are missing, or whose gate raises, is left out (and so are its readers).
    """
    vals: dict[str, np.ndarray] = {**graph.params, **feed}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if not all(s in vals for s in node.inputs):
                continue
            try:
                y = node.gate.forward(Ctx(), *[vals[s] for s in node.inputs])
            except Exception:  # noqa: BLE001, S112  (diagnostic pass: a failing node has no value)
                continue
            vals[node.name] = np.asarray(y)
    return vals


def _node_failure(node: Node, message: str, i: int = -1, t: TensorCheck | None = None) -> Failure:
    head = f"node {node.name!r}: op {node.op!r} v{node.version} from {node.info.dist!r}"
    if t is None:
        return Failure("node", node.name, f"{head}: {message}", node=node.name, op=node.op,
                       version=node.version, dist=node.info.dist,
                       dist_version=node.info.dist_version)
    msg = (f"{head}, input {i} ({t.name!r}): rel error {t.max_rel_error:.2e} at {t.worst} "
           f"(analytic {t.analytic:.6g}, numerical {t.numerical:.6g}; {t.n_failed} of "
           f"{t.n_checked} coordinates fail)")
    return Failure("node", t.name, msg, t.max_rel_error, t.worst, t.analytic, t.numerical,
                   node.name, node.op, node.version, node.info.dist, node.info.dist_version, i)


def _localise(g64: Graph, feed: Mapping[str, np.ndarray], rng: np.random.Generator, *,
              eps: float, rtol: float, max_coords: int) -> list[Failure]:
    """Check each node's gate alone on the values it saw; one Failure per failing input."""
    vals = node_values(g64, feed)
    needed = set(g64.output_map.values())
    for node in reversed(g64.nodes):  # only the nodes the outputs read, directly or not
        if node.name in needed:
            needed.update(node.inputs)
    out: list[Failure] = []
    for node in g64.nodes:
        if node.name not in vals or node.name not in needed:
            continue
        try:
            checks, error = check_gate_gradients(
                node.gate, [vals[s] for s in node.inputs], names=node.inputs, rng=rng,
                eps=eps, rtol=rtol, max_coords=max_coords)
        except Exception as e:  # noqa: BLE001  (report it, then go on with the next node)
            checks, error = {}, f"{type(e).__name__}: {e}"
        if error:
            out.append(_node_failure(node, error))
        out += [_node_failure(node, "", i, t) for i, t in checks.items() if t.n_failed]
    return out


# ---------------------------------------------------------------------------- whole graph
def float64_copy(graph: Graph) -> Graph:
    """The same graph with float inputs declared float64 and float parameters copied to float64.

    The nodes (and their stateless gates) are shared; the parameters are new arrays, so the
    check may perturb them without touching ``graph``.
    """
    def f64(dt: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(np.float64) if dt.kind == "f" else dt

    decls = [InputDecl(d.name, f64(d.dtype), d.shape) for d in graph.input_decls]
    params = {k: np.array(v, dtype=f64(v.dtype)) for k, v in graph.params.items()}
    buffers = {k: np.array(v, dtype=f64(v.dtype)) for k, v in graph.buffers.items()}
    return Graph(graph.name, decls, params, [_cast64(n) for n in graph.nodes], graph.output_map,
                 buffers=buffers, frozen=graph.frozen)


def _cast64(node: Node) -> Node:
    """A ``cast`` between float dtypes casts to float64 in the copy (its rounding to float32
    would swamp the finite differences; its derivative is 1 either way)."""
    if node.op != "cast" or np.dtype(node.attrs.get("to", "float64")).kind != "f":
        return node
    attrs = {**node.attrs, "to": "float64"}
    gate = type(node.gate)(type(node.gate).Attrs(**attrs))
    return dataclasses.replace(node, attrs=attrs, gate=gate)


def _feed64(graph: Graph, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Inputs checked against the graph's declarations, then float ones copied to float64."""
    decls = {d.name: d for d in graph.input_decls}
    feed: dict[str, Any] = {}
    for name, value in inputs.items():
        if name not in decls:
            feed[name] = value  # the executor names the unknown input
            continue
        arr = check_input(decls[name], value)
        feed[name] = np.array(arr, dtype=np.float64) if arr.dtype.kind == "f" else arr
    return feed


def gradcheck(graph: Graph, inputs: Mapping[str, Any], *, wrt: Sequence[str] | None = None,
              eps: float = 1e-6, rtol: float = 1e-5, max_coords: int = 32, seed: int = 0,
              localise: bool = True, training: bool = False, step: int = 0) -> GradcheckReport:
    """Numerical vs analytic gradients of every float input and parameter, in float64.

    Args:
        graph: the graph (not modified; a float64 copy is checked).
        inputs: a value for every input the outputs need (see :func:`random_inputs`).
        wrt: only these inputs/parameters (default: every float one).
        eps: the finite-difference step h.
        rtol: the relative error allowed (CS231n: ~1e-7 is great, >1e-2 is wrong).
        max_coords: coordinates checked per tensor; larger tensors are sampled at random.
        seed: seeds the upstream gradients and the sampling.
        localise: on failure, check each node alone to name the failing ones (each gate in
            evaluation mode).
        training: check the training-mode forward at the fixed ``(seed, step)``: every
            evaluation draws the same dropout masks, and buffer updates are discarded.
        step: the training step whose random masks are used (with ``seed``).

    Returns:
        A :class:`GradcheckReport`.
    """
    rng = np.random.default_rng(seed)
    g64 = float64_copy(graph)
    feed = _feed64(graph, inputs)
    report = GradcheckReport(graph.name, eps, rtol)
    mode: dict[str, Any] = {"training": True, "seed": seed, "step": step} if training else {}
    buffers = dict(g64.buffers)
    with np.errstate(all="ignore"):  # a point where the graph is not finite is reported below
        seeds, analytic = _analytic(g64, feed, wrt, rng, mode)
        if not seeds:
            return report

        def objective() -> np.ndarray:
            if training:
                got = Executor(g64).forward(feed, outputs=list(seeds), **mode)
                g64.buffers.update(buffers)  # every evaluation sees the same state
            else:
                got = run(g64, feed, outputs=list(seeds))
            return np.concatenate([_terms(got[k], u) for k, u in seeds.items()])

        t0 = objective()
        if not np.isfinite(t0).all():
            msg = ("the outputs are not finite (NaN or Inf) at these inputs, so no gradient can "
                   "be checked there; give other inputs (-i NAME=VALUE)")
            report.failures.append(Failure("error", "", msg))
            return report
        for name, grad in analytic.items():
            x = feed[name] if name in feed else g64.params.get(name)
            if x is None:  # an input that nothing reads and nobody gave: nothing to check
                continue
            coords = sample_coords(x.shape, max_coords, rng)
            report.tensors.append(check_tensor(name, x, grad, objective, coords, t0=t0,
                                               eps=eps, rtol=rtol))
        report.failures += [_graph_failure(t) for t in report.tensors if t.n_failed]
        if report.failures and localise:
            report.localised = True
            report.failures += _localise(g64, feed, rng, eps=eps, rtol=rtol, max_coords=max_coords)
    return report


def _analytic(g64: Graph, feed: Mapping[str, np.ndarray], wrt: Sequence[str] | None,
              rng: np.random.Generator, mode: Mapping[str, Any]
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A random upstream gradient per float output, and the backward pass's gradients."""
    ex = Executor(g64)
    buffers = dict(g64.buffers)
    outs = ex.forward(feed, **mode)
    g64.buffers.update(buffers)
    seeds = {k: rng.standard_normal(v.shape) for k, v in outs.items() if v.dtype.kind == "f"}
    if not seeds:
        return {}, {}
    return seeds, ex.backward(seeds, wrt=wrt)


def _graph_failure(t: TensorCheck) -> Failure:
    msg = (f"gradient of {t.name!r}: rel error {t.max_rel_error:.2e} at {t.worst} (analytic "
           f"{t.analytic:.6g}, numerical {t.numerical:.6g}; {t.n_failed} of {t.n_checked} fail)")
    return Failure("graph", t.name, msg, t.max_rel_error, t.worst, t.analytic, t.numerical)


# ---------------------------------------------------------------------------- random inputs
def _concrete(decl: InputDecl, size: int) -> Index:
    return tuple(size if n is None else n for n in decl.shape or ())


def random_inputs(graph: Graph, given: Mapping[str, Any] | None = None, *, seed: int = 0,
                  size: int = 3) -> dict[str, Any]:
    """Values for the inputs not in ``given``, drawn from their declarations.

    Shapes: a None dimension becomes ``size``; an undeclared shape, a scalar. Floats are
    standard normal in the declared dtype; bools fair coins; integers (labels) uniform in
    [0, C) where C is the last dimension of the 2-D scores that a node reads beside them
    (``softmax_cross_entropy(scores, labels)``), or in {0, 1} if no such node is found.
    """
    rng = np.random.default_rng(seed)
    decls = {d.name: d for d in graph.input_decls}
    feed: dict[str, Any] = {k: check_input(decls[k], v) if k in decls else v
                            for k, v in (given or {}).items()}
    todo = [d for d in graph.input_decls if d.name not in feed]
    for d in todo:
        shape = _concrete(d, size)
        if d.dtype.kind == "f":
            feed[d.name] = rng.standard_normal(shape).astype(d.dtype)
        else:
            feed[d.name] = np.zeros(shape, dtype=d.dtype)  # placeholder while shapes are probed
    ints = [d for d in todo if d.dtype.kind in "iu"]
    vals = node_values(graph, feed) if ints else {}
    for d in todo:
        if d.dtype.kind == "b":
            feed[d.name] = rng.integers(0, 2, _concrete(d, size)).astype(bool)
        elif d.dtype.kind in "iu":
            high = _classes(graph, d.name, vals) or 2
            feed[d.name] = rng.integers(0, high, _concrete(d, size)).astype(d.dtype)
    return feed


def _classes(graph: Graph, name: str, vals: Mapping[str, np.ndarray]) -> int | None:
    """C, from the first node that reads ``name`` beside a 2-D float value of shape (N, C)."""
    for node in graph.nodes:
        if name in node.inputs[1:]:
            first = vals.get(node.inputs[0])
            if first is not None and first.ndim == 2 and first.dtype.kind == "f":
                return int(first.shape[1])
    return None
