"""Shapes and dtypes known before running: each node's output :class:`~graphexec.gate.Spec`.

Every gate may declare a shape rule, ``infer(self, *specs) -> Spec``; a gate without one gives an
unknown spec for its output, and nothing breaks. ``infer_specs`` walks the nodes in execution
order from the declared inputs, parameters and buffers, without running anything, so a mismatch
is an error at build and load time that names the node, the op and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Spec

if TYPE_CHECKING:
    from graphexec.graph import InputDecl, Node

__all__ = ["infer_specs", "has_rule"]


def has_rule(node: Node) -> bool:
    """True if the node's gate declares a shape rule."""
    return callable(getattr(node.gate, "infer", None))


def infer_specs(inputs: Sequence[InputDecl], tensors: Mapping[str, np.ndarray],
                nodes: Sequence[Node]) -> dict[str, Spec]:
    """The spec of every value: declared inputs, tensors (parameters, buffers) as they are,
    then each node's output from its gate's rule (``Spec()`` where a gate has none).

    A rule is a pure function of the gate's validated attributes and its inputs' specs (a gate
    holds nothing else), so a rule runs once per distinct (gate class, attribute model, input
    specs), compared by identity: nodes without attributes share one model (see
    ``graphexec.graph``), and equal results are made one object, so a 100,000-node graph of a
    few ops over a few shapes makes a few dozen rule calls.

    Raises:
        GraphError: "node 'fc2' (affine): x has 100 features but W expects 50 ...", when a
            rule finds that the shapes cannot fit.
    """
    specs = {d.name: Spec(d.shape, d.dtype) for d in inputs}
    specs.update({k: Spec(v.shape, v.dtype) for k, v in tensors.items()})
    unknown = Spec()
    known: dict[tuple[object, ...], Spec] = {}
    same: dict[Spec, Spec] = {}  # each distinct result once, so that identities repeat
    for node in nodes:
        rule = getattr(node.gate, "infer", None)
        if rule is None:
            specs[node.name] = unknown
            continue
        args = [specs.get(s, unknown) for s in node.inputs]
        # Identities are safe keys here: every object named is alive until we return.
        key = (type(node.gate), id(node.gate.attrs), *map(id, args))
        spec = known.get(key)
        if spec is None:
            spec = _apply(node, rule, args)
            spec = known[key] = same.setdefault(spec, spec)
        specs[node.name] = spec
    return specs


def _apply(node: Node, rule: Callable[..., object], args: list[Spec]) -> Spec:
    try:
        spec = rule(*args)
    except GraphError as e:
        raise GraphError(f"node {node.name!r} ({node.op}): {e}") from None
    except Exception as e:  # a broken rule: name it rather than pretend the shapes fit
        raise GraphError(f"node {node.name!r} ({node.op}): the gate's shape rule failed: "
                         f"{type(e).__name__}: {e}") from e
    return spec if isinstance(spec, Spec) else Spec()
