"""``sweep``: every point of a grid trained on the Dask workers, byte-identical to serial ``fit``.

A point's settings are sorted by where they go (the first that takes the keyword wins):

1. a keyword of :func:`graphexec.fit` (``epochs``, ``batch_size``, ``seed``, ``val``, ...);
2. the optimiser: ``optimizer`` (a name such as ``"adam"``, or an optimiser object) and its
   hyperparameters (``lr``, ``momentum``, ``beta1``, ...);
3. the builder's keywords (``sizes``, ``reg``, ``activation``, ...) when ``graph`` is a builder
   call such as ``functools.partial(gx.nn.mlp, [2, 50, 3])``.

Each point then runs exactly ``fit(graph_copy, X, y, **fit_keywords, optimizer=...)`` on a
worker, with the graph rebuilt from its file bytes (or by the builder), so the trained file is
the same, byte for byte, as that call in this process.
"""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.api import dumps, loads
from graphexec.checkpoint import History, read_spec
from graphexec.distributed._cluster import DistributedError, connect
from graphexec.graph import Graph
from graphexec.optim import OPTIMIZERS, Optimizer, make_optimizer
from graphexec.train import accuracy, fit

__all__ = ["SweepResult", "grid_points", "run_point", "sweep"]

Builder = Callable[..., Graph]
Source = bytes | Builder  # what a worker gets: the file's bytes, or the builder call
FIT_KEYS = frozenset(k for k, p in inspect.signature(fit).parameters.items()
                     if p.kind is p.KEYWORD_ONLY) - {"optimizer"}
OPTIM_KEYS = frozenset(k for cls in OPTIMIZERS.values()
                       for k in inspect.signature(cls).parameters) | {"optimizer"}
REFUSED = {"checkpoint": "every point would write the same file; save result.graph instead",
           "progress": "workers have no terminal to draw a bar on",
           "callbacks": "callbacks would run on the workers, not here"}


@dataclass(frozen=True)
class SweepResult:
    """One trained grid point.

    Attributes:
        params: The grid point, as a dict.
        graph: The trained graph's file bytes (``gx.loads(result.graph)`` to use it).
        history: What ``fit`` measured per epoch.
        train_acc: Accuracy of the trained graph on ``X, y``.
        val_acc: Accuracy on ``val`` when the fit options had one, else None.
    """

    params: dict[str, Any]
    graph: bytes
    history: History
    train_acc: float
    val_acc: float | None

    def load(self) -> Graph:
        """The trained graph."""
        return loads(self.graph)


