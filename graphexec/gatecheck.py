"""The gate conformance kit behind :func:`graphexec.testing.check_gate` (import it from there).

One call checks a gate class against the whole gate contract; :mod:`graphexec.testing` lists
what it checks and adds the whole-distribution check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import pydantic

from graphexec.errors import first_problem
from graphexec.gate import Ctx, Gate
from graphexec.gradcheck import check_gate_gradients

__all__ = ["Shape", "check_gate"]

Shape = tuple[int, ...]


def check_gate(cls: type[Gate], *input_shapes: Shape, attrs: dict[str, Any] | None = None,
               dtypes: Sequence[str] | None = None, inputs: Sequence[np.ndarray] | None = None,
               value_range: tuple[float, float] = (-2.0, 2.0),
               int_range: tuple[int, int] | None = None, seed: int = 0, eps: float = 1e-6,
               rtol: float = 1e-5, max_coords: int = 64) -> float:
    """Run every contract check on ``cls``; AssertionError (with the fix) on the first failure.

    Args:
        cls: the gate class.
        *input_shapes: one shape per input, e.g. ``(4, 3), (3,)``; ``()`` is a scalar.
        attrs: the gate's attributes (validated by ``cls.Attrs``).
        dtypes: one dtype name per input (default all ``"float64"``); integer inputs (labels)
            are drawn from ``int_range`` and take no gradient.
        inputs: explicit input values instead of random ones (e.g. at a kink, or in a domain
            such as x > 0); ``input_shapes`` is then ignored.
        value_range: float inputs are uniform in this range.
        int_range: integer inputs are uniform in [low, high); default [0, C) with C the last
            dimension of the first 2-D float input (the classes of an (N, C) score matrix).
        seed: seeds the inputs, the upstream gradient and the coordinate sampling.
        eps, rtol, max_coords: as in :func:`graphexec.gradcheck`.

    Returns:
        The largest relative error of the numerical gradient check (for information).
    """
    rng = np.random.default_rng(seed)
    _valid_class(cls)
    gate = _make_gate(cls, attrs or {})
    xs = list(inputs) if inputs is not None else _random_inputs(
        input_shapes, dtypes, value_range, int_range, rng)
    xs = [np.array(x, dtype=x.dtype) for x in map(np.asarray, xs)]
    dout = _contract_run(cls, gate, xs, rng)
    _check_needs_grad(cls, gate, xs, dout)
    _check_fresh_grads(cls, gate, xs, dout)
    _check_float32(cls, gate, xs, rng)
    err = _check_numerical(cls, gate, xs, rng, eps=eps, rtol=rtol, max_coords=max_coords)
    _check_round_trip(cls, gate, xs)
    return err


# ---------------------------------------------------------------------------- set-up
def _fail(cls: type[Gate], what: str, fix: str = "") -> NoReturn:
    op = getattr(cls, "name", "?")
    tail = f". {fix}" if fix else ""
    raise AssertionError(f"check_gate({cls.__name__}, op {op!r}): {what}{tail}")


def _valid_class(cls: type[Gate]) -> None:
    from graphexec.errors import PluginError
    from graphexec.registry import validate_gate_class

    try:
        validate_gate_class(cls, f"check_gate:{getattr(cls, '__name__', cls)}")
    except PluginError as e:
        _fail(cls, f"not a valid gate class: {e}")


def _make_gate(cls: type[Gate], attrs: dict[str, Any]) -> Gate:
    try:
        model = cls.Attrs(**attrs)
    except pydantic.ValidationError as e:
        _fail(cls, f"its Attrs model rejects attrs={attrs!r}: {first_problem(e)[1]}")
    return cls(model)


def _random_inputs(shapes: Sequence[Shape], dtypes: Sequence[str] | None,
                   value_range: tuple[float, float], int_range: tuple[int, int] | None,
                   rng: np.random.Generator) -> list[np.ndarray]:
    kinds = [np.dtype(d) for d in (dtypes if dtypes is not None else ["float64"] * len(shapes))]
    if len(kinds) != len(shapes):
        raise ValueError(f"check_gate: {len(shapes)} input shapes but {len(kinds)} dtypes; "
                         "give one dtype per input")
    if int_range is None:
        two_d = [s for s, k in zip(shapes, kinds) if k.kind == "f" and len(s) == 2]
        int_range = (0, two_d[0][1] if two_d else 2)
    out = []
    for shape, kind in zip(shapes, kinds):
        if kind.kind == "f":
            out.append(rng.uniform(*value_range, size=shape).astype(kind))
        elif kind.kind == "b":
            out.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            out.append(rng.integers(*int_range, size=shape).astype(kind))
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def _floats(xs: Sequence[np.ndarray]) -> tuple[bool, ...]:
    return tuple(x.dtype.kind == "f" for x in xs)


# ---------------------------------------------------------------------------- one run
def _run(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray], dout: np.ndarray | None,
         needs: tuple[bool, ...] | None = None) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Forward then backward on read-only copies; a write into them is reported."""
    ctx = Ctx()
    try:
        y = np.asarray(gate.forward(ctx, *map(_readonly, xs)))
    except ValueError as e:
        if "read-only" not in str(e):
            raise
        _fail(cls, f"forward writes into one of its inputs ({e})",
              "Never modify an input in place: compute into a new array (y = x * 2, not x *= 2)")
    y_seen = y.copy()
    ctx.needs_grad = needs if needs is not None else _floats(xs)
    upstream = np.ones_like(y) if dout is None else dout
    try:
        grads = tuple(gate.backward(ctx, _readonly(upstream)))
    except ValueError as e:
        if "read-only" not in str(e):
            raise
        _fail(cls, f"backward writes into its inputs or into the upstream gradient ({e})",
              "Compute gradients into new arrays; never modify ctx's inputs or dout in place")
    if not np.array_equal(y, y_seen, equal_nan=True):
        _fail(cls, "backward changed the forward output in place (it is shared with the "
                   "nodes that read it)", "Copy before modifying, e.g. ctx.y.copy()")
    return y, grads