def grid_points(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid`` (a dict of value lists; the last key varies fastest), or
    the given list of points as it is."""
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise DistributedError(f"grid[{key!r}]: expected a non-empty list of values, "
                                       f"found {values!r:.60}; write grid={{{key!r}: [...]}}")
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    points = [dict(p) for p in grid if isinstance(p, Mapping)]
    if not points or len(points) != len(grid):
        raise DistributedError("grid: expected a dict of value lists or a non-empty list of "
                               f"dicts, found {type(grid).__name__}")
    return points


def _builder_keys(graph: Graph | Builder) -> frozenset[str]:
    if isinstance(graph, Graph):
        return frozenset()
    try:
        return frozenset(inspect.signature(graph).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _split(settings: Mapping[str, Any], builder_keys: frozenset[str]) -> tuple[dict[str, Any], ...]:
    """(fit keywords, optimiser settings, builder keywords); unknown keys are an error."""
    parts: tuple[dict[str, Any], ...] = ({}, {}, {})
    for key, value in settings.items():
        if key in REFUSED:
            if key == "progress" and not value:
                continue
            raise DistributedError(f"sweep cannot pass {key}=...: {REFUSED[key]}")
        where = 0 if key in FIT_KEYS else 1 if key in OPTIM_KEYS else 2 if key in builder_keys else -1
        if where < 0:
            raise DistributedError(
                f"sweep setting {key!r} is neither a keyword of gx.fit ({sorted(FIT_KEYS)}) nor "
                f"of an optimiser ({sorted(OPTIM_KEYS)})" + (
                    f" nor of the builder ({sorted(builder_keys)})" if builder_keys else
                    "; pass graph=functools.partial(builder, ...) to sweep builder settings"))
        parts[where][key] = value
    return parts


def _optimizer(g: Graph, settings: dict[str, Any]) -> Optimizer | None:
    """The point's optimiser, or None to let fit use the graph's training spec."""
    given = settings.pop("optimizer", None)
    if isinstance(given, Optimizer):  # a fresh one per point: an optimiser holds run state
        return make_optimizer(given.name, **{**given.hyperparams(), **settings})
    if given is None and not settings:
        return None
    stored = read_spec(g.training)
    name = given if given is not None else stored.optimizer
    if not isinstance(name, str):
        raise DistributedError(f"sweep settings {sorted(settings)} configure an optimiser, but "
                               "none is named and the graph's training spec has none; pass "
                               "optimizer='adam' (or 'sgd', 'rmsprop')")
    base = dict(stored.hyperparams) if name == stored.optimizer else {}
    return make_optimizer(name, **{**base, **settings})


def run_point(source: Source, X: np.ndarray, y: np.ndarray, options: Mapping[str, Any],
              point: Mapping[str, Any]) -> SweepResult:
    """Train one grid point here: what each worker runs, and the serial reference."""
    builder = None if isinstance(source, (bytes, bytearray)) else source
    fit_kw, opt_kw, build_kw = _split({**options, **point},
                                      _builder_keys(builder) if builder else frozenset())
    g = builder(**build_kw) if builder is not None else loads(bytes(source))  # type: ignore[arg-type]
    optimizer = _optimizer(g, opt_kw)
    if optimizer is not None:
        fit_kw["optimizer"] = optimizer
    fit_kw.pop("progress", None)
    history = fit(g, X, y, **fit_kw)
    val = fit_kw.get("val")
    return SweepResult(dict(point), dumps(g), history, accuracy(g, X, y),
                       None if val is None else accuracy(g, val[0], val[1]))


def _check(graph: Graph | Builder, points: list[dict[str, Any]], options: Mapping[str, Any]) -> None:
    """Refuse what would only fail on the workers: a clash or an unknown key."""
    if not isinstance(graph, Graph) and not callable(graph):
        raise DistributedError(f"sweep needs a gx.Graph or a builder call such as "
                               f"functools.partial(gx.nn.mlp, [2, 50, 3]), found {type(graph).__name__}")
    keys = _builder_keys(graph)
    for point in points:
        clash = sorted(set(point) & set(options))
        if clash:
            raise DistributedError(f"{clash[0]!r} is both a grid key and a fit option; give it "
                                   "in one place")
        _split({**options, **point}, keys)


def sweep(graph: Graph | Builder, grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
          X: np.ndarray, y: np.ndarray, *, client: Any = None, workers: int | None = None,
          **fit_options: Any) -> list[SweepResult]:
    """Train every point of ``grid`` on Dask workers; results in grid order.

    Args:
        graph: A graph (each point trains a copy; ``graph`` is not changed) or a builder call
            such as ``functools.partial(gx.nn.mlp, [2, 50, 3])``.
        grid: ``{key: [values]}`` (every combination, the last key varying fastest) or a list
            of points (dicts). Keys: see the module docstring.
        X, y: Training data, shipped once to every worker.
        client: A ``distributed.Client``; None starts a local cluster of ``workers`` processes
            (default: one per CPU, at most one per point) and closes it afterwards.
        **fit_options: Settings shared by every point (same keys as the grid).

    Returns:
        One :class:`SweepResult` per point, in grid order; each ``.graph`` is byte for byte
        what ``gx.fit`` on a copy of the graph with the same settings gives in this process.
    """
    points = grid_points(grid)
    _check(graph, points, fit_options)
    source: Source = dumps(graph) if isinstance(graph, Graph) else graph
    n = workers if workers is not None or client is not None else None
    with connect(client, workers=n if n is not None else _default_workers(len(points))) as c:
        shared = c.scatter([source, X, y, dict(fit_options)], broadcast=True, hash=False)
        run_id = uuid.uuid4().hex[:12]
        futures = [c.submit(run_point, *shared, point, pure=False,
                            key=f"graphexec-sweep-{run_id}-{i}") for i, point in enumerate(points)]
        try:
            return list(c.gather(futures))
        finally:
            c.cancel(futures + shared)


def _default_workers(n_points: int) -> int:
    import os

    return max(1, min(n_points, os.cpu_count() or 1))