_DESCRIPTORS = (property, classmethod, staticmethod)


def _fingerprint(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    try:
        return repr(v)
    except Exception:  # noqa: BLE001  (a repr that raises: fall back to identity)
        return ("id", id(v))


def _state(gate: Gate) -> dict[str, Any]:
    """Everything a run could write on the gate: its __dict__, its slots, its class's data."""
    names = set(getattr(gate, "__dict__", {}))
    for klass in type(gate).__mro__:
        slots = getattr(klass, "__slots__", ())
        names |= {slots} if isinstance(slots, str) else set(slots)
    state = {n: _fingerprint(getattr(gate, n)) for n in names - {"__dict__", "__weakref__"}
             if hasattr(gate, n)}
    for k, v in vars(type(gate)).items():  # data on the class, e.g. a counter or a cache
        if not k.startswith("__") and not callable(v) and not isinstance(v, _DESCRIPTORS):
            state[f"{type(gate).__name__}.{k}"] = _fingerprint(v)
    return state


def _contract_run(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray],
                  rng: np.random.Generator) -> np.ndarray:
    """Two identical runs: no state on self, same results, gradients shaped like the inputs."""
    before = _state(gate)
    y1, _ = _run(cls, gate, xs, None)
    dout = rng.standard_normal(y1.shape).astype(y1.dtype)
    y1, g1 = _run(cls, gate, xs, dout)
    after = _state(gate)
    if before != after:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        _fail(cls, f"keeps per-run state on the gate: a run changed {changed}",
              "A gate is shared by every run and thread; store per-run values on ctx "
              "(ctx.x = x), never on self")
    y2, g2 = _run(cls, gate, xs, dout)
    if not np.array_equal(y1, y2, equal_nan=True):
        _fail(cls, "is not deterministic: two forward runs on the same inputs differ",
              "Do not draw random numbers or depend on state between runs")
    _check_gradients(cls, xs, g1, "float64")
    for i, (a, b) in enumerate(zip(g1, g2)):
        if xs[i].dtype.kind == "f" and not np.array_equal(a, b, equal_nan=True):
            _fail(cls, f"is not deterministic: two backward runs give different gradients for "
                       f"input {i}", "Do not draw random numbers or depend on state between runs")
    return dout


def _check_gradients(cls: type[Gate], xs: Sequence[np.ndarray], grads: tuple[Any, ...],
                     what: str) -> None:
    """One gradient per input; for a float input, an array shaped and typed like it."""
    if len(grads) != len(xs):
        _fail(cls, f"backward returned {len(grads)} gradients for {len(xs)} inputs",
              "Return a tuple with one gradient per input (None for an integer input)")
    for i, (x, g) in enumerate(zip(xs, grads)):
        if x.dtype.kind != "f":
            continue
        if not isinstance(g, (np.ndarray, np.generic)):
            _fail(cls, f"backward returned {type(g).__name__} for input {i}, which needs a "
                       "gradient (ctx.needs_grad is True)",
                  "Return an ndarray shaped like the input")
        if np.shape(g) != x.shape:
            _fail(cls, f"the gradient for input {i} has shape {np.shape(g)}, expected {x.shape} "
                       "(shaped like the input)",
                  "Sum over broadcast axes with graphexec.unbroadcast(grad, x.shape)")
        if np.asarray(g).dtype != x.dtype:
            _fail(cls, f"with {what} inputs, the gradient for input {i} is "
                       f"{np.asarray(g).dtype}, expected {x.dtype}",
                  "Keep the input's dtype: avoid float64 constants such as np.float64(...) or "
                  "np.array(..., dtype=float)")


# ---------------------------------------------------------------------------- the other checks
def _check_needs_grad(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray],
                      dout: np.ndarray) -> None:
    """Asking for one gradient only must give the same value as asking for all of them."""
    floats = [i for i, x in enumerate(xs) if x.dtype.kind == "f"]
    if len(floats) < 2:
        return
    _, full = _run(cls, gate, xs, dout)
    for i in floats:
        needs = tuple(j == i for j in range(len(xs)))
        _, some = _run(cls, gate, xs, dout, needs)
        if len(some) != len(xs) or not isinstance(some[i], (np.ndarray, np.generic)) \
                or not np.allclose(some[i], full[i], rtol=1e-12, atol=0, equal_nan=True):
            _fail(cls, f"with ctx.needs_grad = {needs}, the gradient for input {i} is missing "
                       "or differs from the one computed when every gradient is needed",
                  "Skip only the gradients whose ctx.needs_grad entry is False")


def _check_float32(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray],
                   rng: np.random.Generator) -> None:
    if not any(x.dtype.kind == "f" for x in xs):
        return
    x32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
    y, _ = _run(cls, gate, x32, None)
    if y.dtype.kind in "biu":  # a mask or an index by design (dropout_mask): no float to keep
        return
    if y.dtype != np.float32:
        _fail(cls, f"float32 in does not give float32 out: forward returned {y.dtype}",
              "Keep the input's dtype: avoid float64 constants such as np.float64(...) or "
              "np.array(..., dtype=float); Python floats are fine")
    _, grads = _run(cls, gate, x32, rng.standard_normal(y.shape).astype(np.float32))
    _check_gradients(cls, x32, grads, "float32")


def _check_numerical(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray],
                     rng: np.random.Generator, *, eps: float, rtol: float,
                     max_coords: int) -> float:
    names = [f"input {i}" for i in range(len(xs))]
    checks, error = check_gate_gradients(gate, xs, names=names, rng=rng, eps=eps, rtol=rtol,
                                         max_coords=max_coords)
    if error:
        _fail(cls, error)
    bad = [(i, t) for i, t in checks.items() if t.n_failed]
    if bad:
        what = "; ".join(
            f"input {i} {t.shape}: {t.n_failed} of {t.n_checked} coordinates fail, worst at "
            f"{t.worst}: analytic {t.analytic:.6g}, numerical {t.numerical:.6g}, relative error "
            f"{t.max_rel_error:.2e}" for i, t in bad)
        _fail(cls, f"backward disagrees with numerical gradients (rtol {rtol:g}): {what}",
              "Check the local gradient formula in backward() (float64, central differences; "
              "at a kink any value between the one-sided slopes passes)")
    return max((t.max_rel_error for t in checks.values()), default=0.0)


def _check_fresh_grads(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray],
                       dout: np.ndarray) -> None:
    """``fresh_grads = True`` lets the executor add into the returned gradients in place, so
    each must be a new writeable array that shares memory with nothing the gate can see."""
    if getattr(cls, "fresh_grads", False) is not True:
        return
    ctx = Ctx()
    ins = [np.array(x) for x in xs]  # writeable: what is shared is found by memory, not flags
    y = np.asarray(gate.forward(ctx, *ins))
    ctx.needs_grad = _floats(xs)
    up = np.array(dout)
    grads = tuple(gate.backward(ctx, up))
    held = [(f"input {j}", x) for j, x in enumerate(ins)] + [("dout", up), ("its output", y)]
    held += [(f"ctx.{k}", v) for k, v in vars(ctx).items() if isinstance(v, np.ndarray)]
    fix = ("Return new arrays (dy * mask, dy.copy()), or remove fresh_grads = True: the executor "
           "then copies before it sums")
    for i, g in enumerate(grads):
        if not isinstance(g, np.ndarray) or xs[i].dtype.kind != "f":
            continue  # None, or a numpy scalar: nothing can be added into it in place
        if not g.flags.writeable:
            _fail(cls, f"declares fresh_grads = True, but the gradient for input {i} is read-only",
                  fix)
        for what, other in held:
            if np.may_share_memory(g, other):
                _fail(cls, f"declares fresh_grads = True, but the gradient for input {i} shares "
                           f"memory with {what}", fix)
        held.append((f"the gradient for input {i}", g))


def _check_round_trip(cls: type[Gate], gate: Gate, xs: Sequence[np.ndarray]) -> None:
    """Save and load a one-node graph of the gate; attributes and results must come back."""
    import graphexec as gx
    from graphexec.fileformat import decode, encode
    from graphexec.graph import InputDecl, NodeDef, make_graph
    from graphexec.header import from_header, to_header
    from graphexec.registry import registry

    reg = registry().with_gates(cls)  # a private overlay: the process registry is not touched
    try:
        decls = [InputDecl(f"in{i}", x.dtype, x.shape) for i, x in enumerate(xs)]
        node = NodeDef("node", cls.name, tuple(d.name for d in decls),
                       gate.attrs.model_dump(), cls.version)
        g = make_graph(f"check_{cls.name}", decls, {}, [node], {"out": "node"}, reg=reg)
        g2 = from_header(*decode(b"".join(encode(*to_header(g)))), reg=reg)
    except Exception as e:  # noqa: BLE001  (whatever breaks the round trip is the finding)
        _fail(cls, f"attributes {gate.attrs!r} do not survive a save/load round trip: "
                   f"{type(e).__name__}: {e}",
              "Attributes must be plain values: bool, int, float, str, or lists of them")
    loaded = g2.nodes[0].gate.attrs
    if loaded != gate.attrs:
        _fail(cls, f"attributes do not survive a save/load round trip: made {gate.attrs!r}, "
                   f"loaded {loaded!r}",
              "Validating an Attrs model's own model_dump() must give the same model back "
              "(a validator must not transform a value twice)")
    out = gx.run(g2, {f"in{i}": x for i, x in enumerate(xs)})["out"]
    if not np.array_equal(out, np.asarray(gate.forward(Ctx(), *xs)), equal_nan=True):
        _fail(cls, "a loaded one-node graph computes another value than the gate itself")
